"""Pure builders of libvirt XML documents from the resources' typed props (virtstack.props).

Kept free of libvirt calls so they are tested table-driven without a daemon. Every document carries
virtstack metadata (the managing stack) so out-of-band objects can be told from ours.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from xml.etree import ElementTree as ET

from virtstack.contract import memory_kib
from virtstack.props import DomainProps, NetworkProps, PoolProps, Target, VolumeProps

METADATA_NS = "https://virtstack.dev/xmlns/domain/1"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _render(root: ET.Element) -> str:
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def pool_xml(props: PoolProps) -> str:
    if props.path is None:
        raise ValueError(f"pool {props.name} has no path: only an external pool goes without one")
    pool = ET.Element("pool", type="dir")
    _sub(pool, "name", props.name)
    target = _sub(pool, "target")
    _sub(target, "path", props.path)
    return _render(pool)


def _owner(parent: ET.Element, target: Target) -> None:
    """The owner record (`project/stack`) in the object's `<metadata>` (virtstack.provider.ownership)."""
    ET.register_namespace("virtstack", METADATA_NS)
    meta = _sub(parent, "metadata")
    owner = ET.SubElement(meta, f"{{{METADATA_NS}}}owner")
    project, _, stack = target.owner.partition("/")
    owner.set("project", project)
    owner.set("stack", stack)


def network_xml(props: NetworkProps) -> str:
    """A libvirt network: `nat` and `isolated` get their own bridge and subnet; `bridge` attaches to an
    existing host bridge (no addressing: the LAN's own DHCP serves it)."""
    net = ET.Element("network")
    _sub(net, "name", props.name)
    _owner(net, props.target)
    if props.mode == "bridge":
        _sub(net, "forward", mode="bridge")
        _sub(net, "bridge", name=str(props.bridge))
        return _render(net)
    if props.mode == "nat":
        _sub(net, "forward", mode="nat")
    _sub(net, "bridge", name=str(props.bridge), stp="on", delay="0")
    cidr = ipaddress.ip_network(str(props.cidr))
    gateway = next(cidr.hosts())
    ip = _sub(net, "ip", address=str(gateway), netmask=str(cidr.netmask))
    if props.dhcp and props.dhcp_start and props.dhcp_end:
        dhcp = _sub(ip, "dhcp")
        _sub(dhcp, "range", start=props.dhcp_start, end=props.dhcp_end)
    return _render(net)


def volume_xml(props: VolumeProps, capacity: int) -> str:
    vol = ET.Element("volume", type="file")
    _sub(vol, "name", props.name)
    _sub(vol, "capacity", str(capacity), unit="bytes")
    target = _sub(vol, "target")
    _sub(target, "format", type=props.format or "qcow2")
    if props.backing_path:
        store = _sub(vol, "backingStore")
        _sub(store, "path", str(props.backing_path))
        _sub(store, "format", type=props.backing_format or "qcow2")
    return _render(vol)


