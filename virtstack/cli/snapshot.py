"""`virtstack snapshot create|list|revert|delete`: group-consistent snapshots of a stack's VMs
(virtstack.ops.snapshots)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from virtstack.cli.common import services, stack_name, stack_option
from virtstack.ops import snapshots
from virtstack.ops.trash import owner_of


def _vm_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--vm", "vms", multiple=True, metavar="NAME", help="Only this VM (repeatable); default: every VM."
    )(func)


def _selected(
    ctx: click.Context, stack: str | None, vms: tuple[str, ...]
) -> tuple[str, list[snapshots.SnapshotVm]]:
    name = stack_name(ctx, stack)
    svc = services(ctx)
    owner = str(owner_of(svc.project().root, name))
    return owner, snapshots.select_vms(svc.engine().outputs(name), vms)


@click.group("snapshot")
def snapshot_group() -> None:
    """Snapshots of the stack's VMs: every disk and the memory of each selected VM, taken at one
    moment for the group (all paused, all snapshotted, all resumed)."""


@snapshot_group.command("create")
@stack_option
@_vm_option
@click.argument("snapshot")
@click.pass_context
def create_command(ctx: click.Context, stack: str | None, vms: tuple[str, ...], snapshot: str) -> None:
    """Take SNAPSHOT of the selected VMs."""
    owner, selected = _selected(ctx, stack, vms)
    done = snapshots.create(services(ctx).libvirt_opener(), selected, snapshot, owner)
    click.echo(f"Snapshot {snapshot} taken of {len(done)} VM(s): {', '.join(done)}.")


@snapshot_group.command("list")
@stack_option
@_vm_option
@click.pass_context
def list_command(ctx: click.Context, stack: str | None, vms: tuple[str, ...]) -> None:
    """List this stack's snapshots."""
    owner, selected = _selected(ctx, stack, vms)
    click.echo(
        snapshots.render_rows(snapshots.list_snapshots(services(ctx).libvirt_opener(), selected, owner)),
        nl=False,
    )


@snapshot_group.command("revert")
@stack_option
@_vm_option
@click.argument("snapshot")
@click.pass_context
def revert_command(ctx: click.Context, stack: str | None, vms: tuple[str, ...], snapshot: str) -> None:
    """Put the selected VMs back to SNAPSHOT (disks and memory) and leave them running."""
    owner, selected = _selected(ctx, stack, vms)
    done = snapshots.revert(services(ctx).libvirt_opener(), selected, snapshot, owner)
    click.echo(f"Reverted {len(done)} VM(s) to {snapshot}: {', '.join(done)}.")


@snapshot_group.command("delete")
@stack_option
@_vm_option
@click.argument("snapshot")
@click.pass_context
def delete_command(ctx: click.Context, stack: str | None, vms: tuple[str, ...], snapshot: str) -> None:
    """Delete SNAPSHOT of the selected VMs."""
    owner, selected = _selected(ctx, stack, vms)
    done = snapshots.delete(services(ctx).libvirt_opener(), selected, snapshot, owner)
    click.echo(f"Deleted snapshot {snapshot} of {len(done)} VM(s): {', '.join(done)}.")


def register(group: click.Group) -> None:
    group.add_command(snapshot_group)
