"""Network address maths (virtstack.netaddr): the numbers validation and libvirt_args share."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from virtstack.netaddr import dhcp_range, dhcp_range_of, gateway_address, host_address, overlapping
from virtstack.spec import NetworkSpec


@pytest.mark.parametrize(
    ("cidr", "first", "last"),
    [
        ("10.77.0.0/24", "10.77.0.128", "10.77.0.254"),
        ("10.0.0.0/30", "10.0.0.2", "10.0.0.2"),
        ("10.8.0.0/16", "10.8.128.0", "10.8.255.254"),
    ],
)
def test_dhcp_range_is_the_upper_half_of_the_host_addresses(cidr: str, first: str, last: str) -> None:
    assert dhcp_range_of(IPv4Network(cidr)) == (IPv4Address(first), IPv4Address(last))


@pytest.mark.parametrize(
    ("network", "served"),
    [
        ({"mode": "nat", "cidr": "10.77.0.0/24"}, True),
        ({"mode": "nat", "cidr": "10.77.0.0/24", "dhcp": False}, False),
        ({"mode": "bridge", "bridge": "br0", "cidr": "192.168.1.0/24"}, False),
    ],
)
def test_dhcp_range_only_where_libvirt_serves_dhcp(network: dict[str, object], served: bool) -> None:
    assert (dhcp_range(NetworkSpec.model_validate(network)) is not None) == served


@pytest.mark.parametrize(
    ("mode", "gateway", "host", "router"),
    [
        ("nat", None, "10.1.0.1", "10.1.0.1"),
        ("isolated", None, "10.1.0.1", None),
        ("bridge", "10.1.0.254", None, "10.1.0.254"),
    ],
)
def test_host_and_gateway_addresses(
    mode: str, gateway: str | None, host: str | None, router: str | None
) -> None:
    cidr = IPv4Network("10.1.0.0/24")
    given = IPv4Address(gateway) if gateway else None
    assert host_address(mode, cidr) == (IPv4Address(host) if host else None)
    assert gateway_address(mode, cidr, given) == (IPv4Address(router) if router else None)


def test_overlapping_networks_are_found_in_address_order() -> None:
    cidrs = {
        "wide": IPv4Network("10.0.0.0/16"),
        "inside": IPv4Network("10.0.5.0/24"),
        "apart": IPv4Network("10.1.0.0/24"),
        "also-inside": IPv4Network("10.0.200.0/24"),
    }
    assert overlapping(cidrs) == [("inside", "wide"), ("also-inside", "wide")]
    assert overlapping({"a": IPv4Network("10.0.0.0/24"), "b": IPv4Network("10.0.1.0/24")}) == []
