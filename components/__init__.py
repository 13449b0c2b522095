"""Pulumi components for the three layers of a libvirt fleet.

    Fleet                      virtstack:fleet:Fleet        validation + placement, wires the layers
      └ Host                   virtstack:host:Host          one libvirt host (its connection)
          └ Hypervisor         virtstack:hypervisor:Hypervisor   pools, networks, base images
              └ VirtualMachine virtstack:vm:VirtualMachine  root/data disks, cloud-init seed, domain

Components take validated models (virtstack.spec / virtstack.fleet) and never read Pulumi config.
"""

from components.fleet import Fleet, FleetArgs
from components.host import Host, HostArgs, HostConnection
from components.hypervisor import Hypervisor, HypervisorArgs
from components.vm import VirtualMachine, VirtualMachineArgs

__all__ = [
    "Fleet",
    "FleetArgs",
    "Host",
    "HostArgs",
    "HostConnection",
    "Hypervisor",
    "HypervisorArgs",
    "VirtualMachine",
    "VirtualMachineArgs",
]
