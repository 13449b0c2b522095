"""`virtstack rebalance` and `virtstack hosts` on a fake engine: exact output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

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
