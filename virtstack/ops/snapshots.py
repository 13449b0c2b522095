"""Snapshots of a stack's VMs (`virtstack snapshot`): group-consistent internal snapshots through
libvirt, of every disk of the selected VMs and their memory.

Public API:
    select_vms(outputs, names) -> list[SnapshotVm]      the stack's VMs (all, or the named ones)
    create(open_libvirt, vms, snapshot, owner)          pause all, snapshot each, resume all
    revert(open_libvirt, vms, snapshot)                 back to the snapshot, running
    delete(open_libvirt, vms, snapshot)
    list_snapshots(open_libvirt, vms) -> list[SnapshotRow]
    snapshot_holders(open_libvirt, vms) -> dict[vm, [snapshot names]]   (for the plan's warning)

Rules:
    * Group-consistent: every selected VM that runs is paused before the first snapshot is taken and
      resumed after the last (also when one fails), so the VMs' disks and memory are taken at one
      moment of the group.
    * Internal snapshots (inside each qcow2 disk, with the guest's memory): the read-only cloud-init
      seed is left out. libvirt cannot take internal snapshots of a VM with UEFI (pflash) firmware:
      such VMs are refused, by name, before anything is paused.
    * Each snapshot records its owner (`virtstack <project>/<stack>` in its description): only this
      stack's snapshots are listed, reverted or deleted. Deleting a VM deletes its snapshots with it.
    * Revert restores disks and memory and leaves each VM running.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from virtstack.errors import VirtstackError

__all__ = [
    "SnapshotRow",
    "SnapshotVm",
    "create",
    "delete",
    "list_snapshots",
    "revert",
    "select_vms",
    "snapshot_holders",
]

OWNER_PREFIX = "virtstack "
SNAPSHOT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Opener = Callable[[str], Any]


@dataclass(frozen=True)
class SnapshotVm:
    name: str
    uri: str
    domain: str


@dataclass(frozen=True)
class SnapshotRow:
    vm: str
    snapshot: str
    created: str  # UTC, ISO 8601
    state: str  # the VM's state when taken: running, paused, shutoff


def check_name(snapshot: str) -> str:
    if not SNAPSHOT_NAME_RE.match(snapshot):
        raise VirtstackError(
            f"snapshot name {snapshot!r}: use letters, digits, '.', '_' and '-' (at most 64, not starting "
            "with a symbol)"
        )
    return snapshot


def select_vms(outputs: Mapping[str, Any], names: Sequence[str] = ()) -> list[SnapshotVm]:
    vms = outputs.get("vms") or {}
    if not isinstance(vms, Mapping) or not vms:
        raise VirtstackError("the stack has no VMs (run `virtstack up` first)")
    unknown = [n for n in names if n not in vms]
    if unknown:
        raise VirtstackError(f"no VM {', '.join(unknown)} in this stack (its VMs: {', '.join(sorted(vms))})")
    chosen = names or sorted(vms)
    return [
        SnapshotVm(n, str((vms[n] or {}).get("uri", "")), str((vms[n] or {}).get("domain", n)))
        for n in dict.fromkeys(chosen)
    ]


def _owner_text(owner: str) -> str:
    return OWNER_PREFIX + owner


def _snapshot_xml(snapshot: str, owner: str, dom: Any) -> str:
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = snapshot
    ET.SubElement(root, "description").text = _owner_text(owner)
    disks = ET.SubElement(root, "disks")
    for disk in ET.fromstring(dom.XMLDesc(0)).findall("devices/disk"):
        target = disk.find("target")
        if target is None:
            continue
        writable = disk.get("device", "disk") == "disk" and disk.find("readonly") is None
        ET.SubElement(disks, "disk", name=target.get("dev", ""), snapshot="internal" if writable else "no")
    return ET.tostring(root, encoding="unicode")


def _uses_pflash(dom: Any) -> bool:
    os_el = ET.fromstring(dom.XMLDesc(0)).find("os")
    if os_el is None:
        return False
    loader = os_el.find("loader")
    return os_el.get("firmware") == "efi" or (loader is not None and loader.get("type") == "pflash")


def _quiet_libvirt() -> None:
    """libvirt prints every error to stderr unless a handler is set; ours are reported as messages."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class _Domains:
    """The selected VMs' domains, one connection per host, closed at the end."""

    def __init__(self, open_libvirt: Opener, vms: Iterable[SnapshotVm]) -> None:
        _quiet_libvirt()
        self._open = open_libvirt
        self._conns: dict[str, Any] = {}
        self.items: list[tuple[SnapshotVm, Any]] = []
        for vm in vms:
            self.items.append((vm, self._lookup(vm)))

    def _lookup(self, vm: SnapshotVm) -> Any:
        import libvirt

        if vm.uri not in self._conns:
            try:
                self._conns[vm.uri] = self._open(vm.uri)
            except libvirt.libvirtError as err:
                raise VirtstackError(f"vm {vm.name}: cannot reach its host {vm.uri}: {err}") from err
        try:
            return self._conns[vm.uri].lookupByName(vm.domain)
        except libvirt.libvirtError as err:
            raise VirtstackError(
                f"vm {vm.name}: no domain {vm.domain} on {vm.uri} (run `virtstack up`)"
            ) from err

    def close(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()


@contextlib.contextmanager
def _domains(open_libvirt: Opener, vms: Iterable[SnapshotVm]) -> Any:
    doms = _Domains(open_libvirt, vms)
    try:
        yield doms.items
    finally:
        doms.close()


def _owned(dom: Any, snapshot: str, owner: str | None) -> Any:
    import libvirt

    try:
        snap = dom.snapshotLookupByName(snapshot, 0)
    except libvirt.libvirtError:
        return None
    if owner is not None and _description(snap) != _owner_text(owner):
        return None
    return snap


def _description(snap: Any) -> str:
    return (ET.fromstring(snap.getXMLDesc(0)).findtext("description") or "").strip()


def create(open_libvirt: Opener, vms: Sequence[SnapshotVm], snapshot: str, owner: str) -> list[str]:
    """Take `snapshot` of every VM at one moment of the group; returns the VM names."""
    import libvirt

    check_name(snapshot)
    with _domains(open_libvirt, vms) as items:
        for vm, dom in items:
            if _uses_pflash(dom):
                raise VirtstackError(
                    f"vm {vm.name} boots UEFI firmware: libvirt cannot take internal snapshots of a VM with "
                    "pflash firmware (snapshot the others with --vm)"
                )
            with contextlib.suppress(libvirt.libvirtError):
                dom.snapshotLookupByName(snapshot, 0)
                raise VirtstackError(f"vm {vm.name} already has a snapshot {snapshot} (delete it first)")
        paused = []
        try:
            for _vm, dom in items:
                if dom.isActive() and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                    dom.suspend()
                    paused.append(dom)
            for vm, dom in items:
                try:
                    dom.snapshotCreateXML(_snapshot_xml(snapshot, owner, dom), 0)
                except libvirt.libvirtError as err:
                    raise VirtstackError(f"vm {vm.name}: snapshot {snapshot} failed: {err}") from err
        finally:
            for dom in paused:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.resume()
        return [vm.name for vm, _ in items]


def _require(
    items: Sequence[tuple[SnapshotVm, Any]], snapshot: str, owner: str
) -> list[tuple[SnapshotVm, Any, Any]]:
    found, missing = [], []
    for vm, dom in items:
        snap = _owned(dom, snapshot, owner)
        if snap is None:
            missing.append(vm.name)
        else:
            found.append((vm, dom, snap))
    if missing:
        raise VirtstackError(f"no snapshot {snapshot} of this stack on vm {', '.join(missing)}")
    return found


def revert(open_libvirt: Opener, vms: Sequence[SnapshotVm], snapshot: str, owner: str) -> list[str]:
    import libvirt

    check_name(snapshot)
    with _domains(open_libvirt, vms) as items:
        found = _require(items, snapshot, owner)
        for vm, dom, snap in found:
            try:
                dom.revertToSnapshot(snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
            except libvirt.libvirtError as err:
                raise VirtstackError(f"vm {vm.name}: revert to {snapshot} failed: {err}") from err
        return [vm.name for vm, _, _ in found]


def delete(open_libvirt: Opener, vms: Sequence[SnapshotVm], snapshot: str, owner: str) -> list[str]:
    import libvirt

    check_name(snapshot)
    with _domains(open_libvirt, vms) as items:
        found = _require(items, snapshot, owner)
        for vm, _dom, snap in found:
            try:
                snap.delete(0)
            except libvirt.libvirtError as err:
                raise VirtstackError(f"vm {vm.name}: deleting snapshot {snapshot} failed: {err}") from err
        return [vm.name for vm, _, _ in found]


def list_snapshots(open_libvirt: Opener, vms: Sequence[SnapshotVm], owner: str) -> list[SnapshotRow]:
    rows = []
    with _domains(open_libvirt, vms) as items:
        for vm, dom in items:
            for snap in dom.listAllSnapshots(0):
                if _description(snap) != _owner_text(owner):
                    continue
                doc = ET.fromstring(snap.getXMLDesc(0))
                stamp = int(doc.findtext("creationTime") or 0)
                created = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                rows.append(SnapshotRow(vm.name, snap.getName(), created, doc.findtext("state") or "?"))
    return sorted(rows, key=lambda r: (r.vm, r.created, r.snapshot))


def snapshot_holders(open_libvirt: Opener, vms: Sequence[SnapshotVm]) -> dict[str, list[str]]:
    """VM name → its snapshots (any owner): the disks a plan would replace that hold them. Hosts or
    domains that cannot be read count as holding none (the plan itself reports unreachable hosts)."""
    import libvirt

    held: dict[str, list[str]] = {}
    conns: dict[str, Any] = {}
    try:
        for vm in vms:
            try:
                if vm.uri not in conns:
                    conns[vm.uri] = open_libvirt(vm.uri)
                conn = conns[vm.uri]
                names = sorted(s.getName() for s in conn.lookupByName(vm.domain).listAllSnapshots(0))
            except libvirt.libvirtError:
                continue
            if names:
                held[vm.name] = names
    finally:
        for conn in conns.values():
            with contextlib.suppress(Exception):
                conn.close()
    return held


def render_rows(rows: Sequence[SnapshotRow]) -> str:
    if not rows:
        return "No snapshots.\n"
    widths = [max(len(h), *(len(getattr(r, f)) for r in rows)) for h, f in _COLUMNS]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(_COLUMNS, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append(
            "  ".join(getattr(row, f).ljust(w) for (_, f), w in zip(_COLUMNS, widths, strict=True)).rstrip()
        )
    return "\n".join(lines) + "\n"


_COLUMNS = (("VM", "vm"), ("SNAPSHOT", "snapshot"), ("CREATED (UTC)", "created"), ("STATE", "state"))


_DISK_KINDS = ("root-disk", "data-disk")


def plan_warnings(plan: Any, host_uris: Mapping[str, str], open_libvirt: Opener) -> list[str]:
    """One line per VM whose disks this plan replaces or deletes while they hold snapshots: the
    snapshots live inside those disks and go with them. (`plan` and `up` print these.)"""
    touched = []
    for vm_plan in plan.vms:
        disks = [c for c in vm_plan.changes if c.data_loss and c.resource.kind in _DISK_KINDS]
        if disks and vm_plan.host in host_uris:
            touched.append((vm_plan, disks))
    if not touched:
        return []
    vms = [SnapshotVm(p.vm, host_uris[p.host], p.vm) for p, _ in touched]
    _quiet_libvirt()
    held = snapshot_holders(open_libvirt, vms)
    lines = []
    for vm_plan, disks in touched:
        if vm_plan.vm in held:
            what = ", ".join(c.resource.label for c in disks)
            lines.append(
                f"warning: vm {vm_plan.vm}: this plan destroys its {what}, which hold(s) its snapshots "
                f"{', '.join(held[vm_plan.vm])}: they are lost with it"
            )
    return lines
