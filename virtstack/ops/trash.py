"""`virtstack trash` and the purge after `up`: a stack's trashed disks on every host of its stack file.

Public API:
    owner_of(project_root, stack) -> Owner
    find_trash(spec, owner, open_uri) -> list[HostTrash]      every trashed disk of the stack
    restore_disk(spec, owner, disk, open_uri) -> str            back under its original name
    purge_expired(spec, owner, now, open_uri) -> list[str]      older than spec.trash_days
    empty_trash(spec, owner, open_uri) -> list[str]
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import libvirt
import yaml

from virtstack import contract
from virtstack.contract import Owner
from virtstack.errors import VirtstackError
from virtstack.provider import trash
from virtstack.provider.refresh import refresh_pool
from virtstack.provider.trash import TrashedDisk
from virtstack.provider.xml import parse_domain
from virtstack.spec import StackSpec

OpenUri = Callable[[str], libvirt.virConnect]


class TrashError(VirtstackError):
    pass


@dataclass(frozen=True)
class HostTrash:
    host: str
    disk: TrashedDisk


def owner_of(project_root: Path, stack: str) -> Owner:
    """This project's name (Pulumi.yaml) and the stack: whom trashed disks belong to."""
    try:
        data = yaml.safe_load((project_root / "Pulumi.yaml").read_text(encoding="utf-8"))
        project = str(data["name"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        project = "virtstack"
    return Owner(project, stack.rsplit("/", 1)[-1])


@contextmanager
def _pools(spec: StackSpec, open_uri: OpenUri) -> Iterator[list[tuple[str, libvirt.virStoragePool]]]:
    """(host, pool) for every active pool of the stack file that exists on its host."""
    conns: list[libvirt.virConnect] = []
    found = []
    try:
        for host_name, host in spec.hosts.items():
            try:
                conn = open_uri(host.uri)
            except libvirt.libvirtError as err:
                raise TrashError(f"host {host_name} ({host.uri}) cannot be reached: {err}") from None
            conns.append(conn)
            for pool_name in host.pools:
                try:
                    pool = conn.storagePoolLookupByName(pool_name)
                except libvirt.libvirtError:
                    continue
                if pool.isActive():
                    found.append((host_name, pool))
        yield found
    finally:
        for conn in conns:
            with suppress(libvirt.libvirtError):
                conn.close()


def find_trash(spec: StackSpec, owner: Owner, open_uri: OpenUri = libvirt.open) -> list[HostTrash]:
    with _pools(spec, open_uri) as pools:
        return [HostTrash(host, disk) for host, pool in pools for disk in trash.list_trash(pool, owner)]


def _matches(entry: HostTrash, disk: str) -> bool:
    return disk in (str(entry.disk.name), entry.disk.name.original)


def restore_disk(spec: StackSpec, owner: Owner, disk: str, open_uri: OpenUri = libvirt.open) -> str:
    """Restore the trashed disk named `disk` (its trash name, or its original name: the newest)."""
    with _pools(spec, open_uri) as pools:
        candidates = [
            (host, pool, entry)
            for host, pool in pools
            for entry in trash.list_trash(pool, owner)
            if _matches(HostTrash(host, entry), disk)
        ]
        if not candidates:
            raise TrashError(f"no trashed disk {disk} of stack {owner.stack} (see `virtstack trash list`)")
        by_place = {(host, entry.pool, entry.name.original) for host, _, entry in candidates}
        if len(by_place) > 1:
            places = ", ".join(f"{o} on host {h} (pool {p})" for h, p, o in sorted(by_place))
            raise TrashError(f"{disk} is ambiguous: {places}; give the trash name")
        host, pool, entry = max(candidates, key=lambda c: c[2].name.stamp)
        try:
            restored = trash.restore(pool, entry)
        except trash.RestoreError as err:
            raise TrashError(str(err)) from None
        return f"{restored} (host {host}, pool {entry.pool})"


def purge_expired(
    spec: StackSpec, owner: Owner, now: dt.datetime, open_uri: OpenUri = libvirt.open
) -> list[str]:
    purged = []
    with _pools(spec, open_uri) as pools:
        for host, pool in pools:
            for disk in trash.list_trash(pool, owner):
                if disk.expires(spec.trash_days) <= now:
                    trash.purge(pool, disk)
                    purged.append(f"{disk.name} (host {host})")
    return purged


def empty_trash(spec: StackSpec, owner: Owner, open_uri: OpenUri = libvirt.open) -> list[str]:
    purged = []
    with _pools(spec, open_uri) as pools:
        for host, pool in pools:
            for disk in trash.list_trash(pool, owner):
                trash.purge(pool, disk)
                purged.append(f"{disk.name} (host {host})")
    return purged


def remove_emptied_pools(spec: StackSpec, owner: Owner, open_uri: OpenUri = libvirt.open) -> list[str]:
    """Pools of this stack that `destroy` kept only for their trash and that hold nothing else now
    (no volume but the owner record, no domain using them): removed, as destroy would have."""
    removed = []
    record = contract.pool_owner_volume(owner)
    with _pools(spec, open_uri) as pools:
        for host, pool in pools:
            refresh_pool(pool)
            if pool.listVolumes() != [record]:
                continue
            conn = pool.connect()
            used = any(
                disk.get("pool") == pool.name()
                for dom in conn.listAllDomains(0)
                for disk in parse_domain(dom.XMLDesc(0))["disks"]
            )
            if used:
                continue
            pool.storageVolLookupByName(record).delete(0)
            pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.delete(0)  # its (now empty) directory
            pool.undefine()
            removed.append(f"pool {pool.name()} (host {host})")
    return removed
