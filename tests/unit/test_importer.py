"""virtstack.importer: domain XML -> stack-file entries (table-driven), and the entries load back."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from virtstack.importer import ImportProblem, domain_entry, fragment
from virtstack.spec.loader import parse_stack

PATHS = {"/var/lib/pools/legacy/db-root.qcow2": ("legacy", "db-root.qcow2")}


def dom(devices: str, name: str = "db", memory: str = "<memory unit='KiB'>1048576</memory>") -> str:
    return (
        f"<domain type='kvm'><name>{name}</name>{memory}<vcpu>2</vcpu><devices>{devices}</devices></domain>"
    )


ROOT_BY_PATH = (
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='/var/lib/pools/legacy/db-root.qcow2'/></disk>"
)
DATA_BY_VOLUME = (
    "<disk type='volume' device='disk'><driver name='qemu' type='raw'/>"
    "<source pool='legacy' volume='db-data.img'/></disk>"
)
CDROM = "<disk type='file' device='cdrom'><source file='/tmp/x.iso'/></disk>"
NIC = "<interface type='network'><mac address='52:54:00:01:02:03'/><source network='lan'/></interface>"


def test_a_domain_becomes_one_pinned_group_with_its_disks_as_existing_volumes() -> None:
    entry = domain_entry(dom(ROOT_BY_PATH + DATA_BY_VOLUME + CDROM + NIC), PATHS.get, True, False)
    assert entry.vm == {
        "host": "",
        "vcpus": 2,
        "memory": "1024MiB",
        "running": True,
        "autostart": False,
        "imported": {
            "owned": False,
            "disks": [
                {"pool": "legacy", "volume": "db-root.qcow2", "format": "qcow2"},
                {"pool": "legacy", "volume": "db-data.img", "format": "raw"},
            ],
        },
        "nics": [{"network": "lan", "mac": "52:54:00:01:02:03"}],
    }
    assert (entry.pools, entry.networks) == (("legacy",), ("lan",))


def test_the_fragment_loads_as_a_valid_stack_file() -> None:
    entry = domain_entry(dom(ROOT_BY_PATH + NIC), PATHS.get, True, True, owned=True)
    doc = fragment("node-a", [entry], {"lan": {"mode": "nat", "cidr": "10.9.0.0/24"}})
    doc["hosts"]["node-a"].update(
        uri="qemu:///system", capacity={"vcpus": 4, "memory": "4GiB", "disk": "10GiB"}
    )
    loaded = parse_stack(yaml.safe_dump(doc), "x.yaml")
    (vm,) = loaded.fleet
    assert (vm.name, vm.host, vm.pool, vm.imported and vm.imported.owned) == ("db", "node-a", "legacy", True)
    assert loaded.spec.hosts["node-a"].pools["legacy"].external


PROBLEMS: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "disk outside every pool",
        dom("<disk type='file' device='disk'><source file='/srv/x.qcow2'/><driver type='qcow2'/></disk>"),
        {},
        "domain db: disk /srv/x.qcow2 is in no storage pool; define a pool for its directory first "
        "(virsh pool-define-as NAME dir --target DIR)",
    ),
    (
        "bridge interface",
        dom("<interface type='bridge'><source bridge='br0'/></interface>"),
        {},
        "domain db: interface of type bridge cannot be imported (only interfaces on libvirt networks)",
    ),
    (
        "name",
        dom("", name="Old_DB"),
        {},
        "domain Old_DB: its name is not a stack-file name (a DNS label); rename it first",
    ),
    (
        "memory",
        dom("", memory="<memory unit='KiB'>1000000</memory>"),
        {},
        "domain db: memory of 1000000 KiB is not a whole MiB",
    ),
    (
        "format",
        dom("<disk type='volume' device='disk'><driver type='vmdk'/><source pool='p' volume='v'/></disk>"),
        {},
        "domain db: disk format vmdk is not supported (qcow2 or raw)",
    ),
]


@pytest.mark.parametrize(("doc", "paths", "message"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS])
def test_what_cannot_be_imported_is_one_line(doc: str, paths: dict[str, Any], message: str) -> None:
    with pytest.raises(ImportProblem) as info:
        domain_entry(doc, paths.get, False, False)
    assert str(info.value) == message


IMPORTED_VM_ERRORS = [
    ({"image": "deb"}, "vms.db.image: not for an imported VM (its disks are imported.disks)"),
    ({"count": 2}, "vms.db.count: an imported VM is one domain: count must be 1"),
    ({"host": None}, "vms.db.host: required for an imported VM: the host its domain is on"),
]


@pytest.mark.parametrize(("patch", "message"), IMPORTED_VM_ERRORS)
def test_an_imported_vm_is_checked(patch: dict[str, Any], message: str) -> None:
    vm: dict[str, Any] = {
        "host": "a",
        "vcpus": 1,
        "memory": "1GiB",
        "imported": {"disks": [{"pool": "p", "volume": "db.qcow2"}]},
        **patch,
    }
    vm = {k: v for k, v in vm.items() if v is not None}
    doc = {
        "hosts": {
            "a": {
                "uri": "qemu:///system",
                "capacity": {"vcpus": 4, "memory": "4GiB", "disk": "10GiB"},
                "pools": {"p": {"external": True}},
            }
        },
        "images": {"deb": {"source": "deb.qcow2"}},
        "vms": {"db": vm},
    }
    from virtstack.errors import SpecError

    with pytest.raises(SpecError) as info:
        parse_stack(yaml.safe_dump(doc), "x.yaml")
    assert str(info.value).splitlines() == [f"x.yaml: {message}"]


def test_an_imported_domain_counts_as_this_stacks_not_twice() -> None:
    from virtstack.hostcap import HostReading, project
    from virtstack.placement import place_fleet

    entry = domain_entry(dom(ROOT_BY_PATH), PATHS.get, True, False)
    doc = fragment("a", [entry], {})
    doc["hosts"]["a"].update(uri="qemu:///system", capacity={"vcpus": 4, "memory": "4GiB", "disk": "10GiB"})
    loaded = parse_stack(yaml.safe_dump(doc), "x.yaml")
    placed = place_fleet(loaded.spec, "x.yaml", fleet=loaded.fleet)
    reading = HostReading("a", "qemu:///system", 4, 8 * 2**30, others={"db": (2, 2**30), "x": (1, 2**29)})
    vcpus, memory = project(loaded.spec, placed.fleet, placed.placement, {"a": reading})[:2]
    assert (vcpus.ours, vcpus.others, vcpus.after) == (2, 1, 3)
    assert (memory.ours, memory.others, memory.after) == (2**30, 2**29, 2**30 + 2**29)
