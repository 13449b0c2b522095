"""Plan classification and drift detection on a `backend: pulumi-libvirt` host, table-driven over events
recorded from the real engine with the bridged plugin (tests/fixtures/events/record.py --backend
pulumi-libvirt: the same one-VM stack as the native fixtures). Before virtstack knew pulumi-libvirt's
types, every one of these plans read "no changes"."""

from __future__ import annotations

import pytest
from clifakes import load_events

from virtstack.ops.classify import BRIDGED_DOMAIN_REPLACE, Action, classify, pre_event_steps
from virtstack.ops.drift import detect_drift

C, U, RP, RL, D = Action.CREATE, Action.UPDATE, Action.REPLACE, Action.REPLACE_DATA_LOSS, Action.DELETE
GROW = "(pulumi-libvirt cannot grow a disk: it is created anew)"

# scenario -> (action of vm rec-vm or None, {(owner, object): (action, data loss, details)}, refused)
PLANS: dict[
    str, tuple[Action | None, dict[tuple[str, str], tuple[Action, bool, tuple[str, ...]]], tuple[str, ...]]
] = {
    "plan-create": (
        C,
        {
            ("vm rec-vm", "domain"): (C, False, ("1 vCPU, 384 MiB",)),
            ("vm rec-vm", "root disk"): (C, False, ("3 GiB",)),
            ("vm rec-vm", "data disk data"): (C, False, ("1 GiB",)),
            ("vm rec-vm", "cloud-init seed"): (C, False, ()),
            ("host local", "owner record virtstack-owner@virtstack@rec"): (C, False, ()),
            ("host local", "pool rec"): (C, False, ("/var/lib/virtstack/pools/rec",)),
            ("host local", "network rec"): (C, False, ("isolated 10.152.77.0/24",)),
            ("host local", "base image debian-12 (pool rec)"): (C, False, ("from debian-12.qcow2",)),
        },
        (),
    ),
    "plan-no-change": (None, {}, ()),
    "plan-memory": (
        RP,
        {("vm rec-vm", "domain"): (RP, False, (BRIDGED_DOMAIN_REPLACE, "memory 384 MiB → 448 MiB"))},
        (),
    ),
    "plan-vcpus": (RP, {("vm rec-vm", "domain"): (RP, False, (BRIDGED_DOMAIN_REPLACE, "vCPUs 1 → 2"))}, ()),
    "plan-power-off": (U, {("vm rec-vm", "domain"): (U, False, ("power off",))}, ()),
    "plan-heal-stopped": (U, {("vm rec-vm", "domain"): (U, False, ("power on",))}, ()),
    "plan-data-grow": (
        RL,
        {
            ("vm rec-vm", "domain"): (
                RP,
                False,
                (BRIDGED_DOMAIN_REPLACE, "attaches a new disk in place of rec-vm-data.qcow2"),
            ),
            ("vm rec-vm", "data disk data"): (RL, True, (f"size 1 GiB → 2 GiB {GROW}",)),
        },
        ("vm rec-vm: data disk data",),
    ),
    "plan-remove-vm": (
        D,
        {
            ("vm rec-vm", "domain"): (D, False, ("the VM is removed",)),
            ("vm rec-vm", "root disk"): (D, True, ("the disk and its data are destroyed",)),
            ("vm rec-vm", "data disk data"): (D, True, ("the disk and its data are destroyed",)),
            ("vm rec-vm", "cloud-init seed"): (D, False, ("removed",)),
            ("host local", "base image debian-12 (pool rec)"): (
                D,
                False,
                ("no VM on this host uses it any more",),
            ),
        },
        ("vm rec-vm: root disk", "vm rec-vm: data disk data"),
    ),
}


@pytest.mark.parametrize("scenario", sorted(PLANS))
def test_pulumi_libvirt_plans_are_classified_honestly(scenario: str) -> None:
    vm_action, expected, refused = PLANS[scenario]
    plan = classify(pre_event_steps(load_events(f"pulumi-libvirt/{scenario}")))
    got = {}
    for vm in plan.vms:
        assert vm.vm == "rec-vm" and vm.host == "local"
        assert vm.action is vm_action
        got.update(
            {(f"vm {vm.vm}", c.resource.label): (c.action, c.data_loss, c.details) for c in vm.changes}
        )
    for host in plan.hosts:
        got.update(
            {
                (f"host {host.host}", c.resource.label): (c.action, c.data_loss, c.details)
                for c in host.changes
            }
        )
    if vm_action is None:
        assert not plan.vms
    assert got == expected
    assert plan.refused_data_loss == refused


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("drift-none", {}),
        ("drift-stopped", {"domain": ("powered off",)}),
        (
            "drift-resized",
            {"domain": ("powered off", "vCPUs 2 (desired 1)", "memory 320 MiB (desired 384 MiB)")},
        ),
    ],
)
def test_pulumi_libvirt_drift_says_what_libvirt_holds(
    scenario: str, expected: dict[str, tuple[str, ...]]
) -> None:
    drift = detect_drift(load_events(f"pulumi-libvirt/{scenario}"))
    got = {f.resource.label: f.details for vm in drift.vms for f in vm.findings}
    assert got == expected
    assert not drift.hosts
