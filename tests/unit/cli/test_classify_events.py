"""Plan classification and drift detection, table-driven over events recorded from the real engine.

The fixtures (tests/fixtures/events/*.json) were recorded once by tests/fixtures/events/record.py from
previews of a one-VM stack (`rec-vm` on host `local`, pool and network `rec`) in a real libvirt.
"""

# ruff: noqa: E501

from __future__ import annotations

import pytest
from clifakes import load_events
from pulumi.automation import events

from virtstack.ops.classify import Action, Plan, classify, pre_event_steps
from virtstack.ops.drift import detect_drift
from virtstack.ops.progress import Progress
from virtstack.ops.render import plan_json, summary_line

C, U, R, RP, RL, D = (
    Action.CREATE,
    Action.UPDATE,
    Action.REDEFINE,
    Action.REPLACE,
    Action.REPLACE_DATA_LOSS,
    Action.DELETE,
)

VM_OBJECTS_CREATED = [
    ("vm rec-vm", "domain", C, False, ("1 vCPU, 384 MiB",)),
    ("vm rec-vm", "root disk", C, False, ("3 GiB",)),
    ("vm rec-vm", "data disk data", C, False, ("1 GiB",)),
    ("vm rec-vm", "cloud-init seed", C, False, ()),
]
HOST_OBJECTS_CREATED = [
    ("host local", "pool rec", C, False, ("/var/lib/virtstack/pools/rec",)),
    ("host local", "network rec", C, False, ("isolated 10.152.77.0/24",)),
    ("host local", "base image debian-12 (pool rec)", C, False, ("from debian-12.qcow2",)),
]
VM_DELETED = [
    ("vm rec-vm", "domain", D, False, ("the VM is removed", "ACPI shutdown first, up to 60 s")),
    ("vm rec-vm", "root disk", D, True, ("the disk and its data are destroyed",)),
    ("vm rec-vm", "data disk data", D, True, ("the disk and its data are destroyed",)),
    ("vm rec-vm", "cloud-init seed", D, False, ("removed",)),
]
BASE_IMAGE_UNUSED = (
    "host local",
    "base image debian-12 (pool rec)",
    D,
    False,
    ("no VM on this host uses it any more",),
)

# scenario -> (action of vm rec-vm or None, [(owner, object, action, data loss, details)], refused without --allow-data-loss)
PLANS: dict[
    str, tuple[Action | None, list[tuple[str, str, Action, bool, tuple[str, ...]]], tuple[str, ...]]
] = {
    "plan-create": (C, VM_OBJECTS_CREATED + HOST_OBJECTS_CREATED, ()),
    "up-create": (C, VM_OBJECTS_CREATED + HOST_OBJECTS_CREATED, ()),
    "plan-no-change": (None, [], ()),
    "plan-memory": (
        R,
        [
            (
                "vm rec-vm",
                "domain",
                R,
                False,
                (
                    "memory 384 MiB → 448 MiB",
                    "waits up to 60 s for an ACPI shutdown",
                ),
            )
        ],
        (),
    ),
    "plan-vcpus": (
        R,
        [
            (
                "vm rec-vm",
                "domain",
                R,
                False,
                ("vCPUs 1 → 2", "waits up to 60 s for an ACPI shutdown"),
            )
        ],
        (),
    ),
    "plan-power-off": (U, [("vm rec-vm", "domain", U, False, ("power off",))], ()),
    "plan-heal-stopped": (U, [("vm rec-vm", "domain", U, False, ("power on",))], ()),
    "plan-data-shrink": (
        RL,
        [
            (
                "vm rec-vm",
                "domain",
                R,
                False,
                (
                    "attaches the new data disk data",
                    "waits up to 60 s for an ACPI shutdown",
                ),
            ),
            ("vm rec-vm", "data disk data", RL, True, ("size 1 GiB → 512 MiB (a disk cannot shrink)",)),
        ],
        ("vm rec-vm: data disk data",),
    ),
    # The grown disk keeps its key, so the domain (whose input waits for that key) does not change.
    "plan-data-grow": (
        U,
        [("vm rec-vm", "data disk data", U, False, ("size 1 GiB → 2 GiB (grows in place)",))],
        (),
    ),
    "plan-data-rename": (
        RL,
        [
            (
                "vm rec-vm",
                "domain",
                R,
                False,
                (
                    "attaches rec-vm-store.qcow2, detaches rec-vm-data.qcow2",
                    "waits up to 60 s for an ACPI shutdown",
                ),
            ),
            ("vm rec-vm", "data disk data", D, True, ("the disk and its data are destroyed",)),
            ("vm rec-vm", "data disk store", C, False, ("1 GiB",)),
        ],
        ("vm rec-vm: data disk data",),
    ),
    # The new seed keeps its name: the domain is not redefined.
    "plan-cloud-init": (RP, [("vm rec-vm", "cloud-init seed", RP, False, ("cloud-init changed",))], ()),
    "plan-network": (
        RP,
        [
            ("vm rec-vm", "cloud-init seed", RP, False, ("cloud-init changed",)),
            (
                "host local",
                "network rec",
                RP,
                False,
                (
                    "cidr 10.152.77.0/24 → 10.152.78.0/24",
                    "dhcp_end 10.152.77.254 → 10.152.78.254",
                    "dhcp_start 10.152.77.128 → 10.152.78.128",
                ),
            ),
        ],
        (),
    ),
    "plan-image": (
        RL,
        [
            (
                "vm rec-vm",
                "domain",
                R,
                False,
                (
                    "attaches the new root disk",
                    "waits up to 60 s for an ACPI shutdown",
                ),
            ),
            ("vm rec-vm", "root disk", RL, True, ("new base image",)),
            (
                "host local",
                "base image debian-12 (pool rec)",
                RP,
                False,
                ("name debian-12-e0ade55ec4e2.qcow2 → debian-12-43f8666b7b97.qcow2", "new image file"),
            ),
        ],
        ("vm rec-vm: root disk",),
    ),
    # Deleting a whole VM destroys its data too: refused without consent like any other data loss.
    "plan-remove-vm": (
        D,
        [*VM_DELETED, BASE_IMAGE_UNUSED],
        ("vm rec-vm: root disk", "vm rec-vm: data disk data"),
    ),
    "plan-heal-missing": (
        C,
        [
            ("vm rec-vm", "domain", C, False, ("1 vCPU, 384 MiB",)),
            ("vm rec-vm", "data disk data", C, False, ("1 GiB",)),
        ],
        (),
    ),
    "destroy-preview": (
        D,
        [
            *VM_DELETED,
            ("host local", "pool rec", D, False, ("removed",)),
            ("host local", "network rec", D, False, ("removed",)),
            BASE_IMAGE_UNUSED,
        ],
        ("vm rec-vm: root disk", "vm rec-vm: data disk data"),
    ),
}


