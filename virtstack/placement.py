"""Placement: which host runs which VM.  Pure and deterministic.

Public API:
    place(fleet, hosts, strategy, previous=None, *, file="<stack>") -> Placement
        Raises SpecError listing every VM that cannot be placed and every host
        that pinned VMs overfill.
    place_fleet(spec, file, previous=None, fleet=None) -> PlacedFleet
        place + the checks that need placement (check_macs); expands the fleet
        unless given one (virtstack.spec.loader.LoadedStack.fleet).
    check_macs(fleet, assignments, hosts, file) -> list[SpecIssue]
        MAC clashes per L2 segment: (host, network) for nat/isolated, the
        network name for bridges.
    Placement(assignments: dict[vm, host], usage: dict[host, HostUsage])
    HostUsage(host, vcpus, memory_bytes, disk_bytes, capacity..., raw capacity..., vms)
    PlacedFleet(fleet, placement)

Issues about one VM name its group and instance: ``vms.db (instance db-3)``.

Capacity is the host's ``capacity`` times its ``overcommit`` (vCPUs and memory; disk never).
Hosts whose ``state`` is cordoned or drained take no VM in step 3.

Order of decisions:
    1. Pinned VMs (``host:``) go to their host, even past its capacity and even
       when it is cordoned (the user asked); an overfull host is an error naming
       resource and excess, and a pin to a drained host is an error.
    2. VMs found in ``previous`` (vm -> host of the last deployment) stay
       there, in name order, if the host still exists, is not drained, still
       offers their networks, pool and address segments, still has room, and
       holds no other VM of their group when the group's anti_affinity is
       required.
    3. The rest, in name order, go to an active host that offers every network
       and the pool they need (images are uploaded per host, so any host can
       take any image), whose segment of each network holds the VM's static
       addresses, and has room for vCPUs, memory and disk (root + data
       disks, virtual sizes: copy-on-write overcommit is not counted on).
       VMs of a group with ``anti_affinity`` go to the host with the fewest
       VMs of their group (required: only to hosts with none; none left is an
       error naming the group), then by the strategy's order.
         spread: the host with the largest free share, where free share =
                 min(free/capacity) over vCPUs, memory and disk (the scarcest
                 resource decides); ties go to the first host by name.
         pack:   the first host by name with room (fills hosts in order).

Because steps 1-2 come before 3, adding or removing an unpinned VM never
moves a VM that was placed before (when ``previous`` is given).

Cost: O(VMs x log hosts) plus, per distinct requirement (networks and pool),
a match against the host classes (capacity.HostIndex: hosts offering the same
networks and pools), and O(eligible hosts) per distinct set of matching classes.  Spread keeps one
lazily refreshed heap per such set, shared by every VM size; a VM that does
not fit the hosts at the top sets them aside for its own pick only.  Pack
keeps a moving cursor per shape (requirement and size).  Both rely on usage
only growing during one run: once a shape does not fit a host, it never will
again in that run.  Adversarial stacks (thousands of hosts that all differ in
networks and pools, or sizes that fit only the least free hosts) could still
make this quadratic, so the work is counted: past
MAX_PLACEMENT_STEPS, place() stops with an error saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from virtstack.capacity import HostState, Shape, TooMuchWork
from virtstack.errors import SpecError, SpecIssue
from virtstack.fleet import VmInstance, expand_fleet, missing_on_host
from virtstack.spec import HostSpec, StackSpec
from virtstack.units import format_size

__all__ = [
    "MAX_PLACEMENT_STEPS",
    "HostUsage",
    "PlacedFleet",
    "Placement",
    "check_macs",
    "instance_path",
    "place",
    "place_fleet",
]

# Host checks (fits or heap moves) one place() call may make: a few seconds.  Ordinary stacks need
# about one per VM; 10,000 VMs of 3,000 shapes over 3,000 hosts need ~200,000.
MAX_PLACEMENT_STEPS = 5_000_000

Strategy = Literal["spread", "pack"]


@dataclass(frozen=True)
class HostUsage:
    """What the placed VMs take from one host, next to its capacity."""

    host: str
    vcpus: int
    memory_bytes: int
    disk_bytes: int
    vcpus_capacity: int  # effective: capacity x overcommit
    memory_capacity: int
    disk_capacity: int
    vms: tuple[str, ...]  # sorted names
    vcpus_raw: int = 0  # as declared in capacity (0: same as effective)
    memory_raw: int = 0

    @property
    def vcpus_free(self) -> int:
        return self.vcpus_capacity - self.vcpus

    @property
    def memory_free(self) -> int:
        return self.memory_capacity - self.memory_bytes

    @property
    def disk_free(self) -> int:
        return self.disk_capacity - self.disk_bytes


@dataclass(frozen=True)
class Placement:
    """vm name -> host name, plus usage of every host (empty ones included)."""

    assignments: dict[str, str]
    usage: dict[str, HostUsage]

    def host_of(self, vm_name: str) -> str:
        return self.assignments[vm_name]


@dataclass(frozen=True)
class PlacedFleet:
    fleet: list[VmInstance]
    placement: Placement


def _vcpus(n: int) -> str:
    return f"{n} vCPU" if n == 1 else f"{n} vCPUs"


_RESOURCES = ("vcpus", "memory", "disk")


def _amount(resource: int, n: int) -> str:
    return _vcpus(n) if resource == 0 else format_size(n)


def _bare_amount(resource: int, n: int) -> str:
    return str(n) if resource == 0 else format_size(n)


def _named_amount(resource: int, n: int) -> str:
    return _vcpus(n) if resource == 0 else f"{format_size(n)} {_RESOURCES[resource]}"


def _unplaceable_reason(state: HostState, vm: VmInstance) -> str:
    eligible = state.eligible(vm)
    if not eligible:
        offering = sorted(name for i in state.selected(vm) for name in state.index.classes[i][1])
        if offering:
            listed = ", ".join(f"{h} {state.hosts[h].state}" for h in offering[:5])
            more = f", and {len(offering) - 5} more" if len(offering) > 5 else ""
            return f"every host that offers what it needs takes no new VM ({listed}{more})"
        needs = [f"network {n}" for n in vm.networks]
        if vm.pool is not None:
            needs.append(f"pool {vm.pool}")
        # Needs no host offers at all (from the index: not a pass over every host per shape).
        absent = [f"network {n}" for n in vm.networks if n not in state.index.networks]
        if vm.pool is not None and vm.pool not in state.index.pools:
            absent.append(f"pool {vm.pool}")
        if absent:
            return f"no host offers {' and '.join(absent)}"
        if vm.pool is None:
            needs.append("a single pool (pool is not set)")
        return f"no host offers {', '.join(needs)} together"
    need = state.need(vm)
    short: dict[str, list[int]] = {}
    for host in eligible:
        used, cap = state.used[host], state.cap[host]
        short[host] = [r for r in range(3) if used[r] + need[r] > cap[r]]
    common = [r for r in range(3) if all(r in rs for rs in short.values())]
    shown = eligible[:5]
    tail = f", and {len(eligible) - 5} more" if len(eligible) > 5 else ""
    if len(common) == 1:
        r = common[0]
        # Bare numbers for vCPUs ("node-a 1 free"); clamp: pinned VMs may overfill.
        frees = ", ".join(
            f"{h} {_bare_amount(r, max(0, state.cap[h][r] - state.used[h][r]))} free" for h in shown
        )
        if r == 0:
            return f"no host has {_vcpus(need[0])} free ({frees}{tail})"
        return f"no host has {format_size(need[r])} of {_RESOURCES[r]} free ({frees}{tail})"
    details = "; ".join(
        f"{h}: "
        + ", ".join(_named_amount(r, max(0, state.cap[h][r] - state.used[h][r])) for r in short[h])
        + " free"
        for h in shown
    )
    wanted = ", ".join(_named_amount(r, need[r]) for r in range(3))
    return f"no host has room for {wanted} ({details}{tail})"


def place(
    fleet: Iterable[VmInstance],
    hosts: Mapping[str, HostSpec],
    strategy: Strategy,
    previous: Mapping[str, str] | None = None,
    *,
    file: str = "<stack>",
) -> Placement:
    """Assign every VM of ``fleet`` to a host (see the module docstring)."""
    if strategy not in ("spread", "pack"):
        raise ValueError(f"unknown placement strategy {strategy!r}")
    state = HostState(hosts, MAX_PLACEMENT_STEPS)
    ordered = sorted(fleet, key=lambda vm: vm.name)
    vm_issues: list[tuple[str, SpecIssue]] = []

    def fail(vm: VmInstance, message: str) -> None:
        vm_issues.append((vm.name, SpecIssue(file, instance_path(vm), message)))

    peers: dict[str, dict[str, int]] = {}  # anti-affinity group -> host -> its VMs there

    def assign(vm: VmInstance, host: str) -> None:
        state.assign(vm, host)
        if vm.anti_affinity is not None:
            on = peers.setdefault(vm.group, {})
            on[host] = on.get(host, 0) + 1

    rest: list[VmInstance] = []
    for vm in ordered:
        if vm.host is None:
            rest.append(vm)
        elif vm.host not in hosts:
            fail(vm, f"cannot be placed: unknown host '{vm.host}'")
        elif hosts[vm.host].state == "drained":
            fail(vm, f"cannot be placed on host {vm.host}: it is drained (pin the group elsewhere)")
        else:
            missing = missing_on_host(vm, hosts[vm.host])
            if missing:
                fail(vm, f"cannot be placed on host {vm.host}: it lacks {', '.join(missing)}")
            assign(vm, vm.host)

    host_issues: list[SpecIssue] = []
    for host in state.names:
        used, cap = state.used[host], state.cap[host]
        for r, resource in enumerate(_RESOURCES):
            if used[r] > cap[r]:
                host_issues.append(
                    SpecIssue(
                        file,
                        f"hosts.{host}.capacity.{resource}",
                        f"placed VMs need {_amount(r, used[r])}, capacity is {_amount(r, cap[r])} "
                        f"(over by {_amount(r, used[r] - cap[r])})",
                    )
                )

    unplaced: list[VmInstance] = []
    if previous:
        for vm in rest:
            before = previous.get(vm.name)
            if (
                before is not None
                and before in hosts
                and hosts[before].state != "drained"
                and not missing_on_host(vm, hosts[before])
                and state.fits(before, vm)
                and not (vm.anti_affinity == "required" and peers.get(vm.group, {}).get(before))
            ):
                assign(vm, before)
            else:
                unplaced.append(vm)
    else:
        unplaced = rest

    pick = state.pick_spread if strategy == "spread" else state.pick_pack
    failed: list[VmInstance] = []
    apart: list[VmInstance] = []  # required anti-affinity found no host without a peer
    try:
        for vm in unplaced:
            if vm.anti_affinity is not None:
                chosen = state.pick_apart(
                    vm, peers.get(vm.group, {}), vm.anti_affinity == "required", strategy == "spread"
                )
                if chosen is None and vm.anti_affinity == "required" and pick(vm) is not None:
                    apart.append(vm)
                    continue
            else:
                chosen = pick(vm)
            if chosen is None:
                failed.append(vm)
            else:
                assign(vm, chosen)
    except TooMuchWork:
        shapes = len({state.shape(vm) for vm in unplaced})
        raise SpecError.single(
            file,
            "vms",
            f"placement gave up after {MAX_PLACEMENT_STEPS:,} host checks ({len(unplaced):,} VMs of "
            f"{shapes:,} sizes and network/pool needs over {len(hosts):,} hosts); pin groups to hosts "
            "with host: or use fewer distinct sizes and network combinations",
        ) from None

    # Reasons use the final usage so the "free" figures are consistent.
    reasons: dict[Shape, str] = {}
    for vm in apart:
        group_hosts = sorted(peers.get(vm.group, {}))
        fail(
            vm,
            f"cannot be placed: anti_affinity required puts each VM of group {vm.group} on its own host, "
            f"and every host with room already runs one ({', '.join(group_hosts[:5])}"
            f"{', …' if len(group_hosts) > 5 else ''})",
        )
    for vm in failed:
        shape = state.shape(vm)
        if shape not in reasons:
            reasons[shape] = _unplaceable_reason(state, vm)
        fail(vm, f"cannot be placed: {reasons[shape]}")

    if host_issues or vm_issues:
        vm_issues.sort(key=lambda item: item[0])
        raise SpecError(host_issues + [issue for _, issue in vm_issues])

    by_host: dict[str, list[str]] = {h: [] for h in hosts}
    for vm_name, host in state.assigned.items():
        by_host[host].append(vm_name)
    usage = {
        h: HostUsage(
            host=h,
            vcpus=state.used[h][0],
            memory_bytes=state.used[h][1],
            disk_bytes=state.used[h][2],
            vcpus_capacity=state.cap[h][0],
            memory_capacity=state.cap[h][1],
            disk_capacity=state.cap[h][2],
            vms=tuple(sorted(by_host[h])),
            vcpus_raw=hosts[h].capacity.vcpus,
            memory_raw=hosts[h].capacity.memory,
        )
        for h in state.names
    }
    return Placement(assignments=dict(sorted(state.assigned.items())), usage=usage)


def instance_path(vm: VmInstance, field: str = "") -> str:
    """Where a VM instance is in the file: its group, naming the instance when it is not the first
    (``vms.db (instance db-3)``), since ``vms.db-3`` is no path in the file."""
    path = f"vms.{vm.group}{field}"
    return path if vm.name == vm.group else f"{path} (instance {vm.name})"


def place_fleet(
    spec: StackSpec,
    file: str,
    previous: Mapping[str, str] | None = None,
    fleet: Sequence[VmInstance] | None = None,
) -> PlacedFleet:
    """Place and check MACs per L2 segment; raises SpecError.

    ``spec`` comes from virtstack.spec.loader (already cross-validated); ``fleet``, when given, is
    its expansion with the same ``previous`` names (LoadedStack.fleet), else it is expanded here.
    """
    # Names the last deployment used keep their VMs (see fleet.instance_names).
    instances = list(fleet) if fleet is not None else expand_fleet(spec, deployed=previous or ())
    placement = place(instances, spec.hosts, spec.placement.strategy, previous, file=file)
    issues = check_macs(instances, placement.assignments, spec.hosts, file)
    issues += check_backend_features(instances, placement.assignments, spec.hosts, file)
    if issues:
        raise SpecError(issues)
    return PlacedFleet(fleet=instances, placement=placement)


def check_backend_features(
    fleet: Iterable[VmInstance],
    assignments: Mapping[str, str],
    hosts: Mapping[str, HostSpec],
    file: str,
) -> list[SpecIssue]:
    """What a VM asks for that its host's backend cannot give: pulumi-libvirt (Terraform libvirt 0.7.6)
    has no UEFI NVRAM template handling, TPM or adoption of an imported domain. Known only once the VM
    is placed, and said before anything is created rather than silently dropped."""
    issues: list[SpecIssue] = []
    for vm in fleet:
        host = hosts.get(assignments.get(vm.name, ""))
        if host is None or host.backend != "pulumi-libvirt":
            continue
        where = f"host {assignments[vm.name]} has backend: pulumi-libvirt (use backend: native)"
        if vm.firmware != "bios":
            issues.append(SpecIssue(file, instance_path(vm, ".firmware"), f"firmware {vm.firmware}: {where}"))
        if vm.tpm:
            issues.append(SpecIssue(file, instance_path(vm, ".tpm"), f"tpm: {where}"))
        if vm.imported is not None:
            issues.append(SpecIssue(file, instance_path(vm, ".imported"), f"an imported domain: {where}"))
    return issues


def check_macs(
    fleet: Iterable[VmInstance],
    assignments: Mapping[str, str],
    hosts: Mapping[str, HostSpec],
    file: str,
) -> list[SpecIssue]:
    """MAC clashes per L2 segment, given placement (vm name -> host name)."""
    issues: list[SpecIssue] = []
    used: dict[tuple[str, str, str], str] = {}  # (segment, network, mac) -> first VM
    for vm in fleet:
        host_name = assignments.get(vm.name)
        host = hosts.get(host_name) if host_name is not None else None
        if host_name is None or host is None:
            continue
        for i, nic in enumerate(vm.nics):
            network = host.networks.get(nic.network)
            if network is None:
                continue
            # A bridge is one LAN for all hosts; nat/isolated networks are
            # private to their host.
            segment = "" if network.mode == "bridge" else host_name
            key = (segment, nic.network, nic.mac)
            other = used.get(key)
            if other is None:
                used[key] = vm.name
                continue
            where = f"network {nic.network}" + (f" on host {host_name}" if segment else "")
            if other == vm.name:
                message = f"{nic.mac} on {where} is used by another NIC of {vm.name} too"
            else:
                message = f"{nic.mac} on {where} is used by both {other} and {vm.name}"
            if nic.mac_derived:
                message += " (derived MACs rarely collide; set mac on one of them)"
            issues.append(SpecIssue(file, instance_path(vm, f".nics[{i}].mac"), message))
    return issues
