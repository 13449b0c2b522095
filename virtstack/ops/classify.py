"""Classify the engine's preview into changes a VM owner understands.  PURE: no I/O, no engine.

Public API:
    classify(steps) -> Plan
        `steps`: the metadata of the ResourcePreEvents of one preview
        (pulumi.automation.events.StepEventMetadata: op, type, urn, keys, old, new), in any order.
    pre_event_steps(events) -> list[StepEventMetadata]   -- pick them out of a stream of EngineEvents.
    Action, ACTION_WORDS, Change, VmPlan, HostPlan, Plan

Actions (per libvirt object; virtstack's backend decides which one the engine takes):
    create             a new object.
    update             update in place: a domain's running/autostart, a volume that grows.
    redefine           the domain is defined again — THE VM RESTARTS, its disks are kept (vCPUs, memory,
                       devices, or a disk it must attach anew).
    replace            delete and create again, for objects without data: cloud-init seed, base image,
                       network, pool, and the domain itself when its host or name changes.
    replace_data_loss  a root or data disk is replaced (it shrinks, or its image/backing/pool/name
                       changes): THE DISK AND ITS DATA ARE DESTROYED.
    delete             an object goes away; `data_loss` when it is a root or data disk.

How steps are read:
    * `same`, `read`, `refresh` and `discard` steps, the stack, components and providers are no changes.
    * `replace`, `create-replacement` and `delete-replaced` are one replacement per resource.
    * The backend's diff reports no property list, so changed properties are computed here: the old
      state's outputs (refreshed when the preview refreshes) against the new inputs.  Output-only
      values (uuid, path, key, state, capacity, allocation) never count.
    * A domain `update` that changes only running/autostart is in place; anything else redefines it.
      Values the engine only knows after apply (another resource's output, e.g. a disk's key while
      that disk is updated) are resolved against the plan of that disk: a disk that is created or
      replaced is attached anew (redefine); a disk that only grows keeps its key, and a replaced
      seed keeps its name, so neither changes the domain and the domain step is left out.
    * Deleting a root/data disk (its VM removed, a group shrunk, a data disk renamed) destroys data
      just like a replacement; `Plan.refused_data_loss` lists every such disk — what `virtstack up`
      and `destroy` refuse without --allow-data-loss.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from pulumi.automation import events

from virtstack import bridged, contract
from virtstack.ops import moveplan
from virtstack.ops.changes import ACTION_WORDS, Action, Change, HostPlan, Plan, VmPlan, sort_key
from virtstack.ops.resources import (
    UNKNOWN,
    ResourceInfo,
    describe,
    is_virtstack_resource,
    vm_hosts,
)
from virtstack.ops.vmchanges import DOMAIN_FEATURE_KEYS, deleted_domain, feature_change, graceful_wait
from virtstack.units import format_size

__all__ = [
    "ACTION_WORDS",
    "Action",
    "Change",
    "HostPlan",
    "Plan",
    "VmPlan",
    "classify",
    "pre_event_steps",
]


# The diff rules are the provider's own (virtstack.contract): one copy.
OUTPUT_ONLY = contract.NOT_COMPARED
IN_PLACE_DOMAIN_KEYS = contract.IN_PLACE_DOMAIN_KEYS
SIZE_KEYS = contract.SIZE_KEYS
_SECRET_SIG = "4dabf18193072939515e22adb298388d"

_IGNORED_OPS = {
    "same",
    "read",
    "read-replacement",
    "refresh",
    "discard",
    "discard-replaced",
    "remove-pending-replace",
    "import",
    "import-replacement",
}
_REPLACE_OPS = {"replace", "create-replacement", "delete-replaced"}
# What a pulumi-libvirt domain replacement does (terraform-provider-libvirt 0.7.6 forces a new domain
# on any vCPU, memory, disk or interface change).
BRIDGED_DOMAIN_REPLACE = (
    "pulumi-libvirt deletes the domain and defines it again: the VM restarts, keeps its disks and "
    "gets a new UUID"
)


# ------------------------------------------------------------------------------------------ values


def _is_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and (_SECRET_SIG in value or "ciphertext" in value)


def _compare(old: Any, new: Any) -> str:
    """'same', 'maybe' (differs only where `new` is not known yet) or 'changed'."""
    if new == UNKNOWN:
        return "same" if old == UNKNOWN else "maybe"
    if _is_secret(new) or _is_secret(old):
        return "same" if _is_secret(new) and _is_secret(old) else "changed"
    if isinstance(new, Mapping) and isinstance(old, Mapping):
        results = {_compare(old.get(k), new.get(k)) for k in set(old) | set(new)}
    elif isinstance(new, list) and isinstance(old, list):
        if len(new) != len(old):
            return "changed"
        results = {_compare(o, n) for o, n in zip(old, new, strict=True)}
    else:
        return "same" if old == new else "changed"
    if "changed" in results:
        return "changed"
    return "maybe" if "maybe" in results else "same"


def _value(key: str, value: Any) -> str:
    if value is None:
        return "none"
    if _is_secret(value):
        return "(secret)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if key in SIZE_KEYS and isinstance(value, int):
        return format_size(value)
    if isinstance(value, list):
        return f"{len(value)} entries"
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _old_view(step: events.StepEventMetadata) -> Mapping[str, Any]:
    """The old state as the provider diffs it: its outputs (refreshed ones in a refreshing preview)."""
    if step.old is None:
        return {}
    return bridged.maybe_view(step.type, step.old.outputs or step.old.inputs or {})


def _new_view(step: events.StepEventMetadata) -> Mapping[str, Any]:
    return bridged.maybe_view(step.type, (step.new.inputs if step.new is not None else None) or {})


def _diff(step: events.StepEventMetadata) -> tuple[list[str], list[str]]:
    """(changed keys, keys that may change once unknown values are known)."""
    old, new = _old_view(step), _new_view(step)
    changed, maybe = [], []
    for key in sorted(new):
        if key in OUTPUT_ONLY:
            continue
        result = _compare(old.get(key), new.get(key))
        if result == "changed":
            changed.append(key)
        elif result == "maybe":
            maybe.append(key)
    return changed, maybe


# ----------------------------------------------------------------------------------------- details


def _created(info: ResourceInfo, new: Mapping[str, Any]) -> tuple[str, ...]:
    if info.kind == "domain":
        text = f"{new.get('vcpus', '?')} vCPU, {_value('memory', new.get('memory'))}"
        if new.get("running") is False:
            text += ", powered off"
        return (text,)
    if info.kind in ("root-disk", "data-disk") and isinstance(new.get("size"), int):
        return (_value("size", new["size"]),)
    if info.kind == "base-image" and isinstance(new.get("source"), str):
        return (f"from {os.path.basename(new['source']) or new['source']}",)
    if info.kind == "pool" and new.get("path"):
        return (str(new["path"]),)
    if info.kind == "network":
        parts = [str(new.get("mode", ""))]
        if new.get("cidr"):
            parts.append(str(new["cidr"]))
        return (" ".join(p for p in parts if p),)
    return ()


_DELETED = {
    "domain": "the VM is removed",
    "root-disk": "the disk and its data are destroyed",
    "data-disk": "the disk and its data are destroyed",
    "seed": "removed",
    "base-image": "no VM on this host uses it any more",
}


def _key_change(key: str, old: Mapping[str, Any], new: Mapping[str, Any], on_bridged: bool = False) -> str:
    before, after = old.get(key), new.get(key)
    if key == "running":
        return "power on" if after else "power off"
    if key == "autostart":
        return "autostart on" if after else "autostart off"
    if key == "size" and isinstance(before, int) and isinstance(after, int):
        text = f"size {format_size(before)} → {format_size(after)}"
        if after < before:
            return text + " (a disk cannot shrink)"
        if on_bridged:
            return text + " (pulumi-libvirt cannot grow a disk: it is created anew)"
        return text + " (grows in place)"
    if key in DOMAIN_FEATURE_KEYS:
        return feature_change(key, old, new)
    if key == "owner":
        return f"records its owner (stack {after}) in libvirt; nothing else changes"
    if key == "vcpus":
        return f"vCPUs {_value(key, before)} → {_value(key, after)}"
    if key == "backing_path":
        return "new base image"
    if key in ("source", "source_fingerprint"):
        return "new image file"
    if key in ("user_data", "meta_data", "network_config"):
        return "cloud-init changed"
    if key == "disks" and isinstance(before, list) and isinstance(after, list):
        return _disks_change(before, after)
    if key == "nics":
        return "network interfaces changed"
    if before is None or after is None or after == UNKNOWN:
        return f"{key} changed"
    return f"{key} {_value(key, before)} → {_value(key, after)}"


def _disk_names(disks: list[Any]) -> list[str]:
    return [str(d.get("volume")) for d in disks if isinstance(d, Mapping) and d.get("volume") != UNKNOWN]


def _disks_change(before: list[Any], after: list[Any]) -> str:
    old, new = _disk_names(before), _disk_names(after)
    pending = sum(1 for d in after if isinstance(d, Mapping) and d.get("volume") == UNKNOWN)
    parts = [f"attaches {name}" for name in new if name not in old]
    gone = [name for name in old if name not in new]
    # A disk whose name is only known after apply (pulumi-libvirt: a volume's id) takes a slot.
    parts += [f"attaches a new disk in place of {os.path.basename(name)}" for name in gone[:pending]]
    parts += [f"detaches {name}" for name in gone[pending:]]
    return ", ".join(parts) if parts else "disks changed"


def _details(keys: Iterable[str], step: events.StepEventMetadata) -> tuple[str, ...]:
    old, new = _old_view(step), _new_view(step)
    texts: list[str] = []
    for key in keys:
        text = _key_change(bridged.native_key(key), old, new, bridged.is_bridged(step.type))
        if text not in texts:
            texts.append(text)
    return tuple(texts)


# ---------------------------------------------------------------------------------------- classify


def pre_event_steps(stream: Iterable[events.EngineEvent]) -> list[events.StepEventMetadata]:
    return [event.resource_pre_event.metadata for event in stream if event.resource_pre_event is not None]


def _domain_change(
    info: ResourceInfo,
    step: events.StepEventMetadata,
    new_volumes: Mapping[tuple[str | None, str], str],
    moving_bytes: int = 0,
) -> Change | None:
    changed, maybe = _diff(step)
    old, new = _old_view(step), _new_view(step)
    restart = [key for key in changed if key not in IN_PLACE_DOMAIN_KEYS]
    if "uri" in changed:  # moved to another host (virtstack.provider.moves)
        reasons = [moveplan.move_words(old, new, moving_bytes)]
        reasons += [r for r in _details(restart, step) if r != _key_change("uri", old, new)]
        return Change(info, Action.REDEFINE, tuple(changed + maybe), tuple(reasons))
    reasons = list(_details(restart, step))
    for key in maybe:
        if key != "disks":
            reasons.append(f"{key} may change")
            restart.append(key)
            continue
        old_disks = old.get("disks") or []
        for index, disk in enumerate(new.get("disks") or []):
            before = old_disks[index] if index < len(old_disks) else None
            if _compare(before, disk) != "maybe" or disk.get("device") == "cdrom":
                continue  # a seed is replaced under the same name: the domain does not change
            label = new_volumes.get((info.vm, str(disk.get("volume"))))
            if label is not None:
                reasons.append(f"attaches the new {label}")
                restart.append(key)
    in_place = [key for key in changed if key in IN_PLACE_DOMAIN_KEYS]
    in_place_details = _details(in_place, step)
    if "seed_instance_id" in in_place and old.get("seed_instance_id") and not restart:
        policy = str(new.get("cloud_init_change") or "reseed")
        if policy == "reseed" and new.get("running", True) is not False:
            restart.append("seed_instance_id")  # the guest reboots into the new seed
    if restart:
        keys = tuple(dict.fromkeys(restart + in_place))
        wait = graceful_wait(old, new) if old.get("running", True) is not False else ()
        return Change(info, Action.REDEFINE, keys, tuple(reasons) + in_place_details + wait)
    if in_place:
        return Change(info, Action.UPDATE, tuple(in_place), in_place_details)
    return None  # only values that turn out unchanged (a grown disk keeps its key): no domain change


def _protect_changed(step: events.StepEventMetadata) -> bool:
    if step.old is None or step.new is None:
        return False
    return bool(step.old.protect) != bool(step.new.protect)


def classify(steps: Iterable[events.StepEventMetadata]) -> Plan:
    steps = list(steps)
    hosts_of = vm_hosts(steps)

    # One entry per resource: replacements arrive as up to three steps.
    merged: dict[str, tuple[str, events.StepEventMetadata, tuple[str, ...]]] = {}
    for step in steps:
        if not is_virtstack_resource(step):
            continue
        op = step.op.value if isinstance(step.op, Enum) else str(step.op)
        if op == "same" and _protect_changed(step):
            op = "protect"  # only the engine's record changes: `protect: true` set or removed
        if op in _IGNORED_OPS:
            continue
        if op in _REPLACE_OPS:
            previous = merged.get(step.urn)
            keys = tuple(step.keys or ()) or (previous[2] if previous else ())
            # Keep the step that carries both states (`replace`) when there is one.
            best = (
                step if (step.old is not None and step.new is not None) or previous is None else previous[1]
            )
            merged[step.urn] = ("replace", best, keys)
        else:
            merged[step.urn] = (op, step, tuple(step.keys or ()))

    infos = {urn: describe(step, hosts_of) for urn, (_, step, _) in merged.items()}
    # Volumes (by VM and libvirt name) that are new after this plan: a domain must attach them anew.
    new_volumes: dict[tuple[str | None, str], str] = {}
    for urn, (op, step, _) in merged.items():
        info = infos[urn]
        if op in ("create", "replace") and info.kind in ("root-disk", "data-disk", "volume"):
            name = _new_view(step).get("name")
            if isinstance(name, str):
                new_volumes[(info.vm, name)] = info.label

    # Bytes of the disks each VM moves to another host: how long its move stops it.
    moving_bytes: dict[str | None, int] = {}
    for urn, (op, step, _) in merged.items():
        if (
            op == "update"
            and infos[urn].holds_data
            and moveplan.host_changed(_old_view(step), _new_view(step))
        ):
            size = _old_view(step).get("capacity") or _old_view(step).get("size") or 0
            vm = infos[urn].vm
            moving_bytes[vm] = moving_bytes.get(vm, 0) + int(size if isinstance(size, int | float) else 0)

    changes: list[Change] = []
    for urn, (op, step, keys) in merged.items():
        info = infos[urn]
        change: Change | None
        if op == "create":
            change = Change(info, Action.CREATE, (), _created(info, _new_view(step)))
        elif op == "delete":
            details: tuple[str, ...] = (_DELETED.get(info.kind, "removed"),)
            # pulumi-libvirt (TF 0.7.6) powers a running domain off outright: no ACPI wait to announce.
            if info.kind == "domain" and not bridged.is_bridged(step.type):
                details = deleted_domain(_old_view(step))
            change = Change(info, Action.DELETE, (), details)
        elif op == "replace":
            if not keys and step.old is not None and step.new is not None:
                keys = tuple(_diff(step)[0])
            if bridged.is_bridged(step.type):
                keys = tuple(dict.fromkeys(bridged.native_key(k) for k in keys))
            action = Action.REPLACE_DATA_LOSS if info.holds_data else Action.REPLACE
            details = _details(keys, step)
            if info.kind == "domain" and bridged.is_bridged(step.type):
                details = (BRIDGED_DOMAIN_REPLACE, *details)
            elif info.kind == "domain":
                details = ("the VM is recreated, its disks are kept", *details)
            change = Change(info, action, keys, details)
        elif op == "protect":
            after = bool(step.new is not None and step.new.protect)
            words = "protect on (nothing can delete it)" if after else "protect off (it can be deleted again)"
            change = Change(info, Action.UPDATE, ("protect",), (words,))
        elif op == "update":
            if info.kind == "domain" and bridged.is_bridged(step.type):
                # pulumi-libvirt replaces a domain for whatever needs a restart; an update is live.
                changed, maybe = _diff(step)
                keys = tuple(changed + maybe) or tuple(bridged.native_key(k) for k in keys)
                change = Change(info, Action.UPDATE, keys, _details(keys, step))
            elif info.kind == "domain":
                change = _domain_change(info, step, new_volumes, moving_bytes.get(info.vm, 0))
            else:
                changed, maybe = _diff(step)
                details = _details(changed, step)
                if not bridged.is_bridged(step.type) and moveplan.host_changed(
                    _old_view(step), _new_view(step)
                ):
                    details = (moveplan.disk_move_words(_new_view(step)),)
                change = Change(info, Action.UPDATE, tuple(changed + maybe), details)
        else:  # an operation this engine version added: report it rather than hide it
            change = Change(info, Action.UPDATE, keys, (f"engine operation {op}",))
        if change is not None:
            changes.append(change)
    return _group(changes)


def _vm_action(changes: list[Change]) -> Action:
    domain = [c for c in changes if c.resource.kind == "domain"]
    if domain and domain[0].action is Action.DELETE:
        return Action.DELETE
    if all(c.action is Action.CREATE for c in changes):
        return Action.CREATE
    if any(c.data_loss for c in changes):
        return Action.REPLACE_DATA_LOSS
    return max((c.action for c in changes), key=lambda a: a.severity)


def _group(changes: list[Change]) -> Plan:
    by_vm: dict[str, list[Change]] = {}
    by_host: dict[str, list[Change]] = {}
    other: list[Change] = []
    for change in changes:
        if change.resource.vm:
            by_vm.setdefault(change.resource.vm, []).append(change)
        elif change.resource.host:
            by_host.setdefault(change.resource.host, []).append(change)
        else:
            other.append(change)
    vms = []
    for vm in sorted(by_vm):
        items = sorted(by_vm[vm], key=sort_key)
        host = next((c.resource.host for c in items if c.resource.host), None)
        vms.append(VmPlan(vm=vm, host=host, action=_vm_action(items), changes=tuple(items)))
    hosts = [HostPlan(host=h, changes=tuple(sorted(by_host[h], key=sort_key))) for h in sorted(by_host)]
    return Plan(vms=tuple(vms), hosts=tuple(hosts), other=tuple(sorted(other, key=sort_key)))
