"""The resource graph the components build, with Pulumi mocks (no engine, no daemon): types, parents,
the connection per host, copy-on-write volumes and sizes in bytes, secrets, delete-before-replace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import Fleet, FleetArgs
from components.libvirt_args import Connection, ResolvedImage, bridge_name
from virtstack.spec.loader import load_spec

ROOT = Path(__file__).resolve().parents[2]
GiB, MiB = 2**30, 2**20


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources[args.name] = args
        state = dict(args.inputs)
        if args.typ.endswith(":Volume"):
            state["path"] = f"/pools/{args.inputs['pool']}/{args.inputs['name']}"
            state["key"] = state["path"]
            state["generation"] = f"gen-{args.name}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return {}, []


@pytest.fixture
def mocks(monkeypatch: pytest.MonkeyPatch) -> RecordingMocks:
    m = RecordingMocks()
    m.delete_before_replace = {}  # type: ignore[attr-defined]
    m.protect = {}  # type: ignore[attr-defined]
    original = pulumi.runtime.mocks.MockMonitor.RegisterResource

    def register(self: Any, request: Any) -> Any:
        # The mock interface hides resource options; the monitor request carries them.
        m.delete_before_replace[request.name] = request.deleteBeforeReplace  # type: ignore[attr-defined]
        m.protect[request.name] = request.protect  # type: ignore[attr-defined]
        return original(self, request)

    monkeypatch.setattr(pulumi.runtime.mocks.MockMonitor, "RegisterResource", register)
    pulumi.runtime.set_mocks(m, project="virtstack", stack="unit", preview=False)
    return m


def two_host_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "two.yaml"
    spec.write_text(
        """
hosts:
  node-a:
    uri: qemu:///system
    domain_type: qemu
    capacity: {vcpus: 4, memory: 4GiB, disk: 50GiB}
    pools: {vms: {path: /var/lib/virtstack/pools/a}}
    networks: {lab: {mode: nat, cidr: 10.77.0.0/24}}
  node-b:
    uri: qemu+ssh://ops@node-b.example/system
    domain_type: kvm
    capacity: {vcpus: 4, memory: 4GiB, disk: 50GiB}
    pools: {vms: {path: /var/lib/virtstack/pools/b}}
    networks: {lab: {mode: nat, cidr: 10.77.0.0/24}}
images:
  debian-12: {source: /images/debian-12.qcow2}
vms:
  web:
    count: 2
    image: debian-12
    vcpus: 1
    memory: 512MiB
    disk: 4GiB
    data_disks: [{name: data, size: 2GiB}]
    nics: [{network: lab}]
    cloud_init:
      users: [{name: ops, password: s3cret-pw}]
