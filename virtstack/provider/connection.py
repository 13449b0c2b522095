"""libvirt connections shared by every resource operation in one provider process.

The engine calls the provider from several threads; libvirt connections are thread-safe, so a few
connections per URI are shared: libvirtd serves at most `max_client_requests` (5 by default) calls of
one connection at a time, so one connection would make a sixth operation wait behind five slow domain
starts. Each thread keeps to one of the URI's `CONNECTIONS_PER_HOST` connections. A connection that
broke (the daemon restarted) is replaced once and the operation retried, so an `up` running across a
daemon restart converges instead of failing.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import libvirt

T = TypeVar("T")

# How long an operation waits for a restarting daemon before it gives up.
RECONNECT_SECONDS = 60.0

# libvirtd's defaults: 5 calls at once per connection, 20 worker threads per daemon. Three connections
# let the provider's operations (see virtstack.provider's PROVIDER_THREADS) run side by side on one host
# without taking every worker of its daemon.
CONNECTIONS_PER_HOST = 3

_lock = threading.Lock()
_connections: dict[tuple[str, int], libvirt.virConnect] = {}
_slots = itertools.count()
_thread = threading.local()


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


def connect(uri: str) -> libvirt.virConnect:
    """This thread's shared, live connection to `uri` (opened on first use)."""
    key = (uri, _slot())
    with _lock:
        conn = _connections.get(key)
        if conn is not None:
            if _alive(conn):
                return conn
            _drop(key)
        conn = libvirt.open(uri)
        _connections[key] = conn
        return conn


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
    conn = connect(uri)
    try:
        return operation(conn)
    except libvirt.libvirtError as err:
        if err.get_error_code() not in _BROKEN_CONNECTION_CODES or _alive(conn):
            raise
        key = (uri, _slot())
        with _lock:
            if _connections.get(key) is conn:
                _drop(key)
        return operation(_reconnect(uri))


def _reconnect(uri: str) -> libvirt.virConnect:
    """Open `uri` again, waiting out a daemon that is restarting."""
    deadline = time.monotonic() + RECONNECT_SECONDS
    while True:
        try:
            return connect(uri)
        except libvirt.libvirtError:
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
