"""The one place that turns spec models into libvirt backend arguments (units, names, devices).

Everything backend-specific about naming and units lives here, so replacing virtstack's libvirt
backend (virtstack.provider) with pulumi-libvirt or its successor touches this module and the
resource classes the components instantiate — nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pulumi

from virtstack import contract
from virtstack.contract import Owner
from virtstack.cpu import CpuChoice, resolve_cpu
from virtstack.fleet import VmInstance
from virtstack.netaddr import dhcp_range
from virtstack.props import (
    DiskRef,
    DomainProps,
    NetworkProps,
    NicRef,
    PoolProps,
    Target,
    VolumeProps,
)
from virtstack.spec import NetworkSpec, PoolSpec
from virtstack.spec.vmfeatures import CpuSpec

# TCG's translation block cache; 128 MiB instead of QEMU's ~1 GiB default per guest.
TCG_TB_CACHE_MIB = 128


@dataclass(frozen=True)
class Connection:
    """How to reach one host's libvirt, and how its guests run there."""

    host: str
    uri: str
    domain_type: str  # "kvm" | "qemu", resolved from "auto" at the edge
    cpu_mode: str | None = None
    boot_concurrency: int = 0  # 0: the provider's default for the host (virtstack.boot)
    backend: str = "native"  # "native" | "pulumi-libvirt" (the host's `backend`)
    cpu: CpuSpec | None = None  # the host's default `cpu` for VMs that set none

    def target(self, owner: Owner) -> Target:
        return Target(self.uri, self.host, str(owner))


@dataclass(frozen=True)
class ResolvedImage:
    """An image source as the provider reads it: an absolute path or a URL, plus a fingerprint that
    changes when the content does (so hosts get the new image as a new base volume)."""

    name: str
    source: str
    format: str
    fingerprint: str
    external: bool = False  # `source` is an existing volume in the pool, shared: used as it is


def bridge_name(host: str, network: str) -> str:
    # Linux limits interface names to 15 characters; a hash keeps them unique per host and stable.
    digest = hashlib.sha256(f"{host}/{network}".encode()).hexdigest()[:10]
    return f"vs-{digest}"


def pool_props(conn: Connection, owner: Owner, name: str, pool: PoolSpec) -> PoolProps:
    return PoolProps(conn.target(owner), name, pool.path, pool.external)


def network_props(conn: Connection, owner: Owner, name: str, net: NetworkSpec) -> NetworkProps:
    target = conn.target(owner)
    if net.mode == "bridge":
        return NetworkProps(target, name, net.mode, net.bridge, net.external)
    dhcp = dhcp_range(net)
    return NetworkProps(
        target,
        name,
        net.mode,
        bridge_name(conn.host, name),
        net.external,
        cidr=str(net.cidr),
        dhcp=net.dhcp_enabled,
        dhcp_start=str(dhcp[0]) if dhcp else None,
        dhcp_end=str(dhcp[1]) if dhcp else None,
    )


@dataclass(frozen=True)
class PoolPlace:
    """Where a VM's volumes go: the pool, whether it is shared (`external`), and who owns them."""

    pool: str
    external: bool
    owner: Owner

    def volume_name(self, name: str) -> str:
        return contract.external_volume_name(self.owner.stack, name) if self.external else name

    def volume(self, conn: Connection, name: str, role: str, disk_format: str) -> VolumeProps:
        """A volume of this place: in its pool, owned by its owner, named for a shared pool."""
        return VolumeProps(
            conn.target(self.owner), self.pool, self.volume_name(name), role, disk_format, self.external
        )


def base_volume_name(place: PoolPlace, image: ResolvedImage) -> str:
    if image.external:
        return image.source
    return place.volume_name(contract.base_volume_name(image.name, image.fingerprint, image.format))


def base_volume_props(conn: Connection, place: PoolPlace, image: ResolvedImage) -> VolumeProps:
    if image.external:
        # Its own name, in any pool: it is not this stack's, so it carries no stack prefix.
        return replace(
            place.volume(conn, image.source, "base", image.format),
            name=image.source,
            source=image.source,
            source_fingerprint=image.fingerprint,
            external=True,
        )
    name = contract.base_volume_name(image.name, image.fingerprint, image.format)
    return replace(
        place.volume(conn, name, "base", image.format),
        source=image.source,
        source_fingerprint=image.fingerprint,
    )


def root_volume_name(place: PoolPlace, vm: VmInstance) -> str:
    return place.volume_name(contract.root_volume_name(vm.name))


def data_volume_name(place: PoolPlace, vm: VmInstance, disk: str) -> str:
    return place.volume_name(contract.data_volume_name(vm.name, disk))


