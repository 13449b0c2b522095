from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from virtstack.locks import clear_stale_locks, stack_locks


def write_lock(root: Path, stack: str, name: str, pid: int, hostname: str) -> Path:
    d = root / ".pulumi/locks/organization/virtstack" / stack
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.json"
    p.write_text(json.dumps({"pid": pid, "username": "root", "hostname": hostname, "timestamp": "T"}))
    (d / f"{name}.json.attrs").write_text("{}")
    return p


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid (until the kernel reuses it)


def test_only_locks_of_dead_local_processes_are_removed(tmp_path: Path) -> None:
    here = socket.gethostname()
    stale = write_lock(tmp_path, "dev", "a", dead_pid(), here)
    live = write_lock(tmp_path, "dev", "b", subprocess.os.getpid(), here)
    remote = write_lock(tmp_path, "dev", "c", dead_pid(), "another-machine")
    other_stack = write_lock(tmp_path, "prod", "d", dead_pid(), here)

    removed, held = clear_stale_locks(f"file://{tmp_path}", "dev")

    assert [lock.path for lock in removed] == [stale]
    assert sorted(lock.path for lock in held) == sorted([live, remote])
    assert not stale.exists() and not stale.with_name("a.json.attrs").exists()
    assert live.exists() and remote.exists() and other_stack.exists()
    assert [lock.path for lock in stack_locks(f"file://{tmp_path}", "prod")] == [other_stack]


def test_other_backends_have_no_file_locks() -> None:
    assert clear_stale_locks("https://api.pulumi.com", "dev") == ([], [])
    assert stack_locks(None, "dev") == []


def test_a_zombie_holds_no_lock(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    for _ in range(100):  # wait until it has exited but is not reaped: a zombie
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.01)
    try:
        lock = write_lock(tmp_path, "dev", "z", child.pid, socket.gethostname())
        removed, held = clear_stale_locks(f"file://{tmp_path}", "dev")
        assert ([lk.path for lk in removed], held) == ([lock], [])
    finally:
        child.wait()
