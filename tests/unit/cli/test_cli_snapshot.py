"""`virtstack snapshot` on libvirt's in-memory driver (its `test` domain stands for a stack's VM):
exact output and exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libvirt
import pytest
from click.testing import CliRunner
from clifakes import FakeEngine, make_services

from virtstack.cli.main import cli

OUTPUTS = {"vms": {"app": {"host": "local", "uri": "test:///default", "domain": "test"}}}


class _Shared:
    """One in-memory daemon for every command of a test (each libvirt.open would start a new one)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def close(self) -> None:
        pass


@pytest.fixture
def run(tmp_path: Path) -> Any:
    conn = libvirt.open("test:///default")
    original = conn.lookupByName("test").XMLDesc(0)
    svc = make_services(tmp_path / "project", FakeEngine(outputs=OUTPUTS))
    svc.open_libvirt = lambda _uri: _Shared(conn)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, ["snapshot", *args, "-s", "dev"], obj=svc)
        return result.exit_code, result.output

    _reset(conn, original)
    yield invoke, conn
    _reset(conn, original)
    conn.close()


def _reset(conn: Any, original: str) -> None:
    """test:///default is one daemon per process, shared with other tests: put `test` back as it was."""
    dom = conn.lookupByName("test")
    for snap in dom.listAllSnapshots(0):
        snap.delete(0)
    if dom.isActive():
        dom.destroy()
    conn.defineXML(original).create()


def test_create_list_revert_delete(run: Any) -> None:
    invoke, conn = run
    assert invoke("create", "before-upgrade") == (0, "Snapshot before-upgrade taken of 1 VM(s): app.\n")
    # Group-consistent: paused for the snapshot, running again after it.
    assert conn.lookupByName("test").state()[0] == libvirt.VIR_DOMAIN_RUNNING
    code, out = invoke("list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["VM", "SNAPSHOT", "CREATED", "(UTC)", "STATE"]
    assert lines[1].split()[:2] == ["app", "before-upgrade"] and lines[1].split()[3] == "paused"
    assert invoke("revert", "before-upgrade") == (0, "Reverted 1 VM(s) to before-upgrade: app.\n")
    assert conn.lookupByName("test").state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert invoke("delete", "before-upgrade") == (0, "Deleted snapshot before-upgrade of 1 VM(s): app.\n")
    assert invoke("list") == (0, "No snapshots.\n")


def test_errors_are_one_line(run: Any) -> None:
    invoke, _conn = run
    assert invoke("revert", "nope") == (1, "error: no snapshot nope of this stack on vm app\n")
    assert invoke("create", "--vm", "db", "x") == (1, "error: no VM db in this stack (its VMs: app)\n")
    assert invoke("create", "bad name") == (
        1,
        "error: snapshot name 'bad name': use letters, digits, '.', '_' and '-' (at most 64, not starting "
        "with a symbol)\n",
    )
    assert invoke("create", "s1")[0] == 0
    assert invoke("create", "s1") == (1, "error: vm app already has a snapshot s1 (delete it first)\n")


def test_snapshots_of_another_stack_are_not_touched(run: Any) -> None:
    invoke, conn = run
    dom = conn.lookupByName("test")
    dom.snapshotCreateXML(
        "<domainsnapshot><name>theirs</name><description>virtstack virtstack/other</description>"
        "</domainsnapshot>",
        0,
    )
    assert invoke("list") == (0, "No snapshots.\n")
    assert invoke("delete", "theirs") == (1, "error: no snapshot theirs of this stack on vm app\n")
    assert [s.getName() for s in dom.listAllSnapshots(0)] == ["theirs"]


def test_uefi_vms_are_refused_before_anything_is_paused(run: Any) -> None:
    invoke, conn = run
    dom = conn.lookupByName("test")
    doc = dom.XMLDesc(0).replace("<os>", "<os firmware='efi'>")
    dom.destroy()
    conn.defineXML(doc).create()
    code, out = invoke("create", "s1")
    assert code == 1
    assert out == (
        "error: vm app boots UEFI firmware: libvirt cannot take internal snapshots of a VM with pflash "
        "firmware (snapshot the others with --vm)\n"
    )
    assert conn.lookupByName("test").state()[0] == libvirt.VIR_DOMAIN_RUNNING


def _plan(kind: str, label: str, action: Any) -> Any:
    from virtstack.ops.changes import Change, Plan, VmPlan
    from virtstack.ops.resources import ResourceInfo

    info = ResourceInfo("urn", "t", "test-x", kind, label, "test", "local", None)
    return Plan(vms=(VmPlan("test", "local", action, (Change(info, action),)),))


def test_the_plan_warns_when_it_destroys_a_disk_that_holds_snapshots(run: Any) -> None:
    from virtstack.ops.changes import Action
    from virtstack.ops.snapshots import plan_warnings

    invoke, conn = run

    def opener(_uri: str) -> Any:
        return _Shared(conn)

    uris = {"local": "test:///default"}
    replace_root = _plan("root-disk", "root disk", Action.REPLACE_DATA_LOSS)
    assert plan_warnings(replace_root, uris, opener) == []  # no snapshot yet
    assert invoke("create", "s1")[0] == 0
    assert plan_warnings(replace_root, uris, opener) == [
        "warning: vm test: this plan destroys its root disk, which hold(s) its snapshots s1: they are lost "
        "with it"
    ]
    # A restart keeps the disks, and so the snapshots: no warning.
    assert plan_warnings(_plan("domain", "domain", Action.REDEFINE), uris, opener) == []
