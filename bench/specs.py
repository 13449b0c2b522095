"""Stack files the benchmarks apply or validate. Names start with `vsb`, subnets are 10.153.X.0/24."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IMAGE = PROJECT_ROOT / ".virtstack/images/debian-12.qcow2"
POOL_ROOT = Path("/var/lib/virtstack/pools")

SMALL_VM = {"image": "debian-12", "vcpus": 1, "memory": "256MiB", "disk": "3GiB"}


def fleet_spec(
    prefix: str,
    n: int,
    hosts: dict[str, str],
    subnet: int,
    running: bool = True,
    hostname_users: bool = True,
) -> dict[str, Any]:
    """`n` small VMs (the built image, 256 MiB, one vCPU, CoW root, cloud-init seed, one NIC on an
    isolated network) spread over `hosts` (name → URI). One pool and one network per host."""
    net = {"mode": "isolated", "cidr": f"10.153.{subnet}.0/24", "dhcp": True}
    spec: dict[str, Any] = {
        "hosts": {
            name: {
                "uri": uri,
                "capacity": {"vcpus": 64, "memory": "64GiB", "disk": "1TiB"},
                "pools": {prefix: {"path": str(POOL_ROOT / f"{prefix}-{name}")}},
                "networks": {prefix: net},
            }
            for name, uri in hosts.items()
        },
        "images": {"debian-12": {"source": str(IMAGE)}},
        "vms": {
            prefix: {
                **SMALL_VM,
                "count": n,
                "nics": [{"network": prefix}],
                "running": running,
                "autostart": False,
                **({"cloud_init": {"users": [{"name": "ops"}]}} if hostname_users else {}),
            }
        },
        "placement": {"strategy": "spread"},
    }
    return spec


def scale_spec(n_vms: int, n_hosts: int, group: int = 1) -> dict[str, Any]:
    """A validation-only stack: `n_vms` VMs over `n_hosts` hosts, each VM with a static address, a data
    disk and a cloud-init user; every host has one pool and one isolated /16 network (validation only:
    never created, the URIs are placeholders). `group` VMs share one entry (`count: group`), as stack
    files write fleets; group=1 is the costly shape of one entry per VM."""
    net = {"mode": "isolated", "cidr": "10.160.0.0/16", "dhcp": False}
    hosts = {
        f"vsbh{h:04d}": {
            "uri": f"qemu+ssh://ops@vsbh{h:04d}.example/system",
            "domain_type": "kvm",
            "capacity": {"vcpus": 64, "memory": "256GiB", "disk": "4TiB"},
            "pools": {"vms": {"path": "/var/lib/virtstack/pools/vms"}},
            "networks": {"vsbnet": net},
        }
        for h in range(n_hosts)
    }
    vms = {}
    for g, first in enumerate(range(0, n_vms, group)):
        count = min(group, n_vms - first)
        ip = 10 + first  # consecutive addresses from 10.160.0.10; a group's instances take the next ones
        entry: dict[str, Any] = {
            **SMALL_VM,
            "memory": "1GiB",
            "disk": "8GiB",
            "data_disks": [{"name": "data", "size": "2GiB"}],
            "nics": [{"network": "vsbnet", "ip": f"10.160.{ip // 256}.{ip % 256}"}],
            "cloud_init": {"users": [{"name": "ops", "sudo": True}], "packages": ["htop"]},
        }
        if count > 1:
            entry["count"] = count
        vms[f"vsb{g:05d}"] = entry
    return {
        "hosts": hosts,
        "images": {"debian-12": {"source": str(IMAGE)}},
        "vms": vms,
        "placement": {"strategy": "spread"},
    }
