"""A live `virtstack up` in another PID namespace keeps its lock (issue 11, "Locks").

The regression: stale-lock cleanup took the lock of an `up` running in another PID namespace for a
dead process's (same hostname, its pid not running here) and removed it, so two updates wrote one
state.  Here the first `up` runs under `unshare --pid --fork` with its pids moved far above any pid of
this namespace; a `virtstack plan` from here must report the lock, naming why and `pulumi cancel`,
and leave it; the first `up` then finishes normally.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

from tests.integration.realenv import PROJECT_ROOT, libvirt_inventory, wait_for
from tests.integration.test_lifecycle import base_spec, new_project, teardown, vm


def pid_beyond_this_namespace() -> int:
    """A pid no process of this namespace can have: beyond its pid_max (a new PID namespace has its
    own pid_max on Linux 6.14+; where it does not, the inner `echo` fails and so does the test)."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1000


def test_a_live_up_in_another_pid_namespace_keeps_its_lock(tmp_path: Path, real_parts: None) -> None:
    prefix = f"vsn{secrets.token_hex(3)}"
    spec = base_spec(prefix, secrets.randbelow(200) + 20)
    spec["vms"] = {f"{prefix}-vm": vm(prefix, count=2, memory="256MiB")}
    project = new_project(tmp_path, spec, prefix)
    locks = project.backend / ".pulumi" / "locks"
    start = pid_beyond_this_namespace()
    inner = (
        f"echo {start} > /proc/sys/kernel/ns_last_pid && "
        f"exec {PROJECT_ROOT / '.venv/bin/virtstack'} up -s {project.stack} --yes"
    )
    first = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", inner],
        cwd=PROJECT_ROOT,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: list(locks.glob(f"**/{prefix}/*.json")), 120, 0.05, "the first run's lock")
        [lock] = list(locks.glob(f"**/{prefix}/*.json"))
        holder = int(json.loads(lock.read_text())["pid"])
        assert holder > start and not Path(f"/proc/{holder}").exists()  # the trap: its pid means nothing here
        second = project.virtstack("plan", "-s", project.stack)
        out_first, _ = first.communicate(timeout=600)
        assert first.returncode == 0, out_first[-4000:]
        message = second.stdout + second.stderr
        assert second.returncode == 1, message
        assert "locked" in message and "held from another PID namespace" in message, message
        assert f"pulumi cancel --stack {project.stack} --yes" in message
        assert "removed a stale lock" not in message
        ok = project.virtstack("plan", "-s", project.stack, "--detailed-exitcode")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert not lock.exists()  # released by its own holder
        assert len(libvirt_inventory(prefix)["domains"]) == 2  # both VMs of the first `up`
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        teardown(project, prefix)
