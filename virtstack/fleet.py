"""Count expansion: from VM groups in a StackSpec to concrete VM instances.

Public API:
    expand_fleet(spec: StackSpec, deployed=()) -> list[VmInstance]
        One VmInstance per VM, in file order (group order, then index).
        ``deployed``: VM names of the previous deployment (see the naming rule).
    expand_group(group: str, vm: VmSpec, deployed=()) -> list[VmInstance]
    instance_names(group: str, count: int, deployed=()) -> list[str]
    derive_mac(vm_name: str, nic_index: int) -> str
    offset_ip(base: IPv4Address, offset: int) -> IPv4Address | None
    resolve_pool(host: HostSpec, pool: str | None) -> str | None
    missing_on_host(vm: VmInstance, host: HostSpec) -> list[str]
    VmInstance, NicInstance  (frozen dataclasses)

Expansion rules:
    * Names never depend on ``count``: the first instance is named after the
      group, the others ``<group>-2``, ``<group>-3``…  ``count: 3`` on ``web``
      gives ``web``, ``web-2``, ``web-3``; growing a group adds names and never
      renames a VM, shrinking removes the highest-numbered ones.
    * Stacks deployed before that rule called the first of several instances
      ``<group>-1``: when the previous deployment has a ``<group>-1`` (and no
      ``<group>``), instance 1 keeps that name, so no deployed VM is renamed.
    * A NIC ``ip`` is the first instance's address; instance k gets ip + k-1.
    * A NIC without ``mac`` gets ``52:54:00`` (QEMU's locally administered
      prefix) + the first 3 bytes of sha256("<instance name>/nic<index>"):
      stable across runs and independent of the rest of the fleet, so adding
      or removing a VM never changes another VM's MAC.  24 bits do collide
      now and then on very large networks; virtstack.placement.check_macs reports that
      (set ``mac`` on one of the two VMs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address

from pydantic import SecretStr

from virtstack.spec import CloudInitSpec, HostSpec, StackSpec, VmSpec
from virtstack.spec.models import ImportedSpec
from virtstack.spec.vmfeatures import CpuSpec

__all__ = [
    "NicInstance",
    "VmInstance",
    "derive_mac",
    "expand_fleet",
    "expand_group",
    "instance_names",
    "missing_on_host",
    "offset_ip",
    "resolve_pool",
]

MAC_PREFIX = "52:54:00"
_MAX_IPV4 = 2**32 - 1


@dataclass(frozen=True)
class NicInstance:
    """A NIC of one VM instance; ``ip`` None means DHCP."""

    network: str
    ip: IPv4Address | None
    mac: str
    mac_derived: bool = True  # False when the stack file set it


@dataclass(frozen=True)
class VmInstance:
    """One concrete VM after count expansion.

    ``host`` is the pinned host or None (placement decides).  ``pool`` None
    means "the host's only pool" (see resolve_pool).  Not hashable in
    practice (cloud_init holds lists); key dicts by ``name``.
    """

    name: str
    group: str
    index: int
    image: str
    pool: str | None
    vcpus: int
    memory_bytes: int
    disk_bytes: int
    data_disks: tuple[tuple[str, int], ...]
    nics: tuple[NicInstance, ...]
    cloud_init: CloudInitSpec | None
    user_data: SecretStr | None
    host: str | None
    running: bool
    autostart: bool
    protect: bool = False
    firmware: str = "bios"  # bios | uefi | uefi-secure
    tpm: bool = False
    cpu: CpuSpec | None = None  # None: the host's default
    shutdown_timeout: int = 60
    on_cloud_init_change: str = "reseed"  # reseed | replace | ignore
    anti_affinity: str | None = None  # the group's: "required", "preferred" or None
    imported: ImportedSpec | None = None  # an existing domain adopted as it is (no image, no seed)

    @property
    def total_disk_bytes(self) -> int:
        """Root disk plus data disks: what the VM takes from a host's disk capacity."""
        return self.disk_bytes + sum(size for _, size in self.data_disks)

    @property
    def hostname(self) -> str:
        if self.cloud_init is not None and self.cloud_init.hostname is not None:
            return self.cloud_init.hostname
        return self.name

    @property
    def spec_path(self) -> str:
        """Where the VM's group is in the stack file, for error messages."""
        return f"vms.{self.group}"

    @property
    def networks(self) -> tuple[str, ...]:
        """Distinct networks the VM is attached to, in NIC order."""
        return tuple(dict.fromkeys(nic.network for nic in self.nics))


