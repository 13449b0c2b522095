"""VirtualMachine: one guest — root disk over its image, data disks, cloud-init seed, domain."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components import libvirt_args as la
from virtstack import contract
from virtstack.cloudinit import instance_id, render_meta_data, render_network_config, render_user_data
from virtstack.contract import Owner
from virtstack.fleet import VmInstance
from virtstack.provider.resources import Domain, Network, Pool, Volume
from virtstack.spec import NetworkSpec


@dataclass(frozen=True)
class VirtualMachineArgs:
    connection: la.Connection
    owner: Owner
    vm: VmInstance
    place: la.PoolPlace
    image: la.ResolvedImage
    base_volume: Volume
    pool_resource: Pool
    networks: list[Network] = field(default_factory=list)
    network_specs: dict[str, NetworkSpec] = field(default_factory=dict)


class VirtualMachine(pulumi.ComponentResource):
    domain: Domain
    root_disk: Volume
    data_disks: dict[str, Volume]
    seed: Volume

    def __init__(
        self, name: str, args: VirtualMachineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(contract.VM_TYPE, name, None, opts)
        conn, vm, place = args.connection, args.vm, args.place
        in_pool = pulumi.ResourceOptions(parent=self, depends_on=[args.pool_resource])

        network_config = render_network_config(vm, args.network_specs)
        seed_instance = instance_id(vm, network_config)
        self.root_disk = Volume(
            f"{name}-root",
            la.root_volume_props(conn, place, vm, args.image, args.base_volume.path, seed_instance),
            in_pool,
        )
        # Data disks depend on nothing the domain has: changing the VM never replaces them.
        self.data_disks = {
            disk: Volume(
                contract.data_disk_resource(name, disk),
                la.data_volume_props(conn, place, vm, disk, size),
                in_pool,
            )
            for disk, size in vm.data_disks
        }
        # User data can hold passwords: it is a secret from here to the state file.
        user_data = pulumi.Output.secret(render_user_data(vm))
        self.seed = Volume(
            f"{name}-seed",
            la.seed_volume_props(
                conn, place, vm, user_data, render_meta_data(vm, network_config), network_config
            ),
            in_pool,
        )
        seed_name = la.seed_volume_name(place, vm)
        volumes = [(la.root_volume_name(place, vm), self.root_disk.generation)] + [
            (la.data_volume_name(place, vm, disk), vol.generation) for disk, vol in self.data_disks.items()
        ]
        self.domain = Domain(
            f"{name}-domain",
            la.domain_props(
                conn,
                args.owner,
                place,
                vm,
                volumes,
                self.seed.generation.apply(lambda _gen: seed_name),
                seed_instance,
            ),
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.root_disk, self.seed, *self.data_disks.values(), *args.networks],
            ),
        )
        cpu = la.vm_cpu(conn, vm)
        if cpu.note:
            pulumi.log.info(cpu.note, self)
        self.outputs = {
            "host": conn.host,
            "uri": conn.uri,
            "domain": vm.name,
            "uuid": self.domain.uuid,
            "state": self.domain.state,
            "running": self.domain.running,
            "vcpus": vm.vcpus,
            "memory": vm.memory_bytes,
            "macs": [nic.mac for nic in vm.nics],
            "ips": [str(nic.ip) if nic.ip else None for nic in vm.nics],
            "addresses": self.domain.addresses,
            "networks": [nic.network for nic in vm.nics],
            "hostname": vm.hostname,
            "console_log": la.console_log_path(vm),
            "running_wanted": vm.running,
            "firmware": vm.firmware,
            "tpm": vm.tpm,
        }
        self.register_outputs(self.outputs)
