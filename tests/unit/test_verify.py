"""virtstack.ops.verify: what `up` says about each VM after applying, from libvirt's own state."""

# Expected messages are kept whole.
# ruff: noqa: E501

from __future__ import annotations

from typing import Any

import libvirt
import pytest

from virtstack.ops.verify import verify_vms


class FakeDomain:
    def __init__(self, states: list[tuple[int, int]]) -> None:
        self.states = states

    def state(self) -> list[int]:
        current = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return list(current)


class FakeConn:
    def __init__(self, domains: dict[str, FakeDomain]) -> None:
        self.domains = domains
        self.closed = False

    def lookupByName(self, name: str) -> FakeDomain:
        if name not in self.domains:
            raise libvirt.libvirtError(f"Domain not found: no domain with matching name '{name}'")
        return self.domains[name]

    def close(self) -> None:
        self.closed = True


RUNNING = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED)
PAUSED_IO = (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR)
PAUSED_UNKNOWN = (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_UNKNOWN)
SHUTOFF_CRASHED = (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED)


def outputs(*names: str, wanted: bool = True) -> dict[str, Any]:
    return {
        "vms": {
            n: {
                "host": "local",
                "uri": "test:///x",
                "domain": n,
                "running_wanted": wanted,
                "console_log": f"/l/{n}",
            }
            for n in names
        }
    }


def run(conn: FakeConn, outs: dict[str, Any], **kwargs: Any) -> list[str]:
    clock = iter(float(i) for i in range(10_000))
    problems = verify_vms(
        outs, open_uri=lambda _uri: conn, clock=lambda: next(clock), sleep=lambda _s: None, **kwargs
    )
    opened = bool(outs["vms"]) and any(v["running_wanted"] for v in outs["vms"].values())
    assert conn.closed == opened
    return [str(p) for p in problems]


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([RUNNING], []),
        (
            [PAUSED_IO],
            [
                "vm a on host local: should be running but is paused (a disk I/O error); console log /l/a, QEMU log /var/log/libvirt/qemu/a.log"
            ],
        ),
        # running at first, paused a moment later (QEMU stopped on an emulation failure): caught while settling
        (
            [RUNNING, RUNNING, PAUSED_UNKNOWN],
            [
                "vm a on host local: should be running but is paused (unknown reason: QEMU stopped the guest, e.g. an emulation failure); console log /l/a, QEMU log /var/log/libvirt/qemu/a.log"
            ],
        ),
        (
            [SHUTOFF_CRASHED],
            [
                "vm a on host local: should be running but is shut off (QEMU crashed); console log /l/a, QEMU log /var/log/libvirt/qemu/a.log"
            ],
        ),
    ],
)
def test_states_after_up(states: list[tuple[int, int]], expected: list[str]) -> None:
    assert run(FakeConn({"a": FakeDomain(states)}), outputs("a"), settle=3) == expected


def test_vms_meant_to_be_off_are_not_checked() -> None:
    assert run(FakeConn({"a": FakeDomain([SHUTOFF_CRASHED])}), outputs("a", wanted=False)) == []


def test_a_missing_domain_is_a_problem_not_a_crash() -> None:
    problems = run(FakeConn({}), outputs("a"))
    assert len(problems) == 1 and problems[0].startswith("vm a on host local: cannot be read from libvirt:")


def test_wait_ready_waits_for_the_agent_then_times_out_with_the_vm_named() -> None:
    answers = iter([False, False, True])
    ok = run(
        FakeConn({"a": FakeDomain([RUNNING])}),
        outputs("a"),
        wait_ready=True,
        agent_answers=lambda _d: next(answers),
    )
    assert ok == []
    never = run(
        FakeConn({"a": FakeDomain([RUNNING])}),
        outputs("a"),
        wait_ready=True,
        timeout=5,
        agent_answers=lambda _d: False,
    )
    assert never == [
        "vm a on host local: its guest agent did not answer within 5 s; console log /l/a, QEMU log /var/log/libvirt/qemu/a.log"
    ]


def test_a_pool_busy_with_libvirt_jobs_is_refreshed_once_they_end() -> None:
    """Regression: `pool … has asynchronous jobs running` right after an upload failed a trash listing."""
    from virtstack.provider.refresh import refresh_pool

    class BusyPool:
        calls = 0

        def refresh(self, _flags: int) -> int:
            self.calls += 1
            if self.calls < 3:
                raise libvirt.libvirtError("internal error: pool 'p' has asynchronous jobs running.")
            return 0

    pool = BusyPool()
    refresh_pool(pool, wait=5)  # type: ignore[arg-type]
    assert pool.calls == 3

    class BrokenPool:
        def refresh(self, _flags: int) -> int:
            raise libvirt.libvirtError("cannot open directory '/x': No such file or directory")

    with pytest.raises(libvirt.libvirtError, match="cannot open directory"):
        refresh_pool(BrokenPool(), wait=5)  # type: ignore[arg-type]


# ------------------------------------------------------------- settle from each VM's own start (issue 15)


class CountingDomain(FakeDomain):
    def __init__(self, states: list[tuple[int, int]]) -> None:
        super().__init__(states)
        self.reads = 0

    def state(self) -> list[int]:
        self.reads += 1
        return super().state()


@pytest.mark.parametrize(
    ("started", "reads"),
    [
        # (the fake clock advances 1 s per look, i.e. per round of reads)
        # not started by this up (or the baseline): watched for the whole window from now, as before
        (None, 3),
        ({}, 3),
        # started 10 s before the check (clock 0 = the check's start): one read is enough
        ({"a": -10.0}, 1),
        # started 1 s before: the rest of its window
        ({"a": -1.0}, 2),
        # a start time "after now" is taken as now
        ({"a": 50.0}, 3),
        # another VM's start says nothing about this one
        ({"b": -10.0}, 3),
    ],
)
def test_the_settle_window_counts_from_each_vms_start(started: dict[str, float] | None, reads: int) -> None:
    dom = CountingDomain([RUNNING])
    assert run(FakeConn({"a": dom}), outputs("a"), settle=3, started=started) == []
    assert dom.reads == reads


def test_a_vm_that_pauses_within_its_window_is_still_caught() -> None:
    dom = CountingDomain([RUNNING, PAUSED_UNKNOWN])
    problems = run(FakeConn({"a": dom}), outputs("a"), settle=3, started={"a": -1.0})
    assert len(problems) == 1 and "paused (unknown reason" in problems[0]


def test_the_last_started_vm_decides_how_long_all_are_watched() -> None:
    early, late = CountingDomain([RUNNING]), CountingDomain([RUNNING])
    conn = FakeConn({"a": early, "b": late})
    assert run(conn, outputs("a", "b"), settle=3, started={"a": -10.0, "b": -1.0}) == []
    assert (early.reads, late.reads) == (2, 2)