placement: {strategy: spread}
"""
    )
    return spec


def build(spec_path: Path, images: dict[str, ResolvedImage] | None = None, **fleet_args: Any) -> Fleet:
    spec = load_spec(spec_path)
    connections = {
        name: Connection(name, host.uri, host.domain_type if host.domain_type != "auto" else "qemu")
        for name, host in spec.hosts.items()
    }
    images = images or {"debian-12": ResolvedImage("debian-12", "/images/debian-12.qcow2", "qcow2", "f" * 64)}
    return Fleet("fleet", FleetArgs(spec, "unit", str(spec_path), connections, images, **fleet_args))


def everything(fleet: Fleet) -> pulumi.Output[list[str]]:
    """Resolves once every libvirt resource of the fleet is registered with the mocks."""
    urns: list[pulumi.Output[str]] = []
    for host in fleet.hosts.values():
        hv = host.hypervisor
        urns += [r.urn for r in [*hv.pools.values(), *hv.networks.values(), *hv.base_volumes.values()]]
        for vm in host.vms.values():
            urns += [vm.domain.urn, vm.root_disk.urn, vm.seed.urn, *(d.urn for d in vm.data_disks.values())]
    return pulumi.Output.all(*urns)


def urn_chain(urn: str) -> list[str]:
    """The type chain of a URN: parents' types, then the resource's own."""
    return urn.split("::")[2].split("$")


@pulumi.runtime.test
def test_graph_types_parents_and_connections(mocks: RecordingMocks, tmp_path: Path):
    fleet = build(two_host_spec(tmp_path))
    assert fleet.placement == {"web": "node-a", "web-2": "node-b"}  # spread over both hosts
    vm = fleet.hosts["node-b"].vms["web-2"]

    def check(urns: list[str]) -> None:
        # Each URN names its parent's type before its own: Fleet → Host → Hypervisor → VM → Domain.
        domain_urn, vm_urn, hv_urn, host_urn, root_urn, net_urn = urns
        assert urn_chain(domain_urn)[-2:] == [
            "virtstack:vm:VirtualMachine",
            "pulumi-python:dynamic/virtstack:Domain",
        ]
        assert urn_chain(vm_urn)[-2:] == ["virtstack:hypervisor:Hypervisor", "virtstack:vm:VirtualMachine"]
        assert urn_chain(hv_urn)[-2:] == ["virtstack:host:Host", "virtstack:hypervisor:Hypervisor"]
        assert urn_chain(host_urn)[-2:] == ["virtstack:fleet:Fleet", "virtstack:host:Host"]
        assert urn_chain(root_urn)[-2:] == [
            "virtstack:vm:VirtualMachine",
            "pulumi-python:dynamic/virtstack:Volume",
        ]
        assert urn_chain(net_urn)[-2:] == [
            "virtstack:hypervisor:Hypervisor",
            "pulumi-python:dynamic/virtstack:Network",
        ]
        r = mocks.resources
        # Every libvirt object of a host goes through that host's connection.
        assert r["web-2-domain"].inputs["uri"] == "qemu+ssh://ops@node-b.example/system"
        assert r["web-domain"].inputs["uri"] == "qemu:///system"
        assert r["node-b-hypervisor-net-lab"].inputs["uri"] == "qemu+ssh://ops@node-b.example/system"
        assert r["web-2-domain"].inputs["domain_type"] == "kvm"
        assert r["web-domain"].inputs["domain_type"] == "qemu"
        assert r["node-a-hypervisor-net-lab"].inputs["bridge"] == bridge_name("node-a", "lab")

    host = fleet.hosts["node-b"]
    return pulumi.Output.all(
        vm.domain.urn,
        vm.urn,
        host.hypervisor.urn,
        host.urn,
        vm.root_disk.urn,
        host.hypervisor.networks["lab"].urn,
        everything(fleet),
    ).apply(lambda urns: check(urns[:6]))


@pulumi.runtime.test
def test_copy_on_write_root_over_one_base_volume_per_host_sizes_in_bytes(
    mocks: RecordingMocks, tmp_path: Path
):
    fleet = build(two_host_spec(tmp_path))

    def check(_: Any) -> None:
        r = mocks.resources
        bases = [n for n, a in r.items() if a.typ.endswith(":Volume") and a.inputs["role"] == "base"]
        assert sorted(bases) == [
            "node-a-hypervisor-image-vms-debian-12",
            "node-b-hypervisor-image-vms-debian-12",
        ]
        base = r["node-a-hypervisor-image-vms-debian-12"].inputs
        assert base["source"] == "/images/debian-12.qcow2"
        assert base["name"] == "debian-12-ffffffffffff.qcow2"
        root = r["web-root"].inputs
        assert root["role"] == "root"
        assert root["size"] == 4 * GiB
        assert root["backing_path"] == f"/pools/vms/{base['name']}"
        assert root["backing_format"] == "qcow2"
        data = r["web-data-data"].inputs
        assert (data["role"], data["size"], data["name"]) == ("data", 2 * GiB, "web-data.qcow2")
        assert "backing_path" not in data
        dom = r["web-domain"].inputs
        assert dom["memory"] == 512 * MiB
        assert dom["vcpus"] == 1
        assert [d["volume"] for d in dom["disks"]] == [
            "web-root.qcow2",
            "web-data.qcow2",
            "web-seed.iso",
        ]
        assert dom["disks"][-1]["device"] == "cdrom"
        assert dom["nics"][0]["network"] == "lab"

    return everything(fleet).apply(check)


@pulumi.runtime.test
def test_user_data_is_secret_and_domains_delete_before_replace(mocks: RecordingMocks, tmp_path: Path):
    fleet = build(two_host_spec(tmp_path))
    vm = fleet.hosts["node-a"].vms["web"]

    def check(args: list[Any]) -> None:
        is_secret, user_data, *_ = args
        assert is_secret is True
        assert "s3cret-pw" in user_data  # the password is in the seed's user data, only ever as a secret
        assert "s3cret-pw" not in repr(mocks.resources["web-domain"].inputs)
        dbr = mocks.delete_before_replace  # type: ignore[attr-defined]
        assert dbr["web-domain"] is True and dbr["web-2-domain"] is True
        assert dbr["web-data-data"] is False  # data disks are never deleted ahead of a replacement

    user_data = vm.seed.user_data  # type: ignore[attr-defined]
    return pulumi.Output.all(user_data.is_secret(), user_data, everything(fleet)).apply(check)


def libvirt_resources(mocks: RecordingMocks, kind: str) -> dict[str, dict[str, Any]]:
    return {name: a.inputs for name, a in mocks.resources.items() if a.typ.endswith(f":{kind}")}


@pulumi.runtime.test
def test_every_libvirt_object_records_its_host_and_owner(mocks: RecordingMocks, tmp_path: Path):
    fleet = build(two_host_spec(tmp_path))

    def check(_: Any) -> None:
        hosts = {"qemu:///system": "node-a", "qemu+ssh://ops@node-b.example/system": "node-b"}
        for kind in ("Pool", "Network", "Volume", "Domain"):
            resources = libvirt_resources(mocks, kind)
            assert resources, kind
            for name, inputs in resources.items():
                # FleetArgs.project defaults to "virtstack"; the mocks' stack is "unit".
                assert inputs["owner"] == "virtstack/unit", name
                assert inputs["host"] == hosts[inputs["uri"]], name
                assert "external" not in inputs and "pool_external" not in inputs, name
        domain = mocks.resources["web-2-domain"].inputs
        assert "stack" not in domain
        volumes = libvirt_resources(mocks, "Volume")
        # A VM's volumes name their VM; a base image volume belongs to no VM.
        assert {n: v.get("vm") for n, v in volumes.items() if v["role"] != "base"} == {
            f"{vm}-{part}": vm for vm in ("web", "web-2") for part in ("root", "data-data", "seed")
        }
        assert all("vm" not in v for v in volumes.values() if v["role"] == "base")
        pool = mocks.resources["node-a-hypervisor-pool-vms"].inputs
        assert pool["path"] == "/var/lib/virtstack/pools/a"

    return everything(fleet).apply(check)


@pulumi.runtime.test
def test_the_owner_is_the_project_and_the_stack(mocks: RecordingMocks, tmp_path: Path):
    fleet = build(two_host_spec(tmp_path), project="lab-infra")

    def check(_: Any) -> None:
        owners = {a.inputs["owner"] for a in mocks.resources.values() if "owner" in a.inputs}
        assert owners == {"lab-infra/unit"}

    return everything(fleet).apply(check)


def external_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "external.yaml"
    spec.write_text(
        """
