"""VM features (issue 17), without a daemon: the stack file's fields, the CPU decision under KVM and
TCG, the domain XML for firmware/TPM/CPU, the wire format and diff rules of the new props, the plan's
words, and the graceful stop on a fake domain."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

import libvirt
import pytest
from test_spec_validation import issues_of_patch, lines

from virtstack import contract
from virtstack.cpu import CpuChoice, resolve_cpu
from virtstack.ops import vmchanges
from virtstack.props import DomainProps
from virtstack.provider import lifecycle, xml
from virtstack.spec.vmfeatures import CpuSpec

# ------------------------------------------------------------------------------------- stack file


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"vms.web.firmware": "uefi", "vms.web.tpm": True}, []),
        ({"vms.web.firmware": "uefi-secure", "vms.web.shutdown_timeout": 0}, []),
        ({"vms.web.cpu": {"mode": "custom", "model": "Haswell-noTSX"}}, []),
        ({"hosts.node-a.cpu": {"mode": "host-model"}, "vms.web.on_cloud_init_change": "ignore"}, []),
        (
            {"vms.web.firmware": "efi"},
            lines("vms.web.firmware: must be 'bios', 'uefi' or 'uefi-secure' (got 'efi')"),
        ),
        (
            {"vms.web.cpu": {"mode": "custom"}},
            lines("vms.web.cpu.model: required when mode is custom (e.g. model: Haswell-noTSX)"),
        ),
        (
            {"vms.web.cpu": {"mode": "host-model", "model": "EPYC"}},
            lines("vms.web.cpu.model: only allowed when mode is custom (not host-model)"),
        ),
        (
            {"vms.web.cpu": {"mode": "custom", "model": "x;rm -rf"}},
            lines(
                "vms.web.cpu.model: a QEMU CPU model name (letters, digits, '.', '_', '-'), "
                "e.g. Haswell-noTSX"
            ),
        ),
        (
            {"vms.web.shutdown_timeout": 3601},
            lines("vms.web.shutdown_timeout: must be at most 3600"),
        ),
        (
            {"vms.web.on_cloud_init_change": "rebuild"},
            lines("vms.web.on_cloud_init_change: must be 'reseed', 'replace' or 'ignore' (got 'rebuild')"),
        ),
        ({"vms.web.tpm": "yes"}, lines("vms.web.tpm: must be true or false")),
    ],
)
def test_feature_fields(patch: dict[str, Any], expected: list[str]) -> None:
    assert issues_of_patch(patch) == expected


# ---------------------------------------------------------------------------------------------- CPU

PASS = CpuSpec(mode="host-passthrough")
MODEL = CpuSpec(mode="host-model")
HASWELL = CpuSpec(mode="custom", model="Haswell-noTSX")


@pytest.mark.parametrize(
    ("domain_type", "wanted", "host", "probed", "mode", "model", "noted"),
    [
        ("kvm", None, None, "host-passthrough", "host-passthrough", "", None),
        ("kvm", None, None, None, "", "", None),
        ("kvm", None, MODEL, "host-passthrough", "host-model", "", None),  # the host's default wins
        ("kvm", HASWELL, MODEL, None, "custom", "Haswell-noTSX", None),  # the VM's own wins
        ("qemu", None, None, None, "", "", None),
        ("qemu", PASS, None, None, "", "", "ignored under TCG"),
        ("qemu", None, PASS, None, "", "", "ignored under TCG"),
        ("qemu", MODEL, None, None, "host-model", "", "emulated under TCG"),
        ("qemu", HASWELL, None, None, "custom", "Haswell-noTSX", "emulated under TCG"),
    ],
)
def test_cpu_under_kvm_and_tcg(
    domain_type: str,
    wanted: CpuSpec | None,
    host: CpuSpec | None,
    probed: str | None,
    mode: str,
    model: str,
    noted: str | None,
) -> None:
    choice = resolve_cpu("web", domain_type, wanted, host, probed)
    assert (choice.mode, choice.model) == (mode, model)
    if noted is None:
        assert choice.note is None
    else:
        assert choice.note is not None and noted in choice.note and choice.note.startswith("vm web: ")


def test_cpu_choice_defaults() -> None:
    assert CpuChoice("") == CpuChoice("", "", None)


# --------------------------------------------------------------------------------------------- XML

BASE: dict[str, Any] = {
    "uri": "qemu:///system",
    "host": "local",
    "name": "web",
    "owner": "virtstack/dev",
    "domain_type": "qemu",
    "cpu_mode": "",
    "tb_cache_mib": 128,
    "vcpus": 1,
    "memory": 512 * 2**20,
    "disks": [
        {"pool": "vms", "volume": "web-root.qcow2", "device": "disk", "format": "qcow2"},
        {"pool": "vms", "volume": "web-seed.iso", "device": "cdrom", "format": "raw"},
    ],
    "nics": [],
    "running": True,
    "autostart": False,
    "console_log": "",
}


def _dom(**over: Any) -> ET.Element:
    return ET.fromstring(xml.domain_xml(DomainProps.from_inputs({**BASE, **over})))


def test_bios_domains_are_what_they_were() -> None:
    root = _dom()
    assert root.find("os").get("firmware") is None and root.find("os/firmware") is None
    assert root.find("os/type").get("machine") == "pc"
    assert root.find("devices/tpm") is None and root.find("features/smm") is None
    assert root.find("devices/disk[@device='cdrom']/target").get("bus") == "ide"


def test_uefi_uses_the_hosts_firmware_autoselection_without_secure_boot() -> None:
    root = _dom(firmware="uefi")
    assert root.find("os").get("firmware") == "efi"
    features = {f.get("name"): f.get("enabled") for f in root.findall("os/firmware/feature")}
    assert features == {"secure-boot": "no", "enrolled-keys": "no"}
    assert root.find("os/type").get("machine") == "pc"


def test_uefi_secure_is_q35_with_smm_and_a_scsi_seed() -> None:
    root = _dom(firmware="uefi-secure", tpm=True)
    features = {f.get("name"): f.get("enabled") for f in root.findall("os/firmware/feature")}
    assert features == {"secure-boot": "yes", "enrolled-keys": "yes"}
    assert root.find("os/loader").get("secure") == "yes"
    assert root.find("os/type").get("machine") == "q35"
    assert root.find("features/smm").get("state") == "on"
    assert root.find("devices/controller").get("model") == "virtio-scsi"
    assert root.find("devices/disk[@device='cdrom']/target").attrib == {"dev": "sda", "bus": "scsi"}
    tpm = root.find("devices/tpm")
    assert tpm.get("model") == "tpm-crb"
    assert tpm.find("backend").attrib == {"type": "emulator", "version": "2.0"}


@pytest.mark.parametrize(
    ("over", "cpu"),
    [
        ({"domain_type": "kvm", "cpu_mode": "host-passthrough"}, {"mode": "host-passthrough"}),
        ({"domain_type": "qemu", "cpu_mode": "host-model"}, {"mode": "host-model"}),
        (
            {"domain_type": "qemu", "cpu_mode": "custom", "cpu_model": "Haswell"},
            {"mode": "custom", "match": "exact", "check": "none"},
        ),
        (
            {"domain_type": "kvm", "cpu_mode": "custom", "cpu_model": "Haswell"},
            {"mode": "custom", "match": "exact", "check": "partial"},
        ),
        ({"domain_type": "qemu", "cpu_mode": "host-passthrough"}, None),  # libvirt refuses it under TCG
        ({"domain_type": "qemu", "cpu_mode": ""}, None),
    ],
)
def test_cpu_element(over: dict[str, Any], cpu: dict[str, str] | None) -> None:
    el = _dom(**over).find("cpu")
    assert (el.attrib if el is not None else None) == cpu
    if cpu and cpu["mode"] == "custom":
        assert el is not None and el.findtext("model") == "Haswell"


def test_parse_firmware_reads_nvram_and_tpm() -> None:
    doc = (
        "<domain><os firmware='efi'><nvram>/var/lib/libvirt/qemu/nvram/web_VARS.fd</nvram></os>"
        "<devices><tpm model='tpm-crb'/></devices></domain>"
    )
    assert xml.parse_firmware(doc) == {
        "firmware": "efi",
        "nvram": "/var/lib/libvirt/qemu/nvram/web_VARS.fd",
        "tpm": True,
    }
    assert xml.parse_firmware("<domain><os/></domain>") == {"firmware": None, "nvram": None, "tpm": False}


# -------------------------------------------------------------------------------- wire format, diffs


def test_feature_keys_are_absent_at_their_defaults_and_read_back() -> None:
    plain = DomainProps.from_inputs(BASE)
    assert plain.to_inputs() == BASE  # state written before the features reads and writes the same
    rich = DomainProps.from_inputs(
        {
            **BASE,
            "firmware": "uefi",
            "tpm": True,
            "cpu_model": "Haswell",
            "shutdown_timeout": 5.0,  # the engine's float
            "cloud_init_change": "ignore",
            "seed_instance_id": "web-abc",
        }
    )
    assert (rich.firmware, rich.tpm, rich.shutdown_timeout, rich.cloud_init_change) == (
        "uefi",
        True,
        5,
        "ignore",
    )
    assert DomainProps.from_inputs(rich.to_inputs()) == rich
    zero = DomainProps.from_inputs({**BASE, "shutdown_timeout": 0})
    assert zero.shutdown_timeout == 0 and zero.to_inputs()["shutdown_timeout"] == 0


@pytest.mark.parametrize(
    ("key", "restarts"),
    [
        ("shutdown_timeout", False),
        ("cloud_init_change", False),
        ("seed_instance_id", False),  # the provider applies on_cloud_init_change itself
        ("firmware", True),
        ("tpm", True),
        ("cpu_model", True),
    ],
)
def test_which_feature_changes_redefine(key: str, restarts: bool) -> None:
    assert (key not in contract.IN_PLACE_DOMAIN_KEYS) is restarts
    assert contract.replaces("Domain", {**BASE, key: "a"}, {**BASE, key: "b"}) == []


VOL = {"uri": "qemu:///system", "pool": "vms", "name": "web-root.qcow2", "role": "root", "format": "qcow2"}


@pytest.mark.parametrize(
    ("old", "new", "replaced"),
    [
        (None, None, []),
        (None, "web-1", []),  # on_cloud_init_change: replace switched on: records, never replaces
        ("web-1", None, []),  # switched off
        ("web-1", "web-1", []),
        ("web-1", "web-2", ["cloud_init_instance"]),  # a new cloud-init: a new root disk
    ],
)
def test_replace_policy_recreates_the_root_disk_only_on_a_change(
    old: str | None, new: str | None, replaced: list[str]
) -> None:
    olds = {**VOL, **({"cloud_init_instance": old} if old else {})}
    news = {**VOL, **({"cloud_init_instance": new} if new else {})}
    assert contract.replaces("Volume", olds, news) == replaced


# ------------------------------------------------------------------------------------ plan's words


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ({}, {"seed_instance_id": "b"}, "records the cloud-init instance-id of its seed; nothing restarts"),
        ({"seed_instance_id": "a"}, {"seed_instance_id": "b"}, "cloud-init changed: reseed (a new seed"),
        (
            {"seed_instance_id": "a"},
            {"seed_instance_id": "b", "cloud_init_change": "ignore"},
            "cloud-init changed: ignore (the running VM is not rebooted",
        ),
        ({}, {"firmware": "uefi"}, "firmware bios → uefi"),
        ({"tpm": True}, {}, "TPM removed (its state is deleted)"),
        ({}, {"shutdown_timeout": 10}, "shutdown_timeout 60 s → 10 s"),
        ({}, {"cpu_mode": "custom", "cpu_model": "EPYC"}, "CPU default → custom EPYC"),
        ({"cloud_init_instance": "a"}, {"cloud_init_instance": "b"}, "cloud-init changed: replace (the root"),
    ],
)
def test_feature_words(old: dict[str, Any], new: dict[str, Any], words: str) -> None:
    key = sorted(set(old) | set(new), key=lambda k: k != "seed_instance_id")[0]
    assert vmchanges.feature_change(key, old, new).startswith(words)


@pytest.mark.parametrize(
    ("old", "expected"),
    [
        ({}, ("the VM is removed", "ACPI shutdown first, up to 60 s")),
        ({"running": False}, ("the VM is removed",)),
        ({"shutdown_timeout": 0}, ("the VM is removed", "forced off at once (shutdown_timeout 0)")),
        (
            {"firmware": "uefi", "tpm": True, "shutdown_timeout": 20},
            (
                "the VM is removed",
                "ACPI shutdown first, up to 20 s",
                "its NVRAM goes with it",
                "its TPM state goes with it",
            ),
        ),
    ],
)
def test_deleted_domain_words(old: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert vmchanges.deleted_domain(old) == expected


# ----------------------------------------------------------------------------------- graceful stop


class FakeDomain:
    """A domain whose guest powers off `after` presses of the power button (None: never)."""

    def __init__(self, after: int | None, paused: bool = False) -> None:
        self.after, self.presses, self.destroyed, self.resumed = after, 0, False, False
        self._state = libvirt.VIR_DOMAIN_PAUSED if paused else libvirt.VIR_DOMAIN_RUNNING

    def isActive(self) -> bool:
        return self._state != libvirt.VIR_DOMAIN_SHUTOFF

    def state(self) -> list[int]:
        return [self._state, 0]

    def resume(self) -> None:
        self.resumed, self._state = True, libvirt.VIR_DOMAIN_RUNNING

    def shutdownFlags(self, flags: int) -> None:
        assert flags == libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN
        assert self._state == libvirt.VIR_DOMAIN_RUNNING, "a paused guest cannot see the button"
        self.presses += 1
        if self.after is not None and self.presses >= self.after:
            self._state = libvirt.VIR_DOMAIN_SHUTOFF

    def destroy(self) -> None:
        self.destroyed, self._state = True, libvirt.VIR_DOMAIN_SHUTOFF


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "_POLL_SECONDS", 0.001)
    monkeypatch.setattr(lifecycle, "_RESEND_SECONDS", 0.01)


def test_a_guest_that_shuts_down_is_never_forced(fast: None) -> None:
    dom = FakeDomain(after=1)
    result = lifecycle.graceful_stop(dom, 5)
    assert (result.was_running, result.clean, dom.destroyed, dom.presses) == (True, True, False, 1)


def test_the_button_is_pressed_again_for_a_guest_that_was_still_booting(fast: None) -> None:
    dom = FakeDomain(after=3)
    assert lifecycle.graceful_stop(dom, 5).clean and dom.presses == 3 and not dom.destroyed


def test_a_guest_that_ignores_acpi_is_forced_off_after_the_timeout(fast: None) -> None:
    dom = FakeDomain(after=None)
    result = lifecycle.graceful_stop(dom, 0.05)
    assert (result.clean, dom.destroyed) == (False, True) and dom.presses >= 1
    assert result.describe("web", 0.05).endswith("within 0 s (shutdown_timeout): forced off")


def test_timeout_zero_forces_at_once_and_paused_guests_are_resumed_first(fast: None) -> None:
    dom = FakeDomain(after=1)
    assert not lifecycle.graceful_stop(dom, 0).clean and dom.destroyed and dom.presses == 0
    paused = FakeDomain(after=1, paused=True)
    assert lifecycle.graceful_stop(paused, 5).clean and paused.resumed


def test_a_stopped_guest_is_left_alone(fast: None) -> None:
    dom = FakeDomain(after=1)
    dom.destroy()
    dom.destroyed = False
    result = lifecycle.graceful_stop(dom, 5)
    assert (result.was_running, dom.presses, dom.destroyed) == (False, 0, False)


# ---------------------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("vm", "leases", "addresses", "source"),
    [
        ({"ips": ["10.1.0.5"], "addresses": ["10.1.0.99"]}, ["10.1.0.7"], ("10.1.0.5",), "static"),
        ({"ips": [None], "addresses": ["10.1.0.99"]}, ["10.1.0.7"], ("10.1.0.7",), "dhcp"),
        ({"ips": [None], "addresses": [None, "192.168.1.20"]}, [], ("192.168.1.20",), "recorded"),
        ({"ips": [None], "addresses": [None]}, [], (), "none"),
        ({"ips": [None]}, [], (), "none"),  # outputs of a stack deployed before `addresses`
    ],
)
def test_inventory_prefers_static_then_libvirt_then_recorded(
    vm: dict[str, Any], leases: list[str], addresses: tuple[str, ...], source: str
) -> None:
    from virtstack.ops.inventory import build_inventory

    outputs = {"vms": {"web": {"uri": "qemu:///system", "domain": "web", **vm}}}
    (got,) = build_inventory(outputs, lambda _uri, _dom: leases)
    assert (got.addresses, got.source) == (addresses, source)


class _AddrDomain:
    def __init__(self, active: bool, leases: dict[str, Any], agent: dict[str, Any] | None) -> None:
        self.active, self.leases, self.agent, self.asked = active, leases, agent, []

    def isActive(self) -> bool:
        return self.active

    def interfaceAddresses(self, source: int, flags: int = 0) -> dict[str, Any]:
        self.asked.append(source)
        if source == libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE:
            return self.leases
        if self.agent is None:
            raise libvirt.libvirtError("QEMU guest agent is not connected")
        return self.agent


def _iface(mac: str, *ips: str) -> dict[str, Any]:
    return {
        "hwaddr": mac,
        "addrs": [{"type": libvirt.VIR_IP_ADDR_TYPE_IPV4, "addr": ip, "prefix": 24} for ip in ips],
    }


def test_nic_addresses_by_mac_lease_first_then_agent() -> None:
    from virtstack.provider.addresses import nic_addresses

    leases = {"vnet0": _iface("52:54:00:00:00:01", "10.1.0.7")}
    agent = {
        "lo": _iface("00:00:00:00:00:00", "127.0.0.1"),
        "eth1": _iface("52:54:00:00:00:02", "169.254.1.1", "192.168.1.20"),
    }
    dom = _AddrDomain(True, leases, agent)
    macs = ["52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"]
    assert nic_addresses(dom, macs) == ["10.1.0.7", "192.168.1.20", None]
    no_agent = _AddrDomain(True, leases, None)
    assert nic_addresses(no_agent, macs) == ["10.1.0.7", None, None]  # not an error: unknown
    stopped = _AddrDomain(False, leases, agent)
    assert nic_addresses(stopped, macs) == [None, None, None] and stopped.asked == []
