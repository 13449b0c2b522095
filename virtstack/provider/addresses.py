"""A running domain's real IPv4 addresses, one per NIC (issue 17): libvirt's DHCP lease for the NIC's
MAC, else what the guest agent reports for that MAC (bridge NICs, static addresses). Read through
libvirt only; nothing connects to a guest."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import libvirt


def _by_mac(interfaces: Mapping[str, Any] | None) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for iface in (interfaces or {}).values():
        mac = str(iface.get("hwaddr") or "").lower()
        for addr in iface.get("addrs") or []:
            if addr.get("type") != libvirt.VIR_IP_ADDR_TYPE_IPV4 or not addr.get("addr"):
                continue
            ip = ipaddress.ip_address(str(addr["addr"]))
            if ip.is_loopback or ip.is_link_local:
                continue
            found.setdefault(mac, []).append(str(ip))
    return found


def _query(dom: libvirt.virDomain, source: int) -> dict[str, list[str]]:
    try:
        return _by_mac(dom.interfaceAddresses(source, 0))
    except libvirt.libvirtError:
        return {}  # no lease yet, no agent yet: unknown, not an error


def nic_addresses(dom: libvirt.virDomain, macs: Sequence[str]) -> list[str | None]:
    """The first IPv4 address of each NIC (by MAC, in `macs` order); None where none is known."""
    if not macs or not dom.isActive():
        return [None] * len(macs)
    leases = _query(dom, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
    wanted = [mac.lower() for mac in macs]
    agent: dict[str, list[str]] | None = None
    result: list[str | None] = []
    for mac in wanted:
        if leases.get(mac):
            result.append(sorted(leases[mac])[0])
            continue
        if agent is None:
            agent = _query(dom, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)
        result.append(sorted(agent[mac])[0] if agent.get(mac) else None)
    return result
