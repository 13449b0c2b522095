"""Domains: defined, started and stopped; changed in place, redefined or replaced by the contract's
key sets."""

from __future__ import annotations

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
from virtstack.props import DomainProps, disk_identities, nic_identities
from virtstack.provider import addresses, lifecycle, moves, ownership, xml
from virtstack.provider.base import Provider
from virtstack.provider.boot import start_in_wave
from virtstack.provider.connection import found_or_none, with_connection
from virtstack.provider.ownership import OwnershipError, owner_of, owns, refusal


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
        # Output only (never compared): each NIC's real IPv4 address, when the host knows it.
        "addresses": addresses.nic_addresses(dom, [nic.mac for nic in props.nics]),
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


def _forget_new_domain(dom: libvirt.virDomain) -> None:
    """A domain this create defined but could not start: the engine records no such VM, so left
    defined it would be nobody's to delete. Its disks are volumes of their own (kept). Best effort:
    the start's own error is the one reported."""
    try:
        if dom.isActive():
            dom.destroy()
        lifecycle.undefine(dom)
    except libvirt.libvirtError as err:
        pulumi.log.warn(f"vm {dom.name()}: could not undefine it after its failed start ({err})")


def _drops_firmware_state(old: DomainProps, new: DomainProps) -> bool:
    """UEFI turned off or the TPM removed: the NVRAM file / swtpm state must go with it."""
    return (old.firmware != "bios" and new.firmware == "bios") or (old.tpm and not new.tpm)


def _apply_new_seed(dom: libvirt.virDomain, props: DomainProps) -> None:
    """A new cloud-init seed (new instance-id) is attached; `on_cloud_init_change` says what the
    running guest does with it. (`replace` recreated the root disk: that redefines, not here.)"""
    if props.cloud_init_change == "ignore":
        pulumi.log.warn(
            f"vm {props.name}: cloud-init changed and on_cloud_init_change is ignore: the running guest "
            "is not rebooted; cloud-init applies the new seed at its next boot"
        )
        return
    if props.running:
        lifecycle.reboot_into_new_seed(dom, props.shutdown_timeout)


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
                try:
                    start_in_wave(
                        conn,
                        dom,
                        props.target.uri,
                        props.boot_concurrency,
                        props.domain_type,
                        lifecycle.start,
                    )
                except BaseException:
                    if old is None:
                        _forget_new_domain(dom)
                    raise
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
                # Redefine: a restart with the same disks, after a graceful shutdown. (A vanished
                # domain is simply defined again.)
                uuid = None
                if dom is not None:
                    lifecycle.stop_and_report(dom, props.shutdown_timeout)
                    uuid = dom.UUIDString()
                    if _drops_firmware_state(self.props(olds), props):
                        lifecycle.undefine(dom)  # its NVRAM / TPM state goes with the feature
                dom = conn.defineXML(xml.domain_xml(props, uuid or moved_uuid))
            else:
                if (
                    ("owner" in changed or "adopt" in changed)
                    and owner is not None
                    and props.adopt != "unowned"
                ):
                    ownership.set_domain_owner(dom, owner)  # no restart
                if "seed_instance_id" in changed and olds.get("seed_instance_id"):
                    _apply_new_seed(dom, props)
            dom.setAutostart(1 if props.autostart else 0)
            if props.running:
                lifecycle.start(dom)
            else:
                lifecycle.stop_and_report(dom, props.shutdown_timeout)
            return _observe(dom, news, props)

        outs = with_connection(props.target.uri, op)
        if moved:  # the target is defined and (when asked) runs: only now the source goes
            moves.finish_on_source(olds, news, lambda d: lifecycle.stop_and_report(d, props.shutdown_timeout))
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
            lifecycle.stop_and_report(dom, props.shutdown_timeout)
            lifecycle.undefine(dom)

        with_connection(props.target.uri, op)