def instance_names(group: str, count: int, deployed: Collection[str] = ()) -> list[str]:
    first = f"{group}-1" if f"{group}-1" in deployed and group not in deployed else group
    return [first] + [f"{group}-{i}" for i in range(2, count + 1)]


def derive_mac(vm_name: str, nic_index: int) -> str:
    digest = hashlib.sha256(f"{vm_name}/nic{nic_index}".encode()).digest()
    return f"{MAC_PREFIX}:{digest[0]:02x}:{digest[1]:02x}:{digest[2]:02x}"


def offset_ip(base: IPv4Address, offset: int) -> IPv4Address | None:
    """``base + offset``, or None past 255.255.255.255 (validation reports it)."""
    if offset == 0:
        return base
    value = int(base) + offset
    if value > _MAX_IPV4:
        return None
    return IPv4Address(value)


def expand_group(group: str, vm: VmSpec, deployed: Collection[str] = ()) -> list[VmInstance]:
    data_disks = tuple((disk.name, disk.size) for disk in vm.data_disks)
    instances = []
    for offset, name in enumerate(instance_names(group, vm.count, deployed)):
        nics = tuple(
            NicInstance(
                network=nic.network,
                ip=None if nic.ip is None else offset_ip(nic.ip, offset),
                mac=nic.mac if nic.mac is not None else derive_mac(name, i),
                mac_derived=nic.mac is None,
            )
            for i, nic in enumerate(vm.nics)
        )
        instances.append(
            VmInstance(
                name=name,
                group=group,
                index=offset + 1,
                image=vm.image or "",
                pool=vm.pool if vm.imported is None or not vm.imported.disks else vm.imported.disks[0].pool,
                vcpus=vm.vcpus,
                memory_bytes=vm.memory,
                disk_bytes=vm.disk or 0,
                data_disks=data_disks,
                nics=nics,
                cloud_init=vm.cloud_init,
                user_data=vm.user_data,
                host=vm.host,
                running=vm.running,
                autostart=vm.autostart,
                protect=vm.protect,
                firmware=vm.firmware,
                tpm=vm.tpm,
                cpu=vm.cpu,
                shutdown_timeout=vm.shutdown_timeout,
                on_cloud_init_change=vm.on_cloud_init_change,
                anti_affinity=vm.anti_affinity,
                imported=vm.imported,
            )
        )
    return instances


def expand_fleet(spec: StackSpec, deployed: Collection[str] = ()) -> list[VmInstance]:
    """Every VM instance of the stack, in file order (a new list each call).

    virtstack.spec.loader.load_stack expands once and hands the list on (LoadedStack.fleet)."""
    # A deployed `<group>-1` that is itself a group of the file is that group's VM, not a legacy name.
    key = frozenset(deployed) - frozenset(spec.vms)
    fleet: list[VmInstance] = []
    for group, vm in spec.vms.items():
        fleet.extend(expand_group(group, vm, key))
    return fleet


def resolve_pool(host: HostSpec, pool: str | None) -> str | None:
    """The pool a VM uses on ``host``, or None if the host cannot provide it.

    An omitted pool means the host's only pool; a host with several pools
    cannot take a VM that does not say which.
    """
    if pool is None:
        if len(host.pools) == 1:
            return next(iter(host.pools))
        return None
    return pool if pool in host.pools else None


def missing_on_host(vm: VmInstance, host: HostSpec) -> list[str]:
    """What ``host`` lacks for ``vm`` (networks, pool, static addresses in its segments), as
    message fragments."""
    missing = [f"network {name}" for name in vm.networks if name not in host.networks]
    for nic in vm.nics:
        network = host.networks.get(nic.network)
        if (
            nic.ip is not None
            and network is not None
            and network.cidr is not None
            and nic.ip not in network.cidr
        ):
            missing.append(f"{nic.ip} in network {nic.network} (its cidr there is {network.cidr})")
    if resolve_pool(host, vm.pool) is None:
        if vm.pool is None:
            missing.append(f"a single pool (it has {len(host.pools)}; set pool)")
        else:
            missing.append(f"pool {vm.pool}")
    return missing
