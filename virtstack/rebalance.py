"""Rebalancing proposals: moves that lower the peak utilisation of the fleet.  Pure.

Public API:
    propose_moves(fleet, hosts, placement, max_moves=None) -> Proposal
        Greedy: while some move of an unpinned VM off the most utilised host lowers the peak
        utilisation (the largest used/effective-capacity share over vCPUs, memory and disk of any
        host), take the move that lowers it most (ties: VM name, then host name).  Each VM moves at
        most once.  Moves respect every placement rule: the target is active, offers the VM's
        networks, pool and address segments, has room, and holds no VM of the group when its
        anti_affinity is required.  Never applied by itself: `virtstack rebalance` shows it.
    Move(vm, source, target), Proposal(moves, peak_before, peak_after, assignments)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from virtstack.capacity import effective_capacity
from virtstack.fleet import VmInstance, missing_on_host
from virtstack.placement import Placement
from virtstack.spec import HostSpec

__all__ = ["Move", "Proposal", "propose_moves", "utilisation"]


@dataclass(frozen=True)
class Move:
    vm: str
    source: str
    target: str


@dataclass(frozen=True)
class Proposal:
    moves: tuple[Move, ...]
    peak_before: float
    peak_after: float
    assignments: dict[str, str]  # the placement once the moves are made


def utilisation(used: Sequence[int], cap: Sequence[int]) -> float:
    """The scarcest resource decides: max over vCPUs, memory, disk of used / capacity."""
    return max(u / c if c else 0.0 for u, c in zip(used, cap, strict=True))


def _need(vm: VmInstance) -> tuple[int, int, int]:
    return vm.vcpus, vm.memory_bytes, vm.total_disk_bytes


def propose_moves(
    fleet: Sequence[VmInstance],
    hosts: Mapping[str, HostSpec],
    placement: Placement,
    max_moves: int | None = None,
) -> Proposal:
    where = dict(placement.assignments)
    by_name = {vm.name: vm for vm in fleet}
    cap = {h: effective_capacity(hosts[h]) for h in hosts}
    used = {h: [0, 0, 0] for h in hosts}
    for name, h in where.items():
        for r, n in enumerate(_need(by_name[name])):
            used[h][r] += n
    limit = len(fleet) if max_moves is None else max_moves

    def peak() -> float:
        return max((utilisation(used[h], cap[h]) for h in hosts), default=0.0)

    def allowed(vm: VmInstance, target: str) -> bool:
        spec = hosts[target]
        if spec.state != "active" or missing_on_host(vm, spec):
            return False
        if vm.anti_affinity == "required" and any(
            other.group == vm.group and where[other.name] == target
            for other in fleet
            if other.name != vm.name
        ):
            return False
        return all(used[target][r] + n <= cap[target][r] for r, n in enumerate(_need(vm)))

    start = peak()
    moved: set[str] = set()
    moves: list[Move] = []
    while len(moves) < limit:
        current = peak()
        top = max(sorted(hosts), key=lambda h: utilisation(used[h], cap[h]))
        best: tuple[float, str, str] | None = None
        for name in sorted(n for n, h in where.items() if h == top and n not in moved):
            vm = by_name[name]
            if vm.host is not None:
                continue  # pinned: the user chose
            need = _need(vm)
            for target in sorted(hosts):
                if target == top or not allowed(vm, target):
                    continue
                for r in range(3):
                    used[top][r] -= need[r]
                    used[target][r] += need[r]
                after = peak()
                for r in range(3):
                    used[top][r] += need[r]
                    used[target][r] -= need[r]
                if after < current - 1e-9 and (best is None or (after, name, target) < best):
                    best = (after, name, target)
        if best is None:
            break
        _, name, target = best
        for r, n in enumerate(_need(by_name[name])):
            used[top][r] -= n
            used[target][r] += n
        where[name] = target
        moved.add(name)
        moves.append(Move(name, top, target))
    return Proposal(tuple(moves), start, peak(), dict(sorted(where.items())))
