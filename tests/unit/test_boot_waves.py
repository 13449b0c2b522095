"""Boots in waves (issue 15): the default number of boots at once per host, and the provider's gate
that starts the next domain only when an earlier one's guest agent answers (or it stops)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from virtstack import boot
from virtstack.provider import boot as provider_boot


@pytest.mark.parametrize(
    ("configured", "cpus", "domain_type", "want"),
    [
        (0, 2, "qemu", 2),  # TCG on 2 cores → 2
        (0, 1, "qemu", 1),
        (0, 16, "qemu", 16),
        (0, 2, "kvm", 2 * boot.KVM_BOOTS_PER_CPU),
        (0, 0, "qemu", 1),  # a host reporting no CPUs still boots one at a time
        (3, 2, "qemu", 3),  # configured wins
        (1, 64, "kvm", 1),
    ],
)
def test_boot_concurrency(configured: int, cpus: int, domain_type: str, want: int) -> None:
    assert boot.boot_concurrency(configured, cpus, domain_type) == want


class FakeConn:
    def __init__(self, cpus: int, kind: str = "QEMU") -> None:
        self.cpus, self.kind = cpus, kind

    def getInfo(self) -> list[Any]:
        return ["x86_64", 4096, self.cpus, 0, 1, 1, 1, 1]

    def getType(self) -> str:
        return self.kind


class FakeDom:
    def __init__(self, name: str) -> None:
        self._name = name
        self.active = False
        self.up = threading.Event()  # the guest agent answers once set

    def name(self) -> str:
        return self._name

    def isActive(self) -> bool:
        return self.active


@pytest.fixture(autouse=True)
def _fresh_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provider_boot, "_gates", {})
    monkeypatch.setattr(provider_boot, "_POLL_SECONDS", 0.01)
    monkeypatch.setattr(provider_boot, "_agent_answers", lambda dom: dom.up.is_set())


class Starts:
    """Every domain's create in its own thread, as the engine runs them, and the order they started."""

    def __init__(
        self, conn: FakeConn, doms: list[FakeDom], uri: str, configured: int, domain_type: str
    ) -> None:
        self.order: list[str] = []
        self.doms = doms
        lock = threading.Lock()

        def start(dom: Any) -> None:
            with lock:
                self.order.append(dom.name())
            dom.active = True

        self.threads = [
            threading.Thread(
                target=provider_boot.start_in_wave, args=(conn, d, uri, configured, domain_type, start, 60.0)
            )
            for d in doms
        ]
        for t in self.threads:
            t.start()

    def settle(self, count: int) -> list[str]:
        """The starts once `count` have happened (and the waiting ones had time to start, were they free)."""
        for _ in range(2000):
            if len(self.order) >= count:
                break
            threading.Event().wait(0.005)
        for t in self.threads:
            t.join(0.05)
        return list(self.order)

    def waiting(self) -> int:
        return sum(t.is_alive() for t in self.threads)

    def finish(self) -> None:
        """Every guest up and then stopped: all creates return and every watcher ends."""
        for d in self.doms:
            d.up.set()
        for t in self.threads:
            t.join(5)
        for d in self.doms:
            d.active = False


def test_a_tcg_host_with_two_cpus_starts_two_then_one_per_guest_up() -> None:
    doms = [FakeDom(f"vm{i}") for i in range(5)]
    starts = Starts(FakeConn(cpus=2), doms, "qemu:///system", 0, "qemu")
    first = starts.settle(2)
    assert len(first) == 2  # the other three wait: both places are taken
    assert starts.waiting() == 3
    doms[int(first[0][2:])].up.set()  # one guest answers its agent: one more starts
    assert len(starts.settle(3)) == 3
    assert starts.waiting() == 2
    starts.finish()
    assert sorted(starts.order) == [d.name() for d in doms]


def test_a_stopped_guest_gives_its_place_back() -> None:
    doms = [FakeDom(f"vm{i}") for i in range(2)]
    starts = Starts(FakeConn(cpus=1), doms, "qemu:///one", 0, "qemu")
    first = starts.settle(1)
    assert len(first) == 1
    doms[int(first[0][2:])].active = False  # it crashed or was shut down before its agent answered
    assert len(starts.settle(2)) == 2
    starts.finish()


def test_the_configured_concurrency_wins_and_hosts_are_separate() -> None:
    a = [FakeDom(f"a{i}") for i in range(3)]
    b = [FakeDom(f"b{i}") for i in range(3)]
    sa = Starts(FakeConn(cpus=1), a, "qemu+ssh://a/system", 3, "qemu")
    sb = Starts(FakeConn(cpus=1), b, "qemu+ssh://b/system", 0, "qemu")
    assert len(sa.settle(3)) == 3  # configured 3 on a one-CPU host
    assert len(sb.settle(1)) == 1  # default 1 on the other host, unaffected by the first
    sa.finish()
    sb.finish()
    assert len(sb.order) == 3


def test_the_test_driver_and_running_domains_take_no_place() -> None:
    doms = [FakeDom(f"t{i}") for i in range(4)]
    starts = Starts(FakeConn(cpus=1, kind="Test"), doms, "test:///x", 0, "kvm")
    starts.finish()
    assert len(starts.order) == 4


def test_a_failed_start_gives_its_place_back() -> None:
    conn = FakeConn(cpus=1)
    dom = FakeDom("bad")

    def failing(_dom: Any) -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        provider_boot.start_in_wave(conn, dom, "qemu:///f", 0, "qemu", failing, 60.0)  # type: ignore[arg-type]
    ok = FakeDom("ok")
    provider_boot.start_in_wave(conn, ok, "qemu:///f", 0, "qemu", lambda d: None, 60.0)  # type: ignore[arg-type]
    ok.up.set()  # the one place was free again: the second start did not wait
