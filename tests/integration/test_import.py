"""`virtstack import` against the real daemon and engine: a domain defined by hand (root disk over
the built image, a raw data disk, both by file path in a pool made by hand) is written as stack-file
entries, adopted by `up` without a restart, and the plan right after shows no change; `destroy`
leaves it (never confirmed as the stack's)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from tests.integration.realenv import PROJECT_ROOT, URI
from tests.integration.test_lifecycle import new_project, ok, rewrite
from virtstack.provider.ownership import domain_owner

IMAGE = PROJECT_ROOT / ".virtstack/images/debian-12.qcow2"


@pytest.fixture
def hand_made(real_parts: None) -> Iterator[tuple[str, str]]:
    """A pool, two volumes and a running domain, all made by hand (no virtstack, no owner record)."""
    prefix = f"vsim{secrets.token_hex(3)}"
    pool_dir = Path(f"/var/lib/virtstack/pools/{prefix}-hand")
    pool_dir.mkdir(parents=True, exist_ok=True)
    conn = libvirt.open(URI)
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{prefix}-hand</name><target><path>{pool_dir}</path></target></pool>"
    )
    pool.create()
    base = IMAGE.resolve()
    pool.createXML(
        f"<volume><name>{prefix}-root.qcow2</name><capacity unit='GiB'>3</capacity>"
        "<target><format type='qcow2'/></target>"
        f"<backingStore><path>{base}</path><format type='qcow2'/></backingStore></volume>"
    )
    pool.createXML(
        f"<volume><name>{prefix}-data.img</name><capacity unit='MiB'>64</capacity>"
        "<target><format type='raw'/></target></volume>"
    )
    name = f"{prefix}-legacy"
    disks = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
        f"<source file='{pool_dir}/{vol}'/><target dev='{dev}' bus='virtio'/></disk>"
        for vol, fmt, dev in ((f"{prefix}-root.qcow2", "qcow2", "vda"), (f"{prefix}-data.img", "raw", "vdb"))
    )
    dom = conn.defineXML(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<devices>{disks}<serial type='pty'/><console type='pty'/></devices></domain>"
    )
    dom.create()
    try:
        yield prefix, name
    finally:
        for step in (dom.destroy, dom.undefine):
            with contextlib.suppress(libvirt.libvirtError):
                step()
        for vol in pool.listAllVolumes():
            vol.delete()
        pool.destroy()
        pool.undefine()
        conn.close()


def _running(name: str) -> tuple[int, int, Any]:
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(name)
        return dom.ID(), dom.info()[4], domain_owner(dom)
    finally:
        conn.close()


def test_import_adopts_a_hand_made_domain_without_restarting_it(
    tmp_path: Path, hand_made: tuple[str, str]
) -> None:
    prefix, name = hand_made
    spec: dict[str, Any] = {
        "hosts": {
            "local": {
                "uri": URI,
                "capacity": {"vcpus": 4, "memory": "4GiB", "disk": "20GiB"},
                "pools": {f"{prefix}-hand": {"external": True}},
            }
        },
        "vms": {},
    }
    project = new_project(tmp_path, spec, prefix)
    dom_id, cpu_before, _ = _running(name)
    try:
        out = tmp_path / "imported.yaml"
        ok(
            project.virtstack(
                "import", "-s", project.stack, "--host", "local", "--domain", name, "--out", str(out)
            )
        )
        entries = yaml.safe_load(out.read_text())
        assert entries["vms"][name] == {
            "host": "local",
            "vcpus": 1,
            "memory": "256MiB",
            "running": True,
            "autostart": False,
            "imported": {
                "owned": False,
                "disks": [
                    {"pool": f"{prefix}-hand", "volume": f"{prefix}-root.qcow2", "format": "qcow2"},
                    {"pool": f"{prefix}-hand", "volume": f"{prefix}-data.img", "format": "raw"},
                ],
            },
        }
        spec["vms"] = entries["vms"]
        rewrite(project, spec)

        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        after_id, cpu_after, owner = _running(name)
        assert after_id == dom_id and cpu_after >= cpu_before  # the same qemu process: never restarted
        assert owner is None  # not this stack's until imported.owned is confirmed

        plan = project.virtstack("plan", "-s", project.stack, "--detailed-exitcode")
        assert plan.returncode == 0, plan.stdout + plan.stderr  # no changes

        ok(project.virtstack("destroy", "-s", project.stack, "--yes"))
        assert _running(name)[0] == dom_id  # left in place, still running

        # The user confirms: `up` writes the owner record in place, still without a restart.
        spec["vms"][name]["imported"]["owned"] = True
        rewrite(project, spec)
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        after_id, _, owner = _running(name)
        assert after_id == dom_id
        assert owner is not None and owner.stack == project.stack
        plan = project.virtstack("plan", "-s", project.stack, "--detailed-exitcode")
        assert plan.returncode == 0, plan.stdout + plan.stderr
    finally:
        project.remove()
