"""The `virtstack` command end to end: real engine, real libvirt, two small real guests.

plan on an empty stack (creates, exit 2) -> up --yes -> plan (no changes, exit 0) -> `virsh destroy`
of one VM -> drift names it (exit 2) -> up --yes heals it -> inventory lists both VMs with their
static addresses -> destroy --yes leaves nothing in libvirt.  The stack lives in a temporary file
backend, its stack file is given by config virtstack:spec, and every libvirt name starts with a
random prefix; the finalizer cleans up even when a step fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.realenv import PROJECT_ROOT, URI, PulumiProject, libvirt_inventory, local_spec

NOTHING = {"domains": [], "networks": [], "pools": [], "volumes": []}


def two_vm_spec(prefix: str, subnet: int) -> dict[str, Any]:
    spec = local_spec(prefix, subnet, vcpus=2, memory="2GiB", disk="20GiB")
    spec["vms"] = {
        f"{prefix}-vm": {
            "count": 2,  # <prefix>-vm (.10) and <prefix>-vm-2 (.11)
            "image": "debian-12",
            "vcpus": 1,
            "memory": "384MiB",
            "disk": "3GiB",
            "nics": [{"network": prefix, "ip": f"10.152.{subnet}.10"}],
            "cloud_init": {"users": [{"name": "ops"}]},
        }
    }
    return spec


class Cli:
    """Runs the installed `virtstack` console script against the test's stack and backend."""

    def __init__(self, project: PulumiProject, log_dir: Path) -> None:
        self.project = project
        self.env = {**project.env, "VIRTSTACK_LOG_DIR": str(log_dir)}
        self.env.pop("VIRTSTACK_STACK", None)
        script = PROJECT_ROOT / ".venv/bin/virtstack"
        self.command = [str(script)] if script.exists() else [sys.executable, "-m", "virtstack.cli.main"]

    def __call__(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args, "-s", self.project.stack],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def _show(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-3000:]}"


def _force_cleanup(prefix: str) -> None:
    """Remove whatever libvirt still holds under the prefix (after a failed destroy)."""
    import libvirt

    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains():
            if dom.name().startswith(prefix):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        for net in conn.listAllNetworks():
            if net.name().startswith(prefix):
                if net.isActive():
                    net.destroy()
                net.undefine()
        for pool in conn.listAllStoragePools():
            if pool.name().startswith(prefix):
                if pool.isActive():
                    for vol in pool.listAllVolumes():
                        vol.delete(0)
                    pool.destroy()
                pool.undefine()
    finally:
        conn.close()


@pytest.fixture
def stack(tmp_path: Path, real_parts: None) -> Iterator[tuple[PulumiProject, Cli, str]]:
    prefix = f"vsit{secrets.token_hex(3)}"
    subnet = secrets.randbelow(200) + 20
    spec_file = tmp_path / "stack.yaml"
    spec_file.write_text(yaml.safe_dump(two_vm_spec(prefix, subnet)))
    project = PulumiProject(stack=prefix, backend=tmp_path / "state", spec_file=spec_file)
    project.init()
    cli = Cli(project, tmp_path / "logs")
    try:
        yield project, cli, f"10.152.{subnet}"
    finally:
        # Even after a failure half-way: nothing of the test may stay in libvirt, the backend or the
        # project directory (the stack's Pulumi.<stack>.yaml).
        cli("destroy", "--yes", "--allow-data-loss", "--no-trash")
        if any(libvirt_inventory(prefix).values()):
            project.pulumi("destroy", "--yes", "--skip-preview", check=False)
            _force_cleanup(prefix)
        project.pulumi("stack", "rm", "--yes", "--force", check=False)
        (PROJECT_ROOT / f"Pulumi.{prefix}.yaml").unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the backend leaves the pool's directory, empty
            Path(f"/var/lib/virtstack/pools/{prefix}").rmdir()


def domain_state(name: str) -> int:
    import libvirt

    conn = libvirt.open(URI)
    try:
        return int(conn.lookupByName(name).state()[0])
    finally:
        conn.close()


def test_plan_up_drift_heal_inventory_destroy(stack: tuple[PulumiProject, Cli, str]) -> None:
    import libvirt

    project, cli, net = stack
    prefix = project.stack
    vm1, vm2 = f"{prefix}-vm", f"{prefix}-vm-2"

    # An empty stack: everything is to be created; --detailed-exitcode says "changes" with 2.
    plan = cli("plan", "--detailed-exitcode")
    assert plan.returncode == 2, _show(plan)
    assert f"vm {vm1} on local: create\n" in plan.stdout, _show(plan)
    assert f"vm {vm2} on local: create\n" in plan.stdout
    assert "Summary: 9 to create.\n" in plan.stdout
    assert libvirt_inventory(prefix) == NOTHING  # a plan changes nothing

    # up without --yes and without a terminal refuses.
    refused = cli("up")
    assert refused.returncode == 1 and "without --yes" in refused.stderr, _show(refused)

    up = cli("up", "--yes")
    assert up.returncode == 0, _show(up)
    assert f"vm {vm1}: domain: created (" in up.stdout  # live progress lines
    assert "Done: 9 created in " in up.stdout
    assert libvirt_inventory(prefix)["domains"] == [vm1, vm2]
    assert domain_state(vm1) == domain_state(vm2) == libvirt.VIR_DOMAIN_RUNNING

    again = cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, _show(again)
    assert again.stdout == f"Plan for stack {prefix}: no changes.\n"

    calm = cli("drift")
    assert calm.returncode == 0, _show(calm)

    # Stop one VM behind virtstack's back: drift names it, and only it.
    subprocess.run(["virsh", "-c", URI, "destroy", vm2], check=True, capture_output=True)
    drift = cli("drift")
    assert drift.returncode == 2, _show(drift)
    assert f"vm {vm2} on local\n  domain  powered off" in drift.stdout, _show(drift)
    assert f"vm {vm1}" not in drift.stdout

    heal = cli("up", "--yes")
    assert heal.returncode == 0, _show(heal)
    assert f"vm {vm2} on local: update in place" in heal.stdout, _show(heal)
    assert domain_state(vm2) == libvirt.VIR_DOMAIN_RUNNING
    healed = cli("drift")
    assert healed.returncode == 0, _show(healed)

    inventory = cli("inventory", "--format", "ansible")
    assert inventory.returncode == 0, _show(inventory)
    lines = inventory.stdout.splitlines()
    assert f"{vm1} ansible_host={net}.10" in lines, inventory.stdout
    assert f"{vm2} ansible_host={net}.11" in lines, inventory.stdout

    destroy = cli("destroy", "--yes", "--allow-data-loss", "--no-trash")
    assert destroy.returncode == 0, _show(destroy)
    assert "Done: 9 deleted in " in destroy.stdout, _show(destroy)
    assert libvirt_inventory(prefix) == NOTHING
    assert not os.path.exists(f"/var/lib/virtstack/pools/{prefix}/{vm1}-root.qcow2")
