"""The resource graph of a `backend: pulumi-libvirt` host, with Pulumi mocks: pulumi-libvirt's types
under the same names as the native backend's, one provider per host, MiB and bytes where 0.7.6 wants
them, owner records, delete-first replacement; a native host beside it keeps virtstack's resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from components import Fleet, FleetArgs
from components.libvirt_args import Connection, ResolvedImage
from tests.unit.test_components import RecordingMocks, mocks, two_host_spec  # noqa: F401 (fixture)
from virtstack.spec.loader import load_spec

GiB = 2**30


def build_mixed(spec_path: Path) -> Fleet:
    """node-a native (qemu), node-b pulumi-libvirt (kvm)."""
    spec = load_spec(spec_path)
    connections = {
        "node-a": Connection("node-a", spec.hosts["node-a"].uri, "qemu"),
        "node-b": Connection("node-b", spec.hosts["node-b"].uri, "kvm", backend="pulumi-libvirt"),
    }
    images = {"debian-12": ResolvedImage("debian-12", "/images/debian-12.qcow2", "qcow2", "f" * 64)}
    return Fleet("fleet", FleetArgs(spec, "unit", str(spec_path), connections, images))


def registered(fleet: Fleet) -> pulumi.Output[list[Any]]:
    urns: list[pulumi.Output[str]] = []
    for host in fleet.hosts.values():
        hv = host.hypervisor
        urns += [r.urn for r in [*hv.pools.values(), *hv.networks.values(), *hv.base_volumes.values()]]
        for vm in host.vms.values():
            urns += [vm.domain.urn, vm.root_disk.urn, vm.seed.urn, *(d.urn for d in vm.data_disks.values())]
    return pulumi.Output.all(*urns)


@pulumi.runtime.test
def test_a_pulumi_libvirt_host_gets_pulumi_libvirt_resources_under_the_same_names(
    mocks: RecordingMocks,  # noqa: F811
    tmp_path: Path,
):
    fleet = build_mixed(two_host_spec(tmp_path))
    assert fleet.placement == {"web": "node-a", "web-2": "node-b"}

    def check(_: list[Any]) -> None:
        r = mocks.resources
        types = {name: r[name].typ for name in r}
        # node-b: pulumi-libvirt, the native backend's resource names
        assert types["web-2-domain"] == "libvirt:index/domain:Domain"
        assert types["web-2-root"] == "libvirt:index/volume:Volume"
        assert types["web-2-data-data"] == "libvirt:index/volume:Volume"
        assert types["web-2-seed"] == "libvirt:index/cloudInitDisk:CloudInitDisk"
        assert types["node-b-hypervisor-pool-vms"] == "libvirt:index/pool:Pool"
        assert types["node-b-hypervisor-pool-vms-owner"] == "libvirt:index/volume:Volume"
        assert types["node-b-hypervisor-net-lab"] == "libvirt:index/network:Network"
        assert types["node-b-hypervisor-image-vms-debian-12"] == "libvirt:index/volume:Volume"
        # node-a stays native
        assert types["web-domain"] == "pulumi-python:dynamic/virtstack:Domain"
        assert "node-a-hypervisor-pool-vms-owner" not in r
        # One provider for node-b, with its URI; every node-b object goes through it.
        assert r["node-b-libvirt"].inputs["uri"] == "qemu+ssh://ops@node-b.example/system"
        assert "node-a-libvirt" not in r
        for name in ("web-2-domain", "web-2-root", "web-2-seed", "node-b-hypervisor-pool-vms"):
            assert "::node-b-libvirt::" in (r[name].provider or ""), name
        dom = r["web-2-domain"].inputs
        assert (dom["name"], dom["type"], dom["vcpu"], dom["memory"]) == ("web-2", "kvm", 1, 512)
        assert dom["machine"] == "pc" and dom["running"] is True
        assert [d["volumeId"] for d in dom["disks"]] == ["web-2-root-id", "web-2-data-data-id"]
        assert dom["cloudinit"] == "web-2-seed-id"
        assert dom["networkInterfaces"][0]["networkId"] == "node-b-hypervisor-net-lab-id"
        assert 'stack="unit"' in dom["xml"]["xslt"]
        assert "tcg" not in dom["xml"]["xslt"]  # kvm
        root = r["web-2-root"].inputs
        assert root["size"] == 4 * GiB and root["baseVolumeId"] == "node-b-hypervisor-image-vms-debian-12-id"
        assert root["name"] == "web-2-root.qcow2" and root["pool"] == "vms"
        assert r["node-b-hypervisor-pool-vms-owner"].inputs["name"] == "virtstack-owner@virtstack@unit"
        assert r["web-2-seed"].inputs["name"] == "web-2-seed.iso"
        # libvirt names are fixed: a replacement deletes first.
        for name in ("web-2-domain", "web-2-root", "web-2-seed", "node-b-hypervisor-net-lab"):
            assert mocks.delete_before_replace[name], name  # type: ignore[attr-defined]

    return registered(fleet).apply(check)
