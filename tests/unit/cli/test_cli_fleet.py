"""`virtstack rebalance` and `virtstack hosts` on a fake engine: exact output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from clifakes import FakeEngine, make_services

from virtstack.cli.main import cli

TWO_HOSTS = """\
hosts:
  a:
    uri: qemu:///system
    capacity: {vcpus: 8, memory: 16GiB, disk: 200GiB}
    pools: {vms: {path: /var/lib/virtstack/pools/fleet}}
    networks: {lab: {mode: nat, cidr: 10.151.0.0/24}}
  b:
    uri: qemu:///system?socket=/run/other/libvirt-sock
    capacity: {vcpus: 8, memory: 16GiB, disk: 200GiB}
    overcommit: {vcpus: 2.0}
    pools: {vms: {path: /var/lib/virtstack/pools/fleet}}
    networks: {lab: {mode: nat, cidr: 10.152.0.0/24}}
images:
  deb: {source: /var/cache/virtstack/images/debian-12.qcow2}
vms:
  w:
    count: 4
    image: deb
    vcpus: 2
    memory: 1GiB
    disk: 10GiB
    nics: [{network: lab}]
"""


def run(tmp_path: Path, args: list[str], outputs: dict[str, object] | None = None) -> tuple[int, str, str]:
    engine = FakeEngine(outputs=outputs or {})
    services = make_services(tmp_path, engine)
    (tmp_path / "stacks" / "fleet.yaml").write_text(TWO_HOSTS)
    result = CliRunner().invoke(cli, [*args, "-s", "fleet"], obj=services)
    return result.exit_code, result.stdout, result.stderr


ALL_ON_A = {"placement": {"w": "a", "w-2": "a", "w-3": "a", "w-4": "a"}}


def test_rebalance_proposes_moves_off_the_busiest_host(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, ["rebalance"], ALL_ON_A)
    assert (code, err) == (0, "")
    assert out == (
        "Stack fleet: 3 moves would lower the peak utilisation from 100% to 38%.\n"
        "\n"
        "  move w    a → b\n"
        "  move w-2  a → b\n"
        "  move w-3  a → b\n"
        "\n"
        "Nothing was changed: this is a proposal (pin the groups with host: to make it so).\n"
    )


def test_rebalance_json(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, ["rebalance", "--format", "json"], ALL_ON_A)
    assert code == 0
    assert json.loads(out) == {
        "format": "virtstack.rebalance/v1",
        "stack": "fleet",
        "peak_before": 1.0,
        "peak_after": 0.375,  # b takes 2 vCPUs per raw one (overcommit): 6 of 16
        "moves": [
            {"vm": "w", "from": "a", "to": "b"},
            {"vm": "w-2", "from": "a", "to": "b"},
            {"vm": "w-3", "from": "a", "to": "b"},
        ],
    }


def test_rebalance_of_a_balanced_stack(tmp_path: Path) -> None:
    balanced = {"placement": {"w": "a", "w-2": "b", "w-3": "b", "w-4": "b"}}
    code, out, _ = run(tmp_path, ["rebalance"], balanced)
    assert code == 0
    assert out == "Stack fleet: no move lowers the peak utilisation (38%).\n"


# ------------------------------------------------------------------ hosts and the capacity check

NODE = """\
<node>
  <cpu><mhz>2000</mhz><model>x86</model><nodes>1</nodes><sockets>1</sockets><cores>4</cores>
    <threads>1</threads></cpu>
  <memory>8388608</memory>
  <domain type='test'>
    <name>outsider</name><memory unit='MiB'>2048</memory><vcpu>3</vcpu><os><type>hvm</type></os>
  </domain>
  <domain type='test'>
    <name>w</name>
    <metadata><virtstack:owner xmlns:virtstack='https://virtstack.dev/xmlns/domain/1'
      project='virtstack' stack='one'/></metadata>
    <memory unit='MiB'>1024</memory><vcpu>2</vcpu><os><type>hvm</type></os>
  </domain>
  <pool type='dir'>
    <name>vms</name><capacity unit='GiB'>100</capacity>
    <target><path>/var/lib/virtstack/pools/one</path></target>
  </pool>
</node>
"""

ONE_HOST = """\
hosts:
  a:
    uri: qemu:///system
    capacity: {{vcpus: 16, memory: 16GiB, disk: 200GiB}}
    {overcommit}
    pools: {{vms: {{path: /var/lib/virtstack/pools/one}}}}
    networks: {{lab: {{mode: nat, cidr: 10.151.0.0/24}}}}
images:
  deb: {{source: /var/cache/virtstack/images/debian-12.qcow2}}