def plan_of(scenario: str) -> Plan:
    return classify(pre_event_steps(load_events(scenario)))


def flat(plan: Plan) -> list[tuple[str, str, Action, bool, tuple[str, ...]]]:
    return [(c.resource.owner, c.resource.label, c.action, c.data_loss, c.details) for c in plan.changes]


@pytest.mark.parametrize("scenario", sorted(PLANS))
def test_plan_classification_from_recorded_previews(scenario: str) -> None:
    vm_action, changes, refused = PLANS[scenario]
    plan = plan_of(scenario)
    assert flat(plan) == changes
    assert (plan.vms[0].action if plan.vms else None) == vm_action
    assert plan.refused_data_loss == refused
    assert plan.has_changes == bool(changes)
    assert plan.data_loss == any(c[3] for c in changes)
    if plan.vms:
        assert (plan.vms[0].vm, plan.vms[0].host) == ("rec-vm", "local")


def test_a_replacement_reported_in_three_steps_is_one_change() -> None:
    steps = pre_event_steps(load_events("plan-data-shrink"))
    ops = sorted(
        s.op.value for s in steps if s.urn.endswith("::rec-vm-data-data") and s.op.value != "refresh"
    )
    assert ops == ["create-replacement", "delete-replaced", "replace"]
    change = next(c for c in classify(steps).changes if c.resource.name == "rec-vm-data-data")
    assert (change.action, change.keys) == (Action.REPLACE_DATA_LOSS, ("size",))


def test_classification_does_not_depend_on_event_order() -> None:
    steps = pre_event_steps(load_events("plan-image"))
    assert flat(classify(list(reversed(steps)))) == flat(classify(steps))


def test_the_stack_components_and_providers_are_not_changes() -> None:
    steps = pre_event_steps(load_events("plan-create"))
    created = {s.type for s in steps if s.op.value == "create"}
    assert {"pulumi:pulumi:Stack", "virtstack:vm:VirtualMachine", "pulumi:providers:pulumi-python"} <= created
    assert {c.resource.type.split(":")[-1] for c in classify(steps).changes} == {
        "Domain",
        "Volume",
        "Pool",
        "Network",
    }
    # Setting config virtstack:spec to another path updates the provider's inputs: still no change.
    provider = events.StepEventMetadata(
        op=events.OpType.UPDATE,
        urn="urn:pulumi:rec::virtstack::pulumi:providers:pulumi-python::default",
        type="pulumi:providers:pulumi-python",
        provider="",
    )
    assert not classify([provider]).has_changes


