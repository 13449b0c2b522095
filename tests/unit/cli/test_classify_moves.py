"""A VM whose host changes is planned as a move (its disks copied, kept), never as a data loss.

Built from the recorded `plan-data-grow` preview (a data disk and the domain updated) with the host of
both changed, as the provider's diff now reports a host change: an update, not a replacement."""

from __future__ import annotations

import copy

from clifakes import load_events
from pulumi.automation import events

from virtstack.ops.classify import Action, classify, pre_event_steps

GIB = 1024**3
OTHER = "qemu+ssh://b.example/system"


def _moved(step: events.StepEventMetadata) -> events.StepEventMetadata:
    """`step` with its object's host changed from `local` to `b`."""
    assert step.old is not None and step.new is not None
    old, new = copy.copy(step.old), copy.copy(step.new)
    old.outputs = {**(step.old.outputs or {}), "host": "local"}
    new.inputs = {**(step.new.inputs or {}), "uri": OTHER, "host": "b"}
    if "size" in new.inputs:
        new.inputs["size"] = old.outputs["size"]  # the same disk, only elsewhere
    return events.StepEventMetadata(step.op, step.urn, step.type, step.provider, old, new, step.keys)


def _move_plan() -> list[events.StepEventMetadata]:
    steps = pre_event_steps(load_events("plan-data-grow"))
    return [_moved(s) if s.op == events.OpType.UPDATE else s for s in steps]


def test_a_moved_vm_is_a_move_with_its_disks_kept_and_no_data_loss() -> None:
    plan = classify(_move_plan())
    assert plan.refused_data_loss == ()
    (vm,) = plan.vms
    assert vm.vm == "rec-vm"
    changes = {c.resource.label: (c.action, c.data_loss, c.details) for c in vm.changes}
    assert changes == {
        # 1 GiB data disk at 100 MB/s after a ~10 s shutdown
        "domain": (Action.REDEFINE, False, ("move local → b (stops for about 21 s, disks kept)",)),
        "data disk data": (
            Action.UPDATE,
            False,
            ("copied to host b through libvirt streams, then removed here",),
        ),
    }


def test_a_host_change_that_also_replaces_a_disk_is_still_a_data_loss() -> None:
    """A move does not hide a replaced disk (e.g. a shrink at the same time): the engine reports that
    disk as a replacement, which the guard refuses."""
    steps = []
    for s in _move_plan():
        if s.op == events.OpType.UPDATE and s.urn.endswith("rec-vm-data-data"):
            s = events.StepEventMetadata(
                events.OpType.REPLACE, s.urn, s.type, s.provider, s.old, s.new, ["size"]
            )
        steps.append(s)
    plan = classify(steps)
    assert plan.refused_data_loss == ("vm rec-vm: data disk data",)
