"""Domains: defined, started and stopped; changed in place, redefined or replaced by the contract's
key sets."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

import libvirt
import pulumi
from pulumi.dynamic import (
    CreateResult,
    ReadResult,
    UpdateResult,
)

from virtstack import contract
from virtstack.props import DomainProps, disk_identities, nic_identities
from virtstack.provider import moves, ownership, xml
from virtstack.provider.base import Provider
from virtstack.provider.boot import start_in_wave
from virtstack.provider.connection import found_or_none, with_connection
from virtstack.provider.ownership import OwnershipError, owner_of, owns, refusal

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


def _observe(dom: libvirt.virDomain, inputs: dict[str, Any], props: DomainProps) -> dict[str, Any]:
    live = xml.parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    state, reason = dom.state()
    observed = {
        **inputs,
        "uuid": dom.UUIDString(),
        "state": _STATE_NAMES.get(state, "unknown"),
        "state_reason": reason,
        "running": state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED),
        "autostart": bool(dom.autostart()),
        "vcpus": live["vcpus"],
        "memory": live["memory"],
    }
    # Devices are compared as sets of identities so that libvirt's own additions don't look like drift.
    live_disk_list = _adopted_disks(dom, live["disks"]) if props.adopt else live["disks"]
    wanted_disks, live_disks = disk_identities(inputs.get("disks")), disk_identities(live_disk_list)
    if wanted_disks != live_disks:
        observed["disks"] = [
            {"pool": p, "volume": v, "device": "disk"} for p, v in sorted(live_disks, key=str)
        ]
    wanted_nics, live_nics = nic_identities(inputs.get("nics")), nic_identities(live["nics"])
    if wanted_nics != live_nics:
        observed["nics"] = [{"network": n, "mac": m} for n, m in sorted(live_nics, key=str)]
    return observed


def _adopted_disks(dom: libvirt.virDomain, disks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An imported domain's disks as (pool, volume): a disk defined by file path is named by the
    volume libvirt knows at that path (as `virtstack import` wrote it); cdroms are not compared."""
    conn = dom.connect()
    named = []
    for disk in disks:
        if disk.get("device") != "disk":
            continue
        if disk.get("file") and not disk.get("pool"):
            vol = found_or_none(conn.storageVolLookupByPath, disk["file"])
            if vol is not None:
                disk = {**disk, "pool": vol.storagePoolLookupByVolume().name(), "volume": vol.name()}
        named.append(disk)
    return named


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
    return found_or_none(conn.lookupByName, name)


class DomainProvider(Provider[DomainProps]):
    kind = contract.DOMAIN

    def props(self, inputs: Mapping[str, Any]) -> DomainProps:
        return DomainProps.from_inputs(inputs)

    def problem(self, conn: libvirt.virConnect, props: DomainProps) -> str | None:
        dom = _lookup_domain(conn, props.name)
        if dom is None:
            return None
        record = ownership.domain_owner(dom)
        if props.adopt and record is None:
            return None  # imported: not ours until the user confirms, but this stack may adopt it
        if not owns(record, owner_of(props.target)):
            return refusal("domain", props.name, props.target, record)
        return None

    def create(self, inputs: dict[str, Any]) -> CreateResult:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            problem = self.problem(conn, props)
            if problem:
                raise OwnershipError(problem)
            old = _lookup_domain(conn, props.name)
            if old is not None and props.adopt:
                # Imported (`virtstack import`): adopted as it is — not redefined, not restarted; the
                # owner record only when the user confirmed.
                owner = owner_of(props.target)
                if props.adopt == "owned" and owner is not None:
                    ownership.set_domain_owner(old, owner)
                return _observe(old, inputs, props)
            # A domain of this stack here was left by an interrupted run (created before the engine
            # could record it): adopt it by redefining it as asked, keeping its UUID.
            dom = conn.defineXML(xml.domain_xml(props, old.UUIDString() if old else None))
            dom.setAutostart(1 if props.autostart else 0)
            if props.running:  # in waves per host: see virtstack.provider.boot
                start_in_wave(conn, dom, props.target.uri, props.boot_concurrency, props.domain_type, _start)
            return _observe(dom, inputs, props)

        outs = with_connection(props.target.uri, op)
        return CreateResult(outs["uuid"], outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        props = self.props(news)
        changed = set(contract.changed_keys(self.kind, olds, news))
        moved = moves.domain_is_moved(olds, news)  # to another host: virtstack.provider.moves
        moved_uuid = moves.source_uuid(olds, props.name) if moved else None

        def op(conn: libvirt.virConnect) -> dict[str, Any]:
            dom = _lookup_domain(conn, props.name)
            owner = owner_of(props.target)
            if moved and self.problem(conn, props):
                raise OwnershipError(str(self.problem(conn, props)))
            if dom is not None and owner is not None:
                record = ownership.domain_owner(dom)
                if record is not None and not owns(record, owner):
                    raise OwnershipError(refusal("domain", props.name, props.target, record))
            if dom is None or not changed <= contract.IN_PLACE_DOMAIN_KEYS:
                # Redefine: a restart with the same disks. (A vanished domain is simply defined again.)
                uuid = None
                if dom is not None:
                    _stop(dom)
                    uuid = dom.UUIDString()
                dom = conn.defineXML(xml.domain_xml(props, uuid or moved_uuid))
            elif (
                ("owner" in changed or "adopt" in changed) and owner is not None and props.adopt != "unowned"
            ):
                ownership.set_domain_owner(dom, owner)  # no restart
            dom.setAutostart(1 if props.autostart else 0)
            if props.running:
                _start(dom)
            else:
                _stop(dom)
            return _observe(dom, news, props)

        outs = with_connection(props.target.uri, op)
        if moved:  # the target is defined and (when asked) runs: only now the source goes
            moves.finish_on_source(olds, news, _stop)
        return UpdateResult(outs)

    def read(self, id_: str, inputs: dict[str, Any]) -> ReadResult:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> ReadResult:
            dom = _lookup_domain(conn, props.name)
            if dom is None:
                return ReadResult("", {})
            return ReadResult(id_, _observe(dom, inputs, props))

        return with_connection(props.target.uri, op)

    def delete(self, _id: str, inputs: dict[str, Any]) -> None:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> None:
            dom = _lookup_domain(conn, props.name)
            if dom is None:
                return
            owner = owner_of(props.target)
            record = ownership.domain_owner(dom)
            if owner is not None and record is not None and not owns(record, owner):
                pulumi.log.warn(refusal("domain", props.name, props.target, record) + "; it is left as it is")
                return
            if props.adopt == "unowned" and record is None:
                pulumi.log.info(
                    f"domain {props.name} on host {props.target.where} was imported and never confirmed "
                    "as this stack's (imported.owned): it is left as it is"
                )
                return
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            )

        with_connection(props.target.uri, op)
