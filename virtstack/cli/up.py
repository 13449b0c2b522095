"""`virtstack up`: apply the stack file — the previewed plan, with live progress."""

from __future__ import annotations

from typing import Any

import click

from virtstack.cli.common import (
    data_loss_options,
    make_runner,
    require_terminal_or_yes,
    services,
    stack_name,
    stack_option,
    trash_note,
)
from virtstack.cli.plan import check_spec, snapshot_warnings
from virtstack.ops import trash as trash_ops
from virtstack.ops.apply import apply_stack
from virtstack.ops.classify import Plan
from virtstack.ops.errors import Refused
from virtstack.ops.progress import Progress
from virtstack.ops.render import render_plan
from virtstack.ops.starts import DomainStarts
from virtstack.settings import Settings
from virtstack.spec.loader import load_spec
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
@data_loss_options
@click.option(
    "--wait",
    type=click.Choice(["running", "ready"]),
    default="running",
    show_default=True,
    help="running: check each VM runs (not paused, crashed or off); ready: also wait for its guest agent.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds for --wait ready.",
)
@click.pass_context
def up_command(
    ctx: click.Context,
    stack: str | None,
    yes: bool,
    allow_data_loss: bool,
    no_trash: bool,
    wait: str,
    timeout: float,
) -> None:
    """Bring the stack to its stack file: preview (reading the real state first), show the plan, ask,
    then apply exactly that plan, printing each object as the engine works on it; then check with
    libvirt that every VM that should run does."""
    name = stack_name(ctx, stack)
    require_terminal_or_yes(ctx, yes, f"change stack {name}")
    check_spec(ctx, name)
    svc = services(ctx)
    engine = svc.engine()
    progress = Progress(click.echo, svc.clock)
    starts = DomainStarts()  # when each domain was started: the VM check settles from there

    def on_event(event: Any) -> None:
        progress(event)
        starts(event)

    def show(plan: Plan) -> None:
        click.echo(render_plan(plan, name, "table"), nl=False)
        note = trash_note(plan, ctx, name, no_trash)
        if note:
            click.echo(note)
        for line in snapshot_warnings(ctx, name, plan):
            click.echo(line)

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
        on_event=on_event,
        run=make_runner(ctx, name, "up"),
    )
    if result.applied:
        click.echo(f"\nDone: {progress.summary()}.")
        outputs = result.outputs
    else:
        click.echo("Nothing to do.")
        outputs = engine.outputs(name) if wait == "ready" else {}
    if outputs:
        # The bench's baseline settles from the end of the apply, as before (virtstack.settings).
        started = None if Settings.from_env(svc.environ).baseline_fixed_cost else starts.at
        _check_vms(ctx, name, outputs, wait == "ready", timeout, started)
        lines = vm_lines(outputs)
        if lines:
            click.echo(f"VMs of stack {name}:")
            click.echo("\n".join(lines))
    if result.applied:
        _purge_expired_trash(ctx, name)


def _check_vms(
    ctx: click.Context,
    stack: str,
    outputs: dict[str, Any],
    ready: bool,
    timeout: float,
    started: dict[str, float] | None = None,
) -> None:
    if ready:
        click.echo(f"Waiting for the guest agent of each VM (up to {timeout:.0f} s)…")
    problems = services(ctx).check_vms(outputs, wait_ready=ready, timeout=timeout, started=started)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise Refused(f"stack {stack} is applied, but {len(problems)} VM(s) are not as asked:\n{lines}")
    for vm in (outputs.get("vms") or {}).values():
        if isinstance(vm, dict) and vm.get("running_wanted", True):
            vm["state"] = "ready" if ready else "running"


def _purge_expired_trash(ctx: click.Context, stack: str) -> None:
    """Disks kept longer than the stack's trash_days go now (best effort: `up` already succeeded)."""
    svc = services(ctx)
    try:
        spec_file = svc.project().spec_file(stack)
        spec = load_spec(spec_file.path, display_name=spec_file.display)
        owner = trash_ops.owner_of(svc.project().root, stack)
        purged = trash_ops.purge_expired(spec, owner, svc.now().astimezone(), svc.libvirt_opener())
    except Exception as err:  # the apply is done; a purge that fails is retried by the next up
        click.echo(f"(trash not purged: {err})")
        return
    for name in purged:
        click.echo(f"Purged from the trash (older than {spec.trash_days} days): {name}")


def register(group: click.Group) -> None:
    group.add_command(up_command)
