"""The guest CPU a VM gets, from its `cpu` (or its host's), the host's domain type and what setup's
probe found (virtstack.edge.detected_domain_type). Pure: no libvirt, no engine.

Under KVM every mode is passed to libvirt as asked. Under TCG (`domain_type: qemu`, what the probe
chooses when KVM is unusable) QEMU emulates the CPU: `host-passthrough` cannot be honoured (there is no
host CPU to pass through: libvirt refuses it) and is ignored with a note — the VM gets QEMU's default
emulated CPU; `host-model` and `custom` models are emulated (slower, and features TCG lacks are left
out), with a note saying so. Never an error: a stack written for KVM hosts still runs here.
"""

from __future__ import annotations

from dataclasses import dataclass

from virtstack.spec.vmfeatures import CpuSpec


@dataclass(frozen=True)
class CpuChoice:
    mode: str  # "" (libvirt's default), host-passthrough, host-model or custom
    model: str = ""  # custom only
    note: str | None = None  # what TCG does with the request, for the plan and the program's log


def resolve_cpu(
    vm: str, domain_type: str, wanted: CpuSpec | None, host_default: CpuSpec | None, probed_mode: str | None
) -> CpuChoice:
    """`wanted`: the VM's `cpu`; `host_default`: its host's `cpu`; `probed_mode`: the CPU mode setup's
    KVM probe booted with (None when it chose TCG or never ran)."""
    spec = wanted or host_default
    if spec is None:
        return CpuChoice(probed_mode or "" if domain_type == "kvm" else "")
    model = spec.model or ""
    if domain_type == "kvm":
        return CpuChoice(spec.mode, model)
    if spec.mode == "host-passthrough":
        return CpuChoice(
            "",
            note=(
                f"vm {vm}: cpu host-passthrough is ignored under TCG (this host runs guests without KVM): "
                "QEMU's default emulated CPU is used"
            ),
        )
    what = "libvirt's host-model CPU" if spec.mode == "host-model" else f"CPU model {model}"
    return CpuChoice(
        spec.mode,
        model,
        note=f"vm {vm}: {what} is emulated under TCG (no KVM on this host): slower, and features TCG "
        "lacks are left out",
    )
