"""Pulumi resources for libvirt objects: Pool, Network, Volume, Domain.

Each is a Pulumi dynamic resource: the engine stores its inputs/outputs in state, diffs them, and calls
these providers' create/read/update/delete in a provider process. Behaviour that matters to users:

- Ownership (virtstack.provider.ownership): an object of this name that another stack owns, or that
  virtstack did not create, is never adopted, changed or deleted; `check` reports it at preview, so a
  plan stops before any change. `external` pools and networks are checked, used, never changed.
- Creates are idempotent: an object of this stack left behind by an interrupted run (a crash between
  libvirt's create and the engine's checkpoint) is adopted rather than failing with "already
  exists"; a disk that does not match what is asked is an error, never deleted.
- Deleted root and data disks go to the pool's trash (virtstack.provider.trash) unless the engine
  runs with VIRTSTACK_NO_TRASH=1.
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
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from virtstack import contract
from virtstack.provider import ownership, trash, xml
from virtstack.provider.connection import is_not_found, with_connection
from virtstack.provider.ownership import OwnershipError, owner_of_props, owns, refusal


class _Provider(ResourceProvider):
    # Provider classes live in an importable module, so dill pickles them by reference: state holds
    # no code, and an upgraded virtstack applies to resources created by an older one.
    serialize_as_secret_always = False
    kind: ClassVar[str] = "Domain"  # the contract's name for this kind of object

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = contract.changed_keys(self.kind, olds, news)
        return DiffResult(
            changes=bool(changed),
            replaces=contract.replaces(self.kind, olds, news),
            # libvirt names are unique per host: a replacement that keeps the name must delete the old
            # object first; one with a new name (a new image's base volume) is created before.
            delete_before_replace="name" not in changed,
        )

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """At preview: an object this run would create must not be someone else's. (One already in
        this stack's state is its own.)"""
        if olds or not news.get("uri") or not isinstance(news.get("name"), str):
            return CheckResult(news, [])
        try:
            problem = with_connection(news["uri"], lambda conn: self.problem(conn, news))
        except libvirt.libvirtError:
            problem = None  # an unreachable host fails the refresh and the create with its own error
        return CheckResult(news, [CheckFailure("name", problem)] if problem else [])

    def problem(self, conn: libvirt.virConnect, props: dict[str, Any]) -> str | None:
        """Why creating this object on `conn` would touch something that is not ours, or None."""
        return None


# --------------------------------------------------------------------------------------------- pools


def _lookup_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
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


class PoolProvider(_Provider):
    kind = "Pool"

    def problem(self, conn: libvirt.virConnect, props: dict[str, Any]) -> str | None:
        pool = _lookup_pool(conn, props["name"])
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
            pool = _lookup_pool(conn, props["name"])
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
            pool = _lookup_pool(conn, news["name"])
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
            pool = _lookup_pool(conn, props["name"])
            if pool is None:
                return ReadResult("", {})
            return ReadResult(id_, {**props, "state": "active" if pool.isActive() else "inactive"})

        return with_connection(props["uri"], op)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        def op(conn: libvirt.virConnect) -> None:
            pool = _lookup_pool(conn, props["name"])
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


# ------------------------------------------------------------------------------------------ networks


