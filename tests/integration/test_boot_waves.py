"""Boots in waves against the real engine, daemon and guests (issue 15): `up` used to start every
domain at once, so under TCG every guest of a stack booted slower than it would alone. With
`boot_concurrency: 1` the second domain must not start before the first one's guest agent answers.

Observed through libvirt only: a poller records, in poll order, when each domain is first active and
when its guest agent first answers guest-ping. Ordering, not durations, is asserted."""

from __future__ import annotations

import secrets
import subprocess
import threading
from pathlib import Path

import libvirt
import yaml

from tests.integration.realenv import (
    PROJECT_ROOT,
    URI,
    PulumiProject,
    agent_command,
    libvirt_inventory,
    local_spec,
)
from tests.integration.test_lifecycle import ok, teardown, vm

UP_TIMEOUT = 900


def _active(conn: libvirt.virConnect, name: str) -> bool:
    try:
        return bool(conn.lookupByName(name).isActive())
    except libvirt.libvirtError:
        return False


def test_domains_start_one_at_a_time_as_guests_come_up(tmp_path: Path, real_parts: None) -> None:
    prefix = f"vsw{secrets.token_hex(3)}"
    subnet = 60 + secrets.randbelow(20)
    spec = local_spec(prefix, subnet)
    spec["hosts"]["local"]["boot_concurrency"] = 1
    names = [f"{prefix}-a", f"{prefix}-b"]
    spec["vms"] = {name: vm(prefix) for name in names}
    spec_file = tmp_path / f"{prefix}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    project = PulumiProject(stack=prefix, backend=tmp_path / "state", spec_file=spec_file)
    project.init()

    events: list[tuple[str, str]] = []  # ("active" | "agent", name), in the order the poller saw them
    done = threading.Event()

    def poll() -> None:
        conn = libvirt.open(URI)
        try:
            seen: set[tuple[str, str]] = set()
            while not done.is_set() and len(seen) < 2 * len(names):
                for name in names:
                    if ("active", name) not in seen and _active(conn, name):
                        seen.add(("active", name))
                        events.append(("active", name))
                    if (
                        ("active", name) in seen
                        and ("agent", name) not in seen
                        and agent_command(name, "guest-ping", 1)
                    ):
                        seen.add(("agent", name))
                        events.append(("agent", name))
                done.wait(0.2)
        finally:
            conn.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        proc = subprocess.run(
            [str(PROJECT_ROOT / ".venv/bin/virtstack"), "up", "-s", prefix, "--yes"],
            cwd=PROJECT_ROOT,
            env=project.env,
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT,
        )
        ok(proc)
        poller.join(UP_TIMEOUT)  # until both agents answered
        starts = [name for kind, name in events if kind == "active"]
        assert sorted(starts) == sorted(names), events
        first, second = starts
        # The second domain became active only after the first one's agent answered.
        assert events.index(("agent", first)) < events.index(("active", second)), events
        assert ("agent", second) in events, events
    finally:
        done.set()
        teardown(project, prefix)
    assert not any(libvirt_inventory(prefix).values())
