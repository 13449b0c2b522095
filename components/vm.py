"""VirtualMachine: one guest — root disk over its image, data disks, cloud-init seed, domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from components import libvirt_args as la
from components import pulumi_libvirt as pl
from virtstack import contract
from virtstack.cloudinit import instance_id, render_meta_data, render_network_config, render_user_data
from virtstack.contract import Owner
from virtstack.fleet import VmInstance
from virtstack.provider.resources import Domain, Volume
from virtstack.spec import NetworkSpec


@dataclass(frozen=True)
class VirtualMachineArgs:
    connection: la.Connection
    owner: Owner
    vm: VmInstance
    place: la.PoolPlace
    image: la.ResolvedImage
    base_volume: pulumi.CustomResource  # a Volume of the host's backend, as are the two below
    pool_resource: pulumi.CustomResource
    networks: list[pulumi.CustomResource] = field(default_factory=list)
    network_specs: dict[str, NetworkSpec] = field(default_factory=dict)


class VirtualMachine(pulumi.ComponentResource):
    # virtstack's resources, or pulumi-libvirt's on a `backend: pulumi-libvirt` host
    domain: pulumi.CustomResource
    root_disk: pulumi.CustomResource
    data_disks: dict[str, pulumi.CustomResource]
    seed: pulumi.CustomResource

    def __init__(
        self, name: str, args: VirtualMachineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(contract.VM_TYPE, name, None, opts)
        conn, vm, place = args.connection, args.vm, args.place
        in_pool = pulumi.ResourceOptions(parent=self, depends_on=[args.pool_resource])
        if conn.backend == pl.BACKEND:
            self._pulumi_libvirt(name, args, in_pool)
            return

        assert isinstance(args.base_volume, Volume)
        network_config = render_network_config(vm, args.network_specs)
        seed_instance = instance_id(vm, network_config)
        root_disk = Volume(
            f"{name}-root",
            la.root_volume_props(conn, place, vm, args.image, args.base_volume.path, seed_instance),
            in_pool,
        )
        # Data disks depend on nothing the domain has: changing the VM never replaces them.
        data_disks = {
            disk: Volume(
                contract.data_disk_resource(name, disk),
                la.data_volume_props(conn, place, vm, disk, size),
                in_pool,
            )
            for disk, size in vm.data_disks
        }
        # User data can hold passwords: it is a secret from here to the state file.
        user_data = pulumi.Output.secret(render_user_data(vm))
        seed = Volume(
            f"{name}-seed",
            la.seed_volume_props(
                conn, place, vm, user_data, render_meta_data(vm, network_config), network_config
            ),
            in_pool,
        )
        seed_name = la.seed_volume_name(place, vm)
        volumes = [(la.root_volume_name(place, vm), root_disk.generation)] + [
            (la.data_volume_name(place, vm, disk), vol.generation) for disk, vol in data_disks.items()
        ]
        domain = Domain(
            f"{name}-domain",
            la.domain_props(
                conn,
                args.owner,
                place,
                vm,
                volumes,
                seed.generation.apply(lambda _gen: seed_name),
                seed_instance,
            ),
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[root_disk, seed, *data_disks.values(), *args.networks],
            ),
        )
        self.root_disk, self.data_disks, self.seed, self.domain = root_disk, dict(data_disks), seed, domain
        cpu = la.vm_cpu(conn, vm)
        if cpu.note:
            pulumi.log.info(cpu.note, self)
        self._register(args, domain.uuid, domain.state, domain.running)

    def _pulumi_libvirt(self, name: str, args: VirtualMachineArgs, in_pool: pulumi.ResourceOptions) -> None:
        """The same objects as pulumi-libvirt resources (components.pulumi_libvirt)."""
        conn, vm, place = args.connection, args.vm, args.place
        base = args.base_volume
        assert isinstance(base, pl.pl.Volume)
        root = pl.volume(
            f"{name}-root", la.root_volume_props(conn, place, vm, args.image, base.id), in_pool, base=base
        )
        data = {
            disk: pl.volume(
                contract.data_disk_resource(name, disk),
                la.data_volume_props(conn, place, vm, disk, size),
                in_pool,
            )
            for disk, size in vm.data_disks
        }
        network_config = render_network_config(vm, args.network_specs)
        seed = pl.seed(
            f"{name}-seed",
            la.seed_volume_props(
                conn,
                place,
                vm,
                pulumi.Output.secret(render_user_data(vm)),
                render_meta_data(vm, network_config),
                network_config,
            ),
            in_pool,
        )
        volumes = [(la.root_volume_name(place, vm), root.id)] + [
            (la.data_volume_name(place, vm, disk), vol.id) for disk, vol in data.items()
        ]
        networks = {net: res for net, res in zip(vm.networks, args.networks, strict=True)}
        domain = pl.domain(
            f"{name}-domain",
            la.domain_props(conn, args.owner, place, vm, volumes, seed.id),
            [root, *data.values()],
            seed,
            {net: res for net, res in networks.items() if isinstance(res, pl.pl.Network)},
            pulumi.ResourceOptions(parent=self),
        )
        self.root_disk, self.data_disks, self.seed, self.domain = root, dict(data), seed, domain
        running = domain.running.apply(bool)
        state = running.apply(lambda on: "running" if on else "shut off")
        self._register(args, domain.id, state, running)

    def _register(
        self,
        args: VirtualMachineArgs,
        uuid: pulumi.Input[str],
        state: pulumi.Input[str],
        running: pulumi.Input[bool],
    ) -> None:
        # Each domain resource records its NICs' real addresses in its own outputs; they are not in
        # the VM's registered outputs, which a saved plan pins: a DHCP lease taken between the
        # preview's read and the apply would make the exact-plan apply fail ("resource violates plan").
        conn, vm = args.connection, args.vm
        self.outputs = {
            **vm_outputs(conn, vm, uuid, state, running),
            "firmware": vm.firmware,
            "tpm": vm.tpm,
        }
        self.register_outputs(self.outputs)


def vm_outputs(
    conn: la.Connection,
    vm: VmInstance,
    uuid: pulumi.Input[str],
    state: pulumi.Input[str],
    running: pulumi.Input[bool],
) -> dict[str, Any]:
    """What every VM component registers (its entry in the stack's `vms` output), built or imported."""
    return {
        "host": conn.host,
        "uri": conn.uri,
        "domain": vm.name,
        "uuid": uuid,
        "state": state,
        "running": running,
        "vcpus": vm.vcpus,
        "memory": vm.memory_bytes,
        "macs": [nic.mac for nic in vm.nics],
        "ips": [str(nic.ip) if nic.ip else None for nic in vm.nics],
        "networks": [nic.network for nic in vm.nics],
        "hostname": vm.hostname,
        "console_log": la.console_log_path(vm),
        "running_wanted": vm.running,
    }
