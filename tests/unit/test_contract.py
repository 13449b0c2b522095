"""The contract between the components, the plan classifier and the provider (virtstack.contract):
sizes normalised as libvirt keeps them, names of trashed disks and pool owner records, diff rules —
and, as properties, that a size written through the provider reads back with no diff."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from components import libvirt_args as la
from virtstack import contract
from virtstack.contract import (
    Owner,
    TrashName,
    normalise_disk,
    normalise_memory,
    parse_pool_owner_volume,
    pool_owner_volume,
)
from virtstack.fleet import expand_fleet, expand_group, resolve_pool
from virtstack.props import PROPS_BY_KIND, DomainProps, VolumeProps
from virtstack.provider import xml
from virtstack.provider.resources import Domain, Network, Pool, Volume
from virtstack.spec import HostSpec, Memory, VmSpec
from virtstack.spec.loader import load_spec
from virtstack.units import GIB, KIB, MIB, parse_size

# ------------------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("size", "normalised"),
    [
        ("600MB", 573 * MIB),  # 600,000,000 bytes is 572.2 MiB: libvirt keeps 573 MiB
        ("1GB", 954 * MIB),  # 1,000,000,000 bytes is 953.7 MiB
        ("3GB", 2862 * MIB),  # 3,000,000,000 bytes is 2861.0 MiB (and a bit)
        ("1.5GiB", 1536 * MIB),  # already whole MiB: unchanged
        ("512MiB", 512 * MIB),
        (512 * MIB + 1, 513 * MIB),  # one byte over rounds up, never down
        (512 * MIB - 1, 512 * MIB),
    ],
)
def test_normalise_memory_rounds_up_to_a_whole_mib(size: str | int, normalised: int) -> None:
    assert normalise_memory(parse_size(size)) == normalised
    assert normalise_memory(normalised) == normalised  # idempotent


def test_600mb_is_573_mib_in_bytes() -> None:
    assert normalise_memory(parse_size("600MB")) == 600_834_048
    assert contract.memory_kib(parse_size("600MB")) == 573 * 1024


@pytest.mark.parametrize(
    ("size", "normalised"),
    [
        ("10GB", 10_000_000_000),  # 9,765,625 KiB exactly
        ("1MB", 1_000_448),  # 976.56 KiB -> 977 KiB
        ("1000001", 1_000_448),
        (1, KIB),
        (KIB, KIB),
        (KIB + 1, 2 * KIB),
        ("4GiB", 4 * GIB),
        ("1.5GiB", 1536 * MIB),
        ("0.1KiB", KIB),  # 102 bytes
    ],
)
def test_normalise_disk_rounds_up_to_a_whole_kib(size: str | int, normalised: int) -> None:
    assert normalise_disk(parse_size(size)) == normalised
    assert normalise_disk(normalised) == normalised


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("memory", "600MB", 573 * MIB),
        ("memory", "1.5GiB", 1536 * MIB),
        ("disk", "10GB", 10_000_000_000),
        ("disk", "1000001", 1_000_448),
    ],
)
def test_the_spec_normalises_sizes_when_it_is_loaded(field: str, value: str, expected: int) -> None:
    data: dict[str, Any] = {"image": "img", "vcpus": 1, "memory": "512MiB", "disk": "4GiB", field: value}
    assert getattr(VmSpec.model_validate(data), field) == expected


def test_the_spec_normalises_data_disks() -> None:
    vm = VmSpec.model_validate(
        {
            "image": "img",
            "vcpus": 1,
            "memory": "512MiB",
            "disk": "4GiB",
            "data_disks": [{"name": "data", "size": "1MB"}],
        }
    )
    assert vm.data_disks[0].size == normalise_disk(1_000_000)


def test_capacity_is_not_normalised() -> None:
    """A host's capacity is a budget, not a libvirt object: it stays as written."""
    host = HostSpec.model_validate(
        {
            "uri": "qemu:///system",
            "capacity": {"vcpus": 2, "memory": "1GB", "disk": "1000001"},
            "pools": {"vms": {"path": "/p"}},
        }
    )
    assert (host.capacity.memory, host.capacity.disk) == (10**9, 1_000_001)