vms:
  w:
    count: {count}
    image: deb
    vcpus: 2
    memory: {memory}
    disk: 10GiB
    nics: [{{network: lab}}]
"""


def run_one(
    tmp_path: Path, args: list[str], *, count: int = 2, memory: str = "1GiB", overcommit: str = ""
) -> tuple[int, str, str, FakeEngine]:
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    engine = FakeEngine(preview=None, outputs={"placement": {"w": "a"}})
    services = make_services(tmp_path, engine)
    services.open_libvirt = lambda _uri: __import__("libvirt").open(f"test://{node}")
    (tmp_path / "stacks" / "one.yaml").write_text(
        ONE_HOST.format(count=count, memory=memory, overcommit=overcommit)
    )
    result = CliRunner().invoke(cli, [*args, "-s", "one"], obj=services)
    return result.exit_code, result.stdout, result.stderr, engine


def test_hosts_counts_domains_outside_the_stack(tmp_path: Path) -> None:
    code, out, err, _ = run_one(tmp_path, ["hosts"])
    assert (code, err) == (0, "")
    assert out == (
        "Hosts of stack one:\n"
        "\n"
        "HOST  RESOURCE  CAPACITY  THIS STACK  OTHERS  FREE     AFTER PLAN\n"
        "a     vCPUs     4         2           3       -1       7 [####################] 175%\n"
        "a     memory    8 GiB     1 GiB       2 GiB   5 GiB    4 GiB [##########..........] 50%\n"
        "a     disk vms  100 GiB   0 B         0 B     100 GiB  10 GiB [##..................] 10%\n"
        "\n"
        "Others' domains on a: outsider.\n"
    )


def test_hosts_json_and_markdown(tmp_path: Path) -> None:
    code, out, _, _ = run_one(tmp_path, ["hosts", "--format", "json"])
    assert code == 0
    doc = json.loads(out)
    assert doc["hosts"][0]["others_domains"] == ["outsider"]
    assert doc["hosts"][0]["resources"][0] == {
        "resource": "vcpus",
        "raw": 4,
        "capacity": 4,
        "this_stack": 2,
        "others": 3,
        "free": -1,
        "after_plan": 7,
    }
    code, out, _, _ = run_one(
        tmp_path, ["hosts", "--format", "markdown"], overcommit="overcommit: {vcpus: 2.0}"
    )
    assert code == 0
    assert "| a | vCPUs | 8 (raw 4) | 2 | 3 | 3 | `7 [##################..] 88%` |" in out.splitlines()


def test_plan_is_refused_when_memory_does_not_fit_with_the_others_domains(tmp_path: Path) -> None:
    # 2 x 4 GiB of this stack + 2 GiB of `outsider` on an 8 GiB host.
    code, out, err, engine = run_one(tmp_path, ["plan"], memory="4GiB")
    assert (code, out) == (1, "")
    assert err == (
        "error: the plan does not fit the hosts as they are (nothing was changed):\n"
        "  host a: the plan needs 10 GiB of memory, the host has 8 GiB (others' domains use 2 GiB)\n"
    )
    assert engine.calls == []  # refused before the engine previewed anything


def test_vcpus_are_refused_only_when_the_host_declares_their_overcommit(tmp_path: Path) -> None:
    code, _, err, _ = run_one(tmp_path, ["plan"], count=3)  # 3 x 2 + 3 others on 4 CPUs
    assert (code, err) == (0, "")
    code, _, err, _ = run_one(tmp_path, ["plan"], count=3, overcommit="overcommit: {vcpus: 2.0}")
    assert code == 1
    assert err.splitlines()[1] == (
        "  host a: the plan needs 9 of vCPUs, the host has 8 (4 CPUs x overcommit) (others' domains use 3)"
    )


def test_a_host_that_does_not_answer_fails_the_read_with_its_name(tmp_path: Path) -> None:
    import threading

    from virtstack.contract import Owner
    from virtstack.errors import VirtstackError
    from virtstack.ops.hostread import read_hosts
    from virtstack.spec.loader import parse_spec

    release = threading.Event()

    def hanging(_uri: str) -> object:
        release.wait(10)
        raise RuntimeError("never")

    spec = parse_spec(ONE_HOST.format(count=1, memory="1GiB", overcommit=""), "x.yaml")
    try:
        with pytest.raises(VirtstackError) as info:
            read_hosts(spec, Owner("virtstack", "one"), hanging, timeout=0.2)
    finally:
        release.set()
    assert str(info.value) == (
        "cannot read host a (qemu:///system): libvirt host qemu:///system did not answer within 0s "
        "(VIRTSTACK_CONNECT_TIMEOUT); is the host or its daemon hung?"
    )


# ------------------------------------------------------------------------------------------ import

LEGACY_NODE = """\
<node>
  <cpu><mhz>2000</mhz><model>x86</model><nodes>1</nodes><sockets>1</sockets><cores>4</cores>
    <threads>1</threads></cpu>
  <memory>8388608</memory>
  <domain type='test'>
    <name>legacy</name><memory unit='MiB'>512</memory><vcpu>2</vcpu><os><type>hvm</type></os>
    <devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='/legacy/legacy-root.qcow2'/><target dev='vda'/></disk>
    </devices>
  </domain>
  <domain type='test'>
    <name>theirs</name>
    <metadata><virtstack:owner xmlns:virtstack='https://virtstack.dev/xmlns/domain/1'
      project='virtstack' stack='prod'/></metadata>
    <memory unit='MiB'>512</memory><vcpu>1</vcpu><os><type>hvm</type></os>
  </domain>
  <pool type='dir'>
    <name>legacy</name><capacity unit='GiB'>100</capacity><target><path>/legacy</path></target>
    <volume type='file'><name>legacy-root.qcow2</name><capacity unit='GiB'>5</capacity>
      <target><path>/legacy/legacy-root.qcow2</path><format type='qcow2'/></target></volume>
  </pool>
