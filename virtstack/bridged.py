"""pulumi-libvirt's resources (hosts with `backend: pulumi-libvirt`) in virtstack's terms.  PURE.

The plan classifier, drift detection and progress read the engine's step metadata of both backends
through this module, so they apply one set of rules:

- **types**: `libvirt:index/<x>:<X>` tokens to virtstack's kinds (a CloudInitDisk is a Volume, the seed);
- **roles**: the native backend records a volume's role (base, root, data, seed) as an input;
  pulumi-libvirt has no such field, so the role comes from the resource name the components give
  (`<vm>-root`, `<vm>-data-<disk>`, `<host>-hypervisor-image-…`, `<pool resource>-owner`);
- **views**: pulumi-libvirt's properties (camelCase, memory in MiB, disks by volume id) as the native
  backend's keys (vcpus, memory in bytes, disks, nics, size…), so one classifier and one drift check
  compare both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from virtstack import contract

PACKAGE_PREFIX = "libvirt:index/"
CLOUD_INIT_DISK = "libvirt:index/cloudInitDisk:CloudInitDisk"
TOKENS = {
    "libvirt:index/pool:Pool": contract.POOL,
    "libvirt:index/network:Network": contract.NETWORK,
    "libvirt:index/volume:Volume": contract.VOLUME,
    CLOUD_INIT_DISK: contract.VOLUME,
    "libvirt:index/domain:Domain": contract.DOMAIN,
}
OWNER_SUFFIX = "-owner"  # a pool's owner record volume: `<pool resource>-owner`
OWNER_ROLE = "owner"

# pulumi-libvirt property → the native key it is shown as (the others keep their name).
_KEYS = {
    "vcpu": "vcpus",
    "networkInterfaces": "nics",
    "baseVolumeId": "backing_path",
    "userData": "user_data",
    "metaData": "meta_data",
    "networkConfig": "network_config",
    "addresses": "cidr",
    "cloudinit": "seed",
}


def is_bridged(rtype: str) -> bool:
    return rtype in TOKENS


def kind_of_type(rtype: str) -> str | None:
    """Pool, Network, Volume or Domain for either backend's type; None for anything else."""
    return TOKENS.get(rtype) or contract.kind_of_type(rtype)


def role_of(rtype: str, name: str, vm: str | None) -> str | None:
    """A pulumi-libvirt volume's role, from its engine name (components/vm.py, hypervisor.py)."""
    if rtype == CLOUD_INIT_DISK:
        return "seed"
    if TOKENS.get(rtype) != contract.VOLUME:
        return None
    if vm is not None:
        if name == f"{vm}-root":
            return "root"
        if name.startswith(contract.data_disk_resource_prefix(vm)):
            return "data"
        return None
    if name.endswith(OWNER_SUFFIX):
        return OWNER_ROLE
    return "base" if "-image-" in name else None


def native_key(key: str) -> str:
    return _KEYS.get(key, key)


def _disks(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [{"pool": "", "volume": d.get("volumeId")} for d in value if isinstance(d, Mapping)]


def _nics(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [
        # 0.7.6 reads MACs back in capitals
        {"network": n.get("networkId") or n.get("networkName"), "mac": str(n.get("mac") or "").lower()}
        for n in value
        if isinstance(n, Mapping)
    ]


def _memory(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return int(value) * contract.MIB


def view(rtype: str, props: Mapping[str, Any]) -> dict[str, Any]:
    """`props` (inputs or outputs of a pulumi-libvirt resource) with the native backend's keys and
    units; properties virtstack does not set (pulumi-libvirt's computed extras) are left out."""
    kind = TOKENS.get(rtype)
    picked: dict[str, Any] = {}
    if kind == contract.DOMAIN:
        for key in ("name", "vcpu", "running", "autostart", "cloudinit", "type"):
            if key in props:
                picked[native_key(key)] = props[key]
        if "memory" in props:
            picked["memory"] = _memory(props["memory"])
        if "disks" in props:
            picked["disks"] = _disks(props["disks"])
        if "networkInterfaces" in props:
            picked["nics"] = _nics(props["networkInterfaces"])
        if props.get("id"):
            picked["uuid"] = props["id"]
    elif kind == contract.VOLUME:
        for key in ("name", "pool", "size", "source", "format", "baseVolumeId"):
            if key in props:
                picked[native_key(key)] = props[key]
        for key in ("userData", "metaData", "networkConfig"):
            if key in props:
                picked[native_key(key)] = props[key]
    elif kind == contract.POOL:
        picked = {k: props[k] for k in ("name", "path", "type") if k in props}
    elif kind == contract.NETWORK:
        picked = {k: props[k] for k in ("name", "mode", "bridge") if k in props}
        if picked.get("mode") == "none":
            picked["mode"] = "isolated"  # 0.7.6 spells virtstack's isolated network `none`
        addresses = props.get("addresses")
        if isinstance(addresses, list) and addresses:
            picked["cidr"] = addresses[0]
    return picked


def maybe_view(rtype: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    """`view` for a pulumi-libvirt type; a native resource's props as they are."""
    return view(rtype, props) if is_bridged(rtype) else props
