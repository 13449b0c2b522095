"""`virtstack rebalance`: propose moves that lower the peak utilisation — never applied by itself."""

from __future__ import annotations

import click

from virtstack.cli.common import format_option, services, stack_name, stack_option, write_output
from virtstack.ops.fleetplace import current_placement, deployed_placement
from virtstack.ops.rebalance import FORMATS, render_proposal
from virtstack.rebalance import propose_moves


@click.command("rebalance")
@stack_option
@format_option(FORMATS, "table")
@click.option(
    "--out", metavar="FILE", default=None, help="Write the proposal to FILE instead of printing it."
)
@click.pass_context
def rebalance_command(ctx: click.Context, stack: str | None, fmt: str, out: str | None) -> None:
    """Propose moves of unpinned VMs that lower the peak utilisation of the hosts (the largest share
    of vCPUs, memory or disk used on any host), keeping every placement rule.  Changes nothing."""
    name = stack_name(ctx, stack)
    svc = services(ctx)
    spec_file = svc.project().spec_file(name)
    previous = deployed_placement(svc.engine(), name)
    loaded, placed = current_placement(spec_file, previous)
    proposal = propose_moves(placed.fleet, loaded.spec.hosts, placed.placement)
    write_output(render_proposal(proposal, name, fmt), out)


def register(group: click.Group) -> None:
    group.add_command(rebalance_command)