hosts:
  node-a:
    uri: qemu:///system
    domain_type: qemu
    capacity: {vcpus: 4, memory: 4GiB, disk: 50GiB}
    pools: {shared: {external: true}}
    networks: {lan: {mode: nat, cidr: 10.78.0.0/24, external: true}}
images:
  debian-12: {source: /images/debian-12.qcow2}
vms:
  db:
    image: debian-12
    vcpus: 1
    memory: 512MiB
    disk: 4GiB
    data_disks: [{name: data, size: 2GiB}]
    nics: [{network: lan}]
    protect: true
    running: false
  app:
    image: debian-12
    vcpus: 1
    memory: 512MiB
    disk: 4GiB
"""
    )
    return spec


@pulumi.runtime.test
def test_external_pool_and_network_are_marked_and_volumes_carry_the_stack(
    mocks: RecordingMocks, tmp_path: Path
):
    fleet = build(external_spec(tmp_path))

    def check(_: Any) -> None:
        pool = mocks.resources["node-a-hypervisor-pool-shared"].inputs
        assert pool["external"] is True and "path" not in pool
        assert mocks.resources["node-a-hypervisor-net-lan"].inputs["external"] is True
        volumes = libvirt_resources(mocks, "Volume")
        assert all(v["pool_external"] is True for v in volumes.values())
        # In a shared pool the stack's name keeps two stacks' volumes apart.
        assert volumes["db-root"]["name"] == "unit@db-root.qcow2"
        assert volumes["db-data-data"]["name"] == "unit@db-data.qcow2"
        assert volumes["db-seed"]["name"] == "unit@db-seed.iso"
        assert volumes["node-a-hypervisor-image-shared-debian-12"]["name"] == (
            "unit@debian-12-ffffffffffff.qcow2"
        )
        # The domain attaches the volumes by the names they were created under.
        disks = mocks.resources["db-domain"].inputs["disks"]
        assert [d["volume"] for d in disks] == [
            "unit@db-root.qcow2",
            "unit@db-data.qcow2",
            "unit@db-seed.iso",
        ]

    return everything(fleet).apply(check)


@pulumi.runtime.test
def test_an_external_image_is_its_own_volume_never_uploaded(mocks: RecordingMocks, tmp_path: Path):
    spec = external_spec(tmp_path)
    spec.write_text(
        spec.read_text().replace(
            "{source: /images/debian-12.qcow2}", "{source: golden.qcow2, external: true}"
        )
    )
    golden = ResolvedImage("debian-12", "golden.qcow2", "qcow2", "e" * 64, external=True)
    fleet = build(spec, images={"debian-12": golden})

    def check(_: Any) -> None:
        base = libvirt_resources(mocks, "Volume")["node-a-hypervisor-image-shared-debian-12"]
        # Shared by others: its own name (no stack prefix, even in a shared pool), marked external.
        assert (base["name"], base["role"], base["external"]) == ("golden.qcow2", "base", True)
        assert libvirt_resources(mocks, "Volume")["db-root"]["name"] == "unit@db-root.qcow2"

    return everything(fleet).apply(check)


@pulumi.runtime.test
def test_protect_guards_the_vm_and_its_disks_and_outputs_say_if_it_should_run(
    mocks: RecordingMocks, tmp_path: Path
):
    fleet = build(external_spec(tmp_path))
    db, app = fleet.hosts["node-a"].vms["db"], fleet.hosts["node-a"].vms["app"]
    assert db.outputs["running_wanted"] is False
    assert app.outputs["running_wanted"] is True

    def check(_: Any) -> None:
        protect = mocks.protect  # type: ignore[attr-defined]
        for name in ("db", "db-domain", "db-root", "db-data-data", "db-seed"):
            assert protect[name] is True, name
        for name in ("app", "app-domain", "app-root", "app-seed"):
            assert protect[name] is False, name

    return everything(fleet).apply(check)
