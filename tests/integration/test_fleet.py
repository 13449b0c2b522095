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
from xml.etree import ElementTree as ET

import libvirt
import pytest

from tests.integration.realenv import (
    PROJECT_ROOT,
    agent_command,
    domain_info,
    guest_exec,
    kill_tree,
    wait_for,
)
from tests.integration.test_lifecycle import BOOT_TIMEOUT, new_project, ok, start_up
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


MARKER = "moved-with-its-disks"


def _mac_and_uuid(uri: str, name: str) -> tuple[str, str]:
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(name)
        mac = ET.fromstring(dom.XMLDesc(0)).find("devices/interface/mac")
        assert mac is not None
        return str(mac.get("address")), dom.UUIDString()
    finally:
        conn.close()


def _names(uri: str, pool_dir: Path) -> tuple[list[str], list[str]]:
    """(domains on `uri`, files in `pool_dir`)."""
    conn = libvirt.open(uri)
    try:
        doms = sorted(d.name() for d in conn.listAllDomains(0))
    finally:
        conn.close()
    return doms, sorted(p.name for p in pool_dir.glob("*")) if pool_dir.exists() else []


def _read_marker(vm: str, uri: str) -> str:
    wait_for(lambda: agent_command(vm, "guest-ping", uri=uri), BOOT_TIMEOUT, 2, f"{vm}'s agent on {uri}")
    return guest_exec(
        vm, ["/bin/sh", "-c", "mount /dev/vdb /mnt && cat /mnt/moved.txt; umount /mnt"], uri=uri
    )


def test_draining_a_host_moves_its_vm_then_a_killed_move_is_finished(
    tmp_path: Path, real_parts: None, instance: str
) -> None:
    """Draining a host moves its VM to the other host: the same UUID and MAC, a file on its data disk
    intact, nothing left on the old host, and the plan says `move` with no data loss. Then a move back
    killed (kill -9 of `virtstack up` and the engine's processes) while a disk is copied is finished
    by the next `up`, with nothing lost."""
    prefix = f"vsd{secrets.token_hex(3)}"
    vm = f"{prefix}-vm"
    subnet = secrets.randbelow(200) + 20
    pool_a, pool_b = (
        Path(f"/var/lib/virtstack/pools/{prefix}-a"),
        Path(f"/var/lib/virtstack/pools/{prefix}-b"),
    )
    spec: dict[str, object] = {
        "hosts": {
            "a": {
                "uri": "qemu:///system",
                "capacity": {"vcpus": 4, "memory": "4GiB", "disk": "20GiB"},
                "pools": {prefix: {"path": str(pool_a)}},
                "networks": {prefix: {"mode": "isolated", "cidr": f"10.153.{subnet}.0/24"}},
            },
            "b": {
                "uri": instance,
                "capacity": {"vcpus": 4, "memory": "4GiB", "disk": "20GiB"},
                "pools": {prefix: {"path": str(pool_b)}},
                "networks": {prefix: {"mode": "isolated", "cidr": f"10.154.{subnet}.0/24"}},
            },
        },
        "images": {"debian-12": {"source": str(PROJECT_ROOT / ".virtstack/images/debian-12.qcow2")}},
        "vms": {
            vm: {
                "image": "debian-12",
                "vcpus": 1,
                "memory": "384MiB",
                "disk": "3GiB",
                "data_disks": [{"name": "data", "size": "64MiB"}],
                "nics": [{"network": prefix}],
            }
        },
    }
    hosts = spec["hosts"]
    assert isinstance(hosts, dict)
    project = new_project(tmp_path, spec, prefix)
    try:
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        assert project.outputs()["placement"] == {vm: "a"}
        mac, uuid = _mac_and_uuid("qemu:///system", vm)
        wait_for(lambda: agent_command(vm, "guest-ping"), BOOT_TIMEOUT, 2, f"{vm}'s agent")
        guest_exec(
            vm,
            [
                "/bin/sh",
                "-c",
                f"mkfs.ext4 -q /dev/vdb && mount /dev/vdb /mnt && printf {MARKER} > /mnt/moved.txt"
                " && umount /mnt",
            ],
        )

        # 1. Drain a: the plan is a move, not a data loss; up moves the VM.
        hosts["a"]["state"] = "drained"
        project.spec_file.write_text(json.dumps(spec))
        plan = json.loads(ok(project.virtstack("plan", "-s", project.stack, "--format", "json"), 0))
        assert plan["data_loss"] is False, plan
        details = [d for v in plan["vms"] for c in v["changes"] for d in c["details"]]
        assert any(
            d.startswith("move a → b (stops for about ") and d.endswith(" s, disks kept)") for d in details
        ), details
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        assert project.outputs()["placement"] == {vm: "b"}
        assert _mac_and_uuid(instance, vm) == (mac, uuid)
        assert domain_info(instance, vm)["running"]  # type: ignore[index]
        assert _read_marker(vm, instance) == MARKER
        doms_a, files_a = _names("qemu:///system", pool_a)
        assert vm not in doms_a
        assert not [f for f in files_a if f.startswith(vm)], files_a  # the old disks are gone from a
        ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)

        # 2. Back to a, killed while a disk is copied (its journal marker is in a's pool).
        hosts["a"].pop("state")
        hosts["b"]["state"] = "drained"
        project.spec_file.write_text(json.dumps(spec))
        proc = start_up(project)
        seen = wait_for(
            lambda: (
                any(p.name.endswith(".virtstack-moving") for p in pool_a.glob("*")) or proc.poll() is not None
            ),
            600,
            0.05,
            "a disk copy to start",
        )
        assert seen and proc.poll() is None, "the move finished before it could be killed"
        kill_tree(proc.pid)
        proc.wait()
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        assert project.outputs()["placement"] == {vm: "a"}
        assert _mac_and_uuid("qemu:///system", vm) == (mac, uuid)
        assert _read_marker(vm, "qemu:///system") == MARKER
        doms_b, files_b = _names(instance, pool_b)
        assert vm not in doms_b
        assert not [f for f in files_b if f.startswith(vm)], files_b
        journal = (".virtstack-moving", ".virtstack-flat")
        left = _names("qemu:///system", pool_a)[1] + _names(instance, pool_b)[1]
        assert not [f for f in left if f.endswith(journal)], left  # no journal or flattened copy left
        ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)
    finally:
        for host in hosts.values():
            host.pop("state", None)
        project.spec_file.write_text(json.dumps(spec))
        project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
        project.remove()
