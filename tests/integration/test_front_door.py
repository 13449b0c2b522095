"""The front door's hand-offs against the real engine: the previous placement the CLI passes to the
program (VIRTSTACK_PREVIOUS_PLACEMENT), and the fallback a raw `pulumi` run uses."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.realenv import PROJECT_ROOT, domain_info, local_spec
from tests.integration.test_lifecycle import new_project, ok, rewrite, teardown
from virtstack.settings import PREVIOUS_PLACEMENT_ENV


@pytest.fixture
def other_host() -> Iterator[str]:
    name = f"vsit-h2-{secrets.token_hex(2)}"
    script = str(PROJECT_ROOT / "scripts/libvirt-instance.sh")
    uri = subprocess.run([script, "start", name], check=True, capture_output=True, text=True).stdout.strip()
    yield uri
    subprocess.run([script, "purge", name], capture_output=True)


def test_vms_stay_where_the_last_deployment_put_them(
    tmp_path: Path, real_parts: None, other_host: str
) -> None:
    prefix = f"vsp{secrets.token_hex(3)}"
    spec = local_spec(prefix, secrets.randbelow(200) + 20)
    spec["hosts"]["node-2"] = {
        "uri": other_host,
        "capacity": {"vcpus": 8, "memory": "8GiB", "disk": "100GiB"},
        "pools": {prefix: {"path": f"/var/lib/virtstack/pools/{prefix}-node-2"}},
    }
    spec["vms"] = {f"{prefix}-vm": {"image": "debian-12", "vcpus": 1, "memory": "256MiB", "disk": "3GiB"}}
    spec["vms"][f"{prefix}-vm"]["count"] = 2
    spec["placement"] = {"strategy": "spread"}
    project = new_project(tmp_path, spec, prefix)
    try:
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        first = project.outputs()["placement"]
        assert sorted(first.values()) == ["local", "node-2"], first
        uuids = {
            vm: domain_info(other_host if host == "node-2" else "qemu:///system", vm)
            for vm, host in first.items()
        }

        # `pack` would put both on one host; the placement the CLI passes keeps them where they are.
        spec["placement"] = {"strategy": "pack"}
        rewrite(project, spec)
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        assert project.outputs()["placement"] == first
        for vm, host in first.items():
            info = domain_info(other_host if host == "node-2" else "qemu:///system", vm)
            assert info is not None and info["uuid"] == uuids[vm]["uuid"], vm  # type: ignore[index]

        # A raw `pulumi preview` (no CLI) asks for the placement itself: no changes either…
        project.pulumi("preview", "--expect-no-changes")
        # …while a program told there was no previous placement would move a VM.
        project.extra_env[PREVIOUS_PLACEMENT_ENV] = "{}"
        moved = project.pulumi("preview", "--expect-no-changes", check=False)
        assert moved.returncode != 0, moved.stdout[-3000:]
    finally:
        project.extra_env.pop(PREVIOUS_PLACEMENT_ENV, None)
        teardown(project, prefix)
