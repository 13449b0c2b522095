"""Stack locks of Pulumi's local file backend: tell a live update from one that was killed.

`pulumi up` takes a lock file per stack (`.pulumi/locks/organization/<project>/<stack>/<id>.json`,
holding pid, user, host and time). A process killed with SIGKILL leaves it behind, and every later run
fails with "the stack is currently locked". A lock taken on this machine by a process that no longer
exists cannot be protecting anything, so it is removed; any other lock is reported as held.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class StackLock:
    path: Path
    pid: int
    hostname: str
    timestamp: str

    @property
    def stale(self) -> bool:
        """Taken here by a process that is gone."""
        return self.hostname == socket.gethostname() and not _pid_alive(self.pid)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.hostname} since {self.timestamp}"


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


def stack_locks(backend_url: str | None, stack: str) -> list[StackLock]:
    root = backend_dir(backend_url)
    if root is None:
        return []
    locks = []
    for path in sorted((root / ".pulumi" / "locks").glob(f"**/{stack}/*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        locks.append(
            StackLock(
                path, int(data.get("pid", 0)), str(data.get("hostname", "")), str(data.get("timestamp", ""))
            )
        )
    return locks


def clear_stale_locks(backend_url: str | None, stack: str) -> tuple[list[StackLock], list[StackLock]]:
    """Remove the stack's stale locks; returns (removed, still held)."""
    removed, held = [], []
    for lock in stack_locks(backend_url, stack):
        if lock.stale:
            for p in (lock.path, lock.path.with_name(lock.path.name + ".attrs")):
                p.unlink(missing_ok=True)
            removed.append(lock)
        else:
            held.append(lock)
    return removed, held