def seed_volume_name(place: PoolPlace, vm: VmInstance) -> str:
    return place.volume_name(contract.seed_volume_name(vm.name))


def root_volume_props(
    conn: Connection,
    place: PoolPlace,
    vm: VmInstance,
    image: ResolvedImage,
    base_path: pulumi.Input[str],
    seed_instance_id: str | None = None,
) -> VolumeProps:
    """`seed_instance_id` ties the root disk to the cloud-init seed when the VM's
    `on_cloud_init_change` is `replace` (a new seed recreates the disk); otherwise it is left out."""
    return replace(
        place.volume(conn, contract.root_volume_name(vm.name), "root", "qcow2"),
        vm=vm.name,
        size=vm.disk_bytes,
        backing_path=base_path,
        backing_format=image.format,
        cloud_init_instance=seed_instance_id if vm.on_cloud_init_change == "replace" else None,
    )


def data_volume_props(
    conn: Connection, place: PoolPlace, vm: VmInstance, disk: str, size: int
) -> VolumeProps:
    volume = place.volume(conn, contract.data_volume_name(vm.name, disk), "data", "qcow2")
    return replace(volume, vm=vm.name, size=size)


def seed_volume_props(
    conn: Connection,
    place: PoolPlace,
    vm: VmInstance,
    user_data: pulumi.Input[str],
    meta_data: str,
    network_config: str | None,
) -> VolumeProps:
    return replace(
        place.volume(conn, contract.seed_volume_name(vm.name), "seed", "raw"),
        vm=vm.name,
        user_data=user_data,
        meta_data=meta_data,
        network_config=network_config or "",
    )


def console_log_path(vm: VmInstance) -> str:
    # libvirt's own per-domain log directory exists on every host and virtlogd may write there.
    return f"/var/log/libvirt/qemu/{vm.name}-serial0.log"


def vm_cpu(conn: Connection, vm: VmInstance) -> CpuChoice:
    """The VM's CPU on this host (virtstack.cpu): its `cpu`, else the host's, else the probe's."""
    return resolve_cpu(vm.name, conn.domain_type, vm.cpu, conn.cpu, conn.cpu_mode)


def domain_props(
    conn: Connection,
    owner: Owner,
    place: PoolPlace,
    vm: VmInstance,
    volumes: Sequence[tuple[str, pulumi.Input[str]]],
    seed_volume: pulumi.Input[str],
    seed_instance_id: str | None = None,
) -> DomainProps:
    """`volumes`: (volume name, volume generation) for the root disk first, then data disks. The
    generations are outputs of the volume resources, so a replaced volume changes the domain.
    `seed_instance_id`: the cloud-init instance-id in the seed; when it changes the VM's
    `on_cloud_init_change` decides whether the running guest reboots into it."""
    disks = [DiskRef(place.pool, name, "disk", "qcow2", generation) for name, generation in volumes]
    disks.append(DiskRef(place.pool, seed_volume, "cdrom", "raw"))
    cpu = vm_cpu(conn, vm)
    return DomainProps(
        conn.target(owner),
        vm.name,
        conn.domain_type,
        cpu.mode,
        TCG_TB_CACHE_MIB if conn.domain_type == "qemu" else 0,
        vm.vcpus,
        vm.memory_bytes,
        tuple(disks),
        tuple(NicRef(nic.network, nic.mac) for nic in vm.nics),
        vm.running,
        vm.autostart,
        console_log_path(vm),
        boot_concurrency=conn.boot_concurrency,
        firmware=vm.firmware,
        tpm=vm.tpm,
        cpu_model=cpu.model,
        shutdown_timeout=vm.shutdown_timeout,
        cloud_init_change=vm.on_cloud_init_change,
        seed_instance_id=seed_instance_id,
    )


def imported_domain_props(conn: Connection, owner: Owner, vm: VmInstance) -> DomainProps:
    """An imported domain (`imported:` in the stack file): its existing volumes as they are, no seed;
    adopted without a restart, with this stack's owner record only once `owned` is confirmed."""
    imported = vm.imported
    assert imported is not None
    return DomainProps(
        conn.target(owner),
        vm.name,
        conn.domain_type,
        conn.cpu_mode or "",
        TCG_TB_CACHE_MIB if conn.domain_type == "qemu" else 0,
        vm.vcpus,
        vm.memory_bytes,
        tuple(DiskRef(d.pool, d.volume, "disk", d.format) for d in imported.disks),
        tuple(NicRef(nic.network, nic.mac) for nic in vm.nics),
        vm.running,
        vm.autostart,
        console_log_path(vm),
        "owned" if imported.owned else "unowned",
    )
