"""`virtstack validate`: the stack file checked and placed, without the engine or libvirt.

Public API:
    validate_spec_file(spec_file, project_root=None, environ=None) -> PlacedFleet
        Raises SpecError listing every problem; with the project's root, local image sources must
        lie in its image directories (virtstack.images.check_image_locations).
    render_validation(spec_file, placed) -> str
        The VMs and the host placement puts each on, then per host the vCPUs, memory and disk the
        placed VMs use of the capacity virtstack may allocate there (capacity x overcommit, with
        the raw capacity next to it when they differ).

Placement here starts from nothing: the engine keeps deployed VMs where they are (`previous`
placement), so a fleet that grew since its last deployment may be placed differently by `up`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from virtstack.images import check_image_locations
from virtstack.ops.project import SpecFile
from virtstack.placement import HostUsage, PlacedFleet, place_fleet
from virtstack.spec.loader import load_stack
from virtstack.units import format_size

__all__ = ["render_validation", "validate_spec_file"]


def validate_spec_file(
    spec_file: SpecFile, project_root: Path | None = None, environ: Mapping[str, str] | None = None
) -> PlacedFleet:
    stack = load_stack(spec_file.path, display_name=spec_file.display)
    if project_root is not None:  # image sources are relative to the project
        check_image_locations(stack.spec, project_root, spec_file.display, environ)
    return place_fleet(stack.spec, spec_file.display, fleet=stack.fleet)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in [header, *rows]]


def _percent(used: int, capacity: int) -> str:
    return f"{round(100 * used / capacity)}%" if capacity else "-"


def _used(used: int, capacity: int, show: Callable[[int], str] = str, raw: int = 0) -> str:
    """``used / effective (percent)``, plus the raw capacity when overcommit makes them differ."""
    overcommitted = f", raw {show(raw)}" if raw and raw != capacity else ""
    return f"{show(used)} / {show(capacity)} ({_percent(used, capacity)}{overcommitted})"


def _usage_row(usage: HostUsage) -> list[str]:
    return [
        usage.host,
        str(len(usage.vms)),
        _used(usage.vcpus, usage.vcpus_capacity, raw=usage.vcpus_raw),
        _used(usage.memory_bytes, usage.memory_capacity, format_size, usage.memory_raw),
        _used(usage.disk_bytes, usage.disk_capacity, format_size),
    ]


def render_validation(spec_file: SpecFile, placed: PlacedFleet) -> str:
    placement = placed.placement
    vms = placed.fleet
    hosts = sorted(placement.usage)
    lines = [
        f"{spec_file.display}: valid ({len(vms)} VM{'s' if len(vms) != 1 else ''}, "
        f"{len(hosts)} host{'s' if len(hosts) != 1 else ''})",
        "",
    ]
    if vms:
        rows = [
            [
                vm.name,
                placement.host_of(vm.name),
                str(vm.vcpus),
                format_size(vm.memory_bytes),
                format_size(vm.total_disk_bytes),
            ]
            for vm in sorted(vms, key=lambda v: v.name)
        ]
        lines += _table(["VM", "HOST", "VCPUS", "MEMORY", "DISK"], rows)
        lines.append("")
    usage_rows = [_usage_row(placement.usage[h]) for h in hosts]
    lines += _table(["HOST", "VMS", "VCPUS", "MEMORY", "DISK"], usage_rows)
    return "\n".join(lines) + "\n"
