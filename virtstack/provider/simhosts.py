"""Simulated hosts that keep what was made on them (tests and bench only, VIRTSTACK_SIMULATED_HOSTS=1).

libvirt's test driver (`test:///PATH/host-N.xml`) loads a fresh in-memory hypervisor from PATH on every
connection and forgets it when the connection closes. So the next command (a new provider process)
would find the host empty: a `plan` after `up` would re-plan everything, and a `destroy` would delete
nothing. After each provider operation on such a host, `persist` writes the connection's current
objects back to PATH as a test-driver node file — domains with their run state
(`<test:runstate>`), networks, pools with their volumes — keeping the file's `<cpu>`/`<memory>` node
description. The write is atomic (a temporary file renamed over PATH), under a per-host lock (a thread
lock and an `flock` on PATH.lock, so two processes never interleave), and skipped when nothing changed.

Limits of the test driver's file format: every network and pool in it is loaded active, and volumes
hold no data — enough for the control plane the bench measures.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import libvirt

from virtstack.settings import test_driver_files_allowed

_Obj = TypeVar("_Obj", bound=Any)

SAVE_ATTEMPTS = 3
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def node_file(uri: str) -> Path | None:
    """PATH of a `test:///PATH.xml` host when simulated hosts are allowed; None for every other URI."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "test" or parts.netloc or not parts.path.endswith(".xml"):
        return None
    if not parts.path.startswith("/") or not test_driver_files_allowed():
        return None
    return Path(parts.path)


def _node_head(path: Path) -> str:
    """The file's node description (everything but domains, networks and pools), as XML text."""
    try:
        root = ET.fromstring(path.read_text())
    except (OSError, ET.ParseError):
        return ""
    keep = [child for child in root if child.tag not in ("domain", "network", "pool")]
    for child in keep:
        child.tail = None
    return "\n".join(ET.tostring(child, encoding="unicode") for child in keep)


_DOMAIN_OPEN = re.compile(r"<domain\b")


def _domain_xml(dom: libvirt.virDomain) -> str:
    """The domain's persistent definition with its run state in the test driver's namespace."""
    state = dom.state()[0]
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE).strip()
    xml = _DOMAIN_OPEN.sub(f'<domain xmlns:test="{TEST_NS}"', xml, count=1)
    head, _, _ = xml.rpartition("</domain>")
    return f"{head}  <test:runstate>{state}</test:runstate>\n</domain>"


def _pool_xml(pool: libvirt.virStoragePool) -> str:
    xml = pool.XMLDesc(0).strip()
    try:
        listed = pool.listAllVolumes() if pool.isActive() else []
    except libvirt.libvirtError as err:
        if err.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
            raise
        listed = []  # stopped by another thread meanwhile
    vols = "".join(_present(listed, lambda vol: vol.XMLDesc(0).strip()))
    head, _, _ = xml.rpartition("</pool>")
    return f"{head}{vols}</pool>"


_GONE = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
}


def _present(objects: list[_Obj], render: Callable[[_Obj], str]) -> list[str]:
    """`render` of each object in name order, leaving out those another thread removed meanwhile."""
    out = []
    for obj in sorted(objects, key=lambda o: o.name()):
        try:
            out.append(render(obj))
        except libvirt.libvirtError as err:
            if err.get_error_code() not in _GONE:
                raise
    return out


def snapshot(conn: libvirt.virConnect, head: str) -> str:
    """The node file that reloads what `conn` holds now (objects in name order, so equal states give
    equal text)."""
    parts = ["<node>", head]
    parts += _present(conn.listAllDomains(), _domain_xml)
    parts += _present(conn.listAllNetworks(), lambda net: net.XMLDesc(0).strip())
    parts += _present(conn.listAllStoragePools(), _pool_xml)
    parts.append("</node>\n")
    return "\n".join(parts)


@contextlib.contextmanager
def host_lock(path: Path) -> Iterator[None]:
    """This host's lock across threads (a Lock per PATH) and processes (flock on PATH.lock)."""
    key = str(path)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock, open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save(conn: libvirt.virConnect, path: Path) -> bool:
    """Write `conn`'s objects to `path` unless the file already says the same; True when written."""
    with host_lock(path):
        try:
            old = path.read_text()
        except OSError:
            old = ""
        text = snapshot(conn, _node_head(path))
        if text == old:
            return False
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return True


def persist(uri: str, conn: libvirt.virConnect) -> None:
    """After an operation on `uri`: save a simulated host's state to its file; other URIs: nothing."""
    path = node_file(uri)
    if path is None:
        return
    for attempt in range(SAVE_ATTEMPTS):
        try:
            save(conn, path)
            return
        except libvirt.libvirtError:
            # Another thread changed an object between its listing and its XML: read them again.
            if attempt == SAVE_ATTEMPTS - 1:
                raise
