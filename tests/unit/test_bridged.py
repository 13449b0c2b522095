"""pulumi-libvirt's resources in virtstack's terms (virtstack.bridged), the XSLT the pulumi-libvirt
backend hands terraform-provider-libvirt (run here with the real xsltproc, which `make setup`
installs), and the spec's `backend` field."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.pulumi_libvirt import domain_xslt, network_xslt
from virtstack import bridged, contract
from virtstack.errors import SpecError
from virtstack.placement import place_fleet
from virtstack.props import DiskRef, DomainProps, NetworkProps, NicRef, Target
from virtstack.spec.loader import load_spec

DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
SEED = "libvirt:index/cloudInitDisk:CloudInitDisk"


@pytest.mark.parametrize(
    ("rtype", "kind"),
    [
        (DOMAIN, "Domain"),
        (VOLUME, "Volume"),
        (SEED, "Volume"),
        ("libvirt:index/pool:Pool", "Pool"),
        ("libvirt:index/network:Network", "Network"),
        ("pulumi-python:dynamic/virtstack:Domain", "Domain"),
        ("libvirt:index/ignition:Ignition", None),
        ("pulumi:providers:libvirt", None),
    ],
)
def test_kinds_of_both_backends(rtype: str, kind: str | None) -> None:
    assert bridged.kind_of_type(rtype) == kind


@pytest.mark.parametrize(
    ("rtype", "name", "vm", "role"),
    [
        (VOLUME, "web-root", "web", "root"),
        (VOLUME, "web-data-logs", "web", "data"),
        (SEED, "web-seed", "web", "seed"),
        (VOLUME, "local-hypervisor-image-vms-debian-12", None, "base"),
        (VOLUME, "local-hypervisor-pool-vms-owner", None, bridged.OWNER_ROLE),
        (VOLUME, "web-2-root", "web", None),  # another VM's name never matches
        (DOMAIN, "web-domain", "web", None),
    ],
)
def test_roles_come_from_the_components_resource_names(
    rtype: str, name: str, vm: str | None, role: str | None
) -> None:
    assert bridged.role_of(rtype, name, vm) == role


def test_a_domain_view_has_the_native_keys_and_units() -> None:
    outputs = {
        "id": "0b0e-uuid",
        "name": "web",
        "vcpu": 2,
        "memory": 640,
        "running": False,
        "autostart": False,
        "disks": [{"volumeId": "/p/web-root.qcow2", "scsi": False, "wwn": ""}],
        "networkInterfaces": [{"networkId": "n-1", "networkName": "lab", "mac": "52:54:00:AB:CD:EF"}],
        "graphics": {"type": "spice"},
    }
    assert bridged.view(DOMAIN, outputs) == {
        "uuid": "0b0e-uuid",
        "name": "web",
        "vcpus": 2,
        "memory": 640 * contract.MIB,
        "running": False,
        "autostart": False,
        "disks": [{"pool": "", "volume": "/p/web-root.qcow2"}],
        "nics": [{"network": "n-1", "mac": "52:54:00:ab:cd:ef"}],
    }


@given(st.integers(min_value=1, max_value=2**20))
def test_memory_in_mib_is_shown_in_bytes(mib: int) -> None:
    assert bridged.view(DOMAIN, {"memory": mib})["memory"] == mib * 2**20
    assert bridged.view(DOMAIN, {"memory": float(mib)})["memory"] == mib * 2**20  # as the engine hands it


def test_native_props_pass_through_unchanged() -> None:
    props = {"vcpus": 1, "memory": 2**29, "role": "root"}
    assert bridged.maybe_view("pulumi-python:dynamic/virtstack:Domain", props) is props


def test_an_isolated_network_is_shown_as_isolated() -> None:
    view = bridged.view(
        "libvirt:index/network:Network", {"name": "lab", "mode": "none", "addresses": ["10.1.0.0/24"]}
    )
    assert view == {"name": "lab", "mode": "isolated", "cidr": "10.1.0.0/24"}


# ------------------------------------------------------------------------------------------ XSLT

TARGET = Target("qemu:///system", "local", "virtstack/dev")
# What terraform-provider-libvirt 0.7.6 hands xsltproc, cut down to the parts the stylesheet touches.
TF_DOMAIN = """<domain type="qemu"><name>web</name><memory unit="MiB">512</memory>
<features><pae></pae><acpi></acpi><apic></apic></features>
<devices><console type="pty"><target type="serial" port="0"></target></console></devices></domain>"""
TF_NETWORK = """<network><name>lab</name><bridge name="vs-1" stp="on"></bridge>
<ip address="10.9.0.1" family="ipv4" prefix="24">
<dhcp><range start="10.9.0.2" end="10.9.0.254"></range></dhcp></ip>
</network>"""


def xsltproc(stylesheet: str, doc: str, tmp_path: Path) -> str:
    (tmp_path / "t.xsl").write_text(stylesheet)
    (tmp_path / "d.xml").write_text(doc)
    proc = subprocess.run(
        ["xsltproc", str(tmp_path / "t.xsl"), str(tmp_path / "d.xml")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def domain_props(domain_type: str = "qemu", tb_cache: int = 128) -> DomainProps:
    return DomainProps(
        TARGET,
        "web",
        domain_type,
        "",
        tb_cache,
        1,
        512 * contract.MIB,
        (DiskRef("vms", "web-root.qcow2", "disk", "qcow2"),),
        (NicRef("lab", "52:54:00:00:00:01"),),
        True,
        False,
        "/var/log/libvirt/qemu/web-serial0.log",
    )


def test_the_domain_stylesheet_adds_owner_tcg_cache_and_console_log(tmp_path: Path) -> None:
    out = xsltproc(domain_xslt(domain_props()), TF_DOMAIN, tmp_path)
    assert 'project="virtstack" stack="dev"' in out
    assert '<tb-cache unit="MiB">128</tb-cache>' in out
    assert "/var/log/libvirt/qemu/web-serial0.log" in out
    assert '<memory unit="MiB">512</memory>' in out  # the rest is kept
    assert out.count("<console") == 1


def test_kvm_gets_no_tcg_settings(tmp_path: Path) -> None:
    out = xsltproc(domain_xslt(domain_props("kvm", 0)), TF_DOMAIN, tmp_path)
    assert "tcg" not in out and 'stack="dev"' in out


def test_the_network_stylesheet_adds_owner_and_the_specs_dhcp_range(tmp_path: Path) -> None:
    props = NetworkProps(TARGET, "lab", "nat", "vs-1", False, "10.9.0.0/24", True, "10.9.0.128", "10.9.0.254")
    out = xsltproc(network_xslt(props), TF_NETWORK, tmp_path)
    assert 'stack="dev"' in out
    assert 'start="10.9.0.128"' in out and 'start="10.9.0.2"' not in out


# ---------------------------------------------------------------------------------- spec: backend


def spec_text(backend: str | None) -> str:
    line = f"    backend: {backend}\n" if backend else ""
    return (
        "hosts:\n  h:\n    uri: qemu:///system\n"
        + line
        + "    capacity: {vcpus: 2, memory: 2GiB, disk: 10GiB}\n"
        "    pools: {vms: {path: /var/lib/virtstack/pools/x}}\n"
        "images: {debian-12: {source: /images/d.qcow2}}\nvms: {}\n"
    )


@pytest.mark.parametrize(
    ("given_backend", "backend"),
    [(None, "native"), ("native", "native"), ("pulumi-libvirt", "pulumi-libvirt")],
)
def test_backend_defaults_to_native(tmp_path: Path, given_backend: str | None, backend: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(spec_text(given_backend))
    assert load_spec(path).hosts["h"].backend == backend


def test_an_unknown_backend_is_one_clear_error_with_its_location(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(spec_text("terraform"))
    with pytest.raises(Exception) as err:
        load_spec(path)
    text = str(err.value)
    assert "hosts.h.backend" in text and "native" in text and "pulumi-libvirt" in text, text


def test_an_external_pool_on_a_pulumi_libvirt_host_is_refused_with_its_location(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        spec_text("pulumi-libvirt").replace("{path: /var/lib/virtstack/pools/x}", "{external: true}")
    )
    with pytest.raises(Exception) as err:
        load_spec(path)
    assert "hosts.h.pools.vms.external: external is not supported with backend: pulumi-libvirt" in str(
        err.value
    )


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (
            "firmware: uefi",
            "vms.v.firmware: firmware uefi: host h has backend: pulumi-libvirt (use backend: native)",
        ),
        ("tpm: true", "vms.v.tpm: tpm: host h has backend: pulumi-libvirt (use backend: native)"),
    ],
)
def test_a_feature_the_pulumi_libvirt_backend_lacks_is_refused_before_anything_is_created(
    tmp_path: Path, feature: str, message: str
) -> None:
    """Terraform libvirt 0.7.6 has no NVRAM template handling or TPM: a VM placed on such a host that
    asks for them is one located error at placement, not a VM silently built without them."""
    vm = f"vms:\n  v: {{image: debian-12, vcpus: 1, memory: 512MiB, disk: 2GiB, {feature}}}\n"
    for backend, refused in (("pulumi-libvirt", True), ("native", False)):
        path = tmp_path / f"{backend}.yaml"
        path.write_text(spec_text(backend).replace("vms: {}\n", vm))
        spec = load_spec(path)
        if refused:
            with pytest.raises(SpecError) as err:
                place_fleet(spec, "s.yaml")
            assert str(err.value) == f"s.yaml: {message}"
        else:
            assert place_fleet(spec, "s.yaml").placement.assignments == {"v": "h"}
