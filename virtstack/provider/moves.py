"""Moving a VM to another host: its disks copied, the same UUID and MACs, the source removed last.

A VM whose host changes keeps its resources (same URNs); only their `uri` changes, so the engine runs
an update — volumes first (the domain depends on them), then the domain:

1. Volume update (`move_volume`, each root and data disk): the VM on the source is shut down (ACPI,
   then forced after a grace period), the disk is copied through libvirt storage streams (download on
   the source, upload on the target; a root disk is first flattened on the source, since its base
   image's path differs per host) into the target pool. The source disk is KEPT.
2. Domain update (`move_domain`): defined on the target with the same UUID and MACs and started;
   only once it is defined (and running, when asked) the source disks are deleted, then the source
   domain is undefined.

Journal (what makes each step resumable after a crash, kill -9 included):
- While a disk is copied, a marker volume `<name>.virtstack-moving` sits in the target pool: a target
  disk next to its marker is an incomplete copy and is made again from the source; a target disk without
  one is complete. The source disk is never touched by step 1.
- The source domain (holding the source disks' definitions) is undefined last: as long as it exists,
  a rerun's domain update finds and finishes the move; once it is gone, nothing remains on the source.
- Every step checks what is already done (a target domain defined, a source disk gone) and skips it.
Nothing on the source is deleted before the target holds a complete copy and its domain is defined
and started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import libvirt
import pulumi

from virtstack import contract
from virtstack.props import VolumeProps
from virtstack.provider import ownership, xml
from virtstack.provider.connection import found_or_none, with_connection

MOVING_SUFFIX = ".virtstack-moving"
FLAT_SUFFIX = ".virtstack-flat"
_CHUNK = 1 << 20
MOVABLE_ROLES = ("root", "data")
# Keys that may change with the host while the disk stays the same disk: its host, its pool's name on
# that host, and (root) the path of the host's copy of the same base image.
_VOLUME_MOVE_KEYS = frozenset({"uri", "pool", "backing_path"})


class MoveError(Exception):
    """A move cannot go on safely; nothing was deleted."""


# ------------------------------------------------------------------------------------- pure rules


def volume_is_moved(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """A root or data disk whose host changed and that otherwise stays the same disk."""
    if not olds or olds.get("uri") == news.get("uri") or not olds.get("uri"):
        return False
    if news.get("role") not in MOVABLE_ROLES or olds.get("role") != news.get("role"):
        return False
    if news.get("external"):
        return False
    replace = set(contract.replaces(contract.VOLUME, olds, news)) - {"size"}
    if "size" in contract.replaces(contract.VOLUME, olds, news):
        return False  # a shrink is a new disk, wherever it is
    return replace <= _VOLUME_MOVE_KEYS


def domain_is_moved(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """A domain whose host changed under the same name (not an imported one: its disks are not ours)."""
    if news.get("adopt"):
        return False
    return bool(olds and olds.get("uri") and olds.get("uri") != news.get("uri")) and olds.get(
        "name"
    ) == news.get("name")


def is_moved(kind: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """Whether an object of `kind` moves to another host (an update that creates it there)."""
    if kind == contract.VOLUME:
        return volume_is_moved(olds, news)
    return kind == contract.DOMAIN and domain_is_moved(olds, news)


def move_replaces(kind: str, olds: Mapping[str, Any], news: Mapping[str, Any], keys: list[str]) -> list[str]:
    """The replace keys once moves are taken out: a moved disk or domain is updated, not replaced."""
    if kind == contract.VOLUME and volume_is_moved(olds, news):
        return []
    if kind == contract.DOMAIN and domain_is_moved(olds, news):
        return [k for k in keys if k != "uri"]
    return keys


def marker_name(name: str) -> str:
    return name + MOVING_SUFFIX


def flat_name(name: str) -> str:
    return name + FLAT_SUFFIX


# ---------------------------------------------------------------------------------------- streams


def _empty_volume_xml(name: str, capacity: int, disk_format: str) -> str:
    props_like = VolumeProps.from_inputs(
        {"uri": "", "host": "", "owner": "", "pool": "", "name": name, "role": "data", "format": disk_format}
    )
    return xml.volume_xml(props_like, capacity)


def copy_stream(
    src_conn: libvirt.virConnect,
    src_vol: libvirt.virStorageVol,
    dst_conn: libvirt.virConnect,
    dst_vol: libvirt.virStorageVol,
) -> int:
    """Copy the bytes of `src_vol` into `dst_vol` through libvirt streams; returns the bytes copied."""
    down = src_conn.newStream(0)
    up = dst_conn.newStream(0)
    src_vol.download(down, 0, 0, 0)
    dst_vol.upload(up, 0, 0, 0)
    copied = 0
    try:
        while True:
            data = down.recv(_CHUNK)
            if isinstance(data, int) or not data:
                if isinstance(data, int) and data == -2:
                    continue
                break
            view = memoryview(data)
            while view:
                sent = up.send(bytes(view))
                view = view[sent:]
            copied += len(data)
        down.finish()
        up.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            down.abort()
        with contextlib.suppress(libvirt.libvirtError):
            up.abort()
        raise
    return copied


# ------------------------------------------------------------------------------------ domain users


def domains_using(
    conn: libvirt.virConnect, pool: str, name: str, path: str | None
) -> list[libvirt.virDomain]:
    """The domains on `conn` with the volume among their disks."""
    users = []
    for dom in conn.listAllDomains(0):
        disks = xml.parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))["disks"]
        if any(
            (d.get("pool") == pool and d.get("volume") == name) or (path and d.get("file") == path)
            for d in disks
        ):
            users.append(dom)
    return users


# --------------------------------------------------------------------------------------- volumes


def move_volume(
    olds: Mapping[str, Any],
    news: Mapping[str, Any],
    problem: Callable[[libvirt.virConnect, VolumeProps], str | None],
    stop: Callable[[libvirt.virDomain], object],
) -> dict[str, Any]:
    """Step 1: the disk copied to the target host; the source disk is kept. Returns the outputs."""
    props = VolumeProps.from_inputs(news)
    src_uri, src_pool_name = str(olds["uri"]), str(olds.get("pool") or props.pool)

    def on_target(dst: libvirt.virConnect) -> dict[str, Any]:
        why = problem(dst, props)
        if why:
            raise ownership.OwnershipError(why)
        pool = dst.storagePoolLookupByName(props.pool)
        vol = found_or_none(pool.storageVolLookupByName, props.name)
        marker = found_or_none(pool.storageVolLookupByName, marker_name(props.name))
        if vol is not None and marker is None:
            return _outputs(olds, news, vol)  # copied before (a rerun after a crash)
        if vol is not None:
            vol.delete(0)  # an incomplete copy: made again from the source, which is intact
        if marker is None:
            marker = pool.createXML(_empty_volume_xml(marker_name(props.name), 0, "raw"), 0)
        vol = with_connection(
            src_uri, lambda src: _copy_from_source(src, src_pool_name, props, dst, pool, stop)
        )
        # No pool refresh here: libvirt refuses one while another disk uploads into the same pool.
        marker.delete(0)  # the journal's "complete"
        return _outputs(olds, news, vol)

    return with_connection(props.target.uri, on_target)


def _copy_from_source(
    src: libvirt.virConnect,
    src_pool_name: str,
    props: VolumeProps,
    dst: libvirt.virConnect,
    dst_pool: libvirt.virStoragePool,
    stop: Callable[[libvirt.virDomain], object],
) -> libvirt.virStorageVol:
    src_pool = src.storagePoolLookupByName(src_pool_name)
    src_vol = found_or_none(src_pool.storageVolLookupByName, props.name)
    if src_vol is None:
        raise MoveError(
            f"volume {props.name} is neither complete on host {props.target.where} nor in pool "
            f"{src_pool_name} of its old host: the move cannot go on (nothing was deleted)"
        )
    me = ownership.owner_of(props.target)
    for dom in domains_using(src, src_pool_name, props.name, src_vol.path()):
        if me is None or not ownership.owns(ownership.domain_owner(dom), me):
            raise MoveError(
                f"volume {props.name} is used by domain {dom.name()} on its old host, which is not this "
                f"stack's: not moved (nothing was changed)"
            )
        pulumi.log.info(f"moving {props.name}: stopping domain {dom.name()} on its old host")
        stop(dom)
    doc = xml.parse_volume(src_vol.XMLDesc(0))
    capacity, disk_format = int(doc["capacity"]), doc["format"] or "qcow2"
    copy_of = src_vol
    flat = None
    if doc["backing_path"]:
        # The base image's path is another on the target: a flattened copy carries no backing file.
        old_flat = found_or_none(src_pool.storageVolLookupByName, flat_name(props.name))
        if old_flat is not None:
            old_flat.delete(0)
        flat = src_pool.createXMLFrom(
            _empty_volume_xml(flat_name(props.name), capacity, disk_format), src_vol, 0
        )
        copy_of = flat
    try:
        vol = dst_pool.createXML(_empty_volume_xml(props.name, capacity, disk_format), 0)
        copied = copy_stream(src, copy_of, dst, vol)
        pulumi.log.info(f"moving {props.name}: {copied} bytes copied to host {props.target.where}")
    finally:
        if flat is not None:
            with contextlib.suppress(libvirt.libvirtError):
                flat.delete(0)
    return vol


def _outputs(olds: Mapping[str, Any], news: Mapping[str, Any], vol: libvirt.virStorageVol) -> dict[str, Any]:
    inputs = {k: v for k, v in news.items() if k not in contract.OUTPUT_ONLY}
    # `generation` is kept: the same disk, so the domain is not redefined for a new one.
    return {**olds, **inputs, "path": vol.path(), "key": vol.key(), "capacity": vol.info()[1]}


# --------------------------------------------------------------------------------------- domains


def finish_on_source(
    olds: Mapping[str, Any],
    news: Mapping[str, Any],
    stop: Callable[[libvirt.virDomain], object],
) -> None:
    """Step 2's end, once the target domain runs: the source disks deleted, then the source domain
    undefined. Only this stack's, and only disks whose complete copy is on the target."""
    src_uri, name = str(olds["uri"]), str(news["name"])
    me = ownership.Owner.parse(str(news["owner"])) if "/" in str(news.get("owner") or "") else None
    new_disks = {
        str(d.get("volume")): str(d.get("pool")) for d in news.get("disks") or [] if d.get("device") == "disk"
    }

    def complete_on_target(dst: libvirt.virConnect) -> dict[str, str]:
        """The target's complete copies: volume name → path."""
        done = {}
        for volume, pool_name in new_disks.items():
            pool = found_or_none(dst.storagePoolLookupByName, pool_name)
            if pool is None:
                continue
            vol = found_or_none(pool.storageVolLookupByName, volume)
            if vol is not None and found_or_none(pool.storageVolLookupByName, marker_name(volume)) is None:
                done[volume] = vol.path()
        return done

    done = with_connection(str(news["uri"]), complete_on_target)
    missing = sorted(set(new_disks) - set(done))
    if missing:
        raise MoveError(
            f"domain {name}: {', '.join(missing)} not complete on its new host; its old host keeps the VM "
            "and its disks (run up again)"
        )

    def on_source(src: libvirt.virConnect) -> None:
        dom = found_or_none(src.lookupByName, name)
        if dom is None:
            return  # finished before
        record = ownership.domain_owner(dom)
        if me is None or not ownership.owns(record, me):
            pulumi.log.warn(f"domain {name} on its old host is not this stack's: it is left as it is")
            return
        stop(dom)
        for disk in olds.get("disks") or []:
            if disk.get("device") != "disk" or disk.get("volume") not in done:
                continue
            pool = found_or_none(src.storagePoolLookupByName, str(disk.get("pool")))
            if pool is None or not ownership.owns(ownership.pool_owner(pool), me):
                continue
            vol = found_or_none(pool.storageVolLookupByName, str(disk.get("volume")))
            if vol is not None and vol.path() != done[str(disk.get("volume"))]:  # never the copy itself
                vol.delete(0)
                pulumi.log.info(f"moved {disk.get('volume')}: the copy on the old host is deleted")
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        )

    with_connection(src_uri, on_source)


def source_uuid(olds: Mapping[str, Any], name: str) -> str | None:
    """The moved domain's UUID: the source domain's, else the one in the state."""

    def op(src: libvirt.virConnect) -> str | None:
        dom = found_or_none(src.lookupByName, name)
        return dom.UUIDString() if dom is not None else None

    try:
        found = with_connection(str(olds["uri"]), op)
    except libvirt.libvirtError:
        found = None
    uuid = found or olds.get("uuid")
    return str(uuid) if uuid else None