def _lookup_network(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork | None:
    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError as err:
        if is_not_found(err):
            return None
        raise


def _external_network_problem(net: libvirt.virNetwork | None, props: dict[str, Any]) -> str | None:
    where = f"external network {props['name']} on host {props.get('host') or props['uri']}"
    if net is None:
        return f"{where} does not exist (an external network is used, never created)"
    if not net.isActive():
        return f"{where} is not active (virtstack does not start a network it does not own)"
    live = xml.parse_network(net.XMLDesc(0))
    if props.get("cidr") and live.get("cidr") != props["cidr"]:
        return f"{where} has address range {live.get('cidr') or 'none'}, not {props['cidr']}"
    if props.get("mode") and live.get("mode") != props["mode"]:
        return f"{where} is mode {live.get('mode')}, not {props['mode']}"
    return None


def _other_users_of_network(
    conn: libvirt.virConnect, network: str, owner: contract.Owner | None
) -> list[str]:
    """Domains not of `owner` with a NIC on `network` (stacks that use it as `external`, or people)."""
    users = []
    for dom in conn.listAllDomains(0):
        doc = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        uses = any(nic["network"] == network for nic in xml.parse_domain(doc)["nics"])
        if uses and not owns(ownership.owner_from_xml(doc), owner):
            users.append(dom.name())
    return sorted(users)


class NetworkProvider(_Provider):
    kind = "Network"

    def problem(self, conn: libvirt.virConnect, props: dict[str, Any]) -> str | None:
        net = _lookup_network(conn, props["name"])
        if props.get("external"):
            return _external_network_problem(net, props)
        if net is None:
            return None
        record = ownership.network_owner(net)
        if not owns(record, owner_of_props(props)):
            return refusal("network", props["name"], props, record)
        return None

    def create(self, props: dict[str, Any]) -> CreateResult:
        def op(conn: libvirt.virConnect) -> str:
            problem = self.problem(conn, props)
            if problem:
                raise OwnershipError(problem)
            net = _lookup_network(conn, props["name"])
            if props.get("external"):
                return str(net.UUIDString()) if net is not None else ""
            if net is None:
                net = conn.networkDefineXML(xml.network_xml(props))
            if not net.isActive():
                net.create()
            net.setAutostart(1)
            return str(net.UUIDString())

        uuid = with_connection(props["uri"], op)
        return CreateResult(uuid, {**props, "uuid": uuid})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Only the owner record reaches update (every other key replaces the network).
        def op(conn: libvirt.virConnect) -> None:
            net = _lookup_network(conn, news["name"])
            owner = owner_of_props(news)
            if net is None or owner is None or news.get("external"):
                return
            record = ownership.network_owner(net)
            if record is not None and not owns(record, owner):
                raise OwnershipError(refusal("network", news["name"], news, record))
            ownership.set_network_owner(conn, net, owner)

        with_connection(news["uri"], op)
        return UpdateResult({**olds, **news, "uuid": olds.get("uuid")})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        def op(conn: libvirt.virConnect) -> ReadResult:
            net = _lookup_network(conn, props["name"])
            if net is None:
                return ReadResult("", {})
            return ReadResult(id_, {**props, "state": "active" if net.isActive() else "inactive"})

        return with_connection(props["uri"], op)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        def op(conn: libvirt.virConnect) -> None:
            net = _lookup_network(conn, props["name"])
            if net is None or props.get("external"):
                return
            owner = owner_of_props(props)
            record = ownership.network_owner(net)
            if owner is not None and not owns(record, owner):
                pulumi.log.warn(refusal("network", props["name"], props, record) + "; it is left as it is")
                return
            users = _other_users_of_network(conn, props["name"], owner)
            if users:
                pulumi.log.warn(
                    f"network {props['name']} on host {props.get('host') or props['uri']} is kept: "
                    f"domains of others use it ({', '.join(users)})"
                )
                return
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


def _grow(conn: libvirt.virConnect, vol: libvirt.virStorageVol, size: int) -> None:
    """Grow a disk; one a running guest has open is grown through that guest's QEMU (qemu-img cannot
    take the image's write lock then), which also tells the guest its disk grew."""
    path = vol.path()
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        if any(d.get("file") == path for d in xml.parse_domain(dom.XMLDesc(0))["disks"]):
            dom.blockResize(path, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            return
    vol.resize(size, 0)


def _mismatch(vol: libvirt.virStorageVol, props: dict[str, Any]) -> str | None:
    """How an existing disk differs from what `props` asks for, or None when it is what we asked."""
    doc = xml.parse_volume(vol.XMLDesc(0))
    wanted_format = props.get("format") or "qcow2"
    differences = []
    if doc["capacity"] != int(props["size"]):
        differences.append(f"capacity {doc['capacity']} bytes, not {int(props['size'])}")
    if doc["format"] != wanted_format:
        differences.append(f"format {doc['format']}, not {wanted_format}")
    backing = props.get("backing_path") or None
    known = backing is None or isinstance(backing, str)  # at preview, a base not created yet is unknown
    # A root disk restored from the trash is flattened (no backing file): it is the VM's disk all the same.
    restored_root = props.get("role") == "root" and doc["backing_path"] is None
    if known and doc["backing_path"] != backing and not restored_root:
        differences.append(f"backing file {doc['backing_path'] or 'none'}, not {backing or 'none'}")
    return ", ".join(differences) or None


def _lookup_volume(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as err:
        if is_not_found(err):
            return None
        raise


def _volume_outputs(vol: libvirt.virStorageVol, props: dict[str, Any]) -> dict[str, Any]:
    return {
        **props,
        "path": vol.path(),
        "key": vol.key(),
        "capacity": vol.info()[1],
        "generation": _generation(),
    }


def _trash_wanted() -> bool:
    return os.environ.get(trash.NO_TRASH_ENV, "") not in ("1", "true", "yes")


class VolumeProvider(_Provider):
    """Roles: `base` (an image uploaded once per host), `root` (copy-on-write over a base), `data`
    (an empty qcow2), `seed` (a cloud-init NoCloud ISO built from the user data)."""

    kind = "Volume"

    def problem(self, conn: libvirt.virConnect, props: dict[str, Any]) -> str | None:
        pool = _lookup_pool(conn, props["pool"])
        if pool is None or not pool.isActive():
            return None  # the pool's own check (or create) speaks for it
        vol = _lookup_volume(pool, props["name"])
        if vol is None:
            return None
        where = f"volume {props['name']} in pool {props['pool']} on host {props.get('host') or props['uri']}"
        if not ownership.volume_is_ours(pool, props["name"], props):
            return f"{where} exists and is not this stack's ({props.get('owner')}): it is left alone"
        if props.get("role") in ("root", "data"):
            mismatch = _mismatch(vol, props)
            if mismatch:
                return (
                    f"{where} exists with {mismatch}: virtstack never deletes an existing disk "
                    "(restore the right one from the trash, or remove it by hand)"
                )
        return None

    def create(self, props: dict[str, Any]) -> CreateResult:
        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            problem = self.problem(conn, props)
            if problem:
                raise OwnershipError(problem)
            pool = conn.storagePoolLookupByName(props["pool"])
            existing = _lookup_volume(pool, props["name"])
            role = props["role"]
            if existing is not None:
                # This stack's, left by an interrupted run (created before the engine recorded it) or
                # restored from the trash: a disk that is what we asked for is adopted as is — a
                # guest may already run on it. An image or seed (no data) whose upload may have been
                # cut short is made afresh.
                if role in ("root", "data"):
                    return _volume_outputs(existing, props)
                existing.delete(0)
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
            return _volume_outputs(vol, props)

        outs = with_connection(props["uri"], op)
        return CreateResult(outs["key"], outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Only a grown size (or a label) reaches update: anything else replaces.
        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            vol = conn.storagePoolLookupByName(news["pool"]).storageVolLookupByName(news["name"])
            if news.get("size") and int(news["size"]) > int(vol.info()[1]):
                _grow(conn, vol, int(news["size"]))
            inputs = {k: v for k, v in news.items() if k not in contract.OUTPUT_ONLY}
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
                pool = conn.storagePoolLookupByName(props["pool"])
                vol = pool.storageVolLookupByName(props["name"])
            except libvirt.libvirtError as err:
                if is_not_found(err):
                    return
                raise
            owner = owner_of_props(props)
            if props.get("role") in ("root", "data") and owner is not None and _trash_wanted():
                # Consent was given (virtstack up/destroy --allow-data-loss), but a reviewed change
                # can still be wrong: keep the disk for trash_days.
                kept = trash.move_to_trash(pool, vol, owner, str(props.get("vm") or ""))
                pulumi.log.info(f"{props['name']} kept in the trash of pool {props['pool']} as {kept}")
                return
            vol.delete(0)

        with_connection(props["uri"], op)


# ------------------------------------------------------------------------------------------- domains

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
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()  # paused behind our back: `running: true` means running
        return
    dom.create()
    if not _wait_state(dom, [libvirt.VIR_DOMAIN_RUNNING], _START_TIMEOUT_SECONDS):
        raise RuntimeError(f"domain {dom.name()} did not reach running within {_START_TIMEOUT_SECONDS:.0f}s")


def _observe(dom: libvirt.virDomain, props: dict[str, Any]) -> dict[str, Any]:
    live = xml.parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    state, reason = dom.state()
    observed = {
        **props,
        "uuid": dom.UUIDString(),
        "state": _STATE_NAMES.get(state, "unknown"),
        "state_reason": reason,
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
    kind = "Domain"

    def problem(self, conn: libvirt.virConnect, props: dict[str, Any]) -> str | None:
        dom = _lookup_domain(conn, props["name"])
        if dom is None:
            return None
        record = ownership.domain_owner(dom)
        if not owns(record, owner_of_props(props)):
            return refusal("domain", props["name"], props, record)
        return None

    def create(self, props: dict[str, Any]) -> CreateResult:
        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            problem = self.problem(conn, props)
            if problem:
                raise OwnershipError(problem)
            # A domain of this stack here was left by an interrupted run (created before the engine
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
        changed = set(contract.changed_keys(self.kind, olds, news))

        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            dom = _lookup_domain(conn, news["name"])
            owner = owner_of_props(news)
            if dom is not None and owner is not None:
                record = ownership.domain_owner(dom)
                if record is not None and not owns(record, owner):
                    raise OwnershipError(refusal("domain", news["name"], news, record))
            if dom is None or not changed <= contract.IN_PLACE_DOMAIN_KEYS:
                # Redefine: a restart with the same disks. (A vanished domain is simply defined again.)
                uuid = None
                if dom is not None:
                    _stop(dom)
                    uuid = dom.UUIDString()
                dom = conn.defineXML(xml.domain_xml(news, uuid))
            elif "owner" in changed and owner is not None:
                ownership.set_domain_owner(dom, owner)  # no restart
            dom.setAutostart(1 if news.get("autostart") else 0)
            if news.get("running", True):
                _start(dom)
            else:
                _stop(dom)
            return _observe(dom, news)

        return UpdateResult(with_connection(news["uri"], op))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        def op(conn: libvirt.virConnect) -> ReadResult:
            dom = _lookup_domain(conn, props["name"])
            if dom is None:
                return ReadResult("", {})
            return ReadResult(id_, _observe(dom, props))

        return with_connection(props["uri"], op)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        def op(conn: libvirt.virConnect) -> None:
            dom = _lookup_domain(conn, props["name"])
            if dom is None:
                return
            owner = owner_of_props(props)
            record = ownership.domain_owner(dom)
            if owner is not None and record is not None and not owns(record, owner):
                pulumi.log.warn(refusal("domain", props["name"], props, record) + "; it is left as it is")
                return
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
