"""Stack locks of Pulumi's local file backend: tell a live update from one that was killed.

`pulumi up` takes a lock file per stack (`.pulumi/locks/organization/<project>/<stack>/<id>.json`,
holding pid, user, host and time). A process killed with SIGKILL leaves it behind, and every later run
fails with "the stack is currently locked".

A lock is removed only when its holder is provably dead, which the lock alone cannot prove: its pid
means nothing in another PID namespace (a container, `unshare --pid`), and its hostname is shared by
other machines (clones, containers) using the same backend.  So virtstack writes a *holder record*
for every `pulumi` process it starts, the moment it starts it (before the process can take a lock):
`<backend>/.virtstack/holders/<pid>-<random>.json` with the pid, hostname, machine-id, boot-id and
PID namespace, removed when the process ends.  A lock is stale only when a record of this machine,
this boot and this PID namespace names its pid and hostname, was written just before the lock was
taken, and that pid no longer runs here.  Any other lock is held: its holder is named, and the user
decides (`pulumi cancel`).

Other backends (PostgreSQL, S3…) are shared by several machines: a lock there is never judged stale
by its pid, whatever the records say; virtstack.shared_state names its holder (user, host, time,
operation) and how to clear it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath
from urllib.parse import urlsplit

__all__ = [
    "Identity",
    "StackLock",
    "backend_dir",
    "clear_stale_locks",
    "holder_record",
    "stack_locks",
    "this_identity",
]

HOLDERS_DIR = Path(".virtstack") / "holders"  # inside the backend directory, outside Pulumi's tree
# A lock is taken within seconds of its process starting; a record only vouches for locks taken in
# this window after it was written (so an old record cannot vouch for a recycled pid's lock).
LOCK_WINDOW = 600.0
CLOCK_SLACK = 5.0


@dataclass(frozen=True)
class Identity:
    """What makes a pid meaningful: the machine, the boot, the PID namespace."""

    machine_id: str
    boot_id: str
    pid_ns: str

    def differs(self, other: Identity) -> str | None:
        """How `other` differs from this one, in words; None when it is the same."""
        if self.machine_id != other.machine_id:
            return "another machine (machine-id differs)"
        if self.boot_id != other.boot_id:
            return "an earlier boot of this machine"
        if self.pid_ns != other.pid_ns:
            return "another PID namespace (a container?)"
        return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def this_identity() -> Identity:
    machine_id = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return Identity(machine_id, _read("/proc/sys/kernel/random/boot_id"), pid_ns)


@dataclass(frozen=True)
class _Record:
    path: Path
    pid: int
    hostname: str
    identity: Identity
    created: float


@dataclass(frozen=True)
class StackLock:
    path: PurePath
    pid: int
    hostname: str
    timestamp: str
    # Why the lock is still considered held (set by clear_stale_locks); "" when unknown.
    why_held: str = ""
    # Shared backends (virtstack.shared_state) also name the user and, when virtstack took the lock,
    # the operation.
    username: str = ""
    operation: str = ""

    def describe(self) -> str:
        why = f"; {self.why_held}" if self.why_held else ""
        if self.username:
            what = f"{self.operation} by " if self.operation else ""
            return f"{what}{self.username}@{self.hostname} (pid {self.pid}) since {self.timestamp}{why}"
        return f"pid {self.pid} on {self.hostname} since {self.timestamp}{why}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process whose parent died too stays a zombie until an init reaps it — and where PID 1
    # is not an init (containers), that is never. A zombie holds nothing.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def backend_dir(backend_url: str | None) -> Path | None:
    """The directory of a file:// backend; None for other backends (they manage their own locks)."""
    if not backend_url or not backend_url.startswith("file://"):
        return None
    return Path(urlsplit(backend_url).path)


