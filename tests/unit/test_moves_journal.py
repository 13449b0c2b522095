"""The move's journal and steps on two hermetic hosts (libvirt's test driver, one private instance per
config file): a copy killed half way is made again from the intact source, a complete copy is not
copied twice, nothing on the old host is deleted before the new one holds complete disks and the
domain, and every step run again changes nothing.

The test driver has no storage streams, so `copy_stream` is replaced by a recorder (the real copy runs
in tests/integration/test_fleet.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from virtstack.provider import moves, ownership
from virtstack.provider.connection import with_connection
from virtstack.provider.domains import DomainProvider
from virtstack.provider.volumes import VolumeProvider

ME = "virtstack/dev"
NODE = """<node><pool type='dir'><name>p</name><uuid>{uuid}</uuid><capacity>10737418240</capacity>
<allocation>0</allocation><available>10737418240</available><target><path>/pools/{host}</path></target>
</pool></node>"""


class Killed(Exception):
    """What the engine sees of a kill -9 in the middle of a copy."""


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[str, str]]:
    uris = []
    for n, host in enumerate(("a", "b")):
        conf = tmp_path / f"{host}.xml"
        conf.write_text(NODE.format(uuid=f"{n + 1}" * 8 + "-1111-1111-1111-111111111111", host=host))
        uri = f"test://{conf}"
        with_connection(
            uri, lambda c: ownership.set_pool_owner(c.storagePoolLookupByName("p"), ownership.Owner.parse(ME))
        )
        uris.append(uri)
    yield uris[0], uris[1]


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Each copy as (source volume, target volume); a `Killed` in the list kills the next copy."""
    done: list[Any] = []

    def fake(_src: Any, src_vol: libvirt.virStorageVol, _dst: Any, dst_vol: libvirt.virStorageVol) -> int:
        if done and done[-1] is Killed:
            done.pop()
            raise Killed
        done.append((src_vol.name(), dst_vol.name()))
        return 0

    monkeypatch.setattr(moves, "copy_stream", fake)
    return done


@pytest.fixture(autouse=True)
def _driver_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    undefine = libvirt.virDomain.undefineFlags
    monkeypatch.setattr(
        libvirt.virDomain,
        "undefineFlags",
        lambda self, flags=0: undefine(self, flags & ~libvirt.VIR_DOMAIN_UNDEFINE_NVRAM),
    )


def volume(uri: str, host: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "uri": uri,
        "host": host,
        "owner": ME,
        "pool": "p",
        "name": name,
        "vm": "vm",
        "role": "data",
        "format": "qcow2",
        "size": 2**20,
        **extra,
    }


def domain(uri: str, host: str) -> dict[str, Any]:
    return {
        "uri": uri,
        "host": host,
        "owner": ME,
        "name": "vm",
        "domain_type": "qemu",
        "cpu_mode": "",
        "tb_cache_mib": 128,
        "vcpus": 1,
        "memory": 256 * 2**20,
        "disks": [
            {"pool": "p", "volume": name, "generation": "g1", "device": "disk", "format": "qcow2"}
            for name in ("vm-root", "vm-data")
        ],
        "nics": [],
        "running": True,
        "autostart": False,
        "console_log": "/var/log/libvirt/qemu/vm-serial0.log",
    }


def volumes(uri: str) -> list[str]:
    return sorted(with_connection(uri, lambda c: c.storagePoolLookupByName("p").listVolumes()))


def domains(uri: str) -> dict[str, tuple[str, bool]]:
    return with_connection(
        uri, lambda c: {d.name(): (d.UUIDString(), bool(d.isActive())) for d in c.listAllDomains(0)}
    )


def deployed_on_a(a: str, domain_owner: str = ME) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    vols = VolumeProvider()
    base = vols.create(volume(a, "a", "base", role="base-none", size=2**20)).outs
    root = vols.create(volume(a, "a", "vm-root", role="root", backing_path=base["path"])).outs
    data = vols.create(volume(a, "a", "vm-data")).outs
    dom = DomainProvider().create({**domain(a, "a"), "owner": domain_owner}).outs
    return root, data, dom


OWNER_VOL = "virtstack-owner@virtstack@dev"


