"""Fleet: a validated stack spec, placed on its hosts, as the tree Host → Hypervisor → VirtualMachine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from components.host import Host, HostArgs
from components.libvirt_args import Connection, ResolvedImage
from virtstack import contract
from virtstack.contract import Owner
from virtstack.placement import place_fleet
from virtstack.spec import StackSpec


@dataclass(frozen=True)
class FleetArgs:
    spec: StackSpec
    stack: str
    spec_file: str
    connections: dict[str, Connection]  # per host, domain type already resolved
    images: dict[str, ResolvedImage]
    previous_placement: Mapping[str, str] = field(default_factory=dict)  # vm → host of the last run
    project: str = "virtstack"  # with `stack`, the owner recorded on every libvirt object


class Fleet(pulumi.ComponentResource):
    hosts: dict[str, Host]

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Placement first: an infeasible fleet must fail before anything is registered.
        placed_fleet = place_fleet(args.spec, args.spec_file, previous=args.previous_placement)
        super().__init__(contract.FLEET_TYPE, name, None, opts)
        instances = placed_fleet.fleet
        self.placement = dict(placed_fleet.placement.assignments)
        self.hosts = {}
        for host_name, host_spec in args.spec.hosts.items():
            placed = [vm for vm in instances if self.placement.get(vm.name) == host_name]
            used_images = {vm.image for vm in placed if vm.imported is None}
            self.hosts[host_name] = Host(
                host_name,
                HostArgs(
                    connection=args.connections[host_name],
                    spec=host_spec,
                    owner=Owner(args.project, args.stack),
                    images={i: args.images[i] for i in sorted(used_images)},
                    vms=placed,
                ),
                pulumi.ResourceOptions(parent=self),
            )
        self.vms = {vm_name: vm.outputs for host in self.hosts.values() for vm_name, vm in host.vms.items()}
        self.register_outputs({"placement": self.placement, "vms": self.vms})
