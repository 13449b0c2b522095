"""`virtstack inventory`: the stack's VMs as an Ansible inventory, ssh_config or JSON."""

from __future__ import annotations

import click

from virtstack.cli.common import services, stack_name, stack_option, write_output
from virtstack.ops.inventory import FORMATS, build_inventory, render_inventory


@click.command("inventory")
@stack_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Output format.")
@click.option(
    "--out", metavar="FILE", default=None, help="Write the inventory to FILE instead of printing it."
)
@click.pass_context
def inventory_command(ctx: click.Context, stack: str | None, fmt: str, out: str | None) -> None:
    """List the stack's VMs with their addresses, from the stack's outputs: static IPs, else the
    DHCP leases libvirt knows, else what the guest agent reports, else the addresses the outputs
    recorded (no connection is made to any guest)."""
    name = stack_name(ctx, stack)
    svc = services(ctx)
    vms = build_inventory(svc.engine().outputs(name), svc.lease_lookup)
    write_output(render_inventory(vms, name, fmt), out)


def register(group: click.Group) -> None:
    group.add_command(inventory_command)
