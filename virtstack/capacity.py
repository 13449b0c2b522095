"""Host capacity bookkeeping for placement (virtstack.placement): which hosts can take a VM, what
they have left, and the spread/pack picks.  Pure; no messages (placement words them).

Public API:
    HostIndex(hosts).select(networks, pool, segments=()) -> tuple[int, ...]
        The classes of hosts (same networks with the same cidrs, same pools) offering all those
        networks and the pool, with each static address inside the host's segment of its network.
    HostIndex.requirement(vm) -> ReqKey   what a VM needs of a host (networks, pool, segments)
    effective_capacity(host) -> (vcpus, memory, disk)   capacity x overcommit (disk: never)
    HostState(hosts, max_steps)  usage per host; fits, assign, eligible, pick_spread, pick_pack,
                                 pick_apart (anti-affinity)
    TooMuchWork                  raised once max_steps host checks are spent

Hosts whose state is not ``active`` (cordoned, drained) are never eligible for a new VM.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Network

from virtstack.fleet import VmInstance
from virtstack.spec.models import HostSpec

__all__ = ["HostIndex", "HostState", "ReqKey", "Shape", "TooMuchWork", "effective_capacity"]

# A VM's requirements (networks, pool, and per static address on a network whose hosts use
# different cidrs, the cidrs holding it) and its size: VMs of one shape are interchangeable for
# placement, which is what makes the per-shape caches valid.
Segments = tuple[tuple[str, frozenset[IPv4Network]], ...]
ReqKey = tuple[tuple[str, ...], str | None, Segments]
Shape = tuple[ReqKey, int, int, int]


def effective_capacity(host: HostSpec) -> tuple[int, int, int]:
    """What placement may allocate on ``host``: vCPUs and memory times their overcommit (rounded
    down), disk as declared."""
    cap, factor = host.capacity, host.overcommit
    return math.floor(cap.vcpus * factor.vcpus), math.floor(cap.memory * factor.memory), cap.disk


class HostIndex:
    """Hosts grouped by what they offer, for matching VM requirements.

    Hosts offering the same networks and pools are interchangeable when it comes to which VMs they
    can run: a requirement (networks, pool) is matched against these classes — usually a handful,
    even with thousands of hosts — rather than against every host, which was the quadratic part of
    validation and placement with thousands of hosts and thousands of distinct requirements."""

    def __init__(self, hosts: Mapping[str, HostSpec]) -> None:
        keyed: dict[tuple[frozenset[tuple[str, IPv4Network | None]], frozenset[str]], list[str]] = {}
        cidrs: dict[str, set[IPv4Network]] = {}
        for name in sorted(hosts):
            host = hosts[name]
            nets = frozenset((n, net.cidr) for n, net in host.networks.items())
            for n, net in host.networks.items():
                if net.cidr is not None:
                    cidrs.setdefault(n, set()).add(net.cidr)
            keyed.setdefault((nets, frozenset(host.pools)), []).append(name)
        # ((networks, pools), host names in name order); networks: name -> cidr (None: no cidr)
        self.classes = [
            ((frozenset(n for n, _ in nets), pools), names) for (nets, pools), names in keyed.items()
        ]
        self._cidrs = [dict(nets) for (nets, _) in keyed]
        self.networks = {network for (networks, _), _ in self.classes for network in networks}
        self.pools = {pool for (_, pools), _ in self.classes for pool in pools}
        # Networks whose hosts do not all use one cidr: per-host segments.
        self.segmented = {n: frozenset(c) for n, c in cidrs.items() if len(c) > 1}

    def requirement(self, vm: VmInstance) -> ReqKey:
        """Networks, pool and, per static address on a segmented network, the cidrs holding it."""
        segments = sorted(
            {
                (nic.network, frozenset(c for c in self.segmented[nic.network] if nic.ip in c))
                for nic in vm.nics
                if nic.ip is not None and nic.network in self.segmented
            },
            key=lambda item: (item[0], sorted(str(c) for c in item[1])),
        )
        return tuple(sorted(vm.networks)), vm.pool, tuple(segments)

    def select(self, networks: Iterable[str], pool: str | None, segments: Segments = ()) -> tuple[int, ...]:
        """Indexes of the classes offering every network of ``networks`` and ``pool`` (None: the
        host's only pool), with each segment requirement met, as fleet.missing_on_host decides for
        one host."""
        wanted = set(networks)
        return tuple(
            i
            for i, ((offered, pools), _) in enumerate(self.classes)
            if wanted <= offered
            and (pool in pools if pool is not None else len(pools) == 1)
            and all(self._cidrs[i].get(n) is None or self._cidrs[i][n] in ok for n, ok in segments)
        )


class TooMuchWork(Exception):
    """The step budget is spent; placement.place() turns it into a SpecError."""


class HostState:
    """Mutable bookkeeping for one placement.place() call: usage per host, and the picks."""

    def __init__(self, hosts: Mapping[str, HostSpec], max_steps: int) -> None:
        self.hosts = hosts
        self.max_steps = max_steps
        self.names = sorted(hosts)
        self.cap = {h: effective_capacity(hosts[h]) for h in hosts}
        self.accepting = {h for h in hosts if hosts[h].state == "active"}
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

    def req_key(self, vm: VmInstance) -> ReqKey:
        return self.index.requirement(vm)

    def shape(self, vm: VmInstance) -> Shape:
        return self.req_key(vm), vm.vcpus, vm.memory_bytes, vm.total_disk_bytes

    def selected(self, vm: VmInstance) -> tuple[int, ...]:
        key = self.req_key(vm)
        found = self._selected.get(key)
        if found is None:
            found = self._selected[key] = self.index.select(key[0], key[1], key[2])
            self.spend(len(self.index.classes))
        return found

    def eligible(self, vm: VmInstance) -> list[str]:
        """Hosts that offer what ``vm`` needs and take new VMs (state active), in name order."""
        selected = self.selected(vm)
        hosts = self._eligible.get(selected)
        if hosts is None:
            hosts = sorted(
                name for i in selected for name in self.index.classes[i][1] if name in self.accepting
            )
            self.spend(len(hosts))
            self._eligible[selected] = hosts
        return hosts

    def pick_spread(self, vm: VmInstance) -> str | None:
        shape = self.shape(vm)
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
        shape = self.shape(vm)
        hosts = self.eligible(vm)
        i = start = self._cursor.get(shape, 0)
        while i < len(hosts) and not self.fits(hosts[i], vm):
            i += 1
        self.spend(i - start + 1)
        self._cursor[shape] = i
        return hosts[i] if i < len(hosts) else None

    def pick_apart(
        self, vm: VmInstance, peers: Mapping[str, int], required: bool, spread: bool
    ) -> str | None:
        """A host for a VM of an anti-affinity group; ``peers``: host -> VMs of its group there.

        required: only hosts without a peer; preferred: the fewest peers first.  Then the strategy's
        order (spread: largest free share; pack: first by name).  Linear in the eligible hosts."""
        hosts = self.eligible(vm)
        self.spend(len(hosts))
        best: tuple[int, float, str] | None = None
        for host in hosts:
            count = peers.get(host, 0)
            if (required and count) or not self.fits(host, vm):
                continue
            key = (count, -self.free_share(host) if spread else 0.0, host)
            if best is None or key < best:
                best = key
        return None if best is None else best[2]
