"""virtstack.rebalance: proposals that lower the peak utilisation, never breaking a placement rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_placement_policy import F, fleets, host, vms
from virtstack.errors import SpecError
from virtstack.fleet import VmInstance
from virtstack.placement import place
from virtstack.rebalance import Move, propose_moves
from virtstack.spec import HostSpec


def proposal(fleet: list[VmInstance], hosts: dict[str, HostSpec], previous: dict[str, str]) -> Any:
    return propose_moves(fleet, hosts, place(fleet, hosts, "pack", previous, file=F))


CASES: list[tuple[str, list[VmInstance], dict[str, HostSpec], dict[str, str], list[Move]]] = [
    (
        "an empty host takes half of a full one",
        vms("w", 4, vcpus=2),
        {"a": host(vcpus=8), "b": host(vcpus=8)},
        {"w": "a", "w-2": "a", "w-3": "a", "w-4": "a"},
        [Move("w", "a", "b"), Move("w-2", "a", "b")],
    ),
    (
        "a balanced fleet needs nothing",
        vms("w", 2),
        {"a": host(), "b": host()},
        {"w": "a", "w-2": "b"},
        [],
    ),
    (
        "pinned VMs stay",
        vms("p", 2, host="a") + vms("w", 1),
        {"a": host(vcpus=3), "b": host(vcpus=3)},
        {"w": "a"},
        [Move("w", "a", "b")],
    ),
    (
        "cordoned hosts take nothing",
        vms("w", 4),
        {"a": host(), "b": host(state="cordoned")},
        {"w": "a", "w-2": "a", "w-3": "a", "w-4": "a"},
        [],
    ),
    (
        "a move never lands next to a VM of its required anti-affinity group",
        # Moving web would balance as well and comes first by name; z goes instead.
        vms("web", 2, anti_affinity="required") + vms("z", 2),
        {"a": host(vcpus=4), "b": host(vcpus=4)},
        {"web": "a", "z": "a", "z-2": "a", "web-2": "b"},
        [Move("z", "a", "b")],
    ),
    (
        "a static address keeps its VM in its segment",
        vms("w", 3, nics=[{"network": "lab", "ip": "10.77.0.10"}]),
        {"a": host(cidr="10.77.0.0/24"), "b": host(cidr="10.87.0.0/24")},
        {"w": "a", "w-2": "a", "w-3": "a"},
        [],
    ),
]


@pytest.mark.parametrize(
    ("fleet", "hosts", "previous", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_proposals(
    fleet: list[VmInstance], hosts: dict[str, HostSpec], previous: dict[str, str], expected: list[Move]
) -> None:
    assert list(proposal(fleet, hosts, previous).moves) == expected


def test_the_peak_goes_down() -> None:
    result = proposal(
        vms("w", 4, vcpus=2),
        {"a": host(vcpus=8), "b": host(vcpus=8)},
        dict.fromkeys(["w", "w-2", "w-3", "w-4"], "a"),
    )
    assert (result.peak_before, result.peak_after) == (1.0, 0.5)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(fleets(), st.sampled_from(["spread", "pack"]))
def test_a_proposal_is_a_valid_placement_that_placement_keeps(case: Any, strategy: str) -> None:
    hosts, fleet = case
    try:
        current = place(fleet, hosts, strategy, file=F)  # type: ignore[arg-type]
    except SpecError:
        return
    result = propose_moves(fleet, hosts, current)
    assert result.peak_after <= result.peak_before
    assert len({m.vm for m in result.moves}) == len(result.moves)
    # Handed to placement as the previous placement, the proposal is kept as is: `up` would put every
    # VM exactly where the proposal says, moving nobody else.
    again = place(fleet, hosts, strategy, result.assignments, file=F)  # type: ignore[arg-type]
    assert again.assignments == result.assignments
