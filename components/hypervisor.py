"""Hypervisor: what one host offers its VMs — storage pools, networks, base images."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import libvirt_args as la
from components import pulumi_libvirt as pl
from virtstack import contract
from virtstack.contract import Owner
from virtstack.provider.resources import Network, Pool, Volume
from virtstack.spec import HostSpec


@dataclass(frozen=True)
class HypervisorArgs:
    connection: la.Connection
    owner: Owner
    spec: HostSpec
    images: dict[str, la.ResolvedImage]  # images used on this host
    bases: frozenset[tuple[str, str]] = frozenset()  # (pool, image) pairs that VMs here need


class Hypervisor(pulumi.ComponentResource):
    # virtstack's resources, or pulumi-libvirt's on a `backend: pulumi-libvirt` host
    pools: dict[str, pulumi.CustomResource]
    networks: dict[str, pulumi.CustomResource]
    base_volumes: dict[tuple[str, str], pulumi.CustomResource]  # (pool, image) → base volume

    def __init__(self, name: str, args: HypervisorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(contract.HYPERVISOR_TYPE, name, None, opts)
        conn = args.connection
        if conn.backend == pl.BACKEND:
            self._pulumi_libvirt(name, args)
            return
        self.pools = {
            pool: Pool(
                contract.pool_resource(name, pool),
                la.pool_props(conn, args.owner, pool, spec),
                pulumi.ResourceOptions(parent=self),
            )
            for pool, spec in args.spec.pools.items()
        }
        self.networks = {
            net: Network(
                contract.network_resource(name, net),
                la.network_props(conn, args.owner, net, spec),
                pulumi.ResourceOptions(parent=self),
            )
            for net, spec in args.spec.networks.items()
        }
        # One base volume per image and pool: every VM's root disk is a copy-on-write overlay on it, so
        # an image is uploaded to a host once, however many VMs use it.
        self.base_volumes = {}
        for pool, image_name in sorted(args.bases):
            image = args.images[image_name]
            self.base_volumes[(pool, image_name)] = Volume(
                contract.image_resource(name, pool, image_name),
                la.base_volume_props(
                    conn, la.PoolPlace(pool, args.spec.pools[pool].external, args.owner), image
                ),
                pulumi.ResourceOptions(parent=self, depends_on=[self.pools[pool]]),
            )
        self._register()

    def _pulumi_libvirt(self, name: str, args: HypervisorArgs) -> None:
        conn, child = args.connection, pulumi.ResourceOptions(parent=self)
        self.pools = {
            pool: pl.pool(
                contract.pool_resource(name, pool),
                la.pool_props(conn, args.owner, pool, spec),
                args.owner,
                child,
            )
            for pool, spec in args.spec.pools.items()
        }
        self.networks = {
            net: pl.network(
                contract.network_resource(name, net), la.network_props(conn, args.owner, net, spec), child
            )
            for net, spec in args.spec.networks.items()
        }
        self.base_volumes = {}
        for pool, image_name in sorted(args.bases):
            place = la.PoolPlace(pool, args.spec.pools[pool].external, args.owner)
            self.base_volumes[(pool, image_name)] = pl.volume(
                contract.image_resource(name, pool, image_name),
                la.base_volume_props(conn, place, args.images[image_name]),
                pulumi.ResourceOptions(parent=self, depends_on=[self.pools[pool]]),
            )
        self._register()

    def _register(self) -> None:
        self.register_outputs(
            {
                "pools": {p: r.id for p, r in self.pools.items()},
                "networks": {n: r.id for n, r in self.networks.items()},
            }
        )