# ------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "trash",
    [
        TrashName(Owner("virtstack", "dev"), "web", "20261128T074500Z", "web-root.qcow2"),
        TrashName(Owner("lab-infra", "prod-2"), "db-3", "20250101T000000Z", "db-3-data.qcow2"),
        # A disk of an external pool keeps its stack-prefixed name (which holds the separator).
        TrashName(
            Owner("p", "s"), "app", "20261128T074500Z", contract.external_volume_name("s", "app-root.qcow2")
        ),
    ],
)
def test_trash_name_round_trips(trash: TrashName) -> None:
    text = str(trash)
    assert text.startswith(contract.TRASH_PREFIX)
    assert TrashName.parse(text) == trash


@pytest.mark.parametrize(
    "name",
    [
        "web-root.qcow2",  # not trash
        "trash@",
        "trash@virtstack@dev@web@20261128T074500Z",  # no original name
        "trash@virtstack@@web@20261128T074500Z@web-root.qcow2",  # empty stack
    ],
)
def test_what_is_not_a_trash_name(name: str) -> None:
    assert TrashName.parse(name) is None


@pytest.mark.parametrize("owner", [Owner("virtstack", "dev"), Owner("lab-infra", "prod-2"), Owner("a", "b")])
def test_pool_owner_volume_round_trips(owner: Owner) -> None:
    name = pool_owner_volume(owner)
    assert name.startswith(contract.POOL_OWNER_PREFIX)
    assert parse_pool_owner_volume(name) == owner


@pytest.mark.parametrize(
    "name",
    [
        "web-root.qcow2",
        "virtstack-owner@",
        "virtstack-owner@virtstack",  # no stack
        "virtstack-owner@@dev",  # no project
        "virtstack-owner@virtstack@",
    ],
)
def test_what_is_not_a_pool_owner_volume(name: str) -> None:
    assert parse_pool_owner_volume(name) is None


@pytest.mark.parametrize("text", ["virtstack/dev", "lab-infra/prod-2"])
def test_owner_text_round_trips(text: str) -> None:
    assert str(Owner.parse(text)) == text


# -------------------------------------------------------------------------------------- diff rules

VOLUME = {"uri": "qemu:///system", "pool": "vms", "name": "web-data.qcow2", "role": "data", "size": 2 * GIB}


@pytest.mark.parametrize(
    ("news", "replaced"),
    [
        ({**VOLUME, "size": GIB}, ["size"]),  # a smaller disk is a new disk: qcow2 cannot shrink safely
        ({**VOLUME, "size": 4 * GIB}, []),  # growing is in place
        ({**VOLUME}, []),
        ({**VOLUME, "size": GIB, "name": "web-other.qcow2"}, ["name", "size"]),
        # Labels and outputs never cause a change, let alone a replacement.
        ({**VOLUME, "host": "node-b", "vm": "web", "pool_external": True, "capacity": 1}, []),
    ],
)
def test_volume_replaces(news: dict[str, Any], replaced: list[str]) -> None:
    assert contract.replaces("Volume", VOLUME, news) == replaced


def test_a_shrink_is_a_change_and_a_replacement() -> None:
    shrunk = {**VOLUME, "size": GIB}
    assert contract.changed_keys("Volume", VOLUME, shrunk) == ["size"]
    assert contract.replaces("Volume", VOLUME, shrunk) == ["size"]
    # A shrink of a domain's memory is no volume rule: it redefines the domain, never replaces it.
    domain = {"uri": "qemu:///system", "name": "web", "memory": 2 * GIB}
    assert contract.replaces("Domain", domain, {**domain, "memory": GIB}) == []


def test_a_new_owner_record_changes_a_domain_in_place() -> None:
    domain = {"uri": "qemu:///system", "name": "web", "memory": GIB}
    news = {**domain, "owner": "virtstack/dev"}
    assert contract.changed_keys("Domain", domain, news) == ["owner"]
    assert contract.replaces("Domain", domain, news) == []
    assert "owner" in contract.IN_PLACE_DOMAIN_KEYS