</node>
"""


def run_import(tmp_path: Path, args: list[str]) -> tuple[int, str, str]:
    node = tmp_path / "legacy.xml"
    node.write_text(LEGACY_NODE)
    services = make_services(tmp_path, FakeEngine())
    services.open_libvirt = lambda _uri: __import__("libvirt").open(f"test://{node}")
    (tmp_path / "stacks" / "one.yaml").write_text(ONE_HOST.format(count=1, memory="1GiB", overcommit=""))
    result = CliRunner().invoke(cli, ["import", "-s", "one", *args], obj=services)
    return result.exit_code, result.stdout, result.stderr


def test_import_writes_the_entries_of_every_domain_no_stack_owns(tmp_path: Path) -> None:
    code, out, err = run_import(tmp_path, ["--host", "a"])
    assert (code, err) == (0, "")
    assert out == (
        "# virtstack import from host a for stack one: merge into stacks/one.yaml\n"
        "# (1 domain; `virtstack up` adopts them without a restart)\n"
        "hosts:\n"
        "  a:\n"
        "    pools:\n"
        "      legacy:\n"
        "        external: true\n"
        "vms:\n"
        "  legacy:\n"
        "    host: a\n"
        "    vcpus: 2\n"
        "    memory: 512MiB\n"
        "    running: true\n"
        "    autostart: false\n"
        "    imported:\n"
        "      owned: false\n"
        "      disks:\n"
        "      - pool: legacy\n"
        "        volume: legacy-root.qcow2\n"
        "        format: qcow2\n"
    )
    code, out, _ = run_import(tmp_path, ["--host", "a", "--own"])
    assert "      owned: true\n" in out


def test_import_refuses_another_stacks_domain_and_unknown_hosts(tmp_path: Path) -> None:
    assert run_import(tmp_path, ["--host", "a", "--domain", "theirs"]) == (
        1,
        "",
        "error: domain theirs on host a already belongs to stack virtstack/prod\n",
    )
    assert run_import(tmp_path, ["--host", "b"]) == (
        1,
        "",
        "error: stacks/one.yaml has no host b (hosts: a)\n",
    )
    assert run_import(tmp_path, ["--host", "a", "--domain", "ghost"]) == (
        1,
        "",
        "error: host a has no domain ghost\n",
    )


def test_a_domain_undefined_while_the_host_is_read_is_skipped(tmp_path: Path) -> None:
    """Regression (seen while other stacks were destroyed on the shared daemon): a domain listed and
    then undefined before its read made `up` fail with "Domain not found"."""
    import libvirt

    from virtstack.contract import Owner
    from virtstack.ops.hostread import read_host

    node = tmp_path / "node.xml"
    node.write_text(NODE)
    conn = libvirt.open(f"test://{node}")
    gone = conn.defineXML(
        "<domain type='test'><name>gone</name><memory unit='MiB'>64</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    gone.undefine()

    class Racing:
        def __getattr__(self, name: str) -> object:
            return getattr(conn, name)

        def listAllDomains(self, flags: int = 0) -> list[object]:
            return [gone, *conn.listAllDomains(flags)]

    reading = read_host(Racing(), "a", "qemu:///system", Owner("virtstack", "one"), ["vms"])
    assert sorted(reading.others) == ["outsider"] and sorted(reading.ours) == ["w"]
