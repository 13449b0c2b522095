"""Count expansion into VM instances (virtstack.fleet)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtstack.fleet import (
    VmInstance,
    derive_mac,
    expand_fleet,
    expand_group,
    instance_names,
    missing_on_host,
    offset_ip,
    resolve_pool,
)
from virtstack.spec import HostSpec, StackSpec, VmSpec
from virtstack.units import GIB, MIB


def vm_spec(**overrides: Any) -> VmSpec:
    data: dict[str, Any] = {"image": "debian-12", "vcpus": 1, "memory": "512MiB", "disk": "4GiB"}
    data.update(overrides)
    return VmSpec.model_validate(data)


def host_spec(pools: tuple[str, ...] = ("vms",), networks: tuple[str, ...] = ("lab",)) -> HostSpec:
    return HostSpec.model_validate(
        {
            "uri": "qemu:///system",
            "capacity": {"vcpus": 4, "memory": "8GiB", "disk": "100GiB"},
            "pools": {p: {"path": f"/pools/{p}"} for p in pools},
            "networks": {n: {"mode": "nat", "cidr": f"10.{i}.0.0/24"} for i, n in enumerate(networks)},
        }
    )


@pytest.mark.parametrize(
    ("group", "count", "deployed", "names"),
    [
        ("web", 1, (), ["web"]),
        ("web", 3, (), ["web", "web-2", "web-3"]),
        ("db", 2, (), ["db", "db-2"]),
        ("a", 10, (), ["a"] + [f"a-{i}" for i in range(2, 11)]),
        # Growing keeps every earlier name: 1 -> 2 -> 3.
        ("web", 2, ("web",), ["web", "web-2"]),
        ("web", 3, ("web", "web-2"), ["web", "web-2", "web-3"]),
        # Shrinking drops the highest-numbered instances.
        ("web", 1, ("web", "web-2", "web-3"), ["web"]),
        # Legacy: deployed before the rule, instance 1 was <group>-1 and keeps that name ...
        ("web", 3, ("web-1", "web-2", "web-3"), ["web-1", "web-2", "web-3"]),
        ("web", 2, ("web-1", "web-2", "web-3"), ["web-1", "web-2"]),
        ("web", 4, ("web-1", "web-2"), ["web-1", "web-2", "web-3", "web-4"]),
        ("web", 1, ("web-1", "web-2"), ["web-1"]),
        # ... but only when <group> itself is not deployed, and only for its own group.
        ("web", 2, ("web", "web-1"), ["web", "web-2"]),
        ("web", 2, ("db-1", "webby-1"), ["web", "web-2"]),
    ],
)
def test_instance_names(group: str, count: int, deployed: tuple[str, ...], names: list[str]) -> None:
    assert instance_names(group, count, deployed) == names


def test_instance_names_without_a_previous_deployment_do_not_depend_on_count() -> None:
    for count in range(1, 6):
        assert instance_names("web", count) == instance_names("web", 5)[:count]


def test_expand_group_copies_fields_and_increments_ips() -> None:
    vm = vm_spec(
        count=3,
        pool="vms",
        data_disks=[{"name": "data", "size": "2GiB"}, {"name": "logs", "size": "1GiB"}],
        nics=[{"network": "lab", "ip": "10.77.0.10"}, {"network": "other"}],
        host="node-a",
        running=False,
        autostart=True,
    )
    instances = expand_group("web", vm)
    assert [i.name for i in instances] == ["web", "web-2", "web-3"]
    assert [i.index for i in instances] == [1, 2, 3]
    assert [i.nics[0].ip for i in instances] == [IPv4Address(f"10.77.0.{n}") for n in (10, 11, 12)]
    assert all(i.nics[1].ip is None for i in instances)
    first = instances[0]
    assert first.group == "web" and first.image == "debian-12" and first.pool == "vms"
    assert (first.vcpus, first.memory_bytes, first.disk_bytes) == (1, 512 * MIB, 4 * GIB)
    assert first.data_disks == (("data", 2 * GIB), ("logs", GIB))
    assert first.total_disk_bytes == 7 * GIB
    assert first.host == "node-a" and first.running is False and first.autostart is True
    assert first.spec_path == "vms.web"
    assert first.networks == ("lab", "other")


def test_count_one_keeps_the_name_and_index_one() -> None:
    [vm] = expand_group("web", vm_spec())
    assert (vm.name, vm.index) == ("web", 1)


def test_macs_are_derived_stable_and_distinct() -> None:
    vm = vm_spec(count=2, nics=[{"network": "lab"}, {"network": "lab"}])
    a, b = expand_group("web", vm)
    macs = [n.mac for n in a.nics + b.nics]
    assert len(set(macs)) == 4
    assert all(m.startswith("52:54:00:") for m in macs)
    assert a.nics[0].mac == derive_mac("web", 0)
    assert b.nics[1].mac == derive_mac("web-2", 1)
    assert a.nics[0].mac_derived
    # Golden value: the derivation must never change, or every VM's MAC would.
    assert derive_mac("web-1", 0) == "52:54:00:d0:81:0a"
    # Expanding again gives the same MACs.
    assert [n.mac for n in expand_group("web", vm)[0].nics] == [n.mac for n in a.nics]


def test_explicit_mac_is_kept() -> None:
    [vm] = expand_group("db", vm_spec(nics=[{"network": "lab", "mac": "52:54:00:AA:bb:01"}]))
    assert vm.nics[0].mac == "52:54:00:aa:bb:01"
    assert not vm.nics[0].mac_derived


def test_mac_does_not_depend_on_the_rest_of_the_fleet() -> None:
    alone = expand_group("web", vm_spec(count=2, nics=[{"network": "lab"}]))
    bigger = expand_group("web", vm_spec(count=5, nics=[{"network": "lab"}]))
    assert alone[1].nics[0].mac == bigger[1].nics[0].mac


@given(st.text(min_size=1, max_size=63), st.integers(min_value=0, max_value=16))
def test_derived_mac_is_unicast_locally_administered(name: str, index: int) -> None:
    mac = derive_mac(name, index)
    octets = [int(part, 16) for part in mac.split(":")]
    assert len(octets) == 6 and octets[:3] == [0x52, 0x54, 0x00]
    assert octets[0] & 1 == 0 and octets[0] & 2 == 2


def test_offset_ip() -> None:
    assert offset_ip(IPv4Address("10.0.0.255"), 1) == IPv4Address("10.0.1.0")
    assert offset_ip(IPv4Address("255.255.255.254"), 1) == IPv4Address("255.255.255.255")
    assert offset_ip(IPv4Address("255.255.255.254"), 2) is None


def test_expand_fleet_keeps_file_order() -> None:
    spec = StackSpec.model_validate(
        {
            "hosts": {
                "a": {
                    "uri": "qemu:///system",
                    "capacity": {"vcpus": 1, "memory": "1GiB", "disk": "1GiB"},
                    "pools": {"p": {"path": "/p"}},
                }
            },
            "vms": {
                "zeta": {"image": "i", "vcpus": 1, "memory": "128MiB", "disk": 1},
                "alpha": {"count": 2, "image": "i", "vcpus": 1, "memory": "128MiB", "disk": 1},
            },
        }
    )
    assert [vm.name for vm in expand_fleet(spec)] == ["zeta", "alpha", "alpha-2"]
    # A stack deployed with the old names keeps them (and the memo does not hide the difference).
    assert [vm.name for vm in expand_fleet(spec, deployed={"alpha-1", "alpha-2"})] == [
        "zeta",
        "alpha-1",
        "alpha-2",
    ]
    assert [vm.name for vm in expand_fleet(spec)] == ["zeta", "alpha", "alpha-2"]


def test_hostname_defaults_to_the_instance_name() -> None:
    [plain] = expand_group("web", vm_spec())
    [named] = expand_group("web", vm_spec(cloud_init={"hostname": "www"}))
    assert plain.hostname == "web"
    assert named.hostname == "www"


def test_instances_are_frozen() -> None:
    [vm] = expand_group("web", vm_spec())
    with pytest.raises(AttributeError):
        vm.name = "other"  # type: ignore[misc]
    assert isinstance(vm, VmInstance)


@pytest.mark.parametrize(
    ("pools", "wanted", "resolved"),
    [
        (("vms",), None, "vms"),
        (("vms",), "vms", "vms"),
        (("vms",), "fast", None),
        (("vms", "fast"), None, None),
        (("vms", "fast"), "fast", "fast"),
    ],
)
def test_resolve_pool(pools: tuple[str, ...], wanted: str | None, resolved: str | None) -> None:
    assert resolve_pool(host_spec(pools=pools), wanted) == resolved


@pytest.mark.parametrize(
    ("host", "vm", "missing"),
    [
        (host_spec(), vm_spec(nics=[{"network": "lab"}]), []),
        (
            host_spec(networks=()),
            vm_spec(nics=[{"network": "lab"}, {"network": "x"}]),
            ["network lab", "network x"],
        ),
        (host_spec(), vm_spec(pool="fast"), ["pool fast"]),
        (host_spec(pools=("a", "b")), vm_spec(), ["a single pool (it has 2; set pool)"]),
    ],
)
def test_missing_on_host(host: HostSpec, vm: VmSpec, missing: list[str]) -> None:
    [instance] = expand_group("v", vm)
    assert missing_on_host(instance, host) == missing
