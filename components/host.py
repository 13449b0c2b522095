"""Host: one physical libvirt host, the root of its hypervisor and VMs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.hypervisor import Hypervisor, HypervisorArgs
from components.imported import ImportedMachine, ImportedMachineArgs
from components.libvirt_args import Connection, PoolPlace, ResolvedImage
from components.vm import VirtualMachine, VirtualMachineArgs
from virtstack import contract
from virtstack.contract import Owner
from virtstack.fleet import VmInstance, resolve_pool
from virtstack.spec import HostSpec

HostConnection = Connection


@dataclass(frozen=True)
class HostArgs:
    connection: Connection
    spec: HostSpec
    owner: Owner
    images: dict[str, ResolvedImage]  # the images VMs placed here use
    vms: list[VmInstance] = field(default_factory=list)  # VMs placed on this host, with their pool


class Host(pulumi.ComponentResource):
    """Owns the connection to one host; every libvirt object below it is created through it.

    (virtstack's libvirt backend takes the connection URI as an input of each resource instead of a
    provider object; the Host hands it down once, so children never choose a connection themselves.)
    """

    hypervisor: Hypervisor
    vms: dict[str, VirtualMachine | ImportedMachine]

    def __init__(self, name: str, args: HostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(contract.HOST_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Placement only puts a VM where its pool exists, so this always resolves.
        pools = {vm.name: resolve_pool(args.spec, vm.pool) or "" for vm in args.vms}
        self.hypervisor = Hypervisor(
            contract.hypervisor_resource(name),
            HypervisorArgs(
                connection=args.connection,
                owner=args.owner,
                spec=args.spec,
                images=args.images,
                bases=frozenset((pools[vm.name], vm.image) for vm in args.vms if vm.imported is None),
            ),
            child,
        )
        self.vms = {}
        for vm in args.vms:
            if vm.imported is not None:
                self.vms[vm.name] = ImportedMachine(
                    vm.name,
                    ImportedMachineArgs(
                        connection=args.connection,
                        owner=args.owner,
                        vm=vm,
                        pool_resources=[self.hypervisor.pools[d.pool] for d in vm.imported.disks],
                        networks=[self.hypervisor.networks[n] for n in vm.networks],
                    ),
                    pulumi.ResourceOptions(parent=self.hypervisor, protect=vm.protect),
                )
                continue
            pool = pools[vm.name]
            self.vms[vm.name] = VirtualMachine(
                vm.name,
                VirtualMachineArgs(
                    connection=args.connection,
                    owner=args.owner,
                    vm=vm,
                    place=PoolPlace(pool, args.spec.pools[pool].external, args.owner),
                    image=args.images[vm.image],
                    base_volume=self.hypervisor.base_volumes[(pool, vm.image)],
                    pool_resource=self.hypervisor.pools[pool],
                    networks=[self.hypervisor.networks[n] for n in vm.networks],
                    network_specs={n: args.spec.networks[n] for n in vm.networks},
                ),
                # protect: true — the engine refuses to delete the VM or its disks (children inherit it).
                pulumi.ResourceOptions(parent=self.hypervisor, protect=vm.protect),
            )
        self.uri = args.connection.uri
        self.register_outputs({"uri": self.uri, "domain_type": args.connection.domain_type})
