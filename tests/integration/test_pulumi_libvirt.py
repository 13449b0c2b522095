"""Hosts with `backend: pulumi-libvirt` against the real engine, daemon and guests (issue 12): the
pulumi-libvirt 0.5.4 SDK driving the resource plugin `libvirt` 0.5.4 that `make setup` built
(scripts/build-libvirt-plugin.sh).

One test walks one single-host stack through up (the guest runs cloud-init), a second plan with no
changes, a memory change (classified as pulumi-libvirt does it: a domain replacement) and applied, the
data-loss guard on a disk that 0.7.6 can only grow by replacing it, drift after `virsh destroy` healed,
and destroy leaving nothing. A second test runs a mixed stack: one native host, one pulumi-libvirt host
on a second daemon (scripts/libvirt-instance.sh). Guests are checked through libvirt only.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.pulumi_libvirt import BACKEND
from tests.integration.realenv import (
    PROJECT_ROOT,
    URI,
    PulumiProject,
    agent_command,
    domain_info,
    guest_exec,
    libvirt_inventory,
    local_spec,
    require_real,
    wait_for,
)
from tests.integration.test_lifecycle import new_project, ok, rewrite, step, teardown
from virtstack.ops.classify import BRIDGED_DOMAIN_REPLACE

BOOT_TIMEOUT = 420
PASSWORD = f"pw-{secrets.token_hex(8)}-never-in-plaintext"
INSTANCE = "i12-pulumi-libvirt"
DOMAIN_TYPE = "libvirt:index/domain:Domain"


@pytest.fixture
def plugin(real_parts: None) -> None:
    """The resource plugin the pulumi-libvirt SDK asks for: `make setup` installs it."""
    env = PulumiProject("x", Path("/nonexistent"), Path("/nonexistent")).env
    listed = subprocess.run(["pulumi", "plugin", "ls", "--json"], env=env, capture_output=True, text=True)
    plugins = json.loads(listed.stdout or "[]") if listed.returncode == 0 else []
    found = any(p.get("name") == "libvirt" and p.get("version") == "0.5.4" for p in plugins)
    require_real("resource plugin libvirt 0.5.4", found, "run `make setup` (scripts/build-libvirt-plugin.sh)")
    require_real("xsltproc", subprocess.run(["which", "xsltproc"], capture_output=True).returncode == 0)


def pl_spec(prefix: str, subnet: int) -> dict[str, Any]:
    spec = local_spec(prefix, subnet)
    spec["hosts"]["local"]["backend"] = BACKEND
    spec["vms"] = {
        f"{prefix}-vm": {
            "image": "debian-12",
            "vcpus": 1,
            "memory": "512MiB",
            "disk": "3GiB",
            "data_disks": [{"name": "data", "size": "1GiB"}],
            "nics": [{"network": prefix, "ip": f"10.152.{subnet}.10"}],
            "cloud_init": {"hostname": f"{prefix}-guest", "users": [{"name": "ops", "password": PASSWORD}]},
        }
    }
    return spec


@pytest.fixture
def pl_stack(tmp_path: Path, plugin: None) -> Iterator[tuple[str, int, dict[str, Any], PulumiProject]]:
    prefix = f"vpl{secrets.token_hex(3)}"
    subnet = secrets.randbelow(200) + 20
    spec = pl_spec(prefix, subnet)
    project = new_project(tmp_path, spec, prefix)
    yield prefix, subnet, spec, project
    teardown(project, prefix)


def test_a_pulumi_libvirt_host_lives_through_the_lifecycle(
    pl_stack: tuple[str, int, dict[str, Any], PulumiProject],
) -> None:
    prefix, subnet, spec, project = pl_stack
    name = f"{prefix}-vm"
    with step("1 up; the guest runs cloud-init"):
        out = ok(project.virtstack("up", "-s", project.stack, "--yes", "--wait", "ready"))
        assert f"{name}: ready on host local" in out
        assert DOMAIN_TYPE in project.state_text()
        assert PASSWORD not in project.state_text()
        # cloud-init set the hostname and the static address (its network config)
        assert agent_command(name, "guest-get-host-name") == {"return": {"host-name": f"{prefix}-guest"}}
        status = guest_exec(name, ["cloud-init", "status", "--wait"], timeout=BOOT_TIMEOUT)
        assert "done" in status, status
        assert f"10.152.{subnet}.10/24" in guest_exec(name, ["ip", "-4", "-o", "addr", "show"])
        xml = subprocess.run(["virsh", "-c", URI, "dumpxml", name], capture_output=True, text=True).stdout
        assert f'project="virtstack" stack="{prefix}"' in xml  # the owner record, through xml.xslt
        assert "tb-cache" in xml or "type='kvm'" in xml  # TCG's cache size, through xml.xslt
        pools = libvirt_inventory(prefix)["pools"]
        assert pools == [prefix]
    with step("2 a second plan has no changes"):
        ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)
    with step("3 a memory change is a domain replacement, applied"):
        before = domain_info(URI, name)
        assert before is not None
        spec["vms"][name]["memory"] = "640MiB"
        rewrite(project, spec)
        out = ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 2)
        assert "replace  domain" in out and BRIDGED_DOMAIN_REPLACE in out, out
        assert "memory 512 MiB → 640 MiB" in out, out
        assert "root disk" not in out and "data disk" not in out, out  # disks are kept
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        after = domain_info(URI, name)
        assert after is not None and after["running"] and after["memory"] == 640 * 1024**2
        assert after["uuid"] != before["uuid"]  # what the plan said: a new domain
        ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)
    with step("4 growing a disk replaces it: refused without --allow-data-loss"):
        spec["vms"][name]["disk"] = "4GiB"
        rewrite(project, spec)
        out = ok(project.virtstack("plan", "-s", project.stack), 0)
        assert "pulumi-libvirt cannot grow a disk" in out, out
        refused = project.virtstack("up", "-s", project.stack, "--yes")
        assert refused.returncode != 0 and "--allow-data-loss" in refused.stdout + refused.stderr
        spec["vms"][name]["disk"] = "3GiB"
        rewrite(project, spec)
    with step("5 drift after virsh destroy is reported, then healed"):
        subprocess.run(["virsh", "-c", URI, "destroy", name], check=True, capture_output=True)
        drift = project.virtstack("drift", "-s", project.stack)
        assert drift.returncode == 2 and "powered off" in drift.stdout, drift.stdout + drift.stderr
        assert "network interfaces" not in drift.stdout
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        info = domain_info(URI, name)
        assert info is not None and info["running"]
        ok(project.virtstack("drift", "-s", project.stack), 0)
    with step("6 destroy leaves nothing"):
        ok(project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss"))
        assert libvirt_inventory(prefix) == {"domains": [], "networks": [], "pools": [], "volumes": []}


# ------------------------------------------------------------------------- mixed: two daemons


def instance_uri() -> str:
    proc = subprocess.run(
        [str(PROJECT_ROOT / "scripts/libvirt-instance.sh"), "start", INSTANCE], capture_output=True, text=True
    )
    require_real("a second libvirt daemon (scripts/libvirt-instance.sh)", proc.returncode == 0, proc.stderr)
    return proc.stdout.strip().splitlines()[-1]


def names_on(uri: str, prefix: str) -> list[str]:
    """Domains, networks and pools named `prefix…` on the daemon at `uri`."""
    found = []
    for what in ("list --all --name", "net-list --all --name", "pool-list --all --name"):
        out = subprocess.run(["virsh", "-c", uri, *what.split()], capture_output=True, text=True).stdout
        found += [n for n in out.split() if n.startswith(prefix)]
    return sorted(found)


def test_a_mixed_stack_one_native_host_one_pulumi_libvirt_host(tmp_path: Path, plugin: None) -> None:
    far_uri = instance_uri()
    prefix = f"vmx{secrets.token_hex(3)}"
    subnet = secrets.randbelow(200) + 20
    spec = local_spec(prefix, subnet)
    near = spec["hosts"]["local"]
    far = yaml.safe_load(yaml.safe_dump(near))
    far.update(uri=far_uri, backend=BACKEND)
    far["pools"] = {f"{prefix}-far": {"path": f"/var/lib/virtstack/pools/{prefix}-far"}}
    far["networks"] = {f"{prefix}-far": {"mode": "isolated", "cidr": f"10.153.{subnet}.0/24"}}
    spec["hosts"] = {"near": near, "far": far}
    small = {"image": "debian-12", "vcpus": 1, "memory": "384MiB", "disk": "3GiB"}
    spec["vms"] = {
        f"{prefix}-n": {**small, "host": "near", "nics": [{"network": prefix}]},
        f"{prefix}-f": {**small, "host": "far", "nics": [{"network": f"{prefix}-far"}]},
    }
    project = new_project(tmp_path, spec, prefix)
    try:
        out = ok(project.virtstack("up", "-s", project.stack, "--yes"))
        assert f"{prefix}-n: running on host near" in out and f"{prefix}-f: running on host far" in out
        state = project.state_text()
        assert DOMAIN_TYPE in state and "pulumi-python:dynamic/virtstack:Domain" in state
        near_dom, far_dom = domain_info(URI, f"{prefix}-n"), domain_info(far_uri, f"{prefix}-f")
        assert near_dom is not None and near_dom["running"]
        assert far_dom is not None and far_dom["running"]
        ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)
        ok(project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash"))
        assert names_on(URI, prefix) == [] and names_on(far_uri, prefix) == []
    finally:
        project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
        project.remove()
        wait_for(lambda: names_on(far_uri, prefix) == [], 30, 1, "the far host to be empty")
