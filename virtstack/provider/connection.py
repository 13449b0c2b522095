"""libvirt connections shared by every resource operation in one provider process.

The engine calls the provider from several threads; libvirt connections are thread-safe, so a few
connections per URI are shared: libvirtd serves at most `max_client_requests` (5 by default) calls of
one connection at a time, so one connection would make a sixth operation wait behind five slow domain
starts. Each thread keeps to one of the URI's `CONNECTIONS_PER_HOST` connections. A connection that
broke (the daemon restarted) is replaced once and the operation retried, so an `up` running across a
daemon restart converges instead of failing.

Remote hosts: each URI has its own lock (a host that hangs in `libvirt.open` must not stall the others),
an open is bounded by `OPEN_TIMEOUT` (libvirt itself waits forever for a host that accepts TCP and never
answers), and live connections send keepalives, so a host that stops answering mid-operation fails
that operation within ~`KEEPALIVE_INTERVAL * (KEEPALIVE_COUNT + 1)` seconds, naming the host.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import TypeVar

import libvirt

from virtstack.provider import simhosts
from virtstack.settings import Settings

T = TypeVar("T")

# How long an operation waits for a restarting daemon before it gives up.
RECONNECT_SECONDS = 60.0


_SETTINGS = Settings.from_env()


# How long `libvirt.open` may take (ssh or TLS handshake included) before the host counts as hung.
OPEN_TIMEOUT = _SETTINGS.connect_timeout  # VIRTSTACK_CONNECT_TIMEOUT
# How long a host whose open timed out counts as hung: one provider process serves one engine run, and
# the engine asks about each object several times (check, create, refresh), each of which would
# otherwise wait out its own timeout.
HUNG_FOR = 60.0
# Keepalive: a probe after 5 s of silence, the connection closed after 3 unanswered ones (~20 s).
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3

# libvirtd's defaults: 5 calls at once per connection, 20 worker threads per daemon. Three connections
# let the provider's operations (see virtstack.provider's PROVIDER_THREADS) run side by side on one host
# without taking every worker of its daemon.
CONNECTIONS_PER_HOST = _SETTINGS.connections_per_host  # VIRTSTACK_CONNECTIONS_PER_HOST, default 3

# Guards the dictionaries below only; never held while talking to a host.
_lock = threading.Lock()
_connections: dict[tuple[str, int], libvirt.virConnect] = {}
# One lock per URI, held across `libvirt.open` so a URI's threads do not all open at once.
_uri_locks: dict[str, threading.Lock] = {}
# URIs whose open timed out, until when, and why: further operations on them fail at once instead of
# each waiting out its own timeout (the engine runs several operations per host).
_hung: dict[str, tuple[float, str]] = {}
_slots = itertools.count()
_thread = threading.local()
_events_started = False


class HostUnreachable(libvirt.libvirtError):
    """A host could not be reached or did not answer in time; the message names it.

    A libvirtError, so callers that tolerate an unreachable host (the preview's ownership check)
    treat it like libvirt's own connection errors.
    """

    def __init__(self, message: str) -> None:
        # Not libvirtError.__init__: that takes the message from this thread's last libvirt error,
        # which may be an unrelated, older one.
        Exception.__init__(self, message)
        self.err = None


def display_uri(uri: str) -> str:
    """`uri` as it may appear in messages: no password, no query (it may name key files)."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _slot() -> int:
    """This thread's connection slot, assigned round robin on first use."""
    slot = getattr(_thread, "slot", None)
    if slot is None:
        slot = _thread.slot = next(_slots) % CONNECTIONS_PER_HOST
    return slot


# Errors that mean "the connection is gone", not "the operation was refused".
_BROKEN_CONNECTION_CODES = {
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_INTERNAL_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
}


def _silence_libvirt_stderr(_ctx: object, _err: object) -> None:
    # libvirt-python prints every error to stderr by default; we raise them as exceptions instead.
    return None


libvirt.registerErrorHandler(_silence_libvirt_stderr, None)


def _start_event_loop() -> None:
    """libvirt's default event loop, which keepalive needs, running on a daemon thread.

    It must be registered before the first connection is opened; connections opened earlier would
    not use it.
    """
    global _events_started
    with _lock:
        if _events_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        _events_started = True

    def run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, name="libvirt-events", daemon=True).start()


def _uri_lock(uri: str) -> threading.Lock:
    with _lock:
        lock = _uri_locks.get(uri)
        if lock is None:
            lock = _uri_locks[uri] = threading.Lock()
        return lock


def connect(uri: str) -> libvirt.virConnect:
    """This thread's shared, live connection to `uri` (opened on first use)."""
    key = (uri, _slot())
    with _lock:
        conn = _connections.get(key)
    if conn is not None and _alive(conn):
        return conn
    _start_event_loop()
    lock = _uri_lock(uri)
    if not lock.acquire(timeout=OPEN_TIMEOUT + 5):
        raise HostUnreachable(f"libvirt host {display_uri(uri)}: another connection attempt is still hanging")
    try:
        with _lock:
            conn = _connections.get(key)
            if conn is not None and not _alive(conn):
                _drop(key)
                conn = None
            hung = _hung.get(uri)
        if conn is not None:
            return conn
        if hung is not None and time.monotonic() < hung[0]:
            raise HostUnreachable(hung[1])
        conn = _open(uri)
        with _lock:
            _hung.pop(uri, None)
            _connections[key] = conn
        return conn
    finally:
        lock.release()


def _grpc_fork_handlers_on() -> bool:
    """Whether gRPC installed its fork handlers in this process (grpcio's build turns them on unless
    GRPC_ENABLE_FORK_SUPPORT says otherwise)."""
    value = os.environ.get("GRPC_ENABLE_FORK_SUPPORT")
    return value is None or value.strip().lower() not in ("0", "false", "no")


