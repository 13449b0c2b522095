"""The one contract between the components, the plan classifier and the libvirt provider.

Libvirt-free and engine-free, so every side imports the same rules instead of keeping copies:

- **Normalisation**: sizes as libvirt and QEMU store them. A domain's memory is kept in whole MiB
  (libvirt aligns it up to 1 MiB on x86), a volume's capacity in whole KiB (libvirt hands qemu-img
  the size in KiB, rounded up). The spec normalises once when it is loaded, so `validate` shows, the
  provider writes and `read` reports the same number: a second `up` has nothing to change.
- **Diff rules**: which keys are outputs only, which are labels (never compared), which change an
  object in place and which replace it.
- **Names** of libvirt objects: volumes, the owner record of a pool, and trashed disks.
- **Ownership**: every object records `project/stack`; an object of another owner, or one with no
  record, is never adopted, changed or deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KIB = 1024
MIB = 1024**2

# ------------------------------------------------------------------------------------ normalisation


def _round_up(value: int, unit: int) -> int:
    return -(-int(value) // unit) * unit


def normalise_memory(size: int) -> int:
    """Bytes of guest memory as libvirt keeps them: rounded up to a whole MiB (600 MB → 573 MiB)."""
    return _round_up(size, MIB)


def normalise_disk(size: int) -> int:
    """Bytes of a volume as libvirt creates it: rounded up to a whole KiB (qemu-img then adds nothing)."""
    return _round_up(size, KIB)


def memory_kib(size: int) -> int:
    """The `<memory unit='KiB'>` value for a normalised size (exact: no rounding left to libvirt)."""
    return normalise_memory(size) // KIB


# --------------------------------------------------------------------------------------- diff rules

# Values a provider reports but never takes from the program: they never cause a diff.
OUTPUT_ONLY = frozenset(
    {
        "uuid",
        "path",
        "key",
        "generation",
        "state",
        "state_reason",
        "capacity",
        "allocation",
        "addresses",
        "__provider",
    }
)
# Inputs that only label an object for messages and checks (its host, its VM, whether its pool is
# shared): never compared.
LABEL_KEYS = frozenset({"host", "vm", "pool_external"})
# Inputs that say how to do an operation, not what the object is (domains started in waves): a change
# changes nothing deployed.
HINT_KEYS = frozenset({"boot_concurrency"})
NOT_COMPARED = OUTPUT_ONLY | LABEL_KEYS | HINT_KEYS
# A changed `owner` (an object created before owner records) is an in-place update that writes the
# record, and puts the owner into the state, where deleting a disk needs it for the trash.
_NOT_COMPARED_BY_KIND: dict[str, frozenset[str]] = {}

# Keys whose change recreates the object (delete before create when the libvirt name stays).
POOL_REPLACE_KEYS = frozenset({"uri", "name", "path", "external"})
NETWORK_REPLACE_KEYS = frozenset(
    {"uri", "name", "mode", "bridge", "cidr", "dhcp", "dhcp_start", "dhcp_end", "external"}
)
VOLUME_REPLACE_KEYS = frozenset(
    {
        "uri",
        "pool",
        "name",
        "role",
        "format",
        "backing_path",
        "source",
        "source_fingerprint",
        "user_data",
        "meta_data",
        "network_config",
        "external",
    }
)
DOMAIN_REPLACE_KEYS = frozenset({"uri", "name"})
REPLACE_KEYS = {
    "Pool": POOL_REPLACE_KEYS,
    "Network": NETWORK_REPLACE_KEYS,
    "Volume": VOLUME_REPLACE_KEYS,
    "Domain": DOMAIN_REPLACE_KEYS,
}
# Domain keys changed without a restart; any other domain change redefines it (the VM restarts).
# `shutdown_timeout` and `cloud_init_change` only steer later changes; a new `seed_instance_id` (a
# changed cloud-init seed) is applied by the provider as its `cloud_init_change` says (reboot or not).
IN_PLACE_DOMAIN_KEYS = frozenset(
    {"running", "autostart", "owner", "adopt", "shutdown_timeout", "cloud_init_change", "seed_instance_id"}
)
# Keys shown as sizes in plans.
SIZE_KEYS = frozenset({"memory", "size"})


def not_compared(kind: str) -> frozenset[str]:
    return _NOT_COMPARED_BY_KIND.get(kind, NOT_COMPARED)


def changed_keys(kind: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """The compared keys whose value differs (a key only in `olds` was dropped: not a change)."""
    skip = not_compared(kind)
    return sorted(k for k in news if k not in skip and olds.get(k) != news.get(k))


def _number(value: Any) -> float | None:
    """A size as the engine hands it back (its state keeps numbers as floats); None when unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def replaces(kind: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """The changed keys that recreate an object of `kind` (Pool, Network, Volume, Domain)."""
    keys = [k for k in changed_keys(kind, olds, news) if k in REPLACE_KEYS[kind]]
    if kind == "Volume":
        old_size, new_size = _number(olds.get("size")), _number(news.get("size"))
        if old_size is not None and new_size is not None and new_size < old_size:
            keys.append("size")  # qcow2 cannot shrink safely: a smaller disk is a new disk
        old_seed, new_seed = olds.get("cloud_init_instance"), news.get("cloud_init_instance")
        if old_seed and new_seed and old_seed != new_seed:
            # `on_cloud_init_change: replace`: a new cloud-init is a new root disk (data loss, so guarded).
            # Only a change counts: turning the policy on records the current instance-id.
            keys.append("cloud_init_instance")
    return sorted(set(keys))


# ----------------------------------------------------------------------------------------- ownership

OWNER_SEPARATOR = "@"  # cannot appear in Pulumi project or stack names, nor in virtstack names


@dataclass(frozen=True)
class Owner:
    """Who created a libvirt object: a Pulumi project and stack."""

    project: str
    stack: str

    def __str__(self) -> str:
        return f"{self.project}/{self.stack}"

    @classmethod
    def parse(cls, text: str) -> Owner:
        project, _, stack = text.partition("/")
        return cls(project, stack)


def describe_owner(owner: Owner | None) -> str:
    return f"stack {owner}" if owner is not None else "no virtstack stack (not created by virtstack)"


POOL_OWNER_PREFIX = f"virtstack-owner{OWNER_SEPARATOR}"


def pool_owner_volume(owner: Owner) -> str:
    """A pool's owner record: an empty volume in the pool itself, so it lives on the host (remote
    hosts too) and survives a lost state file. libvirt keeps no metadata for pools."""
    return f"{POOL_OWNER_PREFIX}{owner.project}{OWNER_SEPARATOR}{owner.stack}"


def parse_pool_owner_volume(name: str) -> Owner | None:
    if not name.startswith(POOL_OWNER_PREFIX):
        return None
    project, sep, stack = name[len(POOL_OWNER_PREFIX) :].partition(OWNER_SEPARATOR)
    return Owner(project, stack) if sep and project and stack else None


# ------------------------------------------------------------------------------------------- names


def root_volume_name(vm: str) -> str:
    return f"{vm}-root.qcow2"


def data_volume_name(vm: str, disk: str) -> str:
    return f"{vm}-{disk}.qcow2"


def seed_volume_name(vm: str) -> str:
    return f"{vm}-seed.iso"


def base_volume_name(image: str, fingerprint: str, disk_format: str) -> str:
    return f"{image}-{fingerprint[:12]}.{disk_format}"


def external_volume_name(stack: str, name: str) -> str:
    """A volume of this stack in an `external` pool that other stacks share: the stack name keeps two
    stacks' `app-1-root.qcow2` apart and says whose it is."""
    return f"{stack}{OWNER_SEPARATOR}{name}"


# ------------------------------------------------------------------------------------------- trash

TRASH_PREFIX = f"trash{OWNER_SEPARATOR}"
DEFAULT_TRASH_DAYS = 7


@dataclass(frozen=True)
class TrashName:
    """A disk moved to the trash: `trash@<project>@<stack>@<vm>@<UTC stamp>@<original name>`."""

    owner: Owner
    vm: str
    stamp: str  # YYYYMMDDTHHMMSSZ
    original: str

    def __str__(self) -> str:
        parts = (self.owner.project, self.owner.stack, self.vm, self.stamp, self.original)
        return TRASH_PREFIX + OWNER_SEPARATOR.join(parts)

    @classmethod
    def parse(cls, name: str) -> TrashName | None:
        if not name.startswith(TRASH_PREFIX):
            return None
        parts = name[len(TRASH_PREFIX) :].split(OWNER_SEPARATOR, 4)
        if len(parts) != 5 or not all(parts):
            return None
        project, stack, vm, stamp, original = parts
        return cls(Owner(project, stack), vm, stamp, original)


# ------------------------------------------------------------------------------------- type tokens

# The dynamic resources' Pulumi module; their type tokens are `pulumi-python:dynamic/virtstack:<Kind>`
# (state records them: they never change).
TYPE_MODULE = "virtstack"
DYNAMIC_TYPE_PREFIX = f"pulumi-python:dynamic/{TYPE_MODULE}:"
POOL, NETWORK, VOLUME, DOMAIN = "Pool", "Network", "Volume", "Domain"
KINDS = (POOL, NETWORK, VOLUME, DOMAIN)


def type_token(kind: str) -> str:
    return DYNAMIC_TYPE_PREFIX + kind


def kind_of_type(rtype: str) -> str | None:
    """`Pool`, `Network`, `Volume` or `Domain` for one of ours; None for any other type."""
    kind = rtype.removeprefix(DYNAMIC_TYPE_PREFIX)
    return kind if rtype.startswith(DYNAMIC_TYPE_PREFIX) and kind in KINDS else None


# The components' types and their children's engine names (resources, not libvirt objects): the
# components build them, `virtstack.ops.resources` reads VMs and hosts back out of URNs.
VM_TYPE = "virtstack:vm:VirtualMachine"
HYPERVISOR_TYPE = "virtstack:hypervisor:Hypervisor"
HOST_TYPE = "virtstack:host:Host"
FLEET_TYPE = "virtstack:fleet:Fleet"
HYPERVISOR_SUFFIX = "-hypervisor"


def hypervisor_resource(host: str) -> str:
    return f"{host}{HYPERVISOR_SUFFIX}"


def pool_resource(hypervisor: str, pool: str) -> str:
    return f"{hypervisor}-pool-{pool}"


def network_resource(hypervisor: str, network: str) -> str:
    return f"{hypervisor}-net-{network}"


def image_resource(hypervisor: str, pool: str, image: str) -> str:
    return f"{hypervisor}-image-{pool}-{image}"


def image_resource_prefix(hypervisor: str, pool: str) -> str:
    return image_resource(hypervisor, pool, "")


def data_disk_resource(vm: str, disk: str) -> str:
    return f"{vm}-data-{disk}"


def data_disk_resource_prefix(vm: str) -> str:
    return data_disk_resource(vm, "")