@pytest.mark.parametrize(
    ("scenario", "line"),
    [
        ("plan-create", "7 to create"),
        ("plan-no-change", "no changes"),
        ("plan-data-rename", "1 to create, 1 to redefine (the VM restarts), 1 to delete"),
        ("plan-image", "1 to redefine (the VM restarts), 1 to replace, 1 to replace with data loss"),
        ("destroy-preview", "7 to delete"),
    ],
)
def test_summary_line(scenario: str, line: str) -> None:
    assert summary_line(plan_of(scenario)) == line


def test_plan_json_is_stable() -> None:
    data = plan_json(plan_of("plan-data-shrink"), "rec")
    assert data["format"] == "virtstack.plan/v1"
    assert data["summary"] == {
        "create": 0,
        "update": 0,
        "redefine": 1,
        "replace": 0,
        "replace_data_loss": 1,
        "delete": 0,
        "total": 2,
        "disks_destroyed": 1,
    }
    assert data["refused_without_allow_data_loss"] == ["vm rec-vm: data disk data"]
    (vm,) = data["vms"]
    assert {k: vm[k] for k in ("vm", "host", "action", "data_loss")} == {
        "vm": "rec-vm",
        "host": "local",
        "action": "replace_data_loss",
        "data_loss": True,
    }
    assert vm["changes"][1] == {
        "object": "data disk data",
        "kind": "data-disk",
        "name": "rec-vm-data-data",
        "type": "pulumi-python:dynamic/virtstack:Volume",
        "urn": "urn:pulumi:rec::virtstack::virtstack:fleet:Fleet$virtstack:host:Host$virtstack:hypervisor:Hypervisor"
        "$virtstack:vm:VirtualMachine$pulumi-python:dynamic/virtstack:Volume::rec-vm-data-data",
        "action": "replace_data_loss",
        "data_loss": True,
        "keys": ["size"],
        "details": ["size 1 GiB → 512 MiB (a disk cannot shrink)"],
    }
    assert data["hosts"] == [] and data["other"] == []


# --------------------------------------------------------------------------------------------- drift

DRIFT: dict[str, list[tuple[str, str, str]]] = {
    "drift-none": [],
    "drift-stopped": [("rec-vm", "domain", "powered off (libvirt state: shutoff)")],
    "drift-resized": [
        (
            "rec-vm",
            "domain",
            "powered off (libvirt state: shutoff); vCPUs 2 (desired 1); memory 320 MiB (desired 384 MiB)",
        )
    ],
    "drift-missing": [
        ("rec-vm", "domain", "missing (libvirt has no such domain)"),
        ("rec-vm", "data disk data", "missing"),
    ],
}


@pytest.mark.parametrize("scenario", sorted(DRIFT))
def test_drift_from_recorded_refresh_previews(scenario: str) -> None:
    drift = detect_drift(load_events(scenario))
    found = [(vm.vm, f.resource.label, f.text) for vm in drift.vms for f in vm.findings]
    assert found == DRIFT[scenario]
    assert drift.has_drift == bool(DRIFT[scenario])
    assert all(vm.host == "local" for vm in drift.vms)
    assert drift.hosts == ()


def test_drift_summary_names_what_a_vm_owner_sees() -> None:
    (vm,) = detect_drift(load_events("drift-missing")).vms
    assert vm.summary == "missing (libvirt has no such domain); data disk data: missing"


# ------------------------------------------------------------------------------------------ progress


def test_progress_lines_from_the_recorded_up() -> None:
    lines: list[str] = []
    ticks = iter(range(1000))  # every clock reading advances one second
    progress = Progress(lines.append, clock=lambda: float(next(ticks)))
    for event in load_events("up-create"):
        progress(event)
    assert lines == [
        "[   2.0s] host local: network rec: creating…",
        "[   4.0s] host local: pool rec: creating…",
        "[   6.0s] host local: network rec: created (4.0s)",
        "[   8.0s] host local: pool rec: created (4.0s)",
        "[  10.0s] host local: base image debian-12 (pool rec): creating…",
        "[  12.0s] vm rec-vm: data disk data: creating…",
        "[  14.0s] vm rec-vm: cloud-init seed: creating…",
        "[  16.0s] vm rec-vm: data disk data: created (4.0s)",
        "[  18.0s] vm rec-vm: cloud-init seed: created (4.0s)",
        "[  20.0s] host local: base image debian-12 (pool rec): created (10.0s)",
        "[  22.0s] vm rec-vm: root disk: creating…",
        "[  24.0s] vm rec-vm: root disk: created (2.0s)",
        "[  26.0s] vm rec-vm: domain: creating…",
        "[  28.0s] vm rec-vm: domain: created (2.0s)",
    ]
    assert progress.done == {"created": 7}
    assert progress.summary() == "7 created in 29s"