def _write_record(root: Path, pid: int) -> Path:
    directory = root / HOLDERS_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    identity = this_identity()
    data = {
        "pid": pid,
        "hostname": socket.gethostname(),
        "machine_id": identity.machine_id,
        "boot_id": identity.boot_id,
        "pid_ns": identity.pid_ns,
        "created": time.time(),
    }
    path = directory / f"{pid}-{secrets.token_hex(4)}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # readers never see half a record
    return path


@contextlib.contextmanager
def holder_record(backend_url: str | None, pid: int) -> Iterator[None]:
    """Record that `pid` (a pulumi process just started) may hold locks of a file backend, for as
    long as the block runs.  Other backends keep their own locks: nothing is written."""
    root = backend_dir(backend_url)
    path = None
    if root is not None:
        with contextlib.suppress(OSError):  # a read-only backend: its locks are then never "stale"
            path = _write_record(root, pid)
    try:
        yield
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def _records(root: Path) -> list[_Record]:
    records = []
    for path in sorted((root / HOLDERS_DIR).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            identity = Identity(str(data["machine_id"]), str(data["boot_id"]), str(data["pid_ns"]))
            records.append(
                _Record(path, int(data["pid"]), str(data["hostname"]), identity, float(data["created"]))
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records


def _lock_time(timestamp: str) -> float | None:
    # Go writes RFC 3339 with up to 9 fractional digits; Python parses at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", timestamp.strip()).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def stack_locks(backend_url: str | None, stack: str) -> list[StackLock]:
    root = backend_dir(backend_url)
    if root is None:
        return []
    return _read_locks(sorted((root / ".pulumi" / "locks").glob(f"**/{stack}/*.json")))


def _all_locks(root: Path) -> list[StackLock]:
    return _read_locks(sorted((root / ".pulumi" / "locks").glob("**/*.json")))


def _read_locks(paths: list[Path]) -> list[StackLock]:
    locks = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
            pid = int(data.get("pid", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        locks.append(StackLock(path, pid, str(data.get("hostname", "")), str(data.get("timestamp", ""))))
    return locks


def _why_held(lock: StackLock, records: list[_Record], here: Identity) -> str | None:
    """None when the lock's holder is provably dead; otherwise why it must be treated as held."""
    taken = _lock_time(lock.timestamp)
    vouching = [
        r
        for r in records
        if r.pid == lock.pid
        and r.hostname == lock.hostname
        and taken is not None
        and r.created - CLOCK_SLACK <= taken <= r.created + LOCK_WINDOW
    ]
    if not vouching:
        return "taken outside virtstack or from another machine: its holder cannot be checked from here"
    for record in vouching:
        other = here.differs(record.identity)
        if other is not None:
            return f"held from {other}"
    if lock.hostname != socket.gethostname():
        return "held from another host"
    if _pid_alive(lock.pid):
        return "still running"
    return None


def clear_stale_locks(backend_url: str | None, stack: str) -> tuple[list[StackLock], list[StackLock]]:
    """Remove the stack's stale locks (see the module docstring); returns (removed, still held), the
    held ones saying why."""
    root = backend_dir(backend_url)
    if root is None:
        return [], []
    here = this_identity()
    records = _records(root)
    removed, held = [], []
    for lock in stack_locks(backend_url, stack):
        why = _why_held(lock, records, here)
        if why is None:
            for p in (Path(lock.path), Path(lock.path).with_name(lock.path.name + ".attrs")):
                p.unlink(missing_ok=True)
            removed.append(lock)
        else:
            held.append(StackLock(lock.path, lock.pid, lock.hostname, lock.timestamp, why))
    # Records of processes of this machine, boot and namespace that are gone vouch for nothing any
    # more once their locks are dealt with: drop them so they cannot pile up.
    live_locks = {(lock.pid, lock.hostname) for lock in _all_locks(root)}
    for record in records:
        if (
            here.differs(record.identity) is None
            and (record.pid, record.hostname) not in live_locks
            and not _pid_alive(record.pid)
        ):
            record.path.unlink(missing_ok=True)
    return removed, held
