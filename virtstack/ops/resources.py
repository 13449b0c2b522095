"""What an engine resource is, in virtstack's terms: which VM or host it belongs to, and what it is.

Pure helpers shared by the plan classifier, drift detection and progress lines. They read only the
step metadata the engine sends with every event (type, URN, parent URN, inputs).

Resource naming (components/): a VM component is named after the VM and its children are
`<vm>-domain`, `<vm>-root`, `<vm>-data-<disk>`, `<vm>-seed`; a host's `Hypervisor` component is
`<host>-hypervisor` and its children `<host>-hypervisor-pool-<p>`, `-net-<n>`, `-image-<pool>-<image>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulumi.automation import events

from virtstack import bridged, contract

__all__ = [
    "DYNAMIC_PREFIX",
    "KIND_ORDER",
    "UNKNOWN",
    "VM_TYPE",
    "ResourceInfo",
    "describe",
    "is_unknown",
    "is_virtstack_resource",
    "state_of",
    "urn_name",
    "urn_type",
]

# The engine's placeholder for a value that is only known after apply (e.g. another resource's output).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
# Type tokens and the components' resource names are the contract's (the components build them).
DYNAMIC_PREFIX = contract.DYNAMIC_TYPE_PREFIX
VM_TYPE = contract.VM_TYPE
HYPERVISOR_TYPE = contract.HYPERVISOR_TYPE
HOST_TYPE = contract.HOST_TYPE
HYPERVISOR_SUFFIX = contract.HYPERVISOR_SUFFIX

# Display order of the objects of one VM or host.
KIND_ORDER = {
    "domain": 0,
    "root-disk": 1,
    "data-disk": 2,
    "seed": 3,
    "volume": 4,
    "pool": 5,
    "network": 6,
    "base-image": 7,
    "other": 8,
}


def urn_name(urn: str) -> str:
    """The resource name: what follows the last `::` of the URN."""
    return urn.rsplit("::", 1)[-1] if urn else ""


def urn_type(urn: str) -> str:
    """The resource's own type: the last `$`-separated part of the URN's type chain."""
    parts = urn.split("::")
    if len(parts) < 4:
        return ""
    return parts[-2].rsplit("$", 1)[-1]


def is_unknown(value: Any) -> bool:
    return value == UNKNOWN


def state_of(step: events.StepEventMetadata) -> events.StepEventStateMetadata | None:
    """The new state when there is one (create, update, same), else the old one (delete)."""
    return step.new or step.old


def is_virtstack_resource(step: events.StepEventMetadata) -> bool:
    """A libvirt object of either backend (not the stack, a component or a provider)."""
    return step.type.startswith(DYNAMIC_PREFIX) or bridged.is_bridged(step.type)


def _inputs(step: events.StepEventMetadata) -> Mapping[str, Any]:
    for state in (step.new, step.old):
        if state is not None and state.inputs:
            return state.inputs
    return {}


@dataclass(frozen=True)
class ResourceInfo:
    """One libvirt object as a VM owner sees it."""

    urn: str
    type: str
    name: str  # the engine's resource name
    kind: str  # domain | root-disk | data-disk | seed | base-image | pool | network | volume | other
    label: str  # "data disk logs", "network lab", "base image debian-12 (pool vms)"
    vm: str | None
    host: str | None
    role: str | None  # a volume's role: base | root | data | seed

    @property
    def holds_data(self) -> bool:
        """Root and data disks hold a guest's data; seeds, base images, pools, networks do not."""
        return self.kind in ("root-disk", "data-disk")

    @property
    def owner(self) -> str:
        """`vm <name>`, `host <name>` or `stack`, for messages."""
        if self.vm:
            return f"vm {self.vm}"
        if self.host:
            return f"host {self.host}"
        return "stack"


def _parent(step: events.StepEventMetadata) -> str:
    for state in (step.new, step.old):
        if state is not None and state.parent:
            return state.parent
    return ""


def _strip(text: str, prefix: str) -> str:
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def describe(step: events.StepEventMetadata, vm_hosts: Mapping[str, str] | None = None) -> ResourceInfo:
    """Classify one resource of a step; `vm_hosts` (vm -> host) fills in the host of VM objects."""
    urn = step.urn
    name = urn_name(urn)
    rtype = step.type or urn_type(urn)
    inputs = _inputs(step)
    parent = _parent(step)
    parent_type, parent_name = urn_type(parent), urn_name(parent)
    vm: str | None = None
    host: str | None = None
    if rtype == VM_TYPE:
        vm = name
        if parent_type == HYPERVISOR_TYPE:
            host = parent_name.removesuffix(HYPERVISOR_SUFFIX)
    elif parent_type == VM_TYPE:
        vm = parent_name
    elif parent_type == HYPERVISOR_TYPE:
        host = parent_name.removesuffix(HYPERVISOR_SUFFIX)
    elif rtype == HOST_TYPE:
        host = name
    elif rtype == HYPERVISOR_TYPE:
        host = name.removesuffix(HYPERVISOR_SUFFIX)
    if vm and not host and vm_hosts:
        host = vm_hosts.get(vm)

    role = inputs.get("role") if isinstance(inputs.get("role"), str) else None
    if bridged.is_bridged(rtype):
        role = bridged.role_of(rtype, name, vm)
        inputs = bridged.view(rtype, inputs)
    ours = bridged.kind_of_type(rtype)
    kind, label = "other", name
    if ours is not None:
        libvirt_name = inputs.get("name") if isinstance(inputs.get("name"), str) else None
        if ours == contract.DOMAIN:
            kind, label = "domain", "domain"
        elif ours == contract.VOLUME:
            if role == "root":
                kind, label = "root-disk", "root disk"
            elif role == "data":
                disk = _strip(name, contract.data_disk_resource_prefix(vm)) if vm else name
                kind, label = "data-disk", f"data disk {disk}"
            elif role == "seed":
                kind, label = "seed", "cloud-init seed"
            elif role == "base":
                pool = str(inputs["pool"]) if isinstance(inputs.get("pool"), str) else ""
                prefix = (
                    contract.image_resource_prefix(contract.hypervisor_resource(host), pool) if host else ""
                )
                image = _strip(name, prefix) if prefix else name
                kind, label = (
                    "base-image",
                    f"base image {image} (pool {pool})" if pool else f"base image {image}",
                )
            elif role == bridged.OWNER_ROLE:
                kind, label = "volume", f"owner record {libvirt_name or name}"
            else:
                kind, label = "volume", f"volume {libvirt_name or name}"
        elif ours == contract.POOL:
            kind, label = "pool", f"pool {libvirt_name or name}"
        elif ours == contract.NETWORK:
            kind, label = "network", f"network {libvirt_name or name}"
    return ResourceInfo(urn=urn, type=rtype, name=name, kind=kind, label=label, vm=vm, host=host, role=role)


def vm_hosts(steps: list[events.StepEventMetadata]) -> dict[str, str]:
    """vm -> host, from the VM components' steps (every preview reports them, changed or not)."""
    found: dict[str, str] = {}
    for step in steps:
        if (step.type or urn_type(step.urn)) == VM_TYPE:
            info = describe(step)
            if info.vm and info.host:
                found[info.vm] = info.host
    return found
