"""Real host capacity next to the plan: what each host has, what this stack and others use there,
and what the plan would leave.  Pure (the readings come from virtstack.ops.hostread).

Public API:
    HostReading   one host as libvirt reports it: CPUs and memory (node info), the vCPUs and
                  memory of domains that are this stack's and of those that are not, pools
    PoolReading   a storage pool's capacity, allocation and available bytes
    project(spec, placement, readings) -> list[HostProjection]
        per host and resource (vCPUs, memory, disk per pool): capacity (raw x overcommit), this
        stack now, others, free now, and after the plan (others + the plan's VMs there; disk: used
        now + the disks of VMs not yet on the host, at their virtual size).
    overcommitted(projections) -> list[str]     one line per resource a plan would overfill
    bar(share, width=20) -> str                  "[#####...............]"

vCPUs and memory of other domains count whether they run or not (a stopped domain may start).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from virtstack.fleet import VmInstance, resolve_pool
from virtstack.placement import Placement
from virtstack.spec import StackSpec
from virtstack.units import format_size

__all__ = ["HostProjection", "HostReading", "PoolReading", "bar", "overcommitted", "project"]


@dataclass(frozen=True)
class PoolReading:
    capacity: int
    allocation: int
    available: int
    ours: int = 0  # allocation of this stack's volumes in it


@dataclass(frozen=True)
class HostReading:
    host: str
    uri: str
    cpus: int
    memory: int  # bytes
    ours: dict[str, tuple[int, int]] = field(default_factory=dict)  # domain -> (vCPUs, memory)
    others: dict[str, tuple[int, int]] = field(default_factory=dict)
    pools: dict[str, PoolReading] = field(default_factory=dict)  # pools of the stack file found


@dataclass(frozen=True)
class HostProjection:
    host: str
    resource: str  # "vcpus", "memory" or "disk <pool>"
    raw: int  # the host's own figure
    capacity: int  # raw x overcommit (disk: as is)
    ours: int  # this stack, now
    others: int
    after: int  # used after the plan: others + this stack's VMs as planned

    @property
    def free(self) -> int:
        return self.capacity - self.ours - self.others

    @property
    def share_after(self) -> float:
        return self.after / self.capacity if self.capacity else 0.0

    def show(self, n: int) -> str:
        return str(n) if self.resource == "vcpus" else format_size(n)


def _planned(fleet: Sequence[VmInstance], placement: Placement, host: str) -> list[VmInstance]:
    return [vm for vm in fleet if placement.assignments.get(vm.name) == host]


def project(
    spec: StackSpec, fleet: Sequence[VmInstance], placement: Placement, readings: Mapping[str, HostReading]
) -> list[HostProjection]:
    rows: list[HostProjection] = []
    for host_name in sorted(readings):
        reading, host = readings[host_name], spec.hosts[host_name]
        planned = _planned(fleet, placement, host_name)
        # An imported domain carries no owner record until confirmed, but it is this stack's VM.
        adopted = {vm.name for vm in planned if vm.imported is not None}
        others = {n: use for n, use in reading.others.items() if n not in adopted}
        ours = {**reading.ours, **{n: use for n, use in reading.others.items() if n in adopted}}
        others_v = sum(v for v, _ in others.values())
        others_m = sum(m for _, m in others.values())
        ours_v = sum(v for v, _ in ours.values())
        ours_m = sum(m for _, m in ours.values())
        rows.append(
            HostProjection(
                host_name,
                "vcpus",
                reading.cpus,
                math.floor(reading.cpus * host.overcommit.vcpus),
                ours_v,
                others_v,
                others_v + sum(vm.vcpus for vm in planned),
            )
        )
        rows.append(
            HostProjection(
                host_name,
                "memory",
                reading.memory,
                math.floor(reading.memory * host.overcommit.memory),
                ours_m,
                others_m,
                others_m + sum(vm.memory_bytes for vm in planned),
            )
        )
        for pool_name, pool in sorted(reading.pools.items()):
            new = sum(
                vm.total_disk_bytes
                for vm in planned
                if vm.name not in ours and resolve_pool(host, vm.pool) == pool_name
            )
            used = pool.capacity - pool.available
            rows.append(
                HostProjection(
                    host_name,
                    f"disk {pool_name}",
                    pool.capacity,
                    pool.capacity,
                    min(pool.ours, used),
                    max(0, used - pool.ours),
                    used + new,
                )
            )
    return rows


def overcommitted(projections: Sequence[HostProjection]) -> list[str]:
    """What does not fit, one line each, for the refusal of a plan."""
    lines = []
    for row in projections:
        if row.after <= row.capacity:
            continue
        what = "vCPUs" if row.resource == "vcpus" else row.resource.replace("disk ", "disk in pool ")
        over = f"{row.show(row.capacity)}"
        if row.resource != "vcpus" and not row.resource.startswith("disk") and row.capacity != row.raw:
            over += f" ({row.show(row.raw)} x overcommit)"
        elif row.resource == "vcpus" and row.capacity != row.raw:
            over += f" ({row.raw} CPUs x overcommit)"
        lines.append(
            f"host {row.host}: the plan needs {row.show(row.after)} of {what}, the host has {over} "
            f"(others' domains use {row.show(row.others)})"
        )
    return lines


def bar(share: float, width: int = 20) -> str:
    filled = min(width, max(0, round(share * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"
