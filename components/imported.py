"""ImportedMachine: a domain that existed before the stack (`virtstack import`), adopted as it is —
its disks are existing volumes (never created, changed or deleted), it has no seed, and adopting it
never restarts it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components import libvirt_args as la
from components.vm import vm_outputs
from virtstack import contract
from virtstack.contract import Owner
from virtstack.fleet import VmInstance
from virtstack.provider.resources import Domain, Network, Pool


@dataclass(frozen=True)
class ImportedMachineArgs:
    connection: la.Connection
    owner: Owner
    vm: VmInstance
    pool_resources: list[Pool] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)


class ImportedMachine(pulumi.ComponentResource):
    domain: Domain

    def __init__(
        self, name: str, args: ImportedMachineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(contract.VM_TYPE, name, None, opts)
        conn, vm = args.connection, args.vm
        self.domain = Domain(
            f"{name}-domain",
            la.imported_domain_props(conn, args.owner, vm),
            pulumi.ResourceOptions(parent=self, depends_on=[*args.pool_resources, *args.networks]),
        )
        self.outputs = {
            **vm_outputs(conn, vm, self.domain.uuid, self.domain.state, self.domain.running),
            "imported": True,
        }
        self.register_outputs(self.outputs)
