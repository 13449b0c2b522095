"""Read domains of one host for `virtstack import` (reads only; adopting is the next `up`).

Public API:
    import_domains(uri, names, owner, open_uri, owned) -> (list[ImportedDomain], networks)
        ``names`` empty: every domain without an owner record.  A named domain that is some stack's
        is an ImportProblem; so is a name the host does not have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import libvirt

from virtstack.contract import describe_owner
from virtstack.importer import ImportedDomain, ImportProblem, domain_entry
from virtstack.provider import xml
from virtstack.provider.connection import found_or_none, is_not_found
from virtstack.provider.ownership import domain_owner

__all__ = ["import_domains"]


def import_domains(
    uri: str, host: str, names: Sequence[str], open_uri: Callable[[str], Any], owned: bool
) -> tuple[list[ImportedDomain], dict[str, dict[str, Any]]]:
    conn = open_uri(uri)
    try:
        if names:
            doms = []
            for name in names:
                dom = found_or_none(conn.lookupByName, name)
                if dom is None:
                    raise ImportProblem(f"host {host} has no domain {name}")
                record = domain_owner(dom)
                if record is not None:
                    raise ImportProblem(
                        f"domain {name} on host {host} already belongs to {describe_owner(record)}"
                    )
                doms.append(dom)
        else:
            doms = []
            for dom in conn.listAllDomains(0):
                try:
                    if domain_owner(dom) is None:
                        doms.append(dom)
                except libvirt.libvirtError as err:
                    if not is_not_found(err):
                        raise  # else: undefined since the listing
            doms.sort(key=lambda d: d.name())

        def volume_at(path: str) -> tuple[str, str] | None:
            vol = found_or_none(conn.storageVolLookupByPath, path)
            return None if vol is None else (vol.storagePoolLookupByVolume().name(), vol.name())

        entries = []
        for dom in doms:
            state = dom.state()[0]
            entries.append(
                domain_entry(
                    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
                    volume_at,
                    running=state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED),
                    autostart=bool(dom.autostart()),
                    owned=owned,
                )
            )
        networks: dict[str, dict[str, Any]] = {}
        for name in sorted({n for e in entries for n in e.networks}):
            net = found_or_none(conn.networkLookupByName, name)
            if net is None:
                raise ImportProblem(f"network {name} is not on host {host}")
            live = xml.parse_network(net.XMLDesc(0))
            spec: dict[str, Any] = {"mode": live["mode"]}
            if live["cidr"]:
                spec["cidr"] = live["cidr"]
            networks[name] = spec
        return entries, networks
    finally:
        conn.close()
