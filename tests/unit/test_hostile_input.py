"""Issue 11: size bombs and crashes that reached the Pulumi program, each as a regression test.

Before: 1,000 groups x count 10,000 (11 KB) expanded to ten million VMs (180 s, 8.5 GB);
3,000 hosts x 3,000 VM sizes (0.8 MB) took 9 s and 1 GB in placement (a heap of every host per
size); 3,000 hosts x 3,000 network combinations took 45 s and 1.1 GB; `!!int abc` reached
`pulumi up` as a raw traceback.
"""

# Expected messages are kept whole on one line each, so they can be grepped for.
# ruff: noqa: E501

from __future__ import annotations

import itertools
import runpy
import tracemalloc
from pathlib import Path
from typing import Any

import pulumi
import pytest

from virtstack import placement
from virtstack.errors import MAX_SHOWN_ISSUES, SpecError, SpecIssue
from virtstack.placement import place_fleet
from virtstack.spec.loader import parse_spec
from virtstack.validate import MAX_DATA_DISKS, MAX_HOSTS, MAX_INSTANCES, MAX_NICS, check_totals

REPO = Path(__file__).resolve().parents[2]
F = "stacks/x.yaml"
HOST = (
    "{{uri: 'qemu+ssh://ops@{name}.example/system', capacity: {{vcpus: 64, memory: 256GiB, disk: 4TiB}}, "
    "pools: {{vms: {{path: /p}}}}, networks: {networks}}}"
)
LAN = "{lan: {mode: isolated, cidr: 10.160.0.0/16}}"


def stack(hosts: list[str], groups: list[str], prelude: str = "") -> str:
    return (
        prelude
        + "hosts:\n"
        + "".join(f"  {line}\n" for line in hosts)
        + "images: {d: {source: d.qcow2}}\nvms:\n"
        + "".join(f"  {line}\n" for line in groups)
    )


def many_hosts(n: int, networks: str = LAN) -> list[str]:
    return [f"h{i:04d}: " + HOST.format(name=f"h{i:04d}", networks=networks) for i in range(n)]


# A few host checks per VM: placement's work grows linearly with the fleet. A scan of every host for
# every VM would be 3,000 x 3,000 = 9,000,000 checks, and placement gives up past this cap with a
# SpecError, so the bound is counted work, not wall time (no timed assertions in tests).
LINEAR_CHECKS_FOR_3000 = 5 * 3000


