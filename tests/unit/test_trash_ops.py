"""`virtstack trash empty` also removes a pool that destroy kept only for its trash (test:///default)."""

from __future__ import annotations

import uuid
from pathlib import Path

import libvirt

from virtstack.contract import Owner
from virtstack.ops.trash import empty_trash, remove_emptied_pools
from virtstack.provider import ownership, trash
from virtstack.spec.loader import parse_spec

URI = "test:///default"
ME = Owner("virtstack", "dev")


def spec_for(pool: str) -> str:
    return (
        "hosts:\n  local:\n    uri: test:///default\n    capacity: {vcpus: 2, memory: 2GiB, disk: 20GiB}\n"
        f"    pools: {{{pool}: {{path: /var/lib/x}}}}\n"
    )


def make_pool(conn: libvirt.virConnect, name: str, path: Path) -> libvirt.virStoragePool:
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>", 0
    )
    pool.create(0)
    ownership.set_pool_owner(pool, ME)
    return pool


def add_disk(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol:
    return pool.createXML(
        f"<volume><name>{name}</name><capacity>1048576</capacity>"
        "<target><format type='qcow2'/></target></volume>",
        0,
    )


def test_trash_empty_removes_a_pool_kept_only_for_the_trash_and_nothing_else(tmp_path: Path) -> None:
    conn = libvirt.open(URI)  # held open: the test driver's state lives as long as a connection
    try:
        kept, busy = f"kept{uuid.uuid4().hex[:6]}", f"busy{uuid.uuid4().hex[:6]}"
        kept_pool, busy_pool = make_pool(conn, kept, tmp_path / "a"), make_pool(conn, busy, tmp_path / "b")
        trash.move_to_trash(kept_pool, add_disk(kept_pool, "app-data.qcow2"), ME, "app")
        trash.move_to_trash(busy_pool, add_disk(busy_pool, "app-data.qcow2"), ME, "app")
        add_disk(busy_pool, "someone-elses.qcow2")  # still holds a volume that is not the trash

        open_uri = lambda _uri: libvirt.open(URI)  # noqa: E731
        for name in (kept, busy):
            spec = parse_spec(spec_for(name), "s.yaml")
            assert len(empty_trash(spec, ME, open_uri)) == 1
            removed = remove_emptied_pools(spec, ME, open_uri)
            assert removed == ([f"pool {kept} (host local)"] if name == kept else [])
        assert busy in conn.listStoragePools()
        assert kept not in conn.listStoragePools() + conn.listDefinedStoragePools()
    finally:
        conn.close()
