"""Simulated hosts keep what the provider made (virtstack/provider/simhosts.py): a real test-driver node
file is changed through a connection, saved, and reopened by a new connection — as the next command's
provider process would — which must find the same objects in the same states."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from virtstack.contract import Owner
from virtstack.provider import connection, lifecycle, ownership, simhosts

NODE = """<node>
  <cpu><mhz>2000</mhz><model>sim</model><active>8</active><nodes>1</nodes><sockets>1</sockets>
    <cores>8</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
</node>
"""
OWNER_NS = "urn:virtstack-test-owner"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIRTSTACK_SIMULATED_HOSTS", "1")
    path = tmp_path / "host-0.xml"
    path.write_text(NODE)
    return path


def _populate(conn: libvirt.virConnect, pool_dir: Path) -> None:
    conn.networkDefineXML(
        "<network><name>net1</name><ip address='10.155.0.1' netmask='255.255.255.0'/></network>"
    ).create()
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>pool1</name><target><path>{pool_dir}</path></target></pool>"
    )
    pool.create()
    pool.createXML(
        "<volume><name>disk.qcow2</name><capacity>1073741824</capacity>"
        "<target><format type='qcow2'/></target></volume>"
    )
    domain = "<domain type='qemu'><name>{}</name><memory>262144</memory>{}<os><type>hvm</type></os></domain>"
    meta = f"<metadata><o:owner xmlns:o='{OWNER_NS}'>stack-a</o:owner></metadata>"
    conn.defineXML(domain.format("stopped", meta))
    conn.defineXML(domain.format("running", "")).create()
    conn.defineXML(domain.format("paused", "")).create()
    conn.lookupByName("paused").suspend()


def _objects(conn: libvirt.virConnect) -> dict[str, object]:
    return {
        "domains": sorted((d.name(), d.state()[0]) for d in conn.listAllDomains()),
        "networks": sorted((n.name(), n.isActive()) for n in conn.listAllNetworks()),
        "pools": sorted(
            (p.name(), sorted(v.name() for v in p.listAllVolumes())) for p in conn.listAllStoragePools()
        ),
        "owner": conn.lookupByName("stopped").metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, OWNER_NS),
    }


def test_saved_host_reopens_with_the_same_objects_and_states(host: Path, tmp_path: Path) -> None:
    uri = f"test://{host}"
    first = libvirt.open(uri)
    _populate(first, tmp_path / "pool")
    before = _objects(first)
    assert simhosts.save(first, host)
    again = libvirt.open(uri)
    assert _objects(again) == before
    assert before["domains"] == [
        ("paused", libvirt.VIR_DOMAIN_PAUSED),
        ("running", libvirt.VIR_DOMAIN_RUNNING),
        ("stopped", libvirt.VIR_DOMAIN_SHUTOFF),
    ]
    # The node description is kept: the reopened host has the file's CPUs and memory.
    assert again.getInfo()[2] == 8
    # A host reloaded from its own file writes nothing (no change), and saves a deletion.
    assert not simhosts.save(again, host)
    again.lookupByName("stopped").undefine()
    assert simhosts.save(again, host)
    assert sorted(d.name() for d in libvirt.open(uri).listAllDomains()) == ["paused", "running"]


def test_without_a_saved_file_the_test_driver_forgets(host: Path) -> None:
    """What the persistence is for: a fresh connection reloads the file, not the previous connection."""
    uri = f"test://{host}"
    libvirt.open(uri).defineXML(
        "<domain type='qemu'><name>lost</name><memory>262144</memory><os><type>hvm</type></os></domain>"
    )
    assert libvirt.open(uri).listAllDomains() == []


def test_provider_operations_persist_simulated_hosts(host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "_connections", {})
    uri = f"test://{host}"
    connection.with_connection(
        uri,
        lambda conn: conn.defineXML(
            "<domain type='qemu'><name>made</name><memory>262144</memory><os><type>hvm</type></os></domain>"
        ),
    )
    assert [d.name() for d in libvirt.open(uri).listAllDomains()] == ["made"]


@pytest.mark.parametrize(
    ("uri", "allowed", "expected"),
    [
        ("test:///tmp/h/host-1.xml", "1", Path("/tmp/h/host-1.xml")),
        ("test:///tmp/h/host-1.xml", "", None),
        ("test:///default", "1", None),
        ("qemu:///system", "1", None),
        ("qemu+ssh://root@h/system", "1", None),
        ("test://somehost/tmp/h.xml", "1", None),
    ],
)
def test_node_file(uri: str, allowed: str, expected: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTSTACK_SIMULATED_HOSTS", allowed)
    assert simhosts.node_file(uri) == expected


def test_destroy_undefines_on_a_driver_that_refuses_the_nvram_flag() -> None:
    """libvirt's test driver refuses VIR_DOMAIN_UNDEFINE_NVRAM ("unsupported flags (0x4)"): the
    simulated fleet's `destroy` failed on every VM once the hosts kept their domains."""
    conn = libvirt.open("test:///default")
    dom = conn.defineXML(
        "<domain type='qemu'><name>sim-undefine</name><memory>262144</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    lifecycle.undefine(dom)
    assert "sim-undefine" not in conn.listDefinedDomains()


def test_a_domain_removed_while_the_host_is_saved_is_left_out(host: Path) -> None:
    """Another provider thread may undefine a domain between the listing and its XML (a destroy of
    20 VMs failed with "Domain not found" from the save)."""
    conn = libvirt.open(f"test://{host}")
    dom = conn.defineXML(
        "<domain type='qemu'><name>going</name><memory>262144</memory><os><type>hvm</type></os></domain>"
    )
    dom.undefine()
    assert simhosts._present([dom], simhosts._domain_xml) == []


def test_a_defined_pool_not_yet_started_is_saved_without_volumes(host: Path, tmp_path: Path) -> None:
    """Between a pool's define and its start another thread's save listed its volumes ("storage pool
    is not active" failed a network's create)."""
    conn = libvirt.open(f"test://{host}")
    conn.storagePoolDefineXML(
        f"<pool type='dir'><name>later</name><target><path>{tmp_path}/later</path></target></pool>"
    )
    assert simhosts.save(conn, host)
    assert "<name>later</name>" in host.read_text()


def test_a_network_owner_is_read_on_a_driver_that_refuses_the_inactive_flag(host: Path) -> None:
    """The test driver refuses VIR_NETWORK_XML_INACTIVE ("unsupported flags (0x1)"): a simulated
    fleet's destroy failed on every network."""
    owner = Owner(project="p", stack="s")
    conn = libvirt.open(f"test://{host}")
    net = conn.networkDefineXML(
        "<network><name>owned</name><ip address='10.155.1.1' netmask='255.255.255.0'/></network>"
    )
    ownership.set_network_owner(conn, net, owner)
    assert ownership.network_owner(conn.networkLookupByName("owned")) == owner
