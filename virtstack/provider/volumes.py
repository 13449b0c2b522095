"""Volumes: base images, copy-on-write root disks, data disks and cloud-init seeds; deleted disks
go to the trash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
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
from virtstack.props import DEFAULT_SHUTDOWN_TIMEOUT, VolumeProps
from virtstack.provider import lifecycle, moves, ownership, trash, xml
from virtstack.provider.base import Provider
from virtstack.provider.connection import found_or_none, is_not_found, with_connection
from virtstack.provider.ownership import OwnershipError, owner_of
from virtstack.provider.pools import lookup_pool


def _image_virtual_size(path: str) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", path], check=True, capture_output=True, text=True
    ).stdout
    return int(json.loads(out)["virtual-size"])


def _upload(conn: libvirt.virConnect, vol: libvirt.virStorageVol, path: str) -> None:
    if conn.getType().lower() == "test":
        return  # libvirt's test driver (simulated hosts) keeps no volume data and has no upload
    size = os.path.getsize(path)
    stream = conn.newStream(0)
    vol.upload(stream, 0, size, 0)
    with open(path, "rb") as f:
        stream.sendAll(lambda _s, n, fh: fh.read(n), f)
    stream.finish()


def _seed_iso(props: VolumeProps, workdir: str) -> str:
    """A NoCloud seed: an ISO labelled `cidata` holding user-data, meta-data and network-config."""
    files = {"user-data": str(props.user_data), "meta-data": str(props.meta_data)}
    if props.network_config:
        files["network-config"] = props.network_config
    for fname, content in files.items():
        with open(os.path.join(workdir, fname), "w", encoding="utf-8") as f:
            f.write(content)
    iso = os.path.join(workdir, "seed.iso")
    mkisofs = shutil.which("genisoimage") or shutil.which("mkisofs") or "genisoimage"
    subprocess.run(
        [mkisofs, "-quiet", "-output", iso, "-volid", "cidata", "-joliet", "-rock", *files],
        check=True,
        cwd=workdir,
        capture_output=True,
    )
    return iso


def _generation() -> str:
    """A new token per created volume. A volume replaced under the same name keeps its path and key, so
    domains depend on this instead: a replaced disk changes it and the domain is redefined onto the
    new file rather than running on with the deleted one."""
    return uuid.uuid4().hex


def _grow(conn: libvirt.virConnect, vol: libvirt.virStorageVol, size: int) -> None:
    """Grow a disk; one a running guest has open is grown through that guest's QEMU (qemu-img cannot
    take the image's write lock then), which also tells the guest its disk grew. virtstack's domains
    name their disks by pool and volume (`<source pool= volume=>`), others by file path: both count."""
    path, pool = vol.path(), vol.storagePoolLookupByVolume().name()
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        for disk in xml.parse_domain(dom.XMLDesc(0))["disks"]:
            named = disk.get("pool") == pool and disk.get("volume") == vol.name()
            if named or disk.get("file") == path:
                dom.blockResize(disk.get("target") or path, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
                return
    vol.resize(size, 0)


def _mismatch(vol: libvirt.virStorageVol, props: VolumeProps) -> str | None:
    """How an existing disk differs from what `props` asks for, or None when it is what we asked."""
    doc = xml.parse_volume(vol.XMLDesc(0))
    wanted_format = props.format or "qcow2"
    differences = []
    if doc["capacity"] != props.size:
        differences.append(f"capacity {doc['capacity']} bytes, not {props.size}")
    if doc["format"] != wanted_format:
        differences.append(f"format {doc['format']}, not {wanted_format}")
    backing = props.backing_path or None
    known = backing is None or isinstance(backing, str)  # at preview, a base not created yet is unknown
    # A root disk restored from the trash is flattened (no backing file): it is the VM's disk all the same.
    restored_root = props.role == "root" and doc["backing_path"] is None
    if known and doc["backing_path"] != backing and not restored_root:
        differences.append(f"backing file {doc['backing_path'] or 'none'}, not {backing or 'none'}")
    return ", ".join(differences) or None


def _lookup_volume(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    return found_or_none(pool.storageVolLookupByName, name)


def _volume_outputs(vol: libvirt.virStorageVol, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        **inputs,
        "path": vol.path(),
        "key": vol.key(),
        "capacity": vol.info()[1],
        "generation": _generation(),
    }


def _stop_for_move(dom: libvirt.virDomain) -> None:
    """The VM of a disk that moves to another host: an ACPI shutdown, forced after the default timeout
    (a disk does not know its VM's `shutdown_timeout`)."""
    lifecycle.stop_and_report(dom, DEFAULT_SHUTDOWN_TIMEOUT)


def _trash_wanted() -> bool:
    return os.environ.get(trash.NO_TRASH_ENV, "") not in ("1", "true", "yes")


def _external_image_problem(vol: libvirt.virStorageVol | None, props: VolumeProps, where: str) -> str | None:
    if vol is None:
        return f"external image {where} does not exist (an external image is used, never uploaded)"
    found = xml.parse_volume(vol.XMLDesc(0))["format"]
    if found != props.format:
        return f"external image {where} is {found}, not {props.format}"
    return None


class VolumeProvider(Provider[VolumeProps]):
    """Roles: `base` (an image uploaded once per host), `root` (copy-on-write over a base), `data`
    (an empty qcow2), `seed` (a cloud-init NoCloud ISO built from the user data)."""

    kind = contract.VOLUME

    def props(self, inputs: Mapping[str, Any]) -> VolumeProps:
        return VolumeProps.from_inputs(inputs)

    def problem(self, conn: libvirt.virConnect, props: VolumeProps) -> str | None:
        pool = lookup_pool(conn, props.pool)
        if pool is None or not pool.isActive():
            return None  # the pool's own check (or create) speaks for it
        vol = _lookup_volume(pool, props.name)
        where = f"volume {props.name} in pool {props.pool} on host {props.target.where}"
        if props.external:
            return _external_image_problem(vol, props, where)
        if vol is None:
            return None
        if not ownership.volume_is_ours(pool, props.name, props):
            return f"{where} exists and is not this stack's ({props.target.owner or None}): it is left alone"
        return None

    def adoption_problem(self, vol: libvirt.virStorageVol, props: VolumeProps) -> str | None:
        """At create: a disk of this stack already there must be what is asked. (Not at check: the
        engine checks a replacement as a new object while the disk it replaces still exists.)"""
        mismatch = _mismatch(vol, props) if props.holds_data else None
        if not mismatch:
            return None
        host = props.target.where
        return (
            f"volume {props.name} in pool {props.pool} on host {host} exists with {mismatch}: "
            "virtstack never deletes an existing disk (restore the right one from the trash, or remove "
            "it by hand)"
        )

    def create(self, inputs: dict[str, Any]) -> CreateResult:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            problem = self.problem(conn, props)
            if problem:
                raise OwnershipError(problem)
            pool = conn.storagePoolLookupByName(props.pool)
            existing = _lookup_volume(pool, props.name)
            if props.external and existing is not None:
                return _volume_outputs(existing, inputs)  # shared: used as it is, never uploaded
            role = props.role
            if existing is not None:
                # This stack's, left by an interrupted run (created before the engine recorded it) or
                # restored from the trash: a disk that is what we asked for is adopted as is — a
                # guest may already run on it. An image or seed (no data) whose upload may have been
                # cut short is made afresh.
                if role in ("root", "data"):
                    problem = self.adoption_problem(existing, props)
                    if problem:
                        raise OwnershipError(problem)
                    return _volume_outputs(existing, inputs)
                existing.delete(0)
            with tempfile.TemporaryDirectory(prefix="virtstack-") as workdir:
                upload_from = None
                if role == "base":
                    upload_from = str(props.source)
                    capacity = _image_virtual_size(upload_from)
                elif role == "seed":
                    upload_from = _seed_iso(props, workdir)
                    capacity = os.path.getsize(upload_from)
                else:
                    capacity = props.size or 0
                vol = pool.createXML(xml.volume_xml(props, capacity), 0)
                if upload_from is not None:
                    _upload(conn, vol, upload_from)
            return _volume_outputs(vol, inputs)

        outs = with_connection(props.target.uri, op)
        return CreateResult(outs["key"], outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        props = self.props(news)
        if moves.volume_is_moved(olds, news):
            # Its VM moves to another host: the disk is copied there, the source kept (see moves).
            moved = moves.move_volume(olds, news, self.problem, _stop_for_move)
            olds = {**olds, **moved}

        # Only a grown size (or a label) reaches update: anything else replaces (or moves, above).
        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            vol = conn.storagePoolLookupByName(props.pool).storageVolLookupByName(props.name)
            if props.size and props.size > int(vol.info()[1]):
                _grow(conn, vol, props.size)
            inputs = {k: v for k, v in news.items() if k not in contract.OUTPUT_ONLY}
            return {**olds, **inputs, "capacity": vol.info()[1]}

        return UpdateResult(with_connection(props.target.uri, op))

    def read(self, id_: str, inputs: dict[str, Any]) -> ReadResult:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> ReadResult:
            try:
                vol = conn.storagePoolLookupByName(props.pool).storageVolLookupByName(props.name)
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return ReadResult("", {})
                raise
            info = vol.info()
            outs = {**inputs, "path": vol.path(), "capacity": info[1]}
            if props.size and info[1] < props.size:
                outs["size"] = info[1]  # shrunk or recreated out of band: report what is there
            return ReadResult(id_, outs)

        return with_connection(props.target.uri, op)

    def delete(self, _id: str, inputs: dict[str, Any]) -> None:
        props = self.props(inputs)
        if props.external:
            return  # a shared image: this stack only stops using it

        def op(conn: libvirt.virConnect) -> None:
            try:
                pool = conn.storagePoolLookupByName(props.pool)
                vol = pool.storageVolLookupByName(props.name)
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return
                raise
            owner = owner_of(props.target)
            if props.holds_data and owner is not None and _trash_wanted():
                # Consent was given (virtstack up/destroy --allow-data-loss), but a reviewed change
                # can still be wrong: keep the disk for trash_days.
                kept = trash.move_to_trash(pool, vol, owner, props.vm or "")
                pulumi.log.info(f"{props.name} kept in the trash of pool {props.pool} as {kept}")
                return
            vol.delete(0)

        with_connection(props.target.uri, op)
