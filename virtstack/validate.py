"""Whole-fleet cross validation: everything pydantic cannot see in one model.

Public API:
    validate_spec(spec, file, fleet) -> list[SpecIssue]
        All cross-reference and addressing problems of ``spec`` and its expanded
        ``fleet``, in a deterministic order (hosts, then VMs in file order, then
        address clashes).  The loader checks the totals first (check_totals), so
        a stack past them is never expanded.
    check_totals(spec, file) -> list[SpecIssue]
        MAX_HOSTS hosts, MAX_INSTANCES VMs, MAX_DATA_DISKS data disks and
        MAX_NICS NICs over the whole fleet, counted from the groups before
        any count is expanded.

Rules:
    * Every reference resolves: image, pinned host, networks and pool on the
      pinned host; an unpinned VM needs at least one host offering all of its
      networks and its pool together (an omitted pool needs a one-pool host).
    * A network name may differ between hosts (mode, cidr, DHCP): each host's
      is a segment.  A pinned VM's static addresses are checked against its
      host's segment; an unpinned VM's against every segment that holds them
      (at least one must), and placement only puts it on such a host.
    * Networks with a cidr on one host must not overlap; pool paths on one
      host must differ.
    * Static addresses (after count expansion) lie inside the cidr, avoid the
      network, broadcast and .1 (gateway / host) addresses and the DHCP range,
      and are unique per network name across the fleet (conservative: a VM may
      move between hosts).
    * anti_affinity: required on a group pinned to one host with count > 1 is
      impossible.
    * VM names are unique after expansion and fit in 63 characters.
    * Volume names stay distinct: a VM's volumes are named ``<vm>-root``,
      ``<vm>-seed`` and ``<vm>-<data disk>`` (plus an extension, see
      components.libvirt_args), so VM ``web`` with data disk ``1-root`` would
      overwrite the root disk of ``web-1``.  Checked fleet-wide, conservatively.
    * MACs are unique per L2 segment: (host, network) for nat/isolated, the
      network name for bridges (one LAN).  Derived MACs are random enough that
      fleet-wide uniqueness would fail on big fleets for no reason, so this
      check runs after placement (virtstack.placement.check_macs).
Address maths (DHCP ranges, reserved addresses, overlaps) is virtstack.netaddr's.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from virtstack.capacity import HostIndex
from virtstack.errors import SpecIssue
from virtstack.fleet import VmInstance, missing_on_host, resolve_pool
from virtstack.netaddr import NetworkFacts, check_address_range, overlapping
from virtstack.spec.models import HostSpec, NetworkSpec, StackSpec, VmSpec
from virtstack.spec.scalars import NAME_MAX

__all__ = [
    "MAX_DATA_DISKS",
    "MAX_HOSTS",
    "MAX_INSTANCES",
    "MAX_NICS",
    "check_totals",
    "validate_spec",
]


# Fleet-wide totals.  `count` is capped per group (spec.MAX_COUNT), but a file of 1,000 groups with
# count 10,000 each is 11 KB and would expand to ten million VMs; these are checked on the groups,
# before expansion, so such a file costs nothing.  Far beyond fleets one stack drives (each VM is
# several engine resources; each host a libvirt connection).
MAX_INSTANCES = 10_000
MAX_HOSTS = 5_000
MAX_DATA_DISKS = 40_000  # four per VM at the largest fleet
MAX_NICS = 40_000


def check_totals(spec: StackSpec, file: str) -> list[SpecIssue]:
    instances = data_disks = nics = 0
    for vm in spec.vms.values():
        instances += vm.count
        data_disks += vm.count * len(vm.data_disks)
        nics += vm.count * len(vm.nics)
    issues = []
    for what, path, total, limit in (
        ("hosts", "hosts", len(spec.hosts), MAX_HOSTS),
        ("VMs (counts added over all groups)", "vms", instances, MAX_INSTANCES),
        ("data disks (over all VMs)", "vms", data_disks, MAX_DATA_DISKS),
        ("NICs (over all VMs)", "vms", nics, MAX_NICS),
    ):
        if total > limit:
            issues.append(
                SpecIssue(file, path, f"{total:,} {what} is more than one stack may have (at most {limit:,})")
            )
    return issues


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    message = f"unknown {kind} '{name}'"
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"{message} (did you mean '{close[0]}'?)"
    if not names:
        return f"{message} (no {kind}s are defined)"
    if len(names) <= 5:
        return f"{message} (defined: {', '.join(names)})"
    return message


class _Checker:
    """Accumulates issues; one instance per validate_spec call."""

    def __init__(self, spec: StackSpec, file: str) -> None:
        self.spec = spec
        self.file = file
        self.issues: list[SpecIssue] = []
        # First definition of each network name (host order), and every host's.
        self.networks: dict[str, tuple[str, NetworkSpec]] = {}
        self.segments: dict[str, dict[str, NetworkSpec]] = {}
        self._uniform: dict[str, bool] = {}  # network name -> one definition on every host
        self.pool_names: set[str] = set()
        # Cache of "which hosts lack what" per requirement set: many groups
        # share one, and hosts x groups would be slow on big fleets.
        self._offer_cache: dict[tuple[tuple[str, ...], str | None], str | None] = {}
        self._index: HostIndex | None = None

    def add(self, path: str, message: str) -> None:
        self.issues.append(SpecIssue(self.file, path, message))

    # ----------------------------------------------------------------- hosts
    def check_hosts(self) -> None:
        for host_name, host in self.spec.hosts.items():
            base = f"hosts.{host_name}"
            self.pool_names.update(host.pools)
            seen_paths: dict[str, str] = {}
            for pool_name, pool in host.pools.items():
                if pool.path is None:
                    continue  # an external pool without a path: the host says where it is
                other = seen_paths.setdefault(pool.path.rstrip("/") or "/", pool_name)
                if other != pool_name:
                    self.add(
                        f"{base}.pools.{pool_name}.path", f"{pool.path} is also the path of pool {other}"
                    )
            for net_name, net in host.networks.items():
                self.networks.setdefault(net_name, (host_name, net))
                self.segments.setdefault(net_name, {})[host_name] = net
            self._check_overlaps(host_name, host)

    def _check_overlaps(self, host_name: str, host: HostSpec) -> None:
        cidrs = {name: net.cidr for name, net in host.networks.items() if net.cidr is not None}
        for name, other in overlapping(cidrs):
            self.add(
                f"hosts.{host_name}.networks.{name}.cidr",
                f"{cidrs[name]} overlaps network {other} ({cidrs[other]}) on the same host",
            )

    # ------------------------------------------------------------------- vms
    def check_vms(self, fleet: Sequence[VmInstance]) -> None:
        by_group: dict[str, VmInstance] = {}
        for instance in fleet:
            by_group.setdefault(instance.group, instance)
        for group, vm in self.spec.vms.items():
            self._check_name_length(group, vm)
            self._check_references(group, vm, by_group.get(group))
        self._check_unique_names(fleet)
        self._check_volume_names(fleet)
        self._check_addresses(fleet)

    def _check_name_length(self, group: str, vm: VmSpec) -> None:
        longest = group if vm.count == 1 else f"{group}-{vm.count}"
        if len(longest) > NAME_MAX:
            self.add(
                f"vms.{group}",
                f"instance names such as {longest} would be {len(longest)} characters long "
                f"(at most {NAME_MAX}); shorten the group name",
            )

    def _check_references(self, group: str, vm: VmSpec, instance: VmInstance | None) -> None:
        base = f"vms.{group}"
        spec = self.spec
        if vm.image is not None and vm.image not in spec.images:
            self.add(f"{base}.image", _unknown("image", vm.image, spec.images))
        if vm.host is not None:
            host = spec.hosts.get(vm.host)
            if host is None:
                self.add(f"{base}.host", _unknown("host", vm.host, spec.hosts))
                return
            if vm.anti_affinity == "required" and vm.count > 1:
                self.add(
                    f"{base}.anti_affinity",
                    f"required puts each VM of group {group} on its own host, but host: pins all "
                    f"{vm.count} to {vm.host}",
                )
            for i, nic in enumerate(vm.nics):
                if nic.network not in host.networks:
                    self.add(
                        f"{base}.nics[{i}].network",
                        _unknown("network", nic.network, host.networks).replace(
                            "unknown network", f"host {vm.host} has no network", 1
                        ),
                    )
            if vm.imported is not None:
                for i, disk in enumerate(vm.imported.disks):
                    if disk.pool not in host.pools:
                        self.add(
                            f"{base}.imported.disks[{i}].pool",
                            _unknown("pool", disk.pool, host.pools).replace(
                                "unknown pool", f"host {vm.host} has no pool", 1
                            ),
                        )
            elif resolve_pool(host, vm.pool) is None:
                if vm.pool is None:
                    pools = ", ".join(host.pools)
                    self.add(f"{base}.pool", f"required because host {vm.host} has several pools ({pools})")
                else:
                    self.add(
                        f"{base}.pool",
                        _unknown("pool", vm.pool, host.pools).replace(
                            "unknown pool", f"host {vm.host} has no pool", 1
                        ),
                    )
            return
        dangling = False
        for i, nic in enumerate(vm.nics):
            if nic.network not in self.networks:
                dangling = True
                self.add(
                    f"{base}.nics[{i}].network",
                    _unknown("network", nic.network, self.networks) + " on any host",
                )
        if vm.pool is not None and vm.pool not in self.pool_names:
            dangling = True
            self.add(f"{base}.pool", _unknown("pool", vm.pool, self.pool_names) + " on any host")
        if not dangling and instance is not None:
            problem = self._no_host_offers(instance)
            if problem is not None:
                self.add(base, problem)

    def _check_segments(
        self,
        name: str,
        base: IPv4Address,
        count: int,
        check: Callable[[str, NetworkSpec, IPv4Address, int], str | None],
    ) -> str | None:
        """An unpinned VM's static addresses: every host segment of the network that holds the
        first address must take them all (placement may pick any of those hosts); none holding it
        is an error listing the segments."""
        by_cidr: dict[object, list[str]] = {}
        for host_name, network in self.segments[name].items():
            by_cidr.setdefault(network.cidr, []).append(host_name)
        uniform = self._uniform.get(name)
        if uniform is None:
            uniform = self._uniform[name] = len(set(self.segments[name].values())) == 1
        if uniform:  # one definition everywhere
            return check(name, self.networks[name][1], base, count)
        holding = [
            (host_name, network)
            for host_name, network in self.segments[name].items()
            if network.cidr is not None and base in network.cidr
        ]
        if not holding:
            listed = "; ".join(
                f"{cidr or 'no cidr'} on {', '.join(hosts[:3])}{', …' if len(hosts) > 3 else ''}"
                for cidr, hosts in by_cidr.items()
            )
            return f"{base} lies in no host's segment of network {name} ({listed})"
        for host_name, network in holding:
            problem = check(name, network, base, count)
            if problem is not None:
                return f"{problem} on host {host_name}"
        return None

    def _no_host_offers(self, vm: VmInstance) -> str | None:
        key = (tuple(sorted(vm.networks)), vm.pool)
        if key not in self._offer_cache:
            if self._index is None:
                self._index = HostIndex(self.spec.hosts)
            result: str | None = None
            if not self._index.select(vm.networks, vm.pool):
                # No host offers everything: each lacks something; name the first three.
                names = sorted(self.spec.hosts)
                lacking = [
                    f"{name} lacks {', '.join(missing_on_host(vm, self.spec.hosts[name]))}"
                    for name in names[:3]
                ]
                needs = [f"network {n}" for n in vm.networks]
                needs.append(f"pool {vm.pool}" if vm.pool else "a single pool (pool is not set)")
                shown = "; ".join(lacking) + ("; …" if len(names) > 3 else "")
                result = f"no host offers {', '.join(needs)} together ({shown})"
            self._offer_cache[key] = result
        return self._offer_cache[key]

    def _check_volume_names(self, fleet: Sequence[VmInstance]) -> None:
        owner: dict[str, str] = {}  # volume stem -> what it is, for the message
        for instance in fleet:
            owner[f"{instance.name}-root"] = f"the root disk of {instance.name}"
            owner[f"{instance.name}-seed"] = f"the cloud-init seed of {instance.name}"
        reported: set[tuple[str, int]] = set()
        for instance in fleet:
            for i, (disk, _) in enumerate(instance.data_disks):
                stem = f"{instance.name}-{disk}"
                what = f"data disk {disk} of {instance.name}"
                first = owner.setdefault(stem, what)
                if first != what and (instance.group, i) not in reported:
                    reported.add((instance.group, i))
                    self.add(
                        f"vms.{instance.group}.data_disks[{i}].name",
                        f"volume name {stem} would clash with {first}; rename the data disk",
                    )

    def _check_unique_names(self, fleet: Sequence[VmInstance]) -> None:
        owner: dict[str, str] = {}
        reported: set[tuple[str, str]] = set()
        for vm in fleet:
            first = owner.setdefault(vm.name, vm.group)
            if first != vm.group and (first, vm.group) not in reported:
                reported.add((first, vm.group))
                self.add(
                    f"vms.{vm.group}", f"VM name {vm.name} is used by both vms.{first} and vms.{vm.group}"
                )

    def _check_addresses(self, fleet: Sequence[VmInstance]) -> None:
        # Range checks once per group NIC (not per instance: O(groups)); then
        # uniqueness per instance with one dict per network: O(instances).
        valid: set[tuple[str, int]] = set()
        facts: dict[int, NetworkFacts] = {}  # per distinct network definition (id of the model)

        def check(name: str, network: NetworkSpec, base: IPv4Address, count: int) -> str | None:
            found = facts.get(id(network))
            if found is None:
                found = facts[id(network)] = NetworkFacts.of(network)
            return check_address_range(name, network, found, base, count)

        for group, vm in self.spec.vms.items():
            for i, nic in enumerate(vm.nics):
                if nic.ip is None or nic.network not in self.networks:
                    continue
                if vm.host is not None:
                    host = self.spec.hosts.get(vm.host)
                    if host is None or nic.network not in host.networks:
                        continue  # reported as a reference problem
                    problem = check(nic.network, host.networks[nic.network], nic.ip, vm.count)
                else:
                    problem = self._check_segments(nic.network, nic.ip, vm.count, check)
                if problem is None:
                    valid.add((group, i))
                else:
                    self.add(f"vms.{group}.nics[{i}].ip", problem)
        used: dict[tuple[str, int], VmInstance] = {}  # (network, address) -> first user
        # One issue per (NIC path, other group), counting the extra addresses,
        # so two overlapping count ranges do not print a line per address.
        clashes: dict[tuple[str, str], _Clash] = {}
        for instance in fleet:
            for i, placed_nic in enumerate(instance.nics):
                if placed_nic.ip is None or (instance.group, i) not in valid:
                    continue
                key = (placed_nic.network, int(placed_nic.ip))
                other = used.get(key)
                if other is None:
                    used[key] = instance
                    continue
                path = f"vms.{instance.group}.nics[{i}].ip"
                clash = clashes.get((path, other.group))
                if clash is None:
                    clashes[(path, other.group)] = _Clash(
                        placed_nic.ip, placed_nic.network, other.name, instance.name
                    )
                else:
                    clash.more += 1
        for (path, other_group), clash in clashes.items():
            if clash.first == clash.second:
                message = f"{clash.ip} on network {clash.network} is used by another NIC of {clash.first} too"
            else:
                message = (
                    f"{clash.ip} on network {clash.network} is used by both {clash.first} and {clash.second}"
                )
            if clash.more:
                plural = "es" if clash.more > 1 else ""
                message += f" (and {clash.more} more address{plural} shared with vms.{other_group})"
            self.add(path, message)


@dataclass
class _Clash:
    ip: IPv4Address
    network: str
    first: str
    second: str
    more: int = 0


def validate_spec(spec: StackSpec, file: str, fleet: Sequence[VmInstance]) -> list[SpecIssue]:
    checker = _Checker(spec, file)
    checker.check_hosts()
    checker.check_vms(fleet)
    return checker.issues
