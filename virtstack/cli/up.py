"""`virtstack up`: apply the stack file — the previewed plan, with live progress."""

from __future__ import annotations

from typing import Any

import click

from virtstack.cli.common import make_runner, require_terminal_or_yes, services, stack_name, stack_option
from virtstack.cli.plan import check_spec
from virtstack.ops.apply import apply_stack
from virtstack.ops.classify import Plan
from virtstack.ops.progress import Progress
from virtstack.ops.render import render_plan
from virtstack.units import format_size


def vm_lines(outputs: dict[str, Any]) -> list[str]:
    """One line per VM of the stack's `vms` output: host, state, size, addresses."""
    vms = outputs.get("vms") or {}
    lines = []
    for name in sorted(vms):
        vm = vms[name] or {}
        ips = ", ".join(ip for ip in vm.get("ips") or [] if ip) or "DHCP"
        memory = vm.get("memory")
        size = format_size(memory) if isinstance(memory, int) else "?"
        lines.append(
            f"  {name}: {vm.get('state', '?')} on host {vm.get('host', '?')}, "
            f"{vm.get('vcpus', '?')} vCPU, {size}, {ips}"
        )
    return lines


@click.command("up")
@stack_option
@click.option(
    "-y", "--yes", is_flag=True, help="Apply without asking (required when stdin is not a terminal)."
)
@click.option(
    "--allow-data-loss",
    is_flag=True,
    help="Apply even when the plan destroys disks holding data of VMs that stay.",
)
@click.pass_context
def up_command(ctx: click.Context, stack: str | None, yes: bool, allow_data_loss: bool) -> None:
    """Bring the stack to its stack file: preview (reading the real state first), show the plan, ask,
    then apply exactly that plan, printing each object as the engine works on it."""
    name = stack_name(ctx, stack)
    require_terminal_or_yes(ctx, yes, f"change stack {name}")
    check_spec(ctx, name)
    engine = services(ctx).engine()
    progress = Progress(click.echo, services(ctx).clock)

    def show(plan: Plan) -> None:
        click.echo(render_plan(plan, name, "table"), nl=False)

    def confirm(plan: Plan) -> bool:
        if not yes and not click.confirm(f"\nApply these changes to stack {name}?", default=False):
            return False
        click.echo(f"\nApplying the plan to stack {name}:")
        progress.restart()
        return True

    click.echo(f"Previewing stack {name} (reading the real state first)…")
    result = apply_stack(
        engine,
        name,
        allow_data_loss=allow_data_loss,
        confirm=confirm,
        on_plan=show,
        on_event=progress,
        run=make_runner(ctx, name, "up"),
    )
    if not result.applied:
        click.echo("Nothing to do.")
        return
    click.echo(f"\nDone: {progress.summary()}.")
    lines = vm_lines(result.outputs)
    if lines:
        click.echo(f"VMs of stack {name}:")
        click.echo("\n".join(lines))


def register(group: click.Group) -> None:
    group.add_command(up_command)