def domain_xml(props: DomainProps, uuid: str | None = None) -> str:
    """The domain document. Disks are pool volumes (so remote hosts work the same as local ones); the
    cloud-init seed is an IDE cdrom on machine `pc`, which every Debian kernel can read. `uuid` is the
    existing domain's when redefining it (libvirt refuses a same-named definition without it)."""
    dom = ET.Element("domain", type=props.domain_type)
    _sub(dom, "name", props.name)
    if uuid:
        _sub(dom, "uuid", uuid)
    _owner(dom, props.target)
    # Normalised once (virtstack.contract): libvirt keeps exactly this figure, so reading it back
    # gives the spec's value and no diff.
    _sub(dom, "memory", str(memory_kib(props.memory)), unit="KiB")
    _sub(dom, "vcpu", str(props.vcpus))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if props.domain_type == "qemu" and props.tb_cache_mib:
        # TCG's translation cache defaults to ~1 GiB per guest; 128 MiB costs nothing measurable.
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", str(props.tb_cache_mib), unit="MiB")
    if props.domain_type == "kvm" and props.cpu_mode:
        _sub(dom, "cpu", mode=props.cpu_mode)
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    virtio_letters = iter("abcdefghijklmnopqrstuvwxyz")
    ide_letters = iter("cdefgh")  # hda/hdb are the first IDE channel; the cdrom traditionally is hdc
    for disk in props.disks:
        is_cdrom = disk.device == "cdrom"
        el = _sub(devices, "disk", type="volume", device="cdrom" if is_cdrom else "disk")
        _sub(el, "driver", name="qemu", type=disk.format or ("raw" if is_cdrom else "qcow2"))
        _sub(el, "source", pool=disk.pool, volume=str(disk.volume))
        if is_cdrom:
            _sub(el, "target", dev=f"hd{next(ide_letters)}", bus="ide")
            _sub(el, "readonly")
        else:
            _sub(el, "target", dev=f"vd{next(virtio_letters)}", bus="virtio")
    for nic in props.nics:
        el = _sub(devices, "interface", type="network")
        _sub(el, "mac", address=nic.mac)
        _sub(el, "source", network=nic.network)
        _sub(el, "model", type="virtio")
    serial = _sub(devices, "serial", type="pty")
    if props.console_log:
        # virtlogd keeps the serial console in a file: tests and `virtstack` read boot progress there.
        _sub(serial, "log", file=props.console_log, append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(devices, "memballoon", model="virtio")
    return _render(dom)


def parse_volume(doc: str) -> dict[str, Any]:
    """Capacity (bytes), format and backing file of a volume, as adoption after a crash compares them."""
    root = ET.fromstring(doc)
    cap = root.find("capacity")
    factor = {"bytes": 1, "b": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}.get(
        (cap.get("unit") if cap is not None else None) or "bytes", 1
    )
    fmt = root.find("target/format")
    return {
        "capacity": int(cap.text or 0) * factor if cap is not None else 0,
        "format": fmt.get("type") if fmt is not None else None,
        "backing_path": root.findtext("backingStore/path") or None,
    }


def parse_domain(xml: str) -> dict[str, Any]:
    """What drift detection compares from a live domain: size, disks, NICs."""
    root = ET.fromstring(xml)
    memory = root.find("memory")
    memory_kib = int(memory.text or 0) if memory is not None else 0
    unit = (memory.get("unit") if memory is not None else None) or "KiB"
    factor = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "b": 1, "bytes": 1}.get(unit, 1024)
    disks = []
    for disk in root.findall("devices/disk"):
        src = disk.find("source")
        target = disk.find("target")
        disks.append(
            {
                "device": disk.get("device", "disk"),
                "target": target.get("dev") if target is not None else None,
                "pool": src.get("pool") if src is not None else None,
                "volume": src.get("volume") if src is not None else None,
                "file": src.get("file") if src is not None else None,
            }
        )
    nics = []
    for nic in root.findall("devices/interface"):
        mac = nic.find("mac")
        src = nic.find("source")
        nics.append(
            {
                "mac": mac.get("address") if mac is not None else None,
                "network": src.get("network") if src is not None else None,
            }
        )
    return {
        "memory": memory_kib * factor,
        "vcpus": int(root.findtext("vcpu") or 0),
        "disks": disks,
        "nics": nics,
    }


def parse_network(doc: str) -> dict[str, Any]:
    """Mode (nat | isolated | bridge | another forward mode) and address range of a live network, as
    an `external` network is checked against the stack file."""
    root = ET.fromstring(doc)
    forward = root.find("forward")
    mode = forward.get("mode", "nat") if forward is not None else "isolated"
    cidr = None
    ip = root.find("ip")
    if ip is not None and ip.get("address"):
        netmask = ip.get("netmask") or ip.get("prefix") or "32"
        cidr = str(ipaddress.ip_network(f"{ip.get('address')}/{netmask}", strict=False))
    return {"mode": mode, "cidr": cidr}
