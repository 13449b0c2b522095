"""The trash: disks a plan deletes are kept in their pool under a trash name for `trash_days`.

Moving a disk to the trash copies it, flattened, to `trash@<project>@<stack>@<vm>@<UTC time>@<name>`
in the same pool (through libvirt, so remote hosts work too) and deletes the original: the copy needs
neither the base image nor the VM, so it can be restored after both are gone. Restoring copies it back
under its original name, where the next `up` adopts it as the VM's disk (the stack owns the pool).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from xml.sax.saxutils import escape

import libvirt

from virtstack.contract import Owner, TrashName
from virtstack.provider.connection import is_not_found
from virtstack.provider.refresh import refresh_pool
from virtstack.provider.xml import parse_volume

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# The provider skips the trash when the engine runs with this set (`--no-trash`).
NO_TRASH_ENV = "VIRTSTACK_NO_TRASH"


@dataclass(frozen=True)
class TrashedDisk:
    pool: str
    name: TrashName
    capacity: int

    @property
    def deleted_at(self) -> dt.datetime:
        return dt.datetime.strptime(self.name.stamp, STAMP_FORMAT).replace(tzinfo=dt.UTC)

    def expires(self, days: int) -> dt.datetime:
        return self.deleted_at + dt.timedelta(days=days)


def now_stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime(STAMP_FORMAT)


def _copy_xml(name: str, capacity: int, disk_format: str) -> str:
    return (
        f"<volume><name>{escape(name)}</name><capacity unit='bytes'>{capacity}</capacity>"
        f"<target><format type='{escape(disk_format)}'/></target></volume>"
    )


def _copy(pool: libvirt.virStoragePool, vol: libvirt.virStorageVol, name: str) -> libvirt.virStorageVol:
    doc = parse_volume(vol.XMLDesc(0))
    return pool.createXMLFrom(_copy_xml(name, doc["capacity"], doc["format"] or "qcow2"), vol, 0)


def move_to_trash(
    pool: libvirt.virStoragePool, vol: libvirt.virStorageVol, owner: Owner, vm: str, stamp: str | None = None
) -> str:
    """Keep `vol` in the trash and delete the original; returns the trash name."""
    name = str(TrashName(owner, vm, stamp or now_stamp(), vol.name()))
    _copy(pool, vol, name)
    vol.delete(0)
    return name


def list_trash(pool: libvirt.virStoragePool, owner: Owner) -> list[TrashedDisk]:
    """This stack's trashed disks in `pool`, oldest first."""
    refresh_pool(pool)
    found = []
    for volname in pool.listVolumes():
        parsed = TrashName.parse(volname)
        if parsed is None or parsed.owner != owner:
            continue
        capacity = pool.storageVolLookupByName(volname).info()[1]
        found.append(TrashedDisk(pool.name(), parsed, capacity))
    return sorted(found, key=lambda d: (d.name.stamp, d.name.original))


class RestoreError(Exception):
    pass


def restore(pool: libvirt.virStoragePool, disk: TrashedDisk) -> str:
    """Put a trashed disk back under its original name; refuses when that name is taken."""
    try:
        pool.storageVolLookupByName(disk.name.original)
    except libvirt.libvirtError as err:
        if not is_not_found(err):
            raise
    else:
        raise RestoreError(
            f"pool {disk.pool} already has a disk {disk.name.original}: remove the VM or disk that uses "
            f"it from the stack (and run up) before restoring"
        )
    vol = pool.storageVolLookupByName(str(disk.name))
    _copy(pool, vol, disk.name.original)
    vol.delete(0)
    return disk.name.original


def purge(pool: libvirt.virStoragePool, disk: TrashedDisk) -> None:
    try:
        pool.storageVolLookupByName(str(disk.name)).delete(0)
    except libvirt.libvirtError as err:
        if not is_not_found(err):
            raise
