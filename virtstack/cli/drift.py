"""`virtstack drift`: what differs between libvirt and the stack's desired state."""

from __future__ import annotations

import click

from virtstack.cli.common import format_option, make_runner, services, stack_name, stack_option, write_output
from virtstack.ops.apply import check_drift
from virtstack.ops.render import FORMATS, render_drift


@click.command("drift")
@stack_option
@format_option(FORMATS, "table")
@click.option("--out", metavar="FILE", default=None, help="Write the report to FILE instead of printing it.")
@click.pass_context
def drift_command(ctx: click.Context, stack: str | None, fmt: str, out: str | None) -> None:
    """Read the real state of every object (a refresh preview: nothing is changed) and report, per
    VM, what differs from the desired state: powered off, missing, memory or vCPUs changed, disk
    missing…  Exit 0 without drift, 2 with drift, 1 on errors."""
    name = stack_name(ctx, stack)
    engine = services(ctx).engine()
    drift = make_runner(ctx, name, "drift")(lambda: check_drift(engine, name), False)
    write_output(render_drift(drift, name, fmt), out)
    if out is not None:
        state = "drift found" if drift.has_drift else "no drift"
        click.echo(f"Drift report for stack {name} written to {out}: {state}.")
    ctx.exit(2 if drift.has_drift else 0)


def register(group: click.Group) -> None:
    group.add_command(drift_command)
