"""The fleet against real daemons: `virtstack hosts` counts a domain defined outside the stack, and
`plan` refuses a plan that the host cannot hold once that domain is counted — before the engine.

Runs on its own libvirt instance (scripts/libvirt-instance.sh), so other stacks' domains on the main
daemon do not change the figures."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.integration.realenv import PROJECT_ROOT
from tests.integration.test_lifecycle import new_project, ok
from virtstack.units import format_size

MIB = 1024 * 1024


@pytest.fixture
def instance() -> Iterator[str]:
    name = f"vsi13-{secrets.token_hex(2)}"
    script = str(PROJECT_ROOT / "scripts/libvirt-instance.sh")
    uri = subprocess.run([script, "start", name], check=True, capture_output=True, text=True).stdout.strip()
    yield uri
    subprocess.run([script, "purge", name], capture_output=True)


def define_by_hand(uri: str, name: str, vcpus: int, memory_mib: int) -> None:
    """A domain nobody's stack made (no owner record), defined and never started."""
    conn = libvirt.open(uri)
    try:
        conn.defineXML(
            f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
            f"<vcpu>{vcpus}</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
        )
    finally:
        conn.close()


def one_host_stack(prefix: str, uri: str, vm_memory: str) -> dict[str, object]:
    return {
        "hosts": {
            "h": {
                "uri": uri,
                "capacity": {"vcpus": 8, "memory": "64GiB", "disk": "100GiB"},
                "pools": {prefix: {"path": f"/var/lib/virtstack/pools/{prefix}"}},
            }
        },
        "images": {"debian-12": {"source": str(PROJECT_ROOT / ".virtstack/images/debian-12.qcow2")}},
        "vms": {f"{prefix}-vm": {"image": "debian-12", "vcpus": 1, "memory": vm_memory, "disk": "3GiB"}},
    }


def test_hosts_counts_a_domain_outside_the_stack_and_plan_refuses_what_does_not_fit(
    tmp_path: Path, real_parts: None, instance: str
) -> None:
    prefix = f"vsf{secrets.token_hex(3)}"
    conn = libvirt.open(instance)
    node_memory = conn.getInfo()[1] * MIB
    conn.close()
    outsider = f"{prefix}-outsider"
    # Leaves less than 2 GiB of the host's memory to anyone else.
    define_by_hand(instance, outsider, 3, node_memory // MIB - 1536)
    project = new_project(tmp_path, one_host_stack(prefix, instance, "256MiB"), prefix)
    try:
        report = json.loads(ok(project.virtstack("hosts", "-s", project.stack, "--format", "json")))
        (host,) = report["hosts"]
        assert host["others_domains"] == [outsider]
        vcpus, memory = host["resources"][:2]
        assert (vcpus["resource"], vcpus["others"], vcpus["this_stack"], vcpus["after_plan"]) == (
            "vcpus",
            3,
            0,
            4,
        )
        assert (memory["others"], memory["after_plan"]) == (
            node_memory - 1536 * MIB,
            node_memory - 1536 * MIB + 256 * MIB,
        )
        table = ok(project.virtstack("hosts", "-s", project.stack))
        assert f"Others' domains on h: {outsider}." in table.splitlines()

        # 2 GiB more than the host has once the outsider is counted (the stack file's capacity
        # would allow it): refused before the engine, nothing created.
        project.spec_file.write_text(json.dumps(one_host_stack(prefix, instance, "2GiB")))
        proc = project.virtstack("plan", "-s", project.stack)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stderr.splitlines()
        assert lines[0] == "error: the plan does not fit the hosts as they are (nothing was changed):"
        assert lines[1].startswith("  host h: the plan needs ")
        assert lines[1].endswith(
            f" of memory, the host has {format_size(node_memory)} "
            f"(others' domains use {format_size(node_memory - 1536 * MIB)})"
        )
        conn = libvirt.open(instance)
        assert [d.name() for d in conn.listAllDomains(0)] == [outsider]
        conn.close()
    finally:
        project.remove()


def test_draining_a_host_never_recreates_a_vm_without_consent(
    tmp_path: Path, real_parts: None, instance: str
) -> None:
    """Moves are not implemented: draining the host of a deployed VM places it elsewhere, which `up`
    could only do by recreating its disks — refused as a data loss, the VM left as it is."""
    prefix = f"vsd{secrets.token_hex(3)}"
    vm = f"{prefix}-vm"
    spec: dict[str, object] = {
        "hosts": {
            "a": {
                "uri": "qemu:///system",
                "capacity": {"vcpus": 4, "memory": "4GiB", "disk": "20GiB"},
                "pools": {prefix: {"path": f"/var/lib/virtstack/pools/{prefix}-a"}},
            },
            "b": {
                "uri": instance,
                "capacity": {"vcpus": 4, "memory": "4GiB", "disk": "20GiB"},
                "pools": {prefix: {"path": f"/var/lib/virtstack/pools/{prefix}-b"}},
            },
        },
        "images": {"debian-12": {"source": str(PROJECT_ROOT / ".virtstack/images/debian-12.qcow2")}},
        "vms": {
            vm: {
                "image": "debian-12",
                "vcpus": 1,
                "memory": "256MiB",
                "disk": "3GiB",
                "data_disks": [{"name": "data", "size": "64MiB"}],
                "running": False,
            }
        },
    }
    project = new_project(tmp_path, spec, prefix)
    try:
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        assert project.outputs()["placement"] == {vm: "a"}
        conn = libvirt.open("qemu:///system")
        uuid = conn.lookupByName(vm).UUIDString()
        conn.close()

        spec["hosts"]["a"]["state"] = "drained"  # type: ignore[index]
        project.spec_file.write_text(json.dumps(spec))
        proc = project.virtstack("up", "-s", project.stack, "--yes")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "refusing to apply: the plan destroys" in proc.stderr and f"{vm}" in proc.stderr, proc.stderr
        conn = libvirt.open("qemu:///system")
        assert conn.lookupByName(vm).UUIDString() == uuid
        conn.close()
        conn = libvirt.open(instance)
        assert vm not in [d.name() for d in conn.listAllDomains(0)]
        conn.close()
        assert project.outputs()["placement"] == {vm: "a"}
    finally:
        spec["hosts"]["a"].pop("state", None)  # type: ignore[attr-defined]
        project.spec_file.write_text(json.dumps(spec))
        project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
        project.remove()
