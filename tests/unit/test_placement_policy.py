"""Placement policy: anti-affinity, overcommit, host states, per-host network segments.

Table-driven cases for each rule, then hypothesis properties over random fleets with random
policies: required anti-affinity is never violated, effective capacity never exceeded, cordoned and
drained hosts get no new VM, and adding or removing one VM moves no other."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from virtstack.errors import SpecError
from virtstack.fleet import VmInstance, expand_group
from virtstack.placement import Placement, place, place_fleet
from virtstack.spec import HostSpec, VmSpec
from virtstack.spec.loader import load_stack
from virtstack.units import GIB

F = "stacks/x.yaml"
ROOT = Path(__file__).resolve().parents[2]


def host(
    vcpus: int = 8,
    memory: int = 16 * GIB,
    disk: int = 200 * GIB,
    *,
    overcommit: dict[str, float] | None = None,
    state: str = "active",
    cidr: str = "10.0.0.0/24",
) -> HostSpec:
    data: dict[str, Any] = {
        "uri": "qemu:///system",
        "capacity": {"vcpus": vcpus, "memory": memory, "disk": disk},
        "pools": {"vms": {"path": "/pools/vms"}},
        "networks": {"lab": {"mode": "nat", "cidr": cidr}},
        "state": state,
    }
    if overcommit is not None:
        data["overcommit"] = overcommit
    return HostSpec.model_validate(data)


def vms(group: str, count: int = 1, **overrides: Any) -> list[VmInstance]:
    data: dict[str, Any] = {
        "image": "img",
        "vcpus": 1,
        "memory": "1GiB",
        "disk": "10GiB",
        "nics": [{"network": "lab"}],
        "count": count,
    }
    data.update(overrides)
    return expand_group(group, VmSpec.model_validate(data))


def placed(
    fleet: list[VmInstance], hosts: dict[str, HostSpec], strategy: str = "spread", previous: Any = None
) -> dict[str, str]:
    return place(fleet, hosts, strategy, previous, file=F).assignments  # type: ignore[arg-type]


def errors(
    fleet: list[VmInstance], hosts: dict[str, HostSpec], strategy: str = "spread", previous: Any = None
) -> list[str]:
    with pytest.raises(SpecError) as info:
        place(fleet, hosts, strategy, previous, file=F)  # type: ignore[arg-type]
    return str(info.value).splitlines()


THREE = {"a": host(), "b": host(), "c": host()}

CASES: list[tuple[str, list[VmInstance], dict[str, HostSpec], str, dict[str, str] | None, dict[str, str]]] = [
    (
        # Pack alone would put all three on host a.
        "required anti-affinity beats pack",
        vms("web", 3, anti_affinity="required"),
        THREE,
        "pack",
        None,
        {"web": "a", "web-2": "b", "web-3": "c"},
    ),
    (
        "preferred anti-affinity spreads as far as there are hosts, then doubles up",
        vms("web", 4, anti_affinity="preferred"),
        {"a": host(), "b": host()},
        "pack",
        None,
        {"web": "a", "web-2": "b", "web-3": "a", "web-4": "b"},
    ),
    (
        "preferred anti-affinity doubles up on the one host with room",
        vms("web", 2, anti_affinity="preferred", vcpus=4),
        {"a": host(vcpus=8), "b": host(vcpus=2)},
        "spread",
        None,
        {"web": "a", "web-2": "a"},
    ),
    (
        "a previous placement that breaks required anti-affinity is repaired, the rest stays",
        vms("web", 3, anti_affinity="required"),
        THREE,
        "spread",
        {"web": "a", "web-2": "a", "web-3": "b"},
        {"web": "a", "web-2": "c", "web-3": "b"},
    ),
    (
        "overcommit lets vCPUs past the raw capacity",
        vms("w", 4, vcpus=2),
        {"a": host(vcpus=4, overcommit={"vcpus": 2.0})},
        "spread",
        None,
        {"w": "a", "w-2": "a", "w-3": "a", "w-4": "a"},
    ),
    (
        "memory overcommit",
        vms("w", 3, memory="8GiB"),
        {"a": host(memory=16 * GIB, overcommit={"memory": 1.5})},
        "spread",
        None,
        {"w": "a", "w-2": "a", "w-3": "a"},
    ),
    (
        "a cordoned host takes no new VM",
        vms("w", 3),
        {"a": host(state="cordoned"), "b": host()},
        "pack",
        None,
        {"w": "b", "w-2": "b", "w-3": "b"},
    ),
    (
        "a cordoned host keeps the VMs it runs",
        vms("w", 2),
        {"a": host(state="cordoned"), "b": host()},
        "spread",
        {"w": "a", "w-2": "a"},
        {"w": "a", "w-2": "a"},
    ),
    (
        "a drained host's VMs go elsewhere",
        vms("w", 2),
        {"a": host(state="drained"), "b": host()},
        "spread",
        {"w": "a", "w-2": "b"},
        {"w": "b", "w-2": "b"},
    ),
    (
        "a pin wins over a cordon",
        vms("w", 1, host="a"),
        {"a": host(state="cordoned"), "b": host()},
        "spread",
        None,
        {"w": "a"},
    ),
    (
        "a static address goes to the host whose segment holds it",
        vms("w", 1, nics=[{"network": "lab", "ip": "10.87.0.10"}]),
        {"a": host(cidr="10.77.0.0/24"), "b": host(cidr="10.87.0.0/24"), "c": host(cidr="10.97.0.0/24")},
        "pack",
        None,
        {"w": "b"},
    ),
    (
        "a previous host whose segment no longer holds the address is left",
        vms("w", 1, nics=[{"network": "lab", "ip": "10.87.0.10"}]),
        {"a": host(cidr="10.77.0.0/24"), "b": host(cidr="10.87.0.0/24")},
        "pack",
        {"w": "a"},
        {"w": "b"},
    ),
    (
        "DHCP NICs go anywhere on a segmented network",
        vms("w", 2),
        {"a": host(cidr="10.77.0.0/24"), "b": host(cidr="10.87.0.0/24")},
        "spread",
        None,
        {"w": "a", "w-2": "b"},
    ),
]


@pytest.mark.parametrize(
    ("fleet", "hosts", "strategy", "previous", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_policy(
    fleet: list[VmInstance],
    hosts: dict[str, HostSpec],
    strategy: str,
    previous: dict[str, str] | None,
    expected: dict[str, str],
) -> None:
    assert placed(fleet, hosts, strategy, previous) == expected


FAILURES: list[tuple[str, list[VmInstance], dict[str, HostSpec], dict[str, str] | None, list[str]]] = [
    (
        "required anti-affinity with fewer hosts than VMs",
        vms("web", 3, anti_affinity="required"),
        {"a": host(), "b": host()},
        None,
        [
            f"{F}: vms.web (instance web-3): cannot be placed: anti_affinity required puts each VM of group "
            "web on its own host, and every host with room already runs one (a, b)"
        ],
    ),
    (
        "without overcommit the vCPUs do not fit",
        vms("w", 3, vcpus=2),
        {"a": host(vcpus=4)},
        None,
        [f"{F}: vms.w (instance w-3): cannot be placed: no host has 2 vCPUs free (a 0 free)"],
    ),
    (
        "every host cordoned",
        vms("w", 1),
        {"a": host(state="cordoned")},
        None,
        [f"{F}: vms.w: cannot be placed: every host that offers what it needs takes no new VM (a cordoned)"],
    ),
    (
        "pinned to a drained host",
        vms("w", 1, host="a"),
        {"a": host(state="drained"), "b": host()},
        None,
        [f"{F}: vms.w: cannot be placed on host a: it is drained (pin the group elsewhere)"],
    ),
    (
        "a drained host's VM with nowhere to go",
        vms("w", 1),
        {"a": host(state="drained"), "b": host(vcpus=1, state="cordoned")},
        {"w": "a"},
        [
            f"{F}: vms.w: cannot be placed: every host that offers what it needs takes no new VM "
            "(a drained, b cordoned)"
        ],
    ),
]


@pytest.mark.parametrize(
    ("fleet", "hosts", "previous", "expected"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
def test_policy_failures(
    fleet: list[VmInstance], hosts: dict[str, HostSpec], previous: dict[str, str] | None, expected: list[str]
) -> None:
    assert errors(fleet, hosts, previous=previous) == expected


def test_usage_shows_raw_and_effective_capacity() -> None:
    result = place(
        vms("w", 1),
        {"a": host(vcpus=4, memory=8 * GIB, overcommit={"vcpus": 4.0, "memory": 1.5})},
        "spread",
        file=F,
    )
    usage = result.usage["a"]
    assert (usage.vcpus_raw, usage.vcpus_capacity) == (4, 16)
    assert (usage.memory_raw, usage.memory_capacity) == (8 * GIB, 12 * GIB)


def test_lab_stack_spreads_web_over_distinct_hosts() -> None:
    # Regression (issue 13): under spread, web-2, web-3 and web-4 all went to one host.
    stack = load_stack(ROOT / "stacks/lab.yaml", "stacks/lab.yaml")
    result = place_fleet(stack.spec, "stacks/lab.yaml", fleet=stack.fleet).placement
    assert stack.spec.vms["web"].anti_affinity == "required"
    web = [name for name in result.assignments if name == "web" or name.startswith("web-")]
    assert len(web) == stack.spec.vms["web"].count
    assert len({result.assignments[name] for name in web}) == len(web)
    # Per-host segments of one network name: db's address is in node-b's segment of lab.
    assert (
        len({net.cidr for h in stack.spec.hosts.values() for n, net in h.networks.items() if n == "lab"}) == 3
    )
    assert result.assignments["db"] == "node-b"


# -------------------------------------------------------------- properties


@st.composite
def fleets(draw: st.DrawFn, states: bool = True) -> tuple[dict[str, HostSpec], list[VmInstance]]:
    hosts = {}
    for h in range(draw(st.integers(min_value=1, max_value=5))):
        hosts[f"h{h}"] = host(
            vcpus=draw(st.integers(min_value=1, max_value=12)),
            memory=draw(st.integers(min_value=1, max_value=24)) * GIB,
            disk=draw(st.integers(min_value=10, max_value=400)) * GIB,
            overcommit={
                "vcpus": draw(st.sampled_from([1.0, 1.5, 4.0])),
                "memory": draw(st.sampled_from([1.0, 1.25])),
            },
            state=draw(st.sampled_from(["active", "active", "cordoned", "drained"])) if states else "active",
            cidr=draw(st.sampled_from(["10.0.0.0/24", "10.1.0.0/24"])),
        )
    fleet: list[VmInstance] = []
    for g in range(draw(st.integers(min_value=0, max_value=6))):
        ip = draw(st.sampled_from([None, "10.0.0.10", "10.1.0.10"]))
        count = draw(st.integers(min_value=1, max_value=4))
        fleet += vms(
            f"g{g}",
            count,
            vcpus=draw(st.integers(min_value=1, max_value=4)),
            memory=draw(st.integers(min_value=1, max_value=6)) * 512 * 1024**2,
            disk=draw(st.integers(min_value=1, max_value=60)) * GIB,
            nics=[{"network": "lab", "ip": ip}] if ip else [{"network": "lab"}],
            anti_affinity=draw(st.sampled_from([None, "required", "preferred"])),
        )
    # As validation demands: a static address lies in some host's segment of its network.
    cidrs = {h.networks["lab"].cidr for h in hosts.values()}
    assume(all(any(nic.ip in c for c in cidrs) for vm in fleet for nic in vm.nics if nic.ip is not None))
    return hosts, fleet


def check(
    result: Placement,
    hosts: dict[str, HostSpec],
    fleet: list[VmInstance],
    previous: dict[str, str] | None = None,
) -> None:
    assert set(result.assignments) == {vm.name for vm in fleet}
    where = result.assignments
    for vm in fleet:
        chosen = hosts[where[vm.name]]
        assert chosen.state != "drained"
        if chosen.state == "cordoned":  # only VMs that were already there
            assert previous is not None and previous.get(vm.name) == where[vm.name]
        for nic in vm.nics:
            cidr = chosen.networks[nic.network].cidr
            assert nic.ip is None or cidr is None or nic.ip in cidr
    groups: dict[str, list[str]] = {}
    for vm in fleet:
        if vm.anti_affinity == "required":
            groups.setdefault(vm.group, []).append(where[vm.name])
    for group_hosts in groups.values():
        assert len(group_hosts) == len(set(group_hosts))
    for name, spec in hosts.items():
        on = [vm for vm in fleet if where[vm.name] == name]
        assert sum(vm.vcpus for vm in on) <= int(spec.capacity.vcpus * spec.overcommit.vcpus)
        assert sum(vm.memory_bytes for vm in on) <= int(spec.capacity.memory * spec.overcommit.memory)
        assert sum(vm.total_disk_bytes for vm in on) <= spec.capacity.disk


PROPS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


@PROPS
@given(fleets(), st.sampled_from(["spread", "pack"]))
def test_policy_is_never_violated(case: tuple[dict[str, HostSpec], list[VmInstance]], strategy: str) -> None:
    hosts, fleet = case
    try:
        result = place(fleet, hosts, strategy, file=F)  # type: ignore[arg-type]
    except SpecError:
        return
    check(result, hosts, fleet)
    # Deterministic whatever the order of the input.
    assert place(list(reversed(fleet)), dict(reversed(list(hosts.items()))), strategy, file=F) == result  # type: ignore[arg-type]


@PROPS
@given(fleets(), st.sampled_from(["spread", "pack"]), st.data())
def test_adding_a_vm_moves_nobody_under_the_new_rules(
    case: tuple[dict[str, HostSpec], list[VmInstance]], strategy: str, data: st.DataObject
) -> None:
    hosts, fleet = case
    try:
        before = place(fleet, hosts, strategy, file=F)  # type: ignore[arg-type]
    except SpecError:
        return
    new = vms(
        data.draw(st.sampled_from(["aaa", "new", "zzz"])),
        vcpus=data.draw(st.integers(min_value=1, max_value=4)),
        anti_affinity=data.draw(st.sampled_from([None, "required", "preferred"])),
    )
    try:
        after = place(fleet + new, hosts, strategy, before.assignments, file=F)  # type: ignore[arg-type]
    except SpecError as error:
        assert [issue.path for issue in error.issues] == [f"vms.{new[0].name}"]
        return
    check(after, hosts, fleet + new, before.assignments)
    assert {k: v for k, v in after.assignments.items() if k != new[0].name} == before.assignments


@PROPS
@given(fleets(), st.sampled_from(["spread", "pack"]), st.data())
def test_removing_or_changing_a_vm_moves_nobody_else(
    case: tuple[dict[str, HostSpec], list[VmInstance]], strategy: str, data: st.DataObject
) -> None:
    hosts, fleet = case
    if not fleet:
        return
    try:
        before = place(fleet, hosts, strategy, file=F)  # type: ignore[arg-type]
    except SpecError:
        return
    gone = data.draw(st.sampled_from(fleet))
    rest = [vm for vm in fleet if vm.name != gone.name]
    after = place(rest, hosts, strategy, before.assignments, file=F)  # type: ignore[arg-type]
    assert after.assignments == {k: v for k, v in before.assignments.items() if k != gone.name}
    # A VM that shrinks stays, and so does everyone else.
    small = dataclasses.replace(gone, vcpus=1, memory_bytes=512 * 1024**2, disk_bytes=GIB, data_disks=())
    smaller = [small if vm.name == gone.name else vm for vm in fleet]
    assert place(smaller, hosts, strategy, before.assignments, file=F).assignments == before.assignments  # type: ignore[arg-type]


@PROPS
@given(fleets(states=False), st.sampled_from(["spread", "pack"]), st.data())
def test_cordoning_a_host_moves_nobody_and_draining_moves_only_its_vms(
    case: tuple[dict[str, HostSpec], list[VmInstance]], strategy: str, data: st.DataObject
) -> None:
    hosts, fleet = case
    try:
        before = place(fleet, hosts, strategy, file=F)  # type: ignore[arg-type]
    except SpecError:
        return
    target = data.draw(st.sampled_from(sorted(hosts)))
    cordoned = {**hosts, target: hosts[target].model_copy(update={"state": "cordoned"})}
    assert place(fleet, cordoned, strategy, before.assignments, file=F).assignments == before.assignments  # type: ignore[arg-type]
    drained = {**hosts, target: hosts[target].model_copy(update={"state": "drained"})}
    try:
        after = place(fleet, drained, strategy, before.assignments, file=F)  # type: ignore[arg-type]
    except SpecError:
        return
    check(after, drained, fleet, before.assignments)
    for name, was in before.assignments.items():
        if was != target:
            assert after.assignments[name] == was
