"""Network address maths: DHCP ranges, the addresses libvirt and the LAN reserve, static address
ranges and overlapping networks.  No libvirt; used by validation and by components.libvirt_args.

Public API:
    dhcp_range(network) -> (first, last) | None   the range libvirt serves, None when it serves none
    dhcp_range_of(cidr) -> (first, last)           upper half of the host addresses: /24 -> .128-.254
    host_address(mode, cidr) / gateway_address(mode, cidr, gateway) -> IPv4Address | None
    reserved_addresses(network) -> {address: what it is}
    NetworkFacts.of(network); check_address_range(name, network, facts, base, count) -> str | None
    overlapping(cidrs: {name: cidr}) -> [(name, earlier overlapping name)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the models use this module (host and gateway addresses)
    from virtstack.spec.models import NetworkSpec

__all__ = [
    "DASH",
    "NetworkFacts",
    "check_address_range",
    "dhcp_range",
    "dhcp_range_of",
    "gateway_address",
    "host_address",
    "overlapping",
    "reserved_addresses",
]


def host_address(mode: str, cidr: IPv4Network | None) -> IPv4Address | None:
    """The address libvirt gives the host on nat/isolated networks (.1)."""
    if mode != "bridge" and cidr is not None:
        return cidr.network_address + 1
    return None


def gateway_address(mode: str, cidr: IPv4Network | None, gateway: IPv4Address | None) -> IPv4Address | None:
    """The router guests use: .1 of nat networks, ``gateway`` of bridges.

    Isolated networks have the host on .1 too (see host_address) but offer no route out, so they
    have no gateway."""
    if mode == "nat" and cidr is not None:
        return cidr.network_address + 1
    if mode == "bridge":
        return gateway
    return None


def dhcp_range_of(cidr: IPv4Network) -> tuple[IPv4Address, IPv4Address]:
    """Upper half of the host addresses: 10.77.0.0/24 -> (.128, .254).

    The lower half (minus .1) is left for static addresses, so the two never
    meet and a static address never needs a DHCP reservation.
    """
    return cidr.network_address + cidr.num_addresses // 2, cidr.broadcast_address - 1


def dhcp_range(network: NetworkSpec) -> tuple[IPv4Address, IPv4Address] | None:
    if network.cidr is None or not network.dhcp_enabled:
        return None
    return dhcp_range_of(network.cidr)


def reserved_addresses(network: NetworkSpec) -> dict[IPv4Address, str]:
    """Addresses no VM may use, with what they are (for messages)."""
    reserved: dict[IPv4Address, str] = {}
    if network.cidr is None:
        return reserved
    reserved[network.cidr.network_address] = "the network address"
    reserved[network.cidr.broadcast_address] = "the broadcast address"
    if network.gateway_address is not None:
        reserved[network.gateway_address] = "the gateway"
    elif network.host_address is not None:
        reserved[network.host_address] = "the host's address"
    return reserved


DASH = "\u2013"  # en dash, as in "10.77.0.128 to 10.77.0.254" written with a range dash


def _ip_text(value: int) -> str:
    return str(IPv4Address(value)) if 0 <= value < 2**32 else "…"


@dataclass(frozen=True)
class NetworkFacts:
    """What address checks need of one network, computed once per network, not once per VM."""

    reserved: list[tuple[IPv4Address, str]]  # sorted
    dhcp: tuple[IPv4Address, IPv4Address] | None

    @classmethod
    def of(cls, network: NetworkSpec) -> NetworkFacts:
        return cls(sorted(reserved_addresses(network).items()), dhcp_range(network))


def check_address_range(
    name: str, network: NetworkSpec, facts: NetworkFacts, base: IPv4Address, count: int
) -> str | None:
    """First problem with the static addresses base .. base+count-1, or None."""
    # Runs once per VM entry: messages are only formatted once there is a problem.
    cidr = network.cidr
    if cidr is None:
        return f"network {name} has no cidr; set one on the network to use static addresses"
    if base not in cidr:
        return f"{base} is outside network {name} ({cidr})"
    first, last = int(base), int(base) + count - 1
    problem: tuple[str, str] | None = None
    for address, what in facts.reserved:
        if address == base:
            return f"{base} is {what} of network {name} ({cidr})"
    if last >= int(cidr.broadcast_address):
        return f"with count {count}, addresses {base}{DASH}{_ip_text(last)} run past network {name} ({cidr})"
    for address, what in facts.reserved:
        if first <= int(address) <= last:
            problem = ("include", f"{address}, {what} of network {name} ({cidr})")
            break
    rng = facts.dhcp
    if problem is None and rng is not None and first <= int(rng[1]) and int(rng[0]) <= last:
        dhcp = f"the DHCP range of network {name} ({rng[0]}{DASH}{rng[1]})"
        if count == 1:
            return f"{base} is inside {dhcp}"
        problem = ("overlap", dhcp)
    if problem is None:
        return None
    return f"addresses {base}{DASH}{_ip_text(last)} (count {count}) {problem[0]} {problem[1]}"


def overlapping(cidrs: Mapping[str, IPv4Network]) -> list[tuple[str, str]]:
    """(network, an earlier network it overlaps), sweeping in address order."""
    ordered = sorted(
        ((cidr, name) for name, cidr in cidrs.items()),
        key=lambda item: (int(item[0].network_address), -item[0].prefixlen, item[1]),
    )
    found: list[tuple[str, str]] = []
    reach: tuple[IPv4Network, str] | None = None  # the network reaching furthest so far
    for cidr, name in ordered:
        if reach is not None and int(cidr.network_address) <= int(reach[0].broadcast_address):
            found.append((name, reach[1]))
        if reach is None or int(cidr.broadcast_address) > int(reach[0].broadcast_address):
            reach = (cidr, name)
    return found
