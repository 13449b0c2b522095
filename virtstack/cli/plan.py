"""`virtstack plan`: what `up` would change, in words a VM owner understands."""

from __future__ import annotations

import click

from virtstack.cli.common import (
    format_option,
    make_runner,
    services,
    stack_name,
    stack_option,
    write_output,
)
from virtstack.ops.apply import make_plan
from virtstack.ops.capacitycheck import check_real_capacity
from virtstack.ops.changes import Plan
from virtstack.ops.doctor import check_hosts_cheaply
from virtstack.ops.render import FORMATS, render_plan, summary_line
from virtstack.ops.snapshots import plan_warnings
from virtstack.spec.loader import load_spec


def check_spec(ctx: click.Context, stack: str) -> None:
    """Report stack file problems before starting the engine (which would report them too, later),
    then the cheap host checks of `virtstack doctor` (no libvirt call: a broken host fails here), then
    read the hosts and refuse a plan that does not fit them (virtstack.ops.capacitycheck)."""
    svc = services(ctx)
    spec_file = svc.project().spec_file(stack)
    spec = load_spec(spec_file.path, display_name=spec_file.display)
    check_hosts_cheaply(spec, svc.project().root)
    check_real_capacity(svc.project(), stack, svc.engine(), svc.libvirt_opener())


def snapshot_warnings(ctx: click.Context, stack: str, plan: Plan) -> list[str]:
    """The plan's disks that hold snapshots (virtstack.ops.snapshots.plan_warnings)."""
    if not plan.data_loss:
        return []
    svc = services(ctx)
    spec_file = svc.project().spec_file(stack)
    spec = load_spec(spec_file.path, display_name=spec_file.display)
    uris = {host: h.uri for host, h in spec.hosts.items()}
    return plan_warnings(plan, uris, svc.libvirt_opener())


@click.command("plan")
@stack_option
@format_option(FORMATS, "table")
@click.option("--out", metavar="FILE", default=None, help="Write the plan to FILE instead of printing it.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there are no changes, 2 when there are, 1 on errors.",
)
@click.pass_context
def plan_command(
    ctx: click.Context, stack: str | None, fmt: str, out: str | None, detailed_exitcode: bool
) -> None:
    """Preview the changes `virtstack up` would make, grouped by VM: create, update in place,
    redefine (the VM restarts, its disks are kept), replace, replace with data loss (a disk that holds
    data is destroyed), delete.  The real state is read first, so drift shows up as its fix."""
    name = stack_name(ctx, stack)
    check_spec(ctx, name)
    engine = services(ctx).engine()
    plan = make_runner(ctx, name, "plan")(lambda: make_plan(engine, name), False)
    write_output(render_plan(plan, name, fmt), out)
    for line in snapshot_warnings(ctx, name, plan):
        click.echo(line, err=True)
    if out is not None:
        click.echo(f"Plan for stack {name} written to {out}: {summary_line(plan)}.")
    if detailed_exitcode and plan.has_changes:
        ctx.exit(2)


def register(group: click.Group) -> None:
    group.add_command(plan_command)
