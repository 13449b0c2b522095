"""What differs between the real libvirt objects and the stack's desired state.  PURE: no I/O.

Public API:
    detect_drift(events) -> Drift
        `events`: the EngineEvents of a refresh preview (`pulumi refresh --preview-only`), in which
        the backend's `read` reports what libvirt really holds.  Each ResOutputsEvent with op
        `update` (the object differs) or `delete` (the object is gone) becomes a Finding; the
        desired state is the resource's last deployed inputs, the actual state the refreshed outputs.
    Finding, VmDrift, HostDrift, Drift

What counts (values libvirt reports but nobody asks for, like a domain's `state` alone, do not):
    domain   missing · powered off (or running when it should be off) · vCPUs · memory · autostart ·
             disks attached · network interfaces
    volume   missing · size
    pool, network   missing · inactive
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pulumi.automation import events

from virtstack.bridged import maybe_view
from virtstack.ops.resources import KIND_ORDER, ResourceInfo, describe, is_virtstack_resource, vm_hosts
from virtstack.props import disk_identities, nic_identities
from virtstack.units import format_size

__all__ = ["Drift", "Finding", "HostDrift", "VmDrift", "detect_drift"]


@dataclass(frozen=True)
class Finding:
    """One object that is not as the stack wants it."""

    resource: ResourceInfo
    problem: str  # "missing" | "changed"
    details: tuple[str, ...]

    @property
    def text(self) -> str:
        return "; ".join(self.details)


@dataclass(frozen=True)
class VmDrift:
    vm: str
    host: str | None
    findings: tuple[Finding, ...]

    @property
    def summary(self) -> str:
        """The VM's drift in one phrase: 'missing', 'powered off', 'memory changed'…"""
        return "; ".join(
            f.text if f.resource.kind == "domain" else f"{f.resource.label}: {f.text}" for f in self.findings
        )


@dataclass(frozen=True)
class HostDrift:
    host: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Drift:
    vms: tuple[VmDrift, ...] = ()
    hosts: tuple[HostDrift, ...] = ()
    other: tuple[Finding, ...] = ()

    @property
    def findings(self) -> tuple[Finding, ...]:
        found: list[Finding] = []
        for vm in self.vms:
            found.extend(vm.findings)
        for host in self.hosts:
            found.extend(host.findings)
        return (*found, *self.other)

    @property
    def has_drift(self) -> bool:
        return bool(self.findings)


def _size(value: Any) -> str:
    return format_size(value) if isinstance(value, int) else str(value)


def _domain_details(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    details = []
    want_running = desired.get("running", True)
    is_running = actual.get("running")
    state = actual.get("state")
    if want_running and is_running is False:
        details.append(f"powered off (libvirt state: {state})" if state else "powered off")
    elif want_running is False and is_running:
        details.append("running, but the stack wants it powered off")
    for key, word in (("vcpus", "vCPUs"), ("memory", "memory")):
        if key in actual and desired.get(key) != actual.get(key):
            show = _size if key == "memory" else str
            details.append(f"{word} {show(actual[key])} (desired {show(desired.get(key))})")
    if "autostart" in actual and bool(desired.get("autostart")) != bool(actual.get("autostart")):
        details.append(
            "autostart "
            + ("on" if actual.get("autostart") else "off")
            + " (desired "
            + ("on" if desired.get("autostart") else "off")
            + ")"
        )
    want_disks, have_disks = disk_identities(desired.get("disks")), disk_identities(actual.get("disks"))
    if "disks" in actual and want_disks != have_disks:
        missing = sorted(v for _, v in want_disks - have_disks)
        extra = sorted(v for _, v in have_disks - want_disks)
        parts = [f"disk {v} not attached" for v in missing] + [f"extra disk {v} attached" for v in extra]
        details.append(", ".join(parts))
    if "nics" in actual and nic_identities(desired.get("nics")) != nic_identities(actual.get("nics")):
        details.append("network interfaces differ")
    return details


def _volume_details(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    if desired.get("size") is not None and actual.get("size") != desired.get("size"):
        return [f"size {_size(actual.get('size'))} (desired {_size(desired.get('size'))})"]
    return []


def _state_details(actual: Mapping[str, Any]) -> list[str]:
    return ["inactive"] if actual.get("state") == "inactive" else []


def _finding(step: events.StepEventMetadata, info: ResourceInfo) -> Finding | None:
    op = step.op.value if isinstance(step.op, Enum) else str(step.op)
    if op == "delete":
        what = "missing (libvirt has no such domain)" if info.kind == "domain" else "missing"
        return Finding(info, "missing", (what,))
    if op != "update" or step.old is None or step.new is None:
        return None
    desired = maybe_view(step.type, step.old.inputs or {})
    actual = maybe_view(step.type, step.new.outputs or {})
    if info.kind == "domain":
        details = _domain_details(desired, actual)
    elif info.kind in ("root-disk", "data-disk", "seed", "base-image", "volume"):
        details = _volume_details(desired, actual)
    elif info.kind in ("pool", "network"):
        details = _state_details(actual)
    else:
        details = []
    return Finding(info, "changed", tuple(details)) if details else None


def detect_drift(stream: Iterable[events.EngineEvent]) -> Drift:
    stream = list(stream)
    pre = [e.resource_pre_event.metadata for e in stream if e.resource_pre_event is not None]
    hosts_of = vm_hosts(pre)
    findings: list[Finding] = []
    for event in stream:
        if event.res_outputs_event is None:
            continue
        step = event.res_outputs_event.metadata
        if not is_virtstack_resource(step):
            continue
        found = _finding(step, describe(step, hosts_of))
        if found is not None:
            findings.append(found)

    def order(f: Finding) -> tuple[int, str]:
        return (KIND_ORDER.get(f.resource.kind, 99), f.resource.name)

    by_vm: dict[str, list[Finding]] = {}
    by_host: dict[str, list[Finding]] = {}
    other: list[Finding] = []
    for f in findings:
        if f.resource.vm:
            by_vm.setdefault(f.resource.vm, []).append(f)
        elif f.resource.host:
            by_host.setdefault(f.resource.host, []).append(f)
        else:
            other.append(f)
    vms = tuple(
        VmDrift(
            vm,
            next((f.resource.host for f in by_vm[vm] if f.resource.host), hosts_of.get(vm)),
            tuple(sorted(by_vm[vm], key=order)),
        )
        for vm in sorted(by_vm)
    )
    hosts = tuple(HostDrift(h, tuple(sorted(by_host[h], key=order))) for h in sorted(by_host))
    return Drift(vms=vms, hosts=hosts, other=tuple(sorted(other, key=order)))
