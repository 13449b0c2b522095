"""`virtstack hosts`: each host's real capacity, this stack's and others' usage, and the plan's
projection — read from libvirt, nothing changed."""

from __future__ import annotations

import click

from virtstack.cli.common import format_option, services, stack_name, stack_option, write_output
from virtstack.ops.capacitycheck import host_projection
from virtstack.ops.hostsview import FORMATS, render_hosts


@click.command("hosts")
@stack_option
@format_option(FORMATS, "table")
@click.option("--out", metavar="FILE", default=None, help="Write the report to FILE instead of printing it.")
@click.pass_context
def hosts_command(ctx: click.Context, stack: str | None, fmt: str, out: str | None) -> None:
    """Show per host and resource (vCPUs, memory, disk per pool): the host's capacity (times its
    overcommit), what this stack's domains use, what other domains use, what is free, and what
    would be used after the current plan, with a bar."""
    name = stack_name(ctx, stack)
    svc = services(ctx)
    _, rows, readings = host_projection(svc.project(), name, svc.engine(), svc.libvirt_opener())
    write_output(render_hosts(rows, readings, name, fmt), out)


def register(group: click.Group) -> None:
    group.add_command(hosts_command)