def test_a_killed_copy_is_made_again_and_the_source_goes_only_after_the_target_runs(
    hosts: tuple[str, str], copies: list[Any]
) -> None:
    a, b = hosts
    root, data, dom = deployed_on_a(a)
    uuid = dom["uuid"]
    vols = VolumeProvider()

    # The data disk's copy killed half way: the new host holds it with its journal marker; the old
    # host keeps the disk, and the domain (stopped for the copy).
    copies.append(Killed)
    new_data = volume(b, "b", "vm-data")
    with pytest.raises(Killed):
        vols.update("id", data, new_data)
    assert volumes(b) == sorted([OWNER_VOL, "vm-data", "vm-data.virtstack-moving"])
    assert volumes(a) == sorted([OWNER_VOL, "base", "vm-data", "vm-root"])
    assert domains(a) == {"vm": (uuid, False)}

    # The domain cannot finish the move with an incomplete disk: nothing on the old host goes.
    with pytest.raises(moves.MoveError, match="not complete on its new host"):
        moves.finish_on_source(dom, domain(b, "b"), lambda d: None)
    assert volumes(a) == sorted([OWNER_VOL, "base", "vm-data", "vm-root"])

    # Run again: the incomplete copy is made again from the source; then a complete one is kept.
    outs = vols.update("id", data, new_data).outs
    assert copies == [("vm-data", "vm-data")]
    assert volumes(b) == sorted([OWNER_VOL, "vm-data"])
    assert outs["uri"] == b and outs["generation"] == data["generation"]  # the same disk
    vols.update("id", data, new_data)
    assert copies == [("vm-data", "vm-data")]  # complete: not copied twice

    # The root disk: copied from a flattened copy, which is removed afterwards.
    vols.update("id", root, volume(b, "b", "vm-root", role="root", backing_path="/pools/b/base"))
    assert copies[-1] == ("vm-root.virtstack-flat", "vm-root")
    assert volumes(a) == sorted([OWNER_VOL, "base", "vm-data", "vm-root"])  # the source is kept so far

    # The domain: defined on b with the same UUID and started, then a's disks and domain removed.
    DomainProvider().update("id", dom, domain(b, "b"))
    assert domains(b) == {"vm": (uuid, True)}
    assert domains(a) == {}
    assert volumes(a) == sorted([OWNER_VOL, "base"])  # the base image is the engine's to remove
    assert volumes(b) == sorted([OWNER_VOL, "vm-data", "vm-root"])

    # And once more (a rerun after a kill at the very end): nothing changes.
    DomainProvider().update("id", dom, domain(b, "b"))
    assert domains(b) == {"vm": (uuid, True)}
    assert volumes(a) == sorted([OWNER_VOL, "base"])


def test_a_disk_another_stacks_domain_uses_is_not_moved(hosts: tuple[str, str], copies: list[Any]) -> None:
    a, b = hosts
    _root, data, _dom = deployed_on_a(a, domain_owner="virtstack/prod")  # a domain of that name, not ours
    with pytest.raises(moves.MoveError, match="used by domain vm on its old host, which is not this stack's"):
        VolumeProvider().update("id", data, volume(b, "b", "vm-data"))
    assert domains(a)["vm"][1] is True  # not stopped
    assert copies == []
    assert volumes(a) == sorted([OWNER_VOL, "base", "vm-data", "vm-root"])


def test_the_old_hosts_domain_of_another_stack_is_left(hosts: tuple[str, str], copies: list[Any]) -> None:
    a, b = hosts
    root, data, dom = deployed_on_a(a)
    vols = VolumeProvider()
    vols.update("id", data, volume(b, "b", "vm-data"))
    vols.update("id", root, volume(b, "b", "vm-root", role="root", backing_path="/pools/b/base"))
    # Between the copies and the domain's step, a domain of another stack took the name on a.
    with_connection(a, lambda c: c.lookupByName("vm").undefine())
    DomainProvider().create({**domain(a, "a"), "owner": "virtstack/prod", "running": False})
    moves.finish_on_source(dom, domain(b, "b"), lambda d: None)
    assert "vm" in domains(a)
    assert volumes(a) == sorted([OWNER_VOL, "base", "vm-data", "vm-root"])


def test_a_move_onto_a_name_another_stack_holds_is_refused_at_preview(
    hosts: tuple[str, str], copies: list[Any]
) -> None:
    a, b = hosts
    _root, _data, dom = deployed_on_a(a)
    DomainProvider().create({**domain(b, "b"), "owner": "virtstack/prod", "disks": [], "running": False})
    failures = DomainProvider().check(dom, domain(b, "b")).failures
    assert [f.reason for f in failures] == [
        "domain vm on host b belongs to stack virtstack/prod, not to stack virtstack/dev: virtstack neither "
        "adopts, changes nor deletes it (rename yours, or declare a shared pool or network `external: true`)"
    ]
    assert copies == []
