"""Pulumi resources for libvirt objects: Pool, Network, Volume, Domain.

Each is a Pulumi dynamic resource: the engine stores its inputs/outputs in state, diffs them, and calls
these providers' create/read/update/delete in a provider process. Behaviour that matters to users:

- Ownership (virtstack.provider.ownership): an object of this name that another stack owns, or that
  virtstack did not create, is never adopted, changed or deleted; `check` reports it at preview, so a
  plan stops before any change. `external` pools and networks are checked, used, never changed.
- Creates are idempotent: an object of this stack left behind by an interrupted run (a crash between
  libvirt's create and the engine's checkpoint) is adopted rather than failing with "already
  exists"; a disk that does not match what is asked is an error, never deleted.
- Deleted root and data disks go to the pool's trash (virtstack.provider.trash) unless the engine
  runs with VIRTSTACK_NO_TRASH=1.
- `read` reports what libvirt really holds, so `refresh`/drift sees a stopped or vanished VM.
- Domains change in place when only `running`/`autostart` differ, are redefined (a restart, disks
  kept) for size/device changes, and replaced (delete before create) only when their identity changes.
- Volumes grow in place; a shrink or an identity change replaces them, which the plan classifier
  reports as data loss for root and data disks.
"""

import pulumi
from pulumi.dynamic import Resource

from virtstack import contract
from virtstack.props import DomainProps, NetworkProps, PoolProps, VolumeProps
from virtstack.provider.domains import DomainProvider
from virtstack.provider.networks import NetworkProvider
from virtstack.provider.pools import PoolProvider
from virtstack.provider.volumes import VolumeProvider

__all__ = [
    "Domain",
    "DomainProvider",
    "Network",
    "NetworkProvider",
    "Pool",
    "PoolProvider",
    "Volume",
    "VolumeProvider",
]

# Existing stacks' state holds each resource's provider pickled by reference as
# `virtstack.provider.resources.<Class>` (dill pickles an importable class by module and name). The
# classes live in their own modules now but keep that path, so old state loads, and new state is
# byte-identical to old (no `__provider` change on the next `up`).
for _cls in (PoolProvider, NetworkProvider, VolumeProvider, DomainProvider):
    _cls.__module__ = __name__

# ----------------------------------------------------------------------------- the resource classes


class Pool(Resource, module=contract.TYPE_MODULE, name=contract.POOL):
    uuid: pulumi.Output[str]

    def __init__(self, name: str, props: PoolProps, opts: pulumi.ResourceOptions | None = None):
        super().__init__(PoolProvider(), name, {"uuid": None, "state": None, **props.to_inputs()}, opts)


class Network(Resource, module=contract.TYPE_MODULE, name=contract.NETWORK):
    uuid: pulumi.Output[str]

    def __init__(self, name: str, props: NetworkProps, opts: pulumi.ResourceOptions | None = None):
        super().__init__(NetworkProvider(), name, {"uuid": None, "state": None, **props.to_inputs()}, opts)


class Volume(Resource, module=contract.TYPE_MODULE, name=contract.VOLUME):
    path: pulumi.Output[str]
    key: pulumi.Output[str]
    generation: pulumi.Output[str]
    capacity: pulumi.Output[int]

    def __init__(self, name: str, props: VolumeProps, opts: pulumi.ResourceOptions | None = None):
        secret_outputs = ["user_data"] if props.user_data is not None else []
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=secret_outputs)
        )
        super().__init__(
            VolumeProvider(),
            name,
            {"path": None, "key": None, "capacity": None, "generation": None, **props.to_inputs()},
            opts,
        )


class Domain(Resource, module=contract.TYPE_MODULE, name=contract.DOMAIN):
    uuid: pulumi.Output[str]
    state: pulumi.Output[str]
    running: pulumi.Output[bool]
    addresses: pulumi.Output[list[str | None]]  # each NIC's real IPv4 address, when known

    def __init__(self, name: str, props: DomainProps, opts: pulumi.ResourceOptions | None = None):
        # A domain name is unique per host: the old definition must be gone before the new one.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True))
        outputs = {"uuid": None, "state": None, "addresses": None}
        super().__init__(DomainProvider(), name, {**outputs, **props.to_inputs()}, opts)
