"""`virtstack trash list | restore DISK | empty`: disks a plan deleted, kept for the stack's trash_days."""

from __future__ import annotations

import click

from virtstack.cli.common import require_terminal_or_yes, services, stack_name, stack_option
from virtstack.ops import trash as trash_ops
from virtstack.spec import StackSpec
from virtstack.spec.loader import load_spec
from virtstack.units import format_size


def _spec(ctx: click.Context, stack: str) -> StackSpec:
    spec_file = services(ctx).project().spec_file(stack)
    return load_spec(spec_file.path, display_name=spec_file.display)


@click.group("trash")
def trash_group() -> None:
    """Disks that plans deleted: each is kept in its pool for the stack's `trash_days` (default 7),
    then purged by the next `up`."""


@trash_group.command("list")
@stack_option
@click.pass_context
def list_command(ctx: click.Context, stack: str | None) -> None:
    """The stack's trashed disks: host, pool, disk, VM, when it was deleted, size, when it expires."""
    name = stack_name(ctx, stack)
    spec = _spec(ctx, name)
    found = trash_ops.find_trash(
        spec, trash_ops.owner_of(services(ctx).project().root, name), services(ctx).libvirt_opener()
    )
    if not found:
        click.echo(f"The trash of stack {name} is empty.")
        return
    click.echo(f"Trash of stack {name} (kept {spec.trash_days} days):")
    for entry in found:
        disk = entry.disk
        click.echo(
            f"  {disk.name.original}  vm {disk.name.vm}  host {entry.host}  pool {disk.pool}  "
            f"deleted {disk.deleted_at:%Y-%m-%d %H:%M} UTC  {format_size(disk.capacity)}  "
            f"expires {disk.expires(spec.trash_days):%Y-%m-%d %H:%M} UTC\n    as {disk.name}"
        )


@trash_group.command("restore")
@stack_option
@click.argument("disk")
@click.pass_context
def restore_command(ctx: click.Context, stack: str | None, disk: str) -> None:
    """Put DISK (its original name, e.g. app-2-data.qcow2, or its trash name) back in its pool under its
    original name; the next `up` of a stack that has that disk adopts it with its data."""
    name = stack_name(ctx, stack)
    spec = _spec(ctx, name)
    owner = trash_ops.owner_of(services(ctx).project().root, name)
    restored = trash_ops.restore_disk(spec, owner, disk, services(ctx).libvirt_opener())
    click.echo(f"Restored {restored}.")


@trash_group.command("empty")
@stack_option
@click.option("-y", "--yes", is_flag=True, help="Empty without asking.")
@click.pass_context
def empty_command(ctx: click.Context, stack: str | None, yes: bool) -> None:
    """Delete every trashed disk of the stack for good."""
    name = stack_name(ctx, stack)
    require_terminal_or_yes(ctx, yes, f"empty the trash of stack {name}")
    if not yes and not click.confirm(f"Delete the trashed disks of stack {name} for good?", default=False):
        click.echo("Nothing was deleted.")
        return
    spec = _spec(ctx, name)
    owner = trash_ops.owner_of(services(ctx).project().root, name)
    purged = trash_ops.empty_trash(spec, owner, services(ctx).libvirt_opener())
    click.echo(f"Deleted {len(purged)} trashed disk(s) of stack {name}.")
    for pool in trash_ops.remove_emptied_pools(spec, owner, services(ctx).libvirt_opener()):
        click.echo(f"Removed {pool}: destroy had kept it only for its trash.")


def register(group: click.Group) -> None:
    group.add_command(trash_group)
