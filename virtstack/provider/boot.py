"""Starting domains in waves (virtstack.boot): at most `boot_concurrency` domains of one host are
booting at a time; a domain stops counting when its guest agent answers (asked through libvirt, never
the network), when it stops running, or after BOOT_TIMEOUT.

Every domain is defined at once (the engine creates them in parallel); a create that finds its host's
places taken waits for one, then starts its domain and returns as before (running). The provider
process lives for the whole engine run, so one watcher thread per booting domain gives its place back.

Public API:
    start_in_wave(conn, dom, uri, configured, domain_type, start) -> None
        `start(dom)` once the host has a free place; the place is held until the domain is up.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import libvirt

from virtstack import boot

__all__ = ["start_in_wave"]

_POLL_SECONDS = 0.5
_AGENT_PING = json.dumps({"execute": "guest-ping"})

_lock = threading.Lock()
_gates: dict[str, threading.Semaphore] = {}


def _gate(conn: libvirt.virConnect, uri: str, configured: int, domain_type: str) -> threading.Semaphore:
    with _lock:
        gate = _gates.get(uri)
        if gate is None:
            cpus = conn.getInfo()[2]
            gate = _gates[uri] = threading.Semaphore(boot.boot_concurrency(configured, cpus, domain_type))
        return gate


def _agent_answers(dom: libvirt.virDomain) -> bool:
    import libvirt_qemu

    try:
        return "return" in json.loads(libvirt_qemu.qemuAgentCommand(dom, _AGENT_PING, 1, 0))
    except libvirt.libvirtError as err:
        # A driver without guest agents (libvirt's test driver) will never answer: do not wait for it.
        return err.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED)
    except ValueError:
        return False


def _until_up(dom: libvirt.virDomain, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not dom.isActive() or _agent_answers(dom):
                return
        except libvirt.libvirtError:
            return  # the domain or the connection went away: it is not booting here any more
        time.sleep(_POLL_SECONDS)


def _hold_until_up(gate: threading.Semaphore, dom: libvirt.virDomain, timeout: float) -> None:
    try:
        _until_up(dom, timeout)
    finally:
        gate.release()


def start_in_wave(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    uri: str,
    configured: int,
    domain_type: str,
    start: Callable[[libvirt.virDomain], None],
    timeout: float = boot.BOOT_TIMEOUT,
) -> None:
    if dom.isActive() or conn.getType().lower() == "test":
        start(dom)  # nothing boots (or nothing to wait for): no place taken
        return
    gate = _gate(conn, uri, configured, domain_type)
    gate.acquire()
    try:
        start(dom)
    except BaseException:
        gate.release()
        raise
    threading.Thread(
        target=_hold_until_up, args=(gate, dom, timeout), name=f"boot-{dom.name()}", daemon=True
    ).start()
