"""Storage pools: created, owned through a record volume, or used as `external` (never changed)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import libvirt
import pulumi
from pulumi.dynamic import (
    CreateResult,
    ReadResult,
    UpdateResult,
)

from virtstack import contract
from virtstack.props import PoolProps
from virtstack.provider import ownership, xml
from virtstack.provider.base import Provider
from virtstack.provider.connection import found_or_none, with_connection
from virtstack.provider.ownership import OwnershipError, owner_of, owns, refusal
from virtstack.provider.refresh import refresh_pool


def lookup_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
    return found_or_none(conn.storagePoolLookupByName, name)


def _pool_path(pool: libvirt.virStoragePool) -> str | None:
    from xml.etree import ElementTree as ET

    return ET.fromstring(pool.XMLDesc(0)).findtext("target/path")


def _external_pool_problem(pool: libvirt.virStoragePool | None, props: PoolProps) -> str | None:
    where = f"external pool {props.name} on host {props.target.where}"
    if pool is None:
        return f"{where} does not exist (an external pool is used, never created)"
    if not pool.isActive():
        return f"{where} is not active (virtstack does not start a pool it does not own)"
    if props.path and (_pool_path(pool) or "").rstrip("/") != props.path.rstrip("/"):
        return f"{where} has path {_pool_path(pool)}, not {props.path}"
    return None


def _interrupted_create(pool: libvirt.virStoragePool, props: PoolProps) -> bool:
    """A pool's owner record is a volume inside it, so it can only be written once the pool runs: a
    run killed in between leaves the pool without one. Such a pool — at exactly the stack file's
    path, and empty — is taken as this stack's unfinished create (an empty pool holds nothing to
    lose); anything else without a record stays someone else's."""
    if props.path is None or (_pool_path(pool) or "").rstrip("/") != props.path.rstrip("/"):
        return False
    if not pool.isActive():
        return True  # defined, never started: create() starts it and looks inside before adopting
    refresh_pool(pool)
    return pool.listVolumes() == []


class PoolProvider(Provider[PoolProps]):
    kind = contract.POOL

    def props(self, inputs: Mapping[str, Any]) -> PoolProps:
        return PoolProps.from_inputs(inputs)

    def problem(self, conn: libvirt.virConnect, props: PoolProps) -> str | None:
        pool = lookup_pool(conn, props.name)
        if props.external:
            return _external_pool_problem(pool, props)
        if pool is None:
            return None
        record = ownership.pool_owner(pool)
        if record is None and _interrupted_create(pool, props):
            return None
        if not owns(record, owner_of(props.target)):
            return refusal("pool", props.name, props.target, record)
        return None

    def create(self, inputs: dict[str, Any]) -> CreateResult:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> str:
            problem = self.problem(conn, props)
            if problem:
                raise OwnershipError(problem)
            pool = lookup_pool(conn, props.name)
            if props.external:
                return str(pool.UUIDString()) if pool is not None else ""
            if pool is None:
                pool = conn.storagePoolDefineXML(xml.pool_xml(props), 0)
                try:
                    pool.build(0)
                    pool.create(0)
                except libvirt.libvirtError:
                    pool.undefine()  # a create that fails leaves nothing behind
                    raise
            owner = owner_of(props.target)
            if not pool.isActive():
                pool.create(0)
                # Started only now (an interrupted create): adopted only if it holds nothing.
                if ownership.pool_owner(pool) is None and not _interrupted_create(pool, props):
                    pool.destroy()
                    raise OwnershipError(refusal("pool", props.name, props.target, None))
            if owner is not None:
                ownership.set_pool_owner(pool, owner)  # first: the window without a record stays small
            pool.setAutostart(1)
            return str(pool.UUIDString())

        uuid = with_connection(props.target.uri, op)
        return CreateResult(uuid, {**inputs, "uuid": uuid})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        props = self.props(news)

        # Only the owner record reaches update (path and name replace): a pool created before
        # records existed gets one, once it is certain this stack holds it (it is in its state).
        def op(conn: libvirt.virConnect) -> None:
            pool = lookup_pool(conn, props.name)
            owner = owner_of(props.target)
            if pool is None or owner is None or props.external:
                return
            record = ownership.pool_owner(pool)
            if record is not None and not owns(record, owner):
                raise OwnershipError(refusal("pool", props.name, props.target, record))
            if pool.isActive():
                ownership.set_pool_owner(pool, owner)

        with_connection(props.target.uri, op)
        return UpdateResult({**olds, **news, "uuid": olds.get("uuid")})

    def read(self, id_: str, inputs: dict[str, Any]) -> ReadResult:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> ReadResult:
            pool = lookup_pool(conn, props.name)
            if pool is None:
                return ReadResult("", {})
            return ReadResult(id_, {**inputs, "state": "active" if pool.isActive() else "inactive"})

        return with_connection(props.target.uri, op)

    def delete(self, _id: str, inputs: dict[str, Any]) -> None:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> None:
            pool = lookup_pool(conn, props.name)
            if pool is None or props.external:
                return  # an external pool is never deleted; this stack only stops using it
            owner = owner_of(props.target)
            record = ownership.pool_owner(pool)
            if owner is not None and not owns(record, owner):
                pulumi.log.warn(refusal("pool", props.name, props.target, record) + "; it is left as it is")
                return
            if owner is not None:
                refresh_pool(pool)
                others = ownership.foreign_volumes(pool, owner)
                if others:
                    shown = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
                    pulumi.log.warn(
                        f"pool {props.name} on host {props.target.where} is kept: it "
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

        with_connection(props.target.uri, op)
