"""Host capacity bookkeeping for placement (virtstack.placement): which hosts can take a VM, what
they have left, and the spread/pack picks.  Pure; no messages (placement words them).

Public API:
    HostIndex(hosts).select(networks, pool) -> tuple[int, ...]
        The classes of hosts (same networks and pools) offering all those networks and the pool.
    HostState(hosts, max_steps)  usage per host; fits, assign, eligible, pick_spread, pick_pack
    TooMuchWork                  raised once max_steps host checks are spent
    req_key(vm), shape_of(vm)    a VM's requirements, and those plus its size
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from virtstack.fleet import VmInstance
from virtstack.spec.models import HostSpec

__all__ = ["HostIndex", "HostState", "ReqKey", "Shape", "TooMuchWork", "req_key", "shape_of"]


class HostIndex:
    """Hosts grouped by what they offer, for matching VM requirements.

    Hosts offering the same networks and pools are interchangeable when it comes to which VMs they
    can run: a requirement (networks, pool) is matched against these classes — usually a handful,
    even with thousands of hosts — rather than against every host, which was the quadratic part of
    validation and placement with thousands of hosts and thousands of distinct requirements."""

    def __init__(self, hosts: Mapping[str, HostSpec]) -> None:
        classes: dict[tuple[frozenset[str], frozenset[str]], list[str]] = {}
        for name in sorted(hosts):
            host = hosts[name]
            classes.setdefault((frozenset(host.networks), frozenset(host.pools)), []).append(name)
        self.classes = list(classes.items())  # ((networks, pools), host names in name order)
        self.networks = {network for (networks, _), _ in self.classes for network in networks}
        self.pools = {pool for (_, pools), _ in self.classes for pool in pools}

    def select(self, networks: Iterable[str], pool: str | None) -> tuple[int, ...]:
        """Indexes of the classes offering every network of ``networks`` and ``pool`` (None: the
        host's only pool), as fleet.missing_on_host decides for one host."""
        wanted = set(networks)
        return tuple(
            i
            for i, ((offered, pools), _) in enumerate(self.classes)
            if wanted <= offered and (pool in pools if pool is not None else len(pools) == 1)
        )


# A VM's requirements (networks, pool) and its size: VMs of one shape are
# interchangeable for placement, which is what makes the per-shape caches valid.
ReqKey = tuple[tuple[str, ...], str | None]
Shape = tuple[ReqKey, int, int, int]


class TooMuchWork(Exception):
    """The step budget is spent; placement.place() turns it into a SpecError."""


class HostState:
    """Mutable bookkeeping for one placement.place() call: usage per host, and the picks."""

    def __init__(self, hosts: Mapping[str, HostSpec], max_steps: int) -> None:
        self.hosts = hosts
        self.max_steps = max_steps
        self.names = sorted(hosts)
        self.cap = {
            h: (hosts[h].capacity.vcpus, hosts[h].capacity.memory, hosts[h].capacity.disk) for h in hosts
        }
        self.used = {h: [0, 0, 0] for h in hosts}
        self.version = dict.fromkeys(hosts, 0)
        self.assigned: dict[str, str] = {}
        self.index = HostIndex(hosts)
        self.steps = 0
        # Requirements that select the same host classes share one host list and one spread heap.
        self._selected: dict[ReqKey, tuple[int, ...]] = {}
        self._eligible: dict[tuple[int, ...], list[str]] = {}
        self._heaps: dict[tuple[int, ...], list[tuple[float, str, int]]] = {}
        self._cursor: dict[Shape, int] = {}
        self._never: set[Shape] = set()  # shapes that fit no host any more

    def spend(self, steps: int) -> None:
        self.steps += steps
        if self.steps > self.max_steps:
            raise TooMuchWork

    @staticmethod
    def need(vm: VmInstance) -> tuple[int, int, int]:
        return vm.vcpus, vm.memory_bytes, vm.total_disk_bytes

    def fits(self, host: str, vm: VmInstance) -> bool:
        used, cap = self.used[host], self.cap[host]
        v, m, d = self.need(vm)
        return used[0] + v <= cap[0] and used[1] + m <= cap[1] and used[2] + d <= cap[2]

    def assign(self, vm: VmInstance, host: str) -> None:
        used = self.used[host]
        v, m, d = self.need(vm)
        used[0] += v
        used[1] += m
        used[2] += d
        self.version[host] += 1
        self.assigned[vm.name] = host

    def free_share(self, host: str) -> float:
        used, cap = self.used[host], self.cap[host]
        return min((cap[0] - used[0]) / cap[0], (cap[1] - used[1]) / cap[1], (cap[2] - used[2]) / cap[2])

    def selected(self, vm: VmInstance) -> tuple[int, ...]:
        key = req_key(vm)
        found = self._selected.get(key)
        if found is None:
            found = self._selected[key] = self.index.select(vm.networks, vm.pool)
            self.spend(len(self.index.classes))
        return found

    def eligible(self, vm: VmInstance) -> list[str]:
        selected = self.selected(vm)
        hosts = self._eligible.get(selected)
        if hosts is None:
            hosts = sorted(name for i in selected for name in self.index.classes[i][1])
            self.spend(len(hosts))
            self._eligible[selected] = hosts
        return hosts

    def pick_spread(self, vm: VmInstance) -> str | None:
        shape = shape_of(vm)
        if shape in self._never:
            return None
        selected = self.selected(vm)
        heap = self._heaps.get(selected)
        if heap is None:
            heap = [(-self.free_share(h), h, self.version[h]) for h in self.eligible(vm)]
            heapq.heapify(heap)
            self._heaps[selected] = heap
        # The heap is shared by every VM size of this requirement: hosts too full for this VM are
        # set aside while it looks further, then put back for the next (maybe smaller) VM.
        aside: list[tuple[float, str, int]] = []
        chosen = None
        while heap:
            self.spend(1)
            _, host, version = heap[0]
            if version != self.version[host]:
                # Stale: usage grew since; its real share is lower, re-queue.
                heapq.heapreplace(heap, (-self.free_share(host), host, self.version[host]))
                continue
            if self.fits(host, vm):
                chosen = host
                break
            aside.append(heapq.heappop(heap))
        for entry in aside:
            heapq.heappush(heap, entry)
        if chosen is None:
            self._never.add(shape)
        return chosen

    def pick_pack(self, vm: VmInstance) -> str | None:
        shape = shape_of(vm)
        hosts = self.eligible(vm)
        i = start = self._cursor.get(shape, 0)
        while i < len(hosts) and not self.fits(hosts[i], vm):
            i += 1
        self.spend(i - start + 1)
        self._cursor[shape] = i
        return hosts[i] if i < len(hosts) else None


def req_key(vm: VmInstance) -> ReqKey:
    return tuple(sorted(vm.networks)), vm.pool


def shape_of(vm: VmInstance) -> Shape:
    return req_key(vm), vm.vcpus, vm.memory_bytes, vm.total_disk_bytes
