"""Pulumi resources for libvirt objects: Pool, Network, Volume, Domain.

Each is a Pulumi dynamic resource: the engine stores its inputs/outputs in state, diffs them, and calls
these providers' create/read/update/delete in a provider process. Behaviour that matters to users:

- Creates are idempotent: an object left behind by an interrupted run (a crash between libvirt's
  create and the engine's checkpoint) is adopted rather than failing with "already exists".
- `read` reports what libvirt really holds, so `refresh`/drift sees a stopped or vanished VM.
- Domains change in place when only `running`/`autostart` differ, are redefined (a restart, disks
  kept) for size/device changes, and replaced (delete before create) only when their identity changes.
- Volumes grow in place; a shrink or an identity change replaces them, which the plan classifier
  reports as data loss for root and data disks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

import libvirt
import pulumi
from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from virtstack.provider import xml
from virtstack.provider.connection import is_not_found, with_connection

# Keys a provider adds to its outputs; they never come from the program, so never cause a diff.
_OUTPUT_ONLY = {"uuid", "path", "key", "generation", "state", "capacity", "allocation", "__provider"}


def _changed_keys(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    return sorted(k for k in news if k not in _OUTPUT_ONLY and olds.get(k) != news.get(k))


class _Provider(ResourceProvider):
    # Provider classes live in an importable module, so dill pickles them by reference: state holds
    # no code, and an upgraded virtstack applies to resources created by an older one.
    serialize_as_secret_always = False
    replace_keys: ClassVar[frozenset[str]] = frozenset({"uri", "name"})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = _changed_keys(olds, news)
        replaces = [k for k in changed if k in self.replace_keys]
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            # libvirt names are unique per host: a replacement that keeps the name must delete the old
            # object first; one with a new name (a new image's base volume) is created before.
            delete_before_replace="name" not in changed,
        )


# --------------------------------------------------------------------------------------------- pools


class PoolProvider(_Provider):
    replace_keys = frozenset({"uri", "name", "path"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        def op(conn: libvirt.virConnect) -> str:
            try:
                pool = conn.storagePoolLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if not is_not_found(err):
                    raise
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
            return str(pool.UUIDString())

        uuid = with_connection(props["uri"], op)
        return CreateResult(uuid, {**props, "uuid": uuid})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        def op(conn: libvirt.virConnect) -> ReadResult:
            try:
                pool = conn.storagePoolLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return ReadResult("", {})
                raise
            return ReadResult(id_, {**props, "state": "active" if pool.isActive() else "inactive"})

        return with_connection(props["uri"], op)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        def op(conn: libvirt.virConnect) -> None:
            try:
                pool = conn.storagePoolLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return
                raise
            if pool.isActive():
                pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.delete(0)  # removes the (inactive) pool's directory, and only when it is empty
            pool.undefine()

        with_connection(props["uri"], op)


# ------------------------------------------------------------------------------------------ networks


class NetworkProvider(_Provider):
    replace_keys = frozenset({"uri", "name", "mode", "bridge", "cidr", "dhcp", "dhcp_start", "dhcp_end"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        def op(conn: libvirt.virConnect) -> str:
            try:
                net = conn.networkLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if not is_not_found(err):
                    raise
                net = conn.networkDefineXML(xml.network_xml(props))
            if not net.isActive():
                net.create()
            net.setAutostart(1)
            return str(net.UUIDString())

        uuid = with_connection(props["uri"], op)
        return CreateResult(uuid, {**props, "uuid": uuid})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        def op(conn: libvirt.virConnect) -> ReadResult:
            try:
                net = conn.networkLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return ReadResult("", {})
                raise
            return ReadResult(id_, {**props, "state": "active" if net.isActive() else "inactive"})

        return with_connection(props["uri"], op)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        def op(conn: libvirt.virConnect) -> None:
            try:
                net = conn.networkLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return
                raise
            if net.isActive():
                net.destroy()
            net.undefine()

        with_connection(props["uri"], op)


# ------------------------------------------------------------------------------------------- volumes


def _image_virtual_size(path: str) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", path], check=True, capture_output=True, text=True
    ).stdout
    return int(json.loads(out)["virtual-size"])


def _upload(conn: libvirt.virConnect, vol: libvirt.virStorageVol, path: str) -> None:
    size = os.path.getsize(path)
    stream = conn.newStream(0)
    vol.upload(stream, 0, size, 0)
    with open(path, "rb") as f:
        stream.sendAll(lambda _s, n, fh: fh.read(n), f)
    stream.finish()


def _seed_iso(props: dict[str, Any], workdir: str) -> str:
    """A NoCloud seed: an ISO labelled `cidata` holding user-data, meta-data and network-config."""
    files = {"user-data": props["user_data"], "meta-data": props["meta_data"]}
    if props.get("network_config"):
        files["network-config"] = props["network_config"]
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


def _volume_matches(vol: libvirt.virStorageVol, props: dict[str, Any]) -> bool:
    doc = xml.parse_volume(vol.XMLDesc(0))
    return (
        doc["capacity"] == int(props["size"])
        and doc["format"] == (props.get("format") or "qcow2")
        and doc["backing_path"] == (props.get("backing_path") or None)
    )


def _grow(conn: libvirt.virConnect, vol: libvirt.virStorageVol, size: int) -> None:
    """Grow a disk; one a running guest has open is grown through that guest's QEMU (qemu-img cannot
    take the image's write lock then), which also tells the guest its disk grew."""
    path = vol.path()
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        if any(d.get("file") == path for d in xml.parse_domain(dom.XMLDesc(0))["disks"]):
            dom.blockResize(path, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            return
    vol.resize(size, 0)


class VolumeProvider(_Provider):
    """Roles: `base` (an image uploaded once per host), `root` (copy-on-write over a base), `data`
    (an empty qcow2), `seed` (a cloud-init NoCloud ISO built from the user data)."""

    replace_keys = frozenset(
        {
            "uri",
            "pool",
            "name",
            "role",
            "format",
            "backing_path",
            "source",
            "source_fingerprint",
            "user_data",
            "meta_data",
            "network_config",
        }
    )

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = super().diff(id_, olds, news)
        old_size, new_size = olds.get("size"), news.get("size")
        if old_size and new_size and int(new_size) < int(old_size):
            # qcow2 cannot shrink safely: a smaller disk is a new disk.
            result.replaces = sorted({*(result.replaces or []), "size"})
        return result

    def create(self, props: dict[str, Any]) -> CreateResult:
        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            pool = conn.storagePoolLookupByName(props["pool"])
            try:
                existing = pool.storageVolLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if not is_not_found(err):
                    raise
                existing = None
            if existing is not None:
                # Left by an interrupted run (created before the engine recorded it). A disk that is
                # what we asked for is adopted as is — a guest may already run on it; an image or seed
                # whose upload may have been cut short is made afresh.
                if props["role"] in ("root", "data") and _volume_matches(existing, props):
                    info = existing.info()
                    return {
                        **props,
                        "path": existing.path(),
                        "key": existing.key(),
                        "capacity": info[1],
                        "generation": _generation(),
                    }
                existing.delete(0)
            role = props["role"]
            with tempfile.TemporaryDirectory(prefix="virtstack-") as workdir:
                upload_from = None
                if role == "base":
                    upload_from = props["source"]
                    capacity = _image_virtual_size(upload_from)
                elif role == "seed":
                    upload_from = _seed_iso(props, workdir)
                    capacity = os.path.getsize(upload_from)
                else:
                    capacity = int(props["size"])
                vol = pool.createXML(xml.volume_xml(props, capacity), 0)
                if upload_from is not None:
                    _upload(conn, vol, upload_from)
            info = vol.info()
            return {
                **props,
                "path": vol.path(),
                "key": vol.key(),
                "capacity": info[1],
                "generation": _generation(),
            }

        outs = with_connection(props["uri"], op)
        return CreateResult(outs["key"], outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Only a grown size reaches update (anything else replaces).
        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            vol = conn.storagePoolLookupByName(news["pool"]).storageVolLookupByName(news["name"])
            if news.get("size") and int(news["size"]) > int(vol.info()[1]):
                _grow(conn, vol, int(news["size"]))
            inputs = {k: v for k, v in news.items() if k not in _OUTPUT_ONLY}
            return {**olds, **inputs, "capacity": vol.info()[1]}

        return UpdateResult(with_connection(news["uri"], op))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        def op(conn: libvirt.virConnect) -> ReadResult:
            try:
                vol = conn.storagePoolLookupByName(props["pool"]).storageVolLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return ReadResult("", {})
                raise
            info = vol.info()
            outs = {**props, "path": vol.path(), "capacity": info[1]}
            if props.get("size") and info[1] < int(props["size"]):
                outs["size"] = info[1]  # shrunk or recreated out of band: report what is there
            return ReadResult(id_, outs)

        return with_connection(props["uri"], op)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        def op(conn: libvirt.virConnect) -> None:
            try:
                vol = conn.storagePoolLookupByName(props["pool"]).storageVolLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return
                raise
            vol.delete(0)

        with_connection(props["uri"], op)


# ------------------------------------------------------------------------------------------- domains

_IN_PLACE_DOMAIN_KEYS = frozenset({"running", "autostart"})
_SHUTDOWN_GRACE_SECONDS = 30.0
_START_TIMEOUT_SECONDS = 60.0


def _wait_state(dom: libvirt.virDomain, wanted: Iterable[int], timeout: float) -> bool:
    wanted = set(wanted)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dom.state()[0] in wanted:
            return True
        time.sleep(0.2)
    return dom.state()[0] in wanted


def _stop(dom: libvirt.virDomain) -> None:
    """A clean ACPI shutdown, then a hard stop if the guest does not go in time."""
    if not dom.isActive():
        return
    with contextlib.suppress(libvirt.libvirtError):
        dom.shutdown()
    if not _wait_state(dom, [libvirt.VIR_DOMAIN_SHUTOFF], _SHUTDOWN_GRACE_SECONDS):
        try:
            dom.destroy()
        except libvirt.libvirtError:
            if dom.isActive():
                raise


def _start(dom: libvirt.virDomain) -> None:
    if dom.isActive():
        return
    dom.create()
    if not _wait_state(dom, [libvirt.VIR_DOMAIN_RUNNING], _START_TIMEOUT_SECONDS):
        raise RuntimeError(f"domain {dom.name()} did not reach running within {_START_TIMEOUT_SECONDS:.0f}s")


def _observe(dom: libvirt.virDomain, props: dict[str, Any]) -> dict[str, Any]:
    live = xml.parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    state = dom.state()[0]
    observed = {
        **props,
        "uuid": dom.UUIDString(),
        "state": _STATE_NAMES.get(state, "unknown"),
        "running": state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED),
        "autostart": bool(dom.autostart()),
        "vcpus": live["vcpus"],
        "memory": live["memory"],
    }
    # Devices are compared as sets of identities so that libvirt's own additions don't look like drift.
    wanted_disks = {(d["pool"], d["volume"]) for d in props.get("disks", [])}
    live_disks = {(d["pool"], d["volume"]) for d in live["disks"]}
    if wanted_disks != live_disks:
        observed["disks"] = [
            {"pool": p, "volume": v, "device": "disk"} for p, v in sorted(live_disks, key=str)
        ]
    wanted_nics = {(n["network"], n["mac"]) for n in props.get("nics", [])}
    live_nics = {(n["network"], n["mac"]) for n in live["nics"]}
    if wanted_nics != live_nics:
        observed["nics"] = [{"network": n, "mac": m} for n, m in sorted(live_nics, key=str)]
    return observed


_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def _lookup_domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as err:
        if is_not_found(err):
            return None
        raise


class DomainProvider(_Provider):
    replace_keys = frozenset({"uri", "name"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            # A domain of this name here was left by an interrupted run (created before the engine
            # could record it): adopt it by redefining it as asked, keeping its UUID.
            old = _lookup_domain(conn, props["name"])
            dom = conn.defineXML(xml.domain_xml(props, old.UUIDString() if old else None))
            dom.setAutostart(1 if props.get("autostart") else 0)
            if props.get("running", True):
                _start(dom)
            return _observe(dom, props)

        outs = with_connection(props["uri"], op)
        return CreateResult(outs["uuid"], outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        changed = set(_changed_keys(olds, news))

        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            dom = _lookup_domain(conn, news["name"])
            if dom is None or not changed <= _IN_PLACE_DOMAIN_KEYS:
                # Redefine: a restart with the same disks. (A vanished domain is simply defined again.)
                uuid = None
                if dom is not None:
                    _stop(dom)
                    uuid = dom.UUIDString()
                dom = conn.defineXML(xml.domain_xml(news, uuid))
            dom.setAutostart(1 if news.get("autostart") else 0)
            if news.get("running", True):
                _start(dom)
            else:
                _stop(dom)
            return _observe(dom, news)

        return UpdateResult(with_connection(news["uri"], op))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        def op(conn: libvirt.virConnect) -> ReadResult:
            try:
                dom = conn.lookupByName(props["name"])
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return ReadResult("", {})
                raise
            return ReadResult(id_, _observe(dom, props))

        return with_connection(props["uri"], op)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        def op(conn: libvirt.virConnect) -> None:
            try:
                dom = conn.lookupByName(props["name"])
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return
                raise
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            )

        with_connection(props["uri"], op)


# ----------------------------------------------------------------------------- the resource classes


class Pool(Resource, module="virtstack", name="Pool"):
    uuid: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(PoolProvider(), name, {"uuid": None, "state": None, **props}, opts)


class Network(Resource, module="virtstack", name="Network"):
    uuid: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(NetworkProvider(), name, {"uuid": None, "state": None, **props}, opts)


class Volume(Resource, module="virtstack", name="Volume"):
    path: pulumi.Output[str]
    key: pulumi.Output[str]
    generation: pulumi.Output[str]
    capacity: pulumi.Output[int]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        secret_outputs = ["user_data"] if "user_data" in props else []
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=secret_outputs)
        )
        super().__init__(
            VolumeProvider(),
            name,
            {"path": None, "key": None, "capacity": None, "generation": None, **props},
            opts,
        )


class Domain(Resource, module="virtstack", name="Domain"):
    uuid: pulumi.Output[str]
    state: pulumi.Output[str]
    running: pulumi.Output[bool]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        # A domain name is unique per host: the old definition must be gone before the new one.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True))
        super().__init__(DomainProvider(), name, {"uuid": None, "state": None, **props}, opts)