# ------------------------------------------------- properties: what is written reads back unchanged

CONN = la.Connection("local", "qemu:///system", "qemu")
OWNER = Owner("virtstack", "dev")
PLACE = la.PoolPlace("vms", False, OWNER)
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (unit, bytes per unit) as stack files write them: 1000- and 1024-based, with and without "B".
UNITS = [("", 1), ("B", 1), ("KB", 10**3), ("MB", 10**6), ("GB", 10**9), ("K", 10**3), ("M", 10**6)]
UNITS += [("G", 10**9), ("KiB", KIB), ("MiB", MIB), ("GiB", GIB), ("Ki", KIB), ("Mi", MIB), ("Gi", GIB)]


def decimal_sizes(low: int, high: int) -> st.SearchStrategy[str]:
    """Strings like '600MB', '1.5GiB', '2.25 G' whose value lies in [low, high] bytes."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        unit, factor = draw(st.sampled_from(UNITS))
        digits = draw(st.integers(min_value=0, max_value=3))
        scale = 10**digits
        # value = n / scale units, with n chosen so the bytes fall in range.
        n = draw(st.integers(min_value=math.ceil(low * scale / factor), max_value=high * scale // factor))
        whole, frac = divmod(n, scale)
        number = f"{whole}.{frac:0{digits}d}" if digits else str(whole)
        space = draw(st.sampled_from(["", " "]))
        return f"{number}{space}{unit}"

    return build().filter(lambda text: low <= parse_size(text) <= high)


def memory_sizes() -> st.SearchStrategy[int | str]:
    return st.one_of(st.integers(min_value=128 * MIB, max_value=64 * GIB), decimal_sizes(128 * MIB, 64 * GIB))


def disk_sizes() -> st.SearchStrategy[int | str]:
    return st.one_of(st.integers(min_value=1, max_value=2 * 1024 * GIB), decimal_sizes(1, 2 * 1024 * GIB))


_UNIT_BYTES = {"b": 1, "bytes": 1, "KiB": KIB, "k": KIB, "MiB": MIB, "M": MIB, "GiB": GIB, "G": GIB}


def libvirt_defines_domain(doc: str) -> str:
    """A model of libvirt defining a domain and dumping it again: the memory is read in its unit, kept
    in KiB (a remainder rounds up), aligned up to 1 MiB (1024 KiB) on x86 and written back in KiB."""
    root = ET.fromstring(doc)
    memory = root.find("memory")
    assert memory is not None
    size = int(memory.text or 0) * _UNIT_BYTES[memory.get("unit") or "KiB"]
    kib = -(-size // KIB)
    memory.text = str(-(-kib // 1024) * 1024)
    memory.set("unit", "KiB")
    return ET.tostring(root, encoding="unicode")


def libvirt_creates_volume(doc: str) -> str:
    """A model of libvirt creating a qcow2 volume: qemu-img is given the capacity in whole KiB (rounded
    up), and the volume then reports that many bytes."""
    root = ET.fromstring(doc)
    capacity = root.find("capacity")
    assert capacity is not None
    size = int(capacity.text or 0) * _UNIT_BYTES[capacity.get("unit") or "bytes"]
    capacity.text = str(-(-size // KIB) * KIB)
    capacity.set("unit", "bytes")
    return ET.tostring(root, encoding="unicode")


@PROPS
@given(memory_sizes())
def test_memory_written_by_the_provider_reads_back_with_no_diff(size: int | str) -> None:
    memory = TypeAdapter(Memory).validate_python(size)
    assert memory == normalise_memory(parse_size(size))
    vm = VmSpec.model_validate({"image": "img", "vcpus": 1, "memory": size, "disk": "4GiB"})
    assert vm.memory == memory
    [instance] = expand_group("web", vm)
    props = la.domain_props(CONN, OWNER, PLACE, instance, [], "web-seed.iso").to_inputs()
    assert props["memory"] == memory
    live = xml.parse_domain(libvirt_defines_domain(xml.domain_xml(DomainProps.from_inputs(props))))
    assert live["memory"] == memory
    assert contract.changed_keys("Domain", props, {**props, "memory": live["memory"]}) == []


@PROPS
@given(memory_sizes())
def test_unnormalised_memory_would_drift(size: int | str) -> None:
    """Why the spec normalises: a size libvirt must round reads back different (a diff every run)."""
    raw = parse_size(size)
    [instance] = expand_group(
        "web", VmSpec.model_validate({"image": "i", "vcpus": 1, "memory": raw, "disk": 1})
    )
    props = {**la.domain_props(CONN, OWNER, PLACE, instance, [], "web-seed.iso").to_inputs(), "memory": raw}
    live = xml.parse_domain(libvirt_defines_domain(xml.domain_xml(DomainProps.from_inputs(props))))
    assert live["memory"] == normalise_memory(raw)
    assert (contract.changed_keys("Domain", props, {**props, "memory": live["memory"]}) == []) == (
        raw % MIB == 0
    )


@PROPS
@given(disk_sizes(), disk_sizes())
def test_disks_created_by_the_provider_are_the_size_asked_for(
    root_size: int | str, data_size: int | str
) -> None:
    vm = VmSpec.model_validate(
        {
            "image": "img",
            "vcpus": 1,
            "memory": "512MiB",
            "disk": root_size,
            "data_disks": [{"name": "data", "size": data_size}],
        }
    )
    assert vm.disk == normalise_disk(parse_size(root_size))
    assert vm.data_disks[0].size == normalise_disk(parse_size(data_size))
    [instance] = expand_group("web", vm)
    image = la.ResolvedImage("img", "/images/img.qcow2", "qcow2", "f" * 64)
    root = la.root_volume_props(CONN, PLACE, instance, image, "/pools/vms/base.qcow2").to_inputs()
    [(disk, size)] = instance.data_disks
    data = la.data_volume_props(CONN, PLACE, instance, disk, size).to_inputs()
    for props, wanted in ((root, vm.disk), (data, vm.data_disks[0].size)):
        assert props["size"] == wanted
        created = xml.parse_volume(
            libvirt_creates_volume(xml.volume_xml(VolumeProps.from_inputs(props), int(props["size"])))
        )
        assert created["capacity"] == wanted
        # What a refresh reports (capacity, an output) and what the next run asks for agree.
        assert contract.changed_keys("Volume", props, {**props, "capacity": created["capacity"]}) == []
        assert contract.replaces("Volume", props, {**props, "size": created["capacity"]}) == []


def test_a_shrink_is_seen_when_the_state_holds_the_size_as_a_float() -> None:
    """Regression: the engine's state keeps numbers as floats, and a shrunk data disk (1 GiB -> 512 MiB)
    was planned as an in-place update instead of a replacement with data loss."""
    olds = {**VOLUME, "size": float(VOLUME["size"])}
    assert contract.replaces("Volume", olds, {**VOLUME, "size": VOLUME["size"] // 2}) == ["size"]
    assert contract.replaces("Volume", olds, {**VOLUME, "size": VOLUME["size"] * 2}) == []


# ------------------------------------------------------------------- typed props and their wire format

DATA = Path(__file__).resolve().parent / "data"


def _wire_of_sample_stack() -> dict[str, dict[str, Any]]:
    """Every object libvirt_args builds for data/props_wire.yaml (two hosts; nat, isolated, bridge and
    external networks; an external pool; data disks; seeds with and without network config)."""
    spec = load_spec(DATA / "props_wire.yaml", display_name="props_wire.yaml")
    owner = Owner("virtstack", "unit")
    out: dict[str, Any] = {}
    for host_name, host in spec.hosts.items():
        cpu = "host-passthrough" if host_name == "b" else None
        conn = la.Connection(host_name, host.uri, "qemu" if host_name == "a" else "kvm", cpu)
        for p, pool in host.pools.items():
            out[f"{host_name}/pool/{p}"] = la.pool_props(conn, owner, p, pool)
        for n, net in host.networks.items():
            out[f"{host_name}/net/{n}"] = la.network_props(conn, owner, n, net)
        for vm in expand_fleet(spec):
            pool_name = resolve_pool(host, vm.pool)
            if pool_name is None:
                continue
            place = la.PoolPlace(pool_name, host.pools[pool_name].external, owner)
            image = la.ResolvedImage(vm.image, "/images/x.qcow2", "qcow2", "f" * 64)
            key = f"{host_name}/{vm.name}"
            out[f"{key}/base"] = la.base_volume_props(conn, place, image)
            out[f"{key}/root"] = la.root_volume_props(conn, place, vm, image, "/p/base")
            for disk, size in vm.data_disks:
                out[f"{key}/data/{disk}"] = la.data_volume_props(conn, place, vm, disk, size)
            out[f"{key}/seed"] = la.seed_volume_props(conn, place, vm, "#cloud-config\n", "meta", None)
            out[f"{key}/seed2"] = la.seed_volume_props(conn, place, vm, "#cloud-config\n", "meta", "nc")
            volumes = [(la.root_volume_name(place, vm), "g1"), ("x-data.qcow2", "g2")]
            out[f"{key}/domain"] = la.domain_props(conn, owner, place, vm, volumes, "seed.iso")
    return out


WIRE = _wire_of_sample_stack()


def test_the_wire_format_is_what_existing_state_holds() -> None:
    # data/props_wire.json: the dicts the components built before props were typed (same keys, same
    # order, same values, optional keys absent): stacks deployed then see no diff now.
    expected = json.loads((DATA / "props_wire.json").read_text())
    got = {key: props.to_inputs() for key, props in WIRE.items()}
    assert list(got) == list(expected)
    for key in expected:
        assert list(got[key].items()) == list(expected[key].items()), key


@pytest.mark.parametrize("key", list(WIRE))
def test_props_read_back_from_their_wire_format(key: str) -> None:
    props = WIRE[key]
    assert type(props).from_inputs(props.to_inputs()) == props


def test_props_read_the_engines_floats_as_whole_numbers() -> None:
    domain = WIRE["b/web/domain"].to_inputs()
    engine = {**domain, "memory": float(domain["memory"]), "vcpus": float(domain["vcpus"])}
    read = DomainProps.from_inputs(engine)
    assert (read.memory, read.vcpus) == (domain["memory"], domain["vcpus"])
    assert isinstance(read.memory, int) and isinstance(read.vcpus, int)
    volume = VolumeProps.from_inputs({**WIRE["a/db/data/pg"].to_inputs(), "size": 2.0**31})
    assert volume.size == 2**31 and isinstance(volume.size, int) and volume.holds_data


@pytest.mark.parametrize("kind", contract.KINDS)
def test_every_diff_key_is_a_prop_of_its_kind(kind: str) -> None:
    # The key sets that decide replace / in place name props that exist: a renamed field fails here.
    fields = {f.name for f in dataclasses.fields(PROPS_BY_KIND[kind])} | {"uri", "host", "owner"}
    wire = {k for props in WIRE.values() if isinstance(props, PROPS_BY_KIND[kind]) for k in props.to_inputs()}
    assert contract.REPLACE_KEYS[kind] <= fields
    assert wire <= fields
    if kind == contract.DOMAIN:
        assert fields >= contract.IN_PLACE_DOMAIN_KEYS


def test_type_tokens_are_the_resources_types() -> None:
    # The engine records `pulumi-python:dynamic/<module>:<name>`; the plan reads kinds back from it.
    for cls in (Pool, Network, Volume, Domain):
        token = contract.type_token(cls.__name__)
        assert contract.kind_of_type(token) == cls.__name__
        assert token == f"pulumi-python:{cls._resource_type_name}"  # what Resource registers
    assert contract.kind_of_type("virtstack:vm:VirtualMachine") is None
