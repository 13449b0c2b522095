"""The provider's libvirt connections towards remote hosts: per-URI locks, a bounded open that names a
hung host, keepalive, and the retry of opens that gRPC's fork handlers broke. libvirt.open is faked;
tests/integration/test_remote_hosts.py runs the same paths against real ssh/TLS hosts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest

from virtstack.ops.project import Project, engine_env
from virtstack.provider import connection

HUNG = "qemu+ssh://root@127.0.0.1:1/system?keyfile=/k"
GOOD = "qemu+tls://127.0.0.1:16514/system?pkipath=/p"
SSH = "qemu+ssh://root@127.0.0.1:2222/system?keyfile=/k"


class FakeConn:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.keepalive: tuple[int, int] | None = None
        self.closed = False

    def isAlive(self) -> int:
        return 0 if self.closed else 1

    def setKeepAlive(self, interval: int, count: int) -> int:
        self.keepalive = (interval, count)
        return 0

    def close(self) -> int:
        self.closed = True
        return 0


@pytest.fixture
def fake_libvirt(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """libvirt.open that blocks forever on HUNG (until released) and answers at once elsewhere."""
    release = threading.Event()
    state: dict[str, Any] = {"opens": [], "release": release, "fail_first": None}

    def fake_open(uri: str) -> FakeConn:
        state["opens"].append(uri)
        if uri == HUNG:
            release.wait(30)
        if state["fail_first"]:
            message, state["fail_first"] = state["fail_first"], None
            raise libvirt.libvirtError(message)
        return FakeConn(uri)

    monkeypatch.setattr(connection.libvirt, "open", fake_open)
    monkeypatch.setattr(connection, "OPEN_TIMEOUT", 0.5)
    monkeypatch.setattr(connection, "_start_event_loop", lambda: None)
    for registry in (connection._connections, connection._uri_locks, connection._hung):
        registry.clear()
    yield state
    release.set()
    for registry in (connection._connections, connection._uri_locks, connection._hung):
        registry.clear()


def test_a_hung_host_times_out_with_its_name_while_another_host_carries_on(fake_libvirt: dict[str, Any]):
    errors: list[BaseException] = []

    def on_hung_host() -> None:
        try:
            connection.with_connection(HUNG, lambda conn: conn)
        except BaseException as err:
            errors.append(err)

    started = time.monotonic()
    hung = threading.Thread(target=on_hung_host)
    hung.start()
    time.sleep(0.1)  # the hung open is in progress now
    before = time.monotonic()
    conn = connection.with_connection(GOOD, lambda c: c)
    # With one lock held across every libvirt.open this waited for the hung host's whole timeout.
    assert time.monotonic() - before < 0.3
    assert isinstance(conn, FakeConn) and conn.uri == GOOD
    hung.join(5)
    elapsed = time.monotonic() - started
    assert not hung.is_alive()
    assert 0.4 < elapsed < 2.0, elapsed
    assert len(errors) == 1 and isinstance(errors[0], connection.HostUnreachable)
    message = str(errors[0])
    assert "qemu+ssh://root@127.0.0.1:1/system" in message and "did not answer within" in message
    assert "keyfile" not in message  # the query (key paths) stays out of messages


def test_later_operations_on_a_hung_host_fail_at_once(
    fake_libvirt: dict[str, Any], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("GRPC_ENABLE_FORK_SUPPORT", raising=False)  # even where ssh opens are retried
    with pytest.raises(connection.HostUnreachable):
        connection.with_connection(HUNG, lambda c: c)
    opens = len(fake_libvirt["opens"])
    assert opens == 1  # a timed-out open is not tried again
    before = time.monotonic()
    with pytest.raises(connection.HostUnreachable, match="did not answer"):
        connection.with_connection(HUNG, lambda c: c)
    assert time.monotonic() - before < 0.2
    assert len(fake_libvirt["opens"]) == opens  # no second helper thread blocked on the same host


def test_connections_send_keepalives(fake_libvirt: dict[str, Any]):
    conn = connection.with_connection(GOOD, lambda c: c)
    assert conn.keepalive == (connection.KEEPALIVE_INTERVAL, connection.KEEPALIVE_COUNT)
    assert connection.KEEPALIVE_INTERVAL * (connection.KEEPALIVE_COUNT + 1) <= 30


BROKEN_BY_GRPC = (
    "Cannot recv data: E1128 07:42:17.929769 12985 ev_epoll1_linux.cc:373] (event_engine) "
    "Epoll1Poller:0x555830b12ca0 encountered epoll_wait error: Bad file descriptor: Connection reset by peer",
    "internal error: client socket is closed",
    "Cannot write data: Broken pipe",
)


@pytest.mark.parametrize("message", BROKEN_BY_GRPC)
def test_an_ssh_open_is_tried_again_where_grpc_fork_handlers_are_on(
    fake_libvirt: dict[str, Any], monkeypatch: pytest.MonkeyPatch, message: str
):
    monkeypatch.delenv("GRPC_ENABLE_FORK_SUPPORT", raising=False)  # grpcio's default: on
    fake_libvirt["fail_first"] = message
    conn = connection.with_connection(SSH, lambda c: c)
    assert isinstance(conn, FakeConn)
    assert fake_libvirt["opens"] == [SSH, SSH]


@pytest.mark.parametrize(("uri", "fork_support"), [(SSH, "false"), (GOOD, None)])
def test_other_open_errors_are_not_retried_and_name_the_host(
    fake_libvirt: dict[str, Any], monkeypatch: pytest.MonkeyPatch, uri: str, fork_support: str | None
):
    if fork_support is None:
        monkeypatch.delenv("GRPC_ENABLE_FORK_SUPPORT", raising=False)
    else:
        monkeypatch.setenv("GRPC_ENABLE_FORK_SUPPORT", fork_support)
    fake_libvirt["fail_first"] = "Cannot recv data: Host key verification failed.: Connection reset by peer"
    with pytest.raises(connection.HostUnreachable) as caught:
        connection.with_connection(uri, lambda c: c)
    assert str(caught.value).startswith(f"libvirt host {connection.display_uri(uri)}: Cannot recv data")
    assert fake_libvirt["opens"] == [uri]


def test_an_unreachable_host_is_a_libvirt_error_with_our_message(fake_libvirt: dict[str, Any]):
    # Callers that tolerate unreachable hosts catch libvirtError (the preview's ownership check).
    with pytest.raises(libvirt.libvirtError) as caught:
        connection.with_connection(HUNG, lambda c: c)
    assert isinstance(caught.value, connection.HostUnreachable)
    assert caught.value.get_error_code() is None
    assert "did not answer within" in str(caught.value)


def test_passwords_never_reach_messages():
    assert connection.display_uri("qemu+ssh://u:hunter2@h:22/system?keyfile=/x") == "qemu+ssh://u@h:22/system"
    assert connection.display_uri("qemu:///system") == "qemu:///system"


def test_engine_runs_with_grpc_fork_handlers_off(tmp_path: Any):
    project = Project(tmp_path)
    assert engine_env(project, {"PATH": "/usr/bin"})["GRPC_ENABLE_FORK_SUPPORT"] == "false"
    # A caller's own choice wins.
    assert "GRPC_ENABLE_FORK_SUPPORT" not in engine_env(
        project, {"PATH": "/usr/bin", "GRPC_ENABLE_FORK_SUPPORT": "true"}
    )
