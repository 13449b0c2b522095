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
    machine = machine_type(props)
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=machine)
    _firmware(os_el, props)
    _sub(os_el, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if props.firmware == "uefi-secure":
        _sub(features, "smm", state="on")  # Secure Boot's variable store is only safe behind SMM
    if props.domain_type == "qemu" and props.tb_cache_mib:
        # TCG's translation cache defaults to ~1 GiB per guest; 128 MiB costs nothing measurable.
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", str(props.tb_cache_mib), unit="MiB")
    _cpu(dom, props)
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    virtio_letters = iter("abcdefghijklmnopqrstuvwxyz")
    ide_letters = iter("cdefgh")  # hda/hdb are the first IDE channel; the cdrom traditionally is hdc
    scsi_letters = iter("abcdef")
    if machine == "q35":
        # q35 has no IDE: the seed is a virtio-scsi cdrom, which the image's initramfs reads.
        _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    for disk in props.disks:
        is_cdrom = disk.device == "cdrom"
        el = _sub(devices, "disk", type="volume", device="cdrom" if is_cdrom else "disk")
        _sub(el, "driver", name="qemu", type=disk.format or ("raw" if is_cdrom else "qcow2"))
        _sub(el, "source", pool=disk.pool, volume=str(disk.volume))
        if is_cdrom and machine == "q35":
            _sub(el, "target", dev=f"sd{next(scsi_letters)}", bus="scsi")
            _sub(el, "readonly")
        elif is_cdrom:
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
    if props.tpm:
        # swtpm, started by libvirt; its state lives with the domain and goes with its undefine.
        tpm = _sub(devices, "tpm", model="tpm-crb")
        _sub(tpm, "backend", type="emulator", version="2.0")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(devices, "memballoon", model="virtio")
    return _render(dom)


def machine_type(props: DomainProps) -> str:
    """`pc` (the seed on an IDE cdrom, which every Debian kernel reads); Secure Boot needs SMM, which
    OVMF supports on q35 only."""
    return "q35" if props.firmware == "uefi-secure" else "pc"


def _firmware(os_el: ET.Element, props: DomainProps) -> None:
    """UEFI through libvirt's firmware autoselection (the host's OVMF descriptors): the host picks its
    own OVMF paths, and libvirt creates the VM's NVRAM from the template and removes it with the VM
    (undefine with VIR_DOMAIN_UNDEFINE_NVRAM)."""
    if props.firmware not in ("uefi", "uefi-secure"):
        return
    os_el.set("firmware", "efi")
    secure = "yes" if props.firmware == "uefi-secure" else "no"
    fw = _sub(os_el, "firmware")
    _sub(fw, "feature", enabled=secure, name="secure-boot")
    _sub(fw, "feature", enabled=secure, name="enrolled-keys")
    if props.firmware == "uefi-secure":
        _sub(os_el, "loader", secure="yes")


def _cpu(dom: ET.Element, props: DomainProps) -> None:
    """`host-passthrough`/`host-model` (KVM; host-model is emulated under TCG), or a named model
    (`custom`). Under TCG a named model is emulated without checking host features (check none)."""
    if not props.cpu_mode:
        return
    if props.cpu_mode == "custom":
        check = "none" if props.domain_type == "qemu" else "partial"
        cpu = _sub(dom, "cpu", mode="custom", match="exact", check=check)
        _sub(cpu, "model", props.cpu_model, fallback="forbid")
        return
    if props.domain_type == "qemu" and props.cpu_mode == "host-passthrough":
        return  # libvirt refuses it under TCG (virtstack.cpu leaves it out already)
    _sub(dom, "cpu", mode=props.cpu_mode)


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


def parse_firmware(doc: str) -> dict[str, Any]:
    """A domain's firmware as libvirt keeps it: `efi` or None, its NVRAM file, whether it has a TPM."""
    root = ET.fromstring(doc)
    os_el = root.find("os")
    firmware = os_el.get("firmware") if os_el is not None else None
    loader = root.findtext("os/loader") or None
    return {
        "firmware": firmware or ("efi" if loader and "OVMF" in loader.upper() else None),
        "nvram": (root.findtext("os/nvram") or "").strip() or None,
        "tpm": root.find("devices/tpm") is not None,
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
