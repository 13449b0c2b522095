"""What a previewed change means to a VM owner: actions, changes per object, per VM, per host.

The model `virtstack.ops.classify` builds from the engine's preview and the CLI renders; no engine,
no I/O. (Separate from the classification so each reads on its own.)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from virtstack.ops.resources import KIND_ORDER, ResourceInfo


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REDEFINE = "redefine"
    REPLACE = "replace"
    REPLACE_DATA_LOSS = "replace_data_loss"
    DELETE = "delete"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def words(self) -> str:
        return ACTION_WORDS[self]

    @property
    def short(self) -> str:
        return ACTION_SHORT[self]


_SEVERITY = {
    Action.CREATE: 0,
    Action.UPDATE: 1,
    Action.REPLACE: 2,
    Action.REDEFINE: 3,
    Action.DELETE: 4,
    Action.REPLACE_DATA_LOSS: 5,
}

ACTION_SHORT = {
    Action.CREATE: "create",
    Action.UPDATE: "update in place",
    Action.REDEFINE: "redefine",
    Action.REPLACE: "replace",
    Action.REPLACE_DATA_LOSS: "replace with data loss",
    Action.DELETE: "delete",
}

ACTION_WORDS = {
    Action.CREATE: "create",
    Action.UPDATE: "update in place",
    Action.REDEFINE: "redefine (the VM restarts, its disks are kept)",
    Action.REPLACE: "replace",
    Action.REPLACE_DATA_LOSS: "replace with data loss (a disk that holds data is destroyed)",
    Action.DELETE: "delete",
}


@dataclass(frozen=True)
class Change:
    """What happens to one libvirt object."""

    resource: ResourceInfo
    action: Action
    keys: tuple[str, ...] = ()
    details: tuple[str, ...] = ()

    @property
    def data_loss(self) -> bool:
        return self.action is Action.REPLACE_DATA_LOSS or (
            self.action is Action.DELETE and self.resource.holds_data
        )

    @property
    def words(self) -> str:
        if self.action is Action.DELETE and self.data_loss:
            return "delete (data loss: the disk and its data are destroyed)"
        return self.action.words

    @property
    def short(self) -> str:
        if self.action is Action.DELETE and self.data_loss:
            return "delete with data loss"
        return self.action.short


def sort_key(change: Change) -> tuple[int, str]:
    return (KIND_ORDER.get(change.resource.kind, 99), change.resource.name)


@dataclass(frozen=True)
class VmPlan:
    """The changes to one VM's objects and what they mean for the VM as a whole."""

    vm: str
    host: str | None
    action: Action
    changes: tuple[Change, ...]

    @property
    def data_loss(self) -> bool:
        return any(change.data_loss for change in self.changes)

    @property
    def words(self) -> str:
        if self.action is Action.DELETE:
            if self.data_loss:
                return "delete (the VM and its disks, with their data, are destroyed)"
            return "delete (the VM is removed)"
        if self.action is Action.CREATE:
            return "create"
        if self.action is Action.REPLACE:
            return "replace (objects without data are recreated)"
        return self.action.words


@dataclass(frozen=True)
class HostPlan:
    """Changes to a host's hypervisor objects: pools, networks, base images."""

    host: str
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Plan:
    vms: tuple[VmPlan, ...] = ()
    hosts: tuple[HostPlan, ...] = ()
    other: tuple[Change, ...] = ()

    @property
    def changes(self) -> tuple[Change, ...]:
        found: list[Change] = []
        for vm in self.vms:
            found.extend(vm.changes)
        for host in self.hosts:
            found.extend(host.changes)
        found.extend(self.other)
        return tuple(found)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def data_loss(self) -> bool:
        return any(change.data_loss for change in self.changes)

    @property
    def destroyed_disks(self) -> tuple[str, ...]:
        """Every disk whose data this plan destroys, as `vm <vm>: <disk>`."""
        return tuple(
            f"{change.resource.owner}: {change.resource.label}" for change in self.changes if change.data_loss
        )

    @property
    def refused_data_loss(self) -> tuple[str, ...]:
        """Every disk holding data that the plan deletes or recreates — a removed VM, a shrunk group,
        a new image, a shrunk disk alike: `virtstack up` and `destroy` refuse them all without
        --allow-data-loss, so an unattended run never destroys data without a person."""
        return self.destroyed_disks

    def counts(self) -> dict[Action, int]:
        counts = dict.fromkeys(Action, 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts
