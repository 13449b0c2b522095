"""The one place that turns spec models into libvirt backend arguments (units, names, devices).

Everything backend-specific about naming and units lives here, so replacing virtstack's libvirt
backend (virtstack.provider) with pulumi-libvirt or its successor touches this module and the
resource classes the components instantiate — nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from virtstack import contract
from virtstack.contract import Owner
from virtstack.fleet import VmInstance
from virtstack.netaddr import dhcp_range
from virtstack.spec import NetworkSpec, PoolSpec

# TCG's translation block cache; 128 MiB instead of QEMU's ~1 GiB default per guest.
TCG_TB_CACHE_MIB = 128


@dataclass(frozen=True)
class Connection:
    """How to reach one host's libvirt, and how its guests run there."""

    host: str
    uri: str
    domain_type: str  # "kvm" | "qemu", resolved from "auto" at the edge
    cpu_mode: str | None = None


@dataclass(frozen=True)
class ResolvedImage:
    """An image source as the provider reads it: an absolute path or a URL, plus a fingerprint that
    changes when the content does (so hosts get the new image as a new base volume)."""

    name: str
    source: str
    format: str
    fingerprint: str


def bridge_name(host: str, network: str) -> str:
    # Linux limits interface names to 15 characters; a hash keeps them unique per host and stable.
    digest = hashlib.sha256(f"{host}/{network}".encode()).hexdigest()[:10]
    return f"vs-{digest}"


def pool_props(conn: Connection, owner: Owner, name: str, pool: PoolSpec) -> dict[str, Any]:
    props: dict[str, Any] = {"uri": conn.uri, "host": conn.host, "owner": str(owner), "name": name}
    if pool.path is not None:
        props["path"] = pool.path
    if pool.external:
        props["external"] = True
    return props


def network_props(conn: Connection, owner: Owner, name: str, net: NetworkSpec) -> dict[str, Any]:
    props: dict[str, Any] = {
        "uri": conn.uri,
        "host": conn.host,
        "owner": str(owner),
        "name": name,
        "mode": net.mode,
    }
    if net.external:
        props["external"] = True
    if net.mode == "bridge":
        props["bridge"] = net.bridge
        return props
    props["bridge"] = bridge_name(conn.host, name)
    props["cidr"] = str(net.cidr)
    props["dhcp"] = net.dhcp_enabled
    dhcp = dhcp_range(net)
    if dhcp is not None:
        props["dhcp_start"], props["dhcp_end"] = str(dhcp[0]), str(dhcp[1])
    return props


@dataclass(frozen=True)
class PoolPlace:
    """Where a VM's volumes go: the pool, whether it is shared (`external`), and who owns them."""

    pool: str
    external: bool
    owner: Owner

    def volume_name(self, name: str) -> str:
        return contract.external_volume_name(self.owner.stack, name) if self.external else name

    def props(self, conn: Connection) -> dict[str, Any]:
        props: dict[str, Any] = {
            "uri": conn.uri,
            "host": conn.host,
            "owner": str(self.owner),
            "pool": self.pool,
        }
        if self.external:
            props["pool_external"] = True
        return props


def base_volume_name(place: PoolPlace, image: ResolvedImage) -> str:
    return place.volume_name(contract.base_volume_name(image.name, image.fingerprint, image.format))


def base_volume_props(conn: Connection, place: PoolPlace, image: ResolvedImage) -> dict[str, Any]:
    return {
        **place.props(conn),
        "name": base_volume_name(place, image),
        "role": "base",
        "format": image.format,
        "source": image.source,
        "source_fingerprint": image.fingerprint,
    }


def root_volume_name(place: PoolPlace, vm: VmInstance) -> str:
    return place.volume_name(contract.root_volume_name(vm.name))


def data_volume_name(place: PoolPlace, vm: VmInstance, disk: str) -> str:
    return place.volume_name(contract.data_volume_name(vm.name, disk))


def seed_volume_name(place: PoolPlace, vm: VmInstance) -> str:
    return place.volume_name(contract.seed_volume_name(vm.name))


def root_volume_props(
    conn: Connection, place: PoolPlace, vm: VmInstance, image: ResolvedImage, base_path: pulumi.Input[str]
) -> dict[str, Any]:
    return {
        **place.props(conn),
        "name": root_volume_name(place, vm),
        "vm": vm.name,
        "role": "root",
        "format": "qcow2",
        "size": vm.disk_bytes,
        "backing_path": base_path,
        "backing_format": image.format,
    }


def data_volume_props(
    conn: Connection, place: PoolPlace, vm: VmInstance, disk: str, size: int
) -> dict[str, Any]:
    return {
        **place.props(conn),
        "name": data_volume_name(place, vm, disk),
        "vm": vm.name,
        "role": "data",
        "format": "qcow2",
        "size": size,
    }


def seed_volume_props(
    conn: Connection,
    place: PoolPlace,
    vm: VmInstance,
    user_data: pulumi.Input[str],
    meta_data: str,
    network_config: str | None,
) -> dict[str, Any]:
    return {
        **place.props(conn),
        "name": seed_volume_name(place, vm),
        "vm": vm.name,
        "role": "seed",
        "format": "raw",
        "user_data": user_data,
        "meta_data": meta_data,
        "network_config": network_config or "",
    }


def console_log_path(vm: VmInstance) -> str:
    # libvirt's own per-domain log directory exists on every host and virtlogd may write there.
    return f"/var/log/libvirt/qemu/{vm.name}-serial0.log"


def domain_props(
    conn: Connection,
    owner: Owner,
    place: PoolPlace,
    vm: VmInstance,
    volumes: Sequence[tuple[str, pulumi.Input[str]]],
    seed_volume: pulumi.Input[str],
) -> dict[str, Any]:
    """`volumes`: (volume name, volume generation) for the root disk first, then data disks. The
    generations are outputs of the volume resources, so a replaced volume changes the domain."""
    disks: list[dict[str, Any]] = [
        {"pool": place.pool, "volume": name, "generation": generation, "device": "disk", "format": "qcow2"}
        for name, generation in volumes
    ]
    disks.append({"pool": place.pool, "volume": seed_volume, "device": "cdrom", "format": "raw"})
    return {
        "uri": conn.uri,
        "host": conn.host,
        "owner": str(owner),
        "name": vm.name,
        "domain_type": conn.domain_type,
        "cpu_mode": conn.cpu_mode or "",
        "tb_cache_mib": TCG_TB_CACHE_MIB if conn.domain_type == "qemu" else 0,
        "vcpus": vm.vcpus,
        "memory": vm.memory_bytes,
        "disks": disks,
        "nics": [{"network": nic.network, "mac": nic.mac} for nic in vm.nics],
        "running": vm.running,
        "autostart": vm.autostart,
        "console_log": console_log_path(vm),
    }
