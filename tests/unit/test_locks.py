"""Stale stack locks (virtstack.locks): removed only when the holder is provably dead.

The PID-namespace case runs a real holder in a new PID namespace (`unshare --pid --fork`, root).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from virtstack.locks import HOLDERS_DIR, clear_stale_locks, holder_record, stack_locks, this_identity
from virtstack.ops.engine import InterruptiblePulumiCommand

REPO = Path(__file__).resolve().parents[2]


def now_rfc3339(offset: float = 0.0) -> str:
    # Pulumi's format: RFC 3339 with nanoseconds.
    stamp = datetime.fromtimestamp(time.time() + offset, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def write_lock(root: Path, stack: str, name: str, pid: int, hostname: str, offset: float = 0.0) -> Path:
    d = root / ".pulumi/locks/organization/virtstack" / stack
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.json"
    data = {"pid": pid, "username": "root", "hostname": hostname, "timestamp": now_rfc3339(offset)}
    p.write_text(json.dumps(data))
    (d / f"{name}.json.attrs").write_text("{}")
    return p


def write_record(root: Path, pid: int, created_offset: float = 0.0, **identity: str) -> Path:
    """A holder record as virtstack writes it, with parts of the identity replaced."""
    here = this_identity()
    data = {
        "pid": pid,
        "hostname": socket.gethostname(),
        "machine_id": identity.get("machine_id", here.machine_id),
        "boot_id": identity.get("boot_id", here.boot_id),
        "pid_ns": identity.get("pid_ns", here.pid_ns),
        "created": time.time() + created_offset,
    }
    d = root / HOLDERS_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{pid}-test.json"
    path.write_text(json.dumps(data))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid (until the kernel reuses it)


def clear(root: Path, stack: str = "dev") -> tuple[list[Path], dict[Path, str]]:
    removed, held = clear_stale_locks(f"file://{root}", stack)
    return [lock.path for lock in removed], {lock.path: lock.why_held for lock in held}


def test_only_locks_whose_recorded_holder_died_here_are_removed(tmp_path: Path) -> None:
    here = socket.gethostname()
    stale_pid, bare_pid = dead_pid(), dead_pid()
    write_record(tmp_path, stale_pid)
    write_record(tmp_path, os.getpid())
    stale = write_lock(tmp_path, "dev", "a", stale_pid, here)
    live = write_lock(tmp_path, "dev", "b", os.getpid(), here)
    bare = write_lock(tmp_path, "dev", "c", bare_pid, here)  # a `pulumi` run outside virtstack
    other_stack = write_lock(tmp_path, "prod", "d", stale_pid, here)

    removed, held = clear(tmp_path)

    assert removed == [stale]
    assert held == {
        live: "still running",
        bare: "taken outside virtstack or from another machine: its holder cannot be checked from here",
    }
    assert not stale.exists() and not stale.with_name("a.json.attrs").exists()
    assert live.exists() and bare.exists() and other_stack.exists()
    assert [lock.path for lock in stack_locks(f"file://{tmp_path}", "prod")] == [other_stack]


@pytest.mark.parametrize(
    ("identity", "why"),
    [
        ({"machine_id": "0" * 32}, "held from another machine (machine-id differs)"),
        ({"boot_id": "00000000-0000-0000-0000-000000000000"}, "held from an earlier boot of this machine"),
        ({"pid_ns": "pid:[1]"}, "held from another PID namespace (a container?)"),
    ],
)
def test_a_lock_from_another_machine_boot_or_namespace_with_this_hostname_is_held(
    tmp_path: Path, identity: dict[str, str], why: str
) -> None:
    # The regression: another machine with the same hostname on a shared backend, its pid not
    # running here, had its lock removed; two updates then wrote one state.
    pid = dead_pid()
    write_record(tmp_path, pid, **identity)
    lock = write_lock(tmp_path, "dev", "a", pid, socket.gethostname())
    assert clear(tmp_path) == ([], {lock: why})
    assert lock.exists()


def test_an_old_record_does_not_vouch_for_a_later_lock_with_a_recycled_pid(tmp_path: Path) -> None:
    pid = dead_pid()
    write_record(tmp_path, pid, created_offset=-3600)
    lock = write_lock(tmp_path, "dev", "a", pid, socket.gethostname())
    removed, held = clear(tmp_path)
    assert removed == [] and lock in held


def test_a_zombie_holds_no_lock(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    for _ in range(100):  # wait until it has exited but is not reaped: a zombie
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.01)
    try:
        write_record(tmp_path, child.pid)
        lock = write_lock(tmp_path, "dev", "z", child.pid, socket.gethostname())
        assert clear(tmp_path) == ([lock], {})
    finally:
        child.wait()


def test_records_of_dead_processes_without_locks_are_dropped_others_kept(tmp_path: Path) -> None:
    orphan = write_record(tmp_path, dead_pid())
    foreign = write_record(tmp_path, dead_pid(), machine_id="f" * 32)
    other_stack_pid = dead_pid()
    other_stack_record = write_record(tmp_path, other_stack_pid)
    write_lock(tmp_path, "prod", "p", other_stack_pid, socket.gethostname())
    clear(tmp_path, "dev")
    assert not orphan.exists()
    assert foreign.exists()  # another machine's: not ours to judge
    assert other_stack_record.exists()  # still vouches for prod's lock


def test_other_backends_have_no_file_locks() -> None:
    assert clear_stale_locks("https://api.pulumi.com", "dev") == ([], [])
    assert stack_locks(None, "dev") == []


def test_holder_record_exists_exactly_while_the_block_runs(tmp_path: Path) -> None:
    with holder_record(f"file://{tmp_path}", 4242):
        [path] = (tmp_path / HOLDERS_DIR).glob("*.json")
        data = json.loads(path.read_text())
        assert data["pid"] == 4242 and data["pid_ns"] == this_identity().pid_ns
    assert list((tmp_path / HOLDERS_DIR).glob("*.json")) == []
    with holder_record("s3://bucket/state", 4242):
        pass
    assert not (tmp_path / "s3:").exists()


def test_every_pulumi_process_is_recorded_before_it_runs(tmp_path: Path) -> None:
    # A fake `pulumi` that reports which holder records exist when it starts.
    root = tmp_path / "toolchain"
    (root / "bin").mkdir(parents=True)
    seen = tmp_path / "seen.json"
    script = root / "bin" / "pulumi"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then echo v3.274.1; exit 0; fi\n'
        f'cat "{tmp_path}/state/{HOLDERS_DIR}"/*.json > "{seen}"; echo "pid=$$" >> "{seen}"\n'
    )
    script.chmod(0o755)
    command = InterruptiblePulumiCommand(root=str(root))
    command.run(["preview"], str(tmp_path), {"PULUMI_BACKEND_URL": f"file://{tmp_path}/state"})
    record_text, pid_line = seen.read_text().rsplit("pid=", 1)
    assert json.loads(record_text)["pid"] == int(pid_line)
    assert list((tmp_path / "state" / HOLDERS_DIR).glob("*.json")) == []  # removed when it ended


INNER = textwrap.dedent(
    """
    import socket, subprocess, sys
    from pathlib import Path
    from virtstack.locks import holder_record
    sys.path.insert(0, {tests!r})
    from test_locks import write_lock
    root, free = {root!r}, set({free!r})
    children = []
    while True:  # pids in the new namespace count up from 2: stop at one that is free outside
        child = subprocess.Popen(["sleep", "60"])
        if child.pid in free:
            break
        children.append(child)
    for other in children:
        other.kill(); other.wait()
    with holder_record("file://" + root, child.pid):
        write_lock(Path(root), "dev", "ns", child.pid, socket.gethostname())
        print(child.pid, flush=True)
        sys.stdin.read()  # held until the test closes stdin
    child.kill()
    """
)


def test_a_live_lock_in_another_pid_namespace_is_held(tmp_path: Path) -> None:
    # The regression: a live `up` in another PID namespace whose pid does not exist here had its lock
    # removed as stale.
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is needed for this test"
    free = [n for n in range(2, 2000) if not Path(f"/proc/{n}").exists()]
    code = INNER.format(tests=str(Path(__file__).parent), root=str(tmp_path), free=free)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [unshare, "--pid", "--fork", sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"the holder in the new namespace did not start: {line!r}"
        pid = int(line)
        assert not Path(f"/proc/{pid}").exists()  # its pid means nothing here: the trap
        [lock] = stack_locks(f"file://{tmp_path}", "dev")
        removed, held = clear(tmp_path)
        assert removed == []
        assert held == {lock.path: "held from another PID namespace (a container?)"}
        assert lock.path.exists()
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)


def test_a_held_lock_is_reported_with_its_holder_why_and_the_cancel_command(tmp_path: Path) -> None:
    from virtstack.ops.engine import Engine

    pid = dead_pid()
    write_record(tmp_path, pid, machine_id="0" * 32)
    write_lock(tmp_path, "dev", "a", pid, socket.gethostname())
    _, held = clear_stale_locks(f"file://{tmp_path}", "dev")
    message = str(Engine._locked("dev", held))
    assert f"pid {pid} on {socket.gethostname()} since " in message
    assert "held from another machine (machine-id differs)" in message
    assert "`pulumi cancel --stack dev --yes`" in message
