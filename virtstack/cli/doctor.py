"""`virtstack doctor`: each host of the stack checked before anything is applied (virtstack.ops.doctor)."""

from __future__ import annotations

import click

from virtstack.cli.common import services, stack_name, stack_option
from virtstack.fleet import VmInstance
from virtstack.ops import doctor as doctor_ops
from virtstack.ops.project import Project
from virtstack.placement import place_fleet
from virtstack.spec import StackSpec
from virtstack.spec.loader import load_stack


def stack_by_host(project: Project, stack: str) -> tuple[StackSpec, dict[str, list[VmInstance]]]:
    """The stack file, validated and placed (as `validate` does): each host's VMs."""
    spec_file = project.spec_file(stack)
    loaded = load_stack(spec_file.path, display_name=spec_file.display)
    placed = place_fleet(loaded.spec, spec_file.display, fleet=loaded.fleet)
    by_host: dict[str, list[VmInstance]] = {}
    for vm in placed.fleet:
        by_host.setdefault(placed.placement.host_of(vm.name), []).append(vm)
    return loaded.spec, by_host


@click.command("doctor")
@stack_option
@click.pass_context
def doctor_command(ctx: click.Context, stack: str | None) -> None:
    """Check every host of the stack: the daemon answers, KVM or TCG, pool paths QEMU can reach,
    OVMF/swtpm when VMs need them, bridges, free memory and disk, ssh/TLS credentials. Each finding
    is ok, warning or error with its fix; exits 1 when there is an error."""
    name = stack_name(ctx, stack)
    svc = services(ctx)
    spec, fleet_by_host = stack_by_host(svc.project(), name)
    env = doctor_ops.LocalEnv(svc.project().root)
    findings = doctor_ops.doctor(spec, fleet_by_host, env, svc.libvirt_opener())
    click.echo(doctor_ops.render(findings), nl=False)
    if doctor_ops.errors(findings):
        ctx.exit(1)


def register(group: click.Group) -> None:
    group.add_command(doctor_command)