def _transport_forks(uri: str) -> bool:
    """libvirt's ssh and ext transports run a child process; the others do not fork."""
    scheme = uri.split(":", 1)[0]
    return scheme.endswith(("+ssh", "+ext"))


def _open(uri: str) -> libvirt.virConnect:
    """`libvirt.open(uri)` bounded by OPEN_TIMEOUT, with keepalive turned on.

    qemu+ssh forks an ssh child from this process. Inside the Pulumi dynamic-provider process gRPC's
    fork handlers (on unless GRPC_ENABLE_FORK_SUPPORT=false, which scripts/env.sh and the CLI set) run
    in that child before it runs ssh, and now and then the connection breaks: "Cannot recv data: ...
    Epoll1Poller ... Connection reset by peer", "client socket is closed", "Cannot write data: Broken
    pipe" (measured: 10 of 190 opens failed with the handlers on, 0 of 200 off; 2 of 23 engine runs
    of tests/integration/test_remote_hosts.py failed with them on, 0 of 26 off).
    Where the handlers are on anyway (`pulumi` run by hand without scripts/env.sh), an open is free of
    side effects, so a failed open of a forking transport is tried again.
    """
    attempts = 3 if _transport_forks(uri) and _grpc_fork_handlers_on() else 1
    for attempt in range(1, attempts + 1):
        try:
            conn = _open_bounded(uri)
        except HostUnreachable:
            raise  # timed out: trying again would only wait as long once more
        except libvirt.libvirtError:
            if attempt < attempts:
                continue
            raise
        with contextlib.suppress(libvirt.libvirtError):
            # Local drivers without keepalive (test:///, qemu:///) refuse it; they need none.
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        return conn
    raise AssertionError("unreachable")


def _open_bounded(uri: str) -> libvirt.virConnect:
    """Open `uri` on a helper thread and wait at most OPEN_TIMEOUT for it.

    libvirt has no connect timeout: a host that accepts TCP and never answers keeps `libvirt.open`
    blocked for good. The helper thread is abandoned then (it holds no lock of ours) and closes the
    connection itself should the open ever complete.
    """
    opened: list[libvirt.virConnect] = []
    failed: list[BaseException] = []
    abandoned = threading.Event()
    finished = threading.Event()
    guard = threading.Lock()

    def run() -> None:
        conn = None
        try:
            conn = libvirt.open(uri)
        except BaseException as err:  # handed to the waiting thread
            failed.append(err)
        with guard:
            if abandoned.is_set():
                if conn is not None:
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.close()
                return
            if conn is not None:
                opened.append(conn)
            finished.set()

    threading.Thread(target=run, name=f"libvirt-open {display_uri(uri)}", daemon=True).start()
    finished.wait(OPEN_TIMEOUT)
    with guard:
        if not finished.is_set():
            abandoned.set()
            message = (
                f"libvirt host {display_uri(uri)} did not answer within {OPEN_TIMEOUT:.0f}s "
                "(VIRTSTACK_CONNECT_TIMEOUT); is the host or its daemon hung?"
            )
            with _lock:
                _hung[uri] = (time.monotonic() + HUNG_FOR, message)
            raise HostUnreachable(message)
    if failed:
        raise failed[0]
    return opened[0]


def _drop(key: tuple[str, int]) -> None:
    conn = _connections.pop(key, None)
    if conn is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def with_connection(uri: str, operation: Callable[[libvirt.virConnect], T]) -> T:
    """Run `operation` on the connection to `uri`, reconnecting once if the connection broke.

    Only a connection that is really dead is replaced: other threads share it, so an ordinary error
    (say, "volume exists") must never close it under them.
    """
    try:
        conn = connect(uri)
    except HostUnreachable:
        raise
    except libvirt.libvirtError as err:
        # libvirt's own text rarely says which host (e.g. "Cannot recv data: Host key verification failed").
        raise HostUnreachable(f"libvirt host {display_uri(uri)}: {err}") from err
    try:
        result = operation(conn)
    except libvirt.libvirtError as err:
        if err.get_error_code() not in _BROKEN_CONNECTION_CODES or _alive(conn):
            raise
        key = (uri, _slot())
        with _lock:
            if _connections.get(key) is conn:
                _drop(key)
        try:
            conn = _reconnect(uri)
        except HostUnreachable:
            raise
        except libvirt.libvirtError as again:
            raise HostUnreachable(f"libvirt host {display_uri(uri)}: {again}") from again
        result = operation(conn)
    simhosts.persist(uri, conn)  # test:///PATH.xml hosts (tests/bench only): keep what was made
    return result


def _reconnect(uri: str) -> libvirt.virConnect:
    """Open `uri` again, waiting out a daemon that is restarting."""
    deadline = time.monotonic() + RECONNECT_SECONDS
    while True:
        try:
            return connect(uri)
        except HostUnreachable:
            raise  # a hung host: waiting on would only time out again
        except libvirt.libvirtError:  # refused while the daemon restarts
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def is_not_found(err: libvirt.libvirtError) -> bool:
    return err.get_error_code() in {
        libvirt.VIR_ERR_NO_DOMAIN,
        libvirt.VIR_ERR_NO_NETWORK,
        libvirt.VIR_ERR_NO_STORAGE_POOL,
        libvirt.VIR_ERR_NO_STORAGE_VOL,
    }


def found_or_none(lookup: Callable[[str], T], name: str) -> T | None:
    """`lookup(name)` (a libvirt *LookupByName), or None when libvirt has no such object; any other
    error is raised."""
    try:
        return lookup(name)
    except libvirt.libvirtError as err:
        if is_not_found(err):
            return None
        raise
