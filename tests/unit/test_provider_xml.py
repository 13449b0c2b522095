"""The libvirt documents virtstack's backend defines, checked element by element (no daemon)."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

import pytest

from virtstack.contract import Owner
from virtstack.props import DomainProps, NetworkProps, VolumeProps
from virtstack.provider import xml
from virtstack.provider.ownership import owner_from_xml


# The builders take typed props; these read the wire dicts below first, as the provider does.
def domain_xml(props: dict[str, Any], uuid: str | None = None) -> str:
    return xml.domain_xml(DomainProps.from_inputs(props), uuid)


def network_xml(props: dict[str, Any]) -> str:
    return xml.network_xml(NetworkProps.from_inputs(props))


def volume_xml(props: dict[str, Any], capacity: int) -> str:
    return xml.volume_xml(VolumeProps.from_inputs({"pool": "vms", **props}), capacity)


DOMAIN = {
    "name": "web-1",
    "host": "local",
    "owner": "virtstack/dev",
    "domain_type": "qemu",
    "cpu_mode": "",
    "tb_cache_mib": 128,
    "vcpus": 2,
    "memory": 512 * 2**20,
    "disks": [
        {"pool": "vms", "volume": "web-1-root.qcow2", "device": "disk", "format": "qcow2"},
        {"pool": "vms", "volume": "web-1-data.qcow2", "device": "disk", "format": "qcow2"},
        {"pool": "vms", "volume": "web-1-seed.iso", "device": "cdrom", "format": "raw"},
    ],
    "nics": [{"network": "lab", "mac": "52:54:00:aa:bb:cc"}],
    "running": True,
    "autostart": False,
    "console_log": "/var/log/libvirt/qemu/web-1-serial0.log",
}


def test_domain_xml_devices_and_sizes() -> None:
    root = ET.fromstring(domain_xml(DOMAIN))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "web-1"
    assert root.find("memory").get("unit") == "KiB"
    assert root.findtext("memory") == str(512 * 1024)
    assert root.findtext("vcpu") == "2"
    assert root.find("os/type").get("machine") == "pc"
    disks = root.findall("devices/disk")
    assert [(d.get("device"), d.find("target").get("dev"), d.find("target").get("bus")) for d in disks] == [
        ("disk", "vda", "virtio"),
        ("disk", "vdb", "virtio"),
        ("cdrom", "hdc", "ide"),  # the cloud-init seed: IDE on machine pc, readable by any kernel
    ]
    assert disks[2].find("readonly") is not None
    assert disks[0].find("source").attrib == {"pool": "vms", "volume": "web-1-root.qcow2"}
    nic = root.find("devices/interface")
    assert nic.find("mac").get("address") == "52:54:00:aa:bb:cc"
    assert nic.find("source").get("network") == "lab"
    assert root.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"
    assert root.find("devices/serial/log").get("file") == "/var/log/libvirt/qemu/web-1-serial0.log"
    assert root.findtext("features/tcg/tb-cache") == "128"
    assert root.find("cpu") is None


def test_domain_and_network_record_their_owner() -> None:
    assert owner_from_xml(domain_xml(DOMAIN)) == Owner("virtstack", "dev")
    network = {"name": "lan", "mode": "bridge", "bridge": "br0", "owner": "proj/prod"}
    assert owner_from_xml(network_xml(network)) == Owner("proj", "prod")


def test_kvm_domain_gets_the_probed_cpu_mode_and_no_tcg_cache() -> None:
    root = ET.fromstring(domain_xml({**DOMAIN, "domain_type": "kvm", "cpu_mode": "host-passthrough"}))
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"
    assert root.find("features/tcg") is None


def test_parse_domain_round_trips_what_drift_compares() -> None:
    parsed = xml.parse_domain(domain_xml(DOMAIN))
    assert parsed["memory"] == DOMAIN["memory"]
    assert parsed["vcpus"] == 2
    assert [(d["pool"], d["volume"]) for d in parsed["disks"]] == [
        (d["pool"], d["volume"]) for d in DOMAIN["disks"]
    ]
    assert parsed["nics"] == [{"mac": "52:54:00:aa:bb:cc", "network": "lab"}]


@pytest.mark.parametrize(
    ("props", "forward", "bridge", "ip", "dhcp"),
    [
        (
            {
                "name": "lab",
                "mode": "nat",
                "bridge": "vs-1",
                "cidr": "10.77.0.0/24",
                "dhcp": True,
                "dhcp_start": "10.77.0.128",
                "dhcp_end": "10.77.0.254",
            },
            "nat",
            "vs-1",
            ("10.77.0.1", "255.255.255.0"),
            ("10.77.0.128", "10.77.0.254"),
        ),
        (
            {"name": "iso", "mode": "isolated", "bridge": "vs-2", "cidr": "10.9.0.0/16", "dhcp": False},
            None,
            "vs-2",
            ("10.9.0.1", "255.255.0.0"),
            None,
        ),
        ({"name": "lan", "mode": "bridge", "bridge": "br0"}, "bridge", "br0", None, None),
    ],
)
def test_network_xml(props, forward, bridge, ip, dhcp) -> None:
    root = ET.fromstring(network_xml(props))
    assert root.findtext("name") == props["name"]
    assert (root.find("forward").get("mode") if root.find("forward") is not None else None) == forward
    assert root.find("bridge").get("name") == bridge
    ip_el = root.find("ip")
    assert ((ip_el.get("address"), ip_el.get("netmask")) if ip_el is not None else None) == ip
    rng = root.find("ip/dhcp/range")
    assert ((rng.get("start"), rng.get("end")) if rng is not None else None) == dhcp


def test_overlay_volume_names_its_backing_image() -> None:
    root = ET.fromstring(
        volume_xml({"name": "a-root.qcow2", "format": "qcow2", "backing_path": "/p/base.qcow2"}, 4 * 2**30)
    )
    assert root.findtext("capacity") == str(4 * 2**30)
    assert root.find("capacity").get("unit") == "bytes"
    assert root.findtext("backingStore/path") == "/p/base.qcow2"
    assert root.find("backingStore/format").get("type") == "qcow2"
    plain = ET.fromstring(volume_xml({"name": "d.qcow2", "format": "qcow2"}, 2**30))
    assert plain.find("backingStore") is None


def test_parse_volume_reads_back_what_adoption_compares() -> None:
    doc = volume_xml({"name": "a.qcow2", "format": "qcow2", "backing_path": "/p/base.qcow2"}, 3 * 2**30)
    assert xml.parse_volume(doc) == {
        "capacity": 3 * 2**30,
        "format": "qcow2",
        "backing_path": "/p/base.qcow2",
    }
    libvirt_style = (
        "<volume><capacity unit='KiB'>1024</capacity><target><format type='raw'/></target></volume>"
    )
    assert xml.parse_volume(libvirt_style) == {"capacity": 2**20, "format": "raw", "backing_path": None}


def test_redefinition_keeps_the_domain_uuid() -> None:
    root = ET.fromstring(domain_xml(DOMAIN, uuid="c8c100f1-6d2a-4a4b-8593-4b2adea11e35"))
    assert root.findtext("uuid") == "c8c100f1-6d2a-4a4b-8593-4b2adea11e35"
    assert ET.fromstring(domain_xml(DOMAIN)).find("uuid") is None
