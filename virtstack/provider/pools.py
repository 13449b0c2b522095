"""Storage pools: created, owned through a record volume, or used as `external` (never changed)."""

from __future__ import annotations

import contextlib
from typing import Any

import libvirt
import pulumi
from pulumi.dynamic import (
    CreateResult,
    ReadResult,
    UpdateResult,
)

from virtstack import contract
from virtstack.provider import ownership, xml
from virtstack.provider.base import Provider
from virtstack.provider.connection import is_not_found, with_connection
from virtstack.provider.ownership import OwnershipError, owner_of_props, owns, refusal


def lookup_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as err:
        if is_not_found(err):
            return None
        raise


def _pool_path(pool: libvirt.virStoragePool) -> str | None:
    from xml.etree import ElementTree as ET

    return ET.fromstring(pool.XMLDesc(0)).findtext("target/path")


def _external_pool_problem(pool: libvirt.virStoragePool | None, props: dict[str, Any]) -> str | None:
    where = f"external pool {props['name']} on host {props.get('host') or props['uri']}"
    if pool is None:
        return f"{where} does not exist (an external pool is used, never created)"
    if not pool.isActive():
        return f"{where} is not active (virtstack does not start a pool it does not own)"
    if props.get("path") and (_pool_path(pool) or "").rstrip("/") != str(props["path"]).rstrip("/"):
        return f"{where} has path {_pool_path(pool)}, not {props['path']}"
    return None


class PoolProvider(Provider):
    kind = "Pool"

    def problem(self, conn: libvirt.virConnect, props: dict[str, Any]) -> str | None:
        pool = lookup_pool(conn, props["name"])
        if props.get("external"):
            return _external_pool_problem(pool, props)
        if pool is None:
            return None
        record = ownership.pool_owner(pool)
        if not owns(record, owner_of_props(props)):
            return refusal("pool", props["name"], props, record)
        return None

    def create(self, props: dict[str, Any]) -> CreateResult:
        def op(conn: libvirt.virConnect) -> str:
            problem = self.problem(conn, props)
            if problem:
                raise OwnershipError(problem)
            pool = lookup_pool(conn, props["name"])
            if props.get("external"):
                return str(pool.UUIDString()) if pool is not None else ""
            if pool is None:
                pool = conn.storagePoolDefineXML(xml.pool_xml(props), 0)
                try:
                    pool.build(0)
                    pool.create(0)
                except libvirt.libvirtError:
                    pool.undefine()  # a create that fails leaves nothing behind
                    raise
            if not pool.isActive():
                pool.create(0)
            pool.setAutostart(1)
            owner = owner_of_props(props)
            if owner is not None:
                ownership.set_pool_owner(pool, owner)
            return str(pool.UUIDString())

        uuid = with_connection(props["uri"], op)
        return CreateResult(uuid, {**props, "uuid": uuid})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Only the owner record reaches update (path and name replace): a pool created before
        # records existed gets one, once it is certain this stack holds it (it is in its state).
        def op(conn: libvirt.virConnect) -> None:
            pool = lookup_pool(conn, news["name"])
            owner = owner_of_props(news)
            if pool is None or owner is None or news.get("external"):
                return
            record = ownership.pool_owner(pool)
            if record is not None and not owns(record, owner):
                raise OwnershipError(refusal("pool", news["name"], news, record))
            if pool.isActive():
                ownership.set_pool_owner(pool, owner)

        with_connection(news["uri"], op)
        return UpdateResult({**olds, **news, "uuid": olds.get("uuid")})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        def op(conn: libvirt.virConnect) -> ReadResult:
            pool = lookup_pool(conn, props["name"])
            if pool is None:
                return ReadResult("", {})
            return ReadResult(id_, {**props, "state": "active" if pool.isActive() else "inactive"})

        return with_connection(props["uri"], op)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        def op(conn: libvirt.virConnect) -> None:
            pool = lookup_pool(conn, props["name"])
            if pool is None or props.get("external"):
                return  # an external pool is never deleted; this stack only stops using it
            owner = owner_of_props(props)
            record = ownership.pool_owner(pool)
            if owner is not None and not owns(record, owner):
                pulumi.log.warn(refusal("pool", props["name"], props, record) + "; it is left as it is")
                return
            if owner is not None:
                pool.refresh(0)
                others = ownership.foreign_volumes(pool, owner)
                if others:
                    shown = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
                    pulumi.log.warn(
                        f"pool {props['name']} on host {props.get('host') or props['uri']} is kept: it "
                        f"still holds {len(others)} volume(s) this stack did not delete ({shown}); "
                        "`virtstack trash empty` purges this stack's trashed disks"
                    )
                    return
                with contextlib.suppress(libvirt.libvirtError):
                    pool.storageVolLookupByName(contract.pool_owner_volume(owner)).delete(0)
            if pool.isActive():
                pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.delete(0)  # removes the (inactive) pool's directory, and only when it is empty
            pool.undefine()

        with_connection(props["uri"], op)