def measured(text: str) -> tuple[Any, int]:
    """place_fleet(parse_spec(text)) and its peak of Python allocations."""
    tracemalloc.start()
    try:
        spec = parse_spec(text, F)
        result = place_fleet(spec, F)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def test_three_thousand_hosts_by_three_thousand_vm_sizes_is_fast_and_small(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(placement, "MAX_PLACEMENT_STEPS", LINEAR_CHECKS_FOR_3000)
    groups = [
        f"g{i:04d}: {{image: d, vcpus: 1, memory: {512 + i}MiB, disk: 8GiB, nics: [{{network: lan}}]}}"
        for i in range(3000)
    ]
    result, peak = measured(stack(many_hosts(3000), groups))
    assert len(result.placement.assignments) == 3000
    assert len({host for host in result.placement.assignments.values()}) == 3000  # spread: one per host
    assert peak < 150 * 2**20, (
        f"{peak / 2**20:.0f} MiB"
    )  # was ~950 MiB of heaps (tracemalloc itself included)


def test_three_thousand_network_combinations_over_three_thousand_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(placement, "MAX_PLACEMENT_STEPS", LINEAR_CHECKS_FOR_3000)
    nets = "".join(f"  n{i}: {{mode: isolated, cidr: 10.{100 + i}.0.0/16}}\n" for i in range(12))
    combos = [c for r in range(1, 13) for c in itertools.combinations(range(12), r)][:3000]
    groups = [
        f"g{i:04d}: {{image: d, vcpus: 1, memory: 1GiB, disk: 8GiB, nics: [{', '.join(f'{{network: n{n}}}' for n in combo)}]}}"
        for i, combo in enumerate(combos)
    ]
    result, peak = measured(stack(many_hosts(3000, "*nets"), groups, prelude=f"x-nets: &nets\n{nets}"))
    assert len(result.placement.assignments) == 3000
    assert peak < 250 * 2**20, f"{peak / 2**20:.0f} MiB"  # was 1.1 GB


def test_placement_work_is_capped_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    # VMs that fit only the least free host (h0000: the only one with 100 vCPUs, and most of its
    # memory taken by a pinned VM) make every pick look past all the others first.
    monkeypatch.setattr(placement, "MAX_PLACEMENT_STEPS", 300)
    hosts = [
        line.replace("vcpus: 64", "vcpus: 1000") if i == 0 else line for i, line in enumerate(many_hosts(50))
    ]
    groups = ["pinned: {image: d, host: h0000, vcpus: 1, memory: 200GiB, disk: 8GiB, nics: [{network: lan}]}"]
    groups += [
        f"g{i:03d}: {{image: d, vcpus: 100, memory: 1GiB, disk: 8GiB, nics: [{{network: lan}}]}}"
        for i in range(9)
    ]
    spec = parse_spec(stack(hosts, groups), F)
    with pytest.raises(SpecError) as caught:
        place_fleet(spec, F)
    assert str(caught.value) == (
        f"{F}: vms: placement gave up after 300 host checks (9 VMs of 1 sizes and network/pool needs over "
        "50 hosts); pin groups to hosts with host: or use fewer distinct sizes and network combinations"
    )
    monkeypatch.setattr(placement, "MAX_PLACEMENT_STEPS", 5_000_000)
    assert set(place_fleet(spec, F).placement.assignments.values()) == {"h0000"}


TOTALS = {
    "instances": (
        1,
        [f"g{i}: {{count: 10000, image: d, vcpus: 1, memory: 1GiB, disk: 8GiB}}" for i in range(1000)],
        f"vms: 10,000,000 VMs (counts added over all groups) is more than one stack may have (at most {MAX_INSTANCES:,})",
    ),
    "hosts": (
        MAX_HOSTS + 1,
        ["g: {image: d, vcpus: 1, memory: 1GiB, disk: 8GiB}"],
        f"hosts: {MAX_HOSTS + 1:,} hosts is more than one stack may have (at most {MAX_HOSTS:,})",
    ),
    "data disks": (
        1,
        [
            "g: {count: 10000, image: d, vcpus: 1, memory: 1GiB, disk: 8GiB, data_disks: [{name: a, size: 1GiB}, {name: b, size: 1GiB}, {name: c, size: 1GiB}, {name: d, size: 1GiB}, {name: e, size: 1GiB}]}"
        ],
        f"vms: 50,000 data disks (over all VMs) is more than one stack may have (at most {MAX_DATA_DISKS:,})",
    ),
    "nics": (
        1,
        [
            "g: {count: 10000, image: d, vcpus: 1, memory: 1GiB, disk: 8GiB, nics: [{network: lan}, {network: lan}, {network: lan}, {network: lan}, {network: lan}]}"
        ],
        f"vms: 50,000 NICs (over all VMs) is more than one stack may have (at most {MAX_NICS:,})",
    ),
}


@pytest.mark.parametrize(("hosts", "groups", "message"), TOTALS.values(), ids=TOTALS.keys())
@pytest.mark.usefixtures("refuse_expansion")
def test_totals_are_capped_before_expansion(hosts: int, groups: list[str], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(stack(many_hosts(hosts), groups), F)
    assert str(caught.value) == f"{F}: {message}"


def test_totals_at_the_limit_pass() -> None:
    spec = parse_spec(
        stack(many_hosts(2), ["g: {count: 10000, image: d, vcpus: 1, memory: 1GiB, disk: 8GiB}"]), F
    )
    assert check_totals(spec, F) == []


def test_printed_issues_are_capped_but_all_are_kept() -> None:
    issues = [SpecIssue(F, f"vms.g{i}", "bad") for i in range(MAX_SHOWN_ISSUES + 7)]
    error = SpecError(issues)
    lines = str(error).splitlines()
    assert lines[:2] == [f"{F}: vms.g0: bad", f"{F}: vms.g1: bad"]
    assert lines[-1] == f"{F}: … and 7 more problems (fix the ones above first)"
    assert len(lines) == MAX_SHOWN_ISSUES + 1 and error.issues == issues


def test_located_issue_format() -> None:
    assert str(SpecIssue(F, "", "invalid !!int value 'abc'", 3, 12)) == f"{F}:3:12: invalid !!int value 'abc'"
    assert str(SpecIssue(F, "vms.a", "message")) == f"{F}: vms.a: message"


def test_pulumi_program_reports_a_bad_scalar_as_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `pulumi up` showed a raw traceback for `vcpus: !!int abc`: the program now logs one line and
    # bails (exit 32) before touching libvirt.
    dev = (REPO / "stacks/dev.yaml").read_text()
    before, after = dev.split("    vcpus: 1\n", 1)
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"{before}    vcpus: !!int abc\n{after}")
    logged: list[str] = []

    class Config:
        def __init__(self, name: str) -> None:
            assert name == "virtstack"

        def get(self, key: str) -> str | None:
            return str(spec) if key == "spec" else None

    monkeypatch.setattr(pulumi, "get_stack", lambda: "dev")
    monkeypatch.setattr(pulumi, "Config", Config)
    monkeypatch.setattr(pulumi.log, "error", lambda message, *args, **kwargs: logged.append(message))
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(REPO / "__main__.py"))
    assert exited.value.code == 32
    line = before.count("\n") + 1
    assert logged == [
        f"{spec}:{line}:12: invalid !!int value 'abc' (expected a whole number such as 42, 0x2a or 0o52)"
    ]
