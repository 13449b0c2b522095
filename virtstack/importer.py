"""`virtstack import`: existing domains as stack-file entries.  Pure: libvirt is read by the caller.

Public API:
    domain_entry(doc, volume_at, running, autostart, owned) -> ImportedDomain
        ``doc``: the domain's inactive XML; ``volume_at(path)`` -> (pool, volume) of a disk defined by
        file path, or None.  Raises ImportProblem (one line naming the domain) for what cannot be
        imported: a disk outside every storage pool, an interface that is not on a libvirt network,
        a name that is no stack-file name, memory that is not a whole MiB.
    ImportedDomain(name, vm, pools, networks)   the `vms.<name>` entry; pools and networks it uses
    fragment(host, domains, network_specs) -> dict   the YAML document to merge into the stack file

The entry is what the provider will find: vCPUs, memory, disks (pool, volume, format), NICs
(network, MAC), running and autostart as they are, so the plan right after adopting shows no change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

from virtstack.errors import VirtstackError
from virtstack.spec.scalars import NAME_PATTERN

__all__ = ["ImportProblem", "ImportedDomain", "domain_entry", "fragment"]

MIB_KIB = 1024
_UNITS_KIB = {
    "KiB": 1,
    "k": 1,
    "K": 1,
    "MiB": 1024,
    "M": 1024,
    "GiB": 1024**2,
    "G": 1024**2,
    "b": 0,
    "bytes": 0,
}


class ImportProblem(VirtstackError):
    """A domain that cannot be imported as it is."""


@dataclass(frozen=True)
class ImportedDomain:
    name: str
    vm: dict[str, Any]
    pools: tuple[str, ...]
    networks: tuple[str, ...]


def _memory_kib(el: ET.Element | None) -> int:
    if el is None or not (el.text or "").strip():
        return 0
    unit = el.get("unit") or "KiB"
    value = int((el.text or "0").strip())
    if unit in ("b", "bytes"):
        return value // 1024
    return value * _UNITS_KIB.get(unit, 1)


def domain_entry(
    doc: str,
    volume_at: Callable[[str], tuple[str, str] | None],
    running: bool,
    autostart: bool,
    owned: bool = False,
) -> ImportedDomain:
    root = ET.fromstring(doc)
    name = root.findtext("name") or ""
    if not re.match(NAME_PATTERN, name):
        raise ImportProblem(
            f"domain {name}: its name is not a stack-file name (a DNS label); rename it first"
        )
    memory_kib = _memory_kib(root.find("memory"))
    if memory_kib % MIB_KIB:
        raise ImportProblem(f"domain {name}: memory of {memory_kib} KiB is not a whole MiB")
    disks: list[dict[str, str]] = []
    for disk in root.findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue  # cdroms and floppies are not the VM's disks
        src = disk.find("source")
        driver = disk.find("driver")
        fmt = (driver.get("type") if driver is not None else None) or "raw"
        if fmt not in ("qcow2", "raw"):
            raise ImportProblem(f"domain {name}: disk format {fmt} is not supported (qcow2 or raw)")
        pool = src.get("pool") if src is not None else None
        volume = src.get("volume") if src is not None else None
        if not (pool and volume):
            path = src.get("file") if src is not None else None
            found = volume_at(path) if path else None
            if found is None:
                raise ImportProblem(
                    f"domain {name}: disk {path or '(no source)'} is in no storage pool; define a pool for "
                    "its directory first (virsh pool-define-as NAME dir --target DIR)"
                )
            pool, volume = found
        disks.append({"pool": pool, "volume": volume, "format": fmt})
    nics: list[dict[str, str]] = []
    for nic in root.findall("devices/interface"):
        src = nic.find("source")
        network = src.get("network") if src is not None else None
        mac = nic.find("mac")
        if nic.get("type") != "network" or not network:
            raise ImportProblem(
                f"domain {name}: interface of type {nic.get('type')} cannot be imported "
                "(only interfaces on libvirt networks)"
            )
        nics.append({"network": network, "mac": (mac.get("address") or "") if mac is not None else ""})
    vm: dict[str, Any] = {
        "host": "",
        "vcpus": int(root.findtext("vcpu") or 1),
        "memory": f"{memory_kib // MIB_KIB}MiB",
        "running": running,
        "autostart": autostart,
        "imported": {"owned": owned, "disks": disks},
    }
    if nics:
        vm["nics"] = nics
    return ImportedDomain(
        name,
        vm,
        tuple(sorted({d["pool"] for d in disks})),
        tuple(sorted({n["network"] for n in nics})),
    )


def fragment(
    host: str, domains: Iterable[ImportedDomain], network_specs: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """``hosts.<host>`` with the pools and networks the domains use (external: existing, never
    changed), and one ``vms`` group per domain, pinned to the host."""
    domains = list(domains)
    pools = sorted({p for d in domains for p in d.pools})
    networks = sorted({n for d in domains for n in d.networks})
    host_entry: dict[str, Any] = {"pools": {p: {"external": True} for p in pools}}
    if networks:
        host_entry["networks"] = {n: {**network_specs[n], "external": True} for n in networks}
    return {
        "hosts": {host: host_entry},
        "vms": {d.name: {**d.vm, "host": host} for d in domains},
    }
