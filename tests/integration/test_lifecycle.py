"""The lifecycle against the real engine and daemon, through the `virtstack` CLI (issue: prove the
lifecycle). Every test has its own stack, names and subnet, and cleans up even when it fails. Guests
are checked through libvirt only: domain state, the guest agent, the serial console log.

Wall time is dominated by guest boots under TCG (~30-90 s each on two busy cores), so steps 1-4 and 9
run in sequence inside one test on one two-VM stack (each step names itself in a failure), and the
other tests keep guests from booting where they can. No test depends on another having run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.realenv import (
    PROJECT_ROOT,
    URI,
    PulumiProject,
    agent_command,
    domain_info,
    guest_exec,
    kill_tree,
    libvirt_inventory,
    local_spec,
    wait_for,
)
from virtstack.fleet import instance_names

BOOT_TIMEOUT = 300
PASSWORD = f"pw-{secrets.token_hex(8)}-never-in-plaintext"
MARKER = f"virtstack-marker-{secrets.token_hex(6)}"
MARKER_OFFSET_BLOCKS = 2048  # 1 MiB into the raw data disk: no filesystem needed


def empty(prefix: str) -> dict[str, list[str]]:
    return {"domains": [], "networks": [], "pools": [], "volumes": []}


def base_spec(prefix: str, subnet: int) -> dict[str, Any]:
    return local_spec(prefix, subnet)


def vm(prefix: str, **over: Any) -> dict[str, Any]:
    spec = {
        "image": "debian-12",
        "vcpus": 1,
        "memory": "384MiB",
        "disk": "3GiB",
        "nics": [{"network": prefix}],
    }
    spec.update(over)
    return spec


def new_project(tmp_path: Path, spec: dict[str, Any], prefix: str) -> PulumiProject:
    spec_file = tmp_path / f"{prefix}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    project = PulumiProject(stack=prefix, backend=tmp_path / "state", spec_file=spec_file)
    project.init()
    return project


def rewrite(project: PulumiProject, spec: dict[str, Any]) -> None:
    project.spec_file.write_text(yaml.safe_dump(spec))


def teardown(project: PulumiProject, prefix: str) -> None:
    project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
    project.remove()
    left = libvirt_inventory(prefix)
    if any(left.values()):  # a failed destroy must not poison later runs: remove by hand
        for dom in left["domains"]:
            subprocess.run(["virsh", "-c", URI, "destroy", dom], capture_output=True)
            subprocess.run(["virsh", "-c", URI, "undefine", dom], capture_output=True)
        for vol in left["volumes"]:
            pool, name = vol.split("/", 1)
            subprocess.run(["virsh", "-c", URI, "vol-delete", name, "--pool", pool], capture_output=True)
        for net in left["networks"]:
            subprocess.run(["virsh", "-c", URI, "net-destroy", net], capture_output=True)
            subprocess.run(["virsh", "-c", URI, "net-undefine", net], capture_output=True)
        for pool in left["pools"]:
            subprocess.run(["virsh", "-c", URI, "pool-destroy", pool], capture_output=True)
            subprocess.run(["virsh", "-c", URI, "pool-undefine", pool], capture_output=True)


def start_up(project: PulumiProject, **popen: Any) -> subprocess.Popen[str]:
    """`virtstack up --yes` in the background (for tests that interrupt or race it)."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(
        [str(PROJECT_ROOT / ".venv/bin/virtstack"), "up", "-s", project.stack, "--yes"],
        cwd=PROJECT_ROOT,
        env=project.env,
        text=True,
        **popen,
    )


def ok(proc: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert proc.returncode == code, (
        f"exit {proc.returncode}, wanted {code}\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


# --------------------------------------------------------------------- tests 1-4 and 9: one stack


@dataclass
class TwoVmStack:
    """One two-VM stack that steps 1-4 and 9 walk through in order (booting it is the cost)."""

    prefix: str
    spec: dict[str, Any]
    project: PulumiProject
    a: str  # has the raw data disk and the ops password
    b: str


@contextmanager
def step(name: str) -> Iterator[None]:
    """Name the step in a failure: the steps share one test, so the traceback alone would not say
    which stage of the lifecycle broke (and later steps are meaningless once one fails)."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"step {name}: {exc}") from exc
    except Exception as exc:  # a timeout or a CLI crash: same stage naming, original chained
        raise AssertionError(f"step {name}: {type(exc).__name__}: {exc}") from exc


@pytest.fixture
def two_vm_stack(tmp_path: Path, real_parts: None) -> Iterator[TwoVmStack]:
    prefix = f"vsl{secrets.token_hex(3)}"
    subnet = secrets.randbelow(200) + 20
    spec = base_spec(prefix, subnet)
    spec["vms"] = {
        f"{prefix}-a": vm(
            prefix,
            data_disks=[{"name": "data", "size": "1GiB"}],
            nics=[{"network": prefix, "ip": f"10.152.{subnet}.10"}],
            cloud_init={"hostname": f"{prefix}-host-a", "users": [{"name": "ops", "password": PASSWORD}]},
        ),
        f"{prefix}-b": vm(
            prefix,
            nics=[{"network": prefix, "ip": f"10.152.{subnet}.11"}],
            cloud_init={"hostname": f"{prefix}-host-b"},
        ),
    }
    project = new_project(tmp_path, spec, prefix)
    yield TwoVmStack(prefix, spec, project, f"{prefix}-a", f"{prefix}-b")
    teardown(project, prefix)
    assert libvirt_inventory(prefix) == empty(prefix)


def test_lifecycle_of_one_stack(two_vm_stack: TwoVmStack) -> None:
    """Steps 1-4 and 9 in one test: each needs the state the one before left (booted guests, a
    marker on a's disk, a redefined a), and booting a fresh pair per step would triple the wall
    time. One test makes the order explicit instead of relying on pytest running tests in file
    order, and lets any of them be selected (-k) without silently depending on another."""
    s = two_vm_stack
    with step("1 converge and idempotence"):
        converge_and_idempotence(s)
    with step("2 update without data loss"):
        update_without_data_loss(s)
    with step("3 guard on data loss"):
        guard_on_data_loss(s)
    with step("4 drift is reported then healed"):
        drift_is_reported_then_healed(s)
    with step("9 password never in plaintext"):
        password_never_in_plaintext(s)


def converge_and_idempotence(s: TwoVmStack) -> None:
    project = s.project
    ok(project.virtstack("up", "-s", project.stack, "--yes"))
    for name in (s.a, s.b):
        info = domain_info(URI, name)
        assert info and info["running"], name
    for name, host in ((s.a, f"{s.prefix}-host-a"), (s.b, f"{s.prefix}-host-b")):
        reply = wait_for(
            lambda n=name: agent_command(n, "guest-get-host-name"), BOOT_TIMEOUT, 2, f"{name}'s agent"
        )
        assert reply["return"]["host-name"] == host
    ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)


def update_without_data_loss(s: TwoVmStack) -> None:
    project, a, b = s.project, s.a, s.b
    wait_for(lambda: agent_command(a, "guest-ping"), BOOT_TIMEOUT, 2, f"{a}'s agent")
    guest_exec(
        a,
        ["/bin/sh", "-c", f"printf {MARKER} | dd of=/dev/vdb bs=512 seek={MARKER_OFFSET_BLOCKS} conv=fsync"],
    )
    uuid_a, uuid_b = domain_info(URI, a)["uuid"], domain_info(URI, b)["uuid"]

    s.spec["vms"][a].update(memory="512MiB", vcpus=2)
    rewrite(project, s.spec)
    plan = json.loads(ok(project.virtstack("plan", "-s", project.stack, "--format", "json"), 0))
    actions = {v["vm"]: v["action"] for v in plan["vms"]}
    assert actions == {a: "redefine"}, plan  # a restarts with its disks; b is untouched
    assert plan["data_loss"] is False

    ok(project.virtstack("up", "-s", project.stack, "--yes"))
    info = domain_info(URI, a)
    assert (info["running"], info["memory"], info["vcpus"]) == (True, 512 * 2**20, 2)
    assert info["uuid"] == uuid_a  # redefined, not replaced
    assert domain_info(URI, b)["uuid"] == uuid_b
    wait_for(lambda: agent_command(a, "guest-ping"), BOOT_TIMEOUT, 2, f"{a}'s agent after the restart")
    read = guest_exec(
        a,
        [
            "/bin/sh",
            "-c",
            f"dd if=/dev/vdb bs=512 skip={MARKER_OFFSET_BLOCKS} count=1 2>/dev/null | head -c {len(MARKER)}",
        ],
    )
    assert read == MARKER


def guard_on_data_loss(s: TwoVmStack) -> None:
    project, a = s.project, s.a
    before = libvirt_inventory(s.prefix)
    uuid_a = domain_info(URI, a)["uuid"]
    s.spec["vms"][a]["data_disks"] = [{"name": "data", "size": "512MiB"}]  # a shrink: a new, empty disk
    rewrite(project, s.spec)

    plan = json.loads(ok(project.virtstack("plan", "-s", project.stack, "--format", "json"), 0))
    assert {v["vm"]: v["action"] for v in plan["vms"]} == {a: "replace_data_loss"}, plan
    assert plan["refused_without_allow_data_loss"], plan

    refused = project.virtstack("up", "-s", project.stack, "--yes")
    assert refused.returncode == 1
    assert "--allow-data-loss" in refused.stdout + refused.stderr
    assert libvirt_inventory(s.prefix) == before
    assert domain_info(URI, a)["uuid"] == uuid_a

    s.spec["vms"][a]["data_disks"] = [{"name": "data", "size": "1GiB"}]  # back to what is deployed
    rewrite(project, s.spec)
    ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)


def drift_is_reported_then_healed(s: TwoVmStack) -> None:
    project, a, b = s.project, s.a, s.b
    subprocess.run(["virsh", "-c", URI, "destroy", b], check=True, capture_output=True)
    subprocess.run(["virsh", "-c", URI, "destroy", a], check=True, capture_output=True)
    subprocess.run(["virsh", "-c", URI, "undefine", a], check=True, capture_output=True)

    drift = project.virtstack("drift", "-s", project.stack, "--format", "json")
    report = json.loads(ok(drift, 2))
    assert report["drift"] is True
    found = {v["vm"]: v for v in report["vms"]}
    assert set(found) == {a, b}, report
    assert any(f["problem"] == "missing" for f in found[a]["findings"]), found[a]
    assert "powered off" in found[b]["summary"], found[b]
    text = ok(project.virtstack("drift", "-s", project.stack), 2)
    assert a in text and b in text

    ok(project.virtstack("up", "-s", project.stack, "--yes"))
    assert domain_info(URI, a)["running"] and domain_info(URI, b)["running"]
    ok(project.virtstack("drift", "-s", project.stack), 0)


def password_never_in_plaintext(s: TwoVmStack) -> None:
    project = s.project
    # The guest got it (cloud-init set it) ...
    wait_for(lambda: agent_command(s.a, "guest-ping"), BOOT_TIMEOUT, 2, "agent")
    shadow = guest_exec(s.a, ["/bin/sh", "-c", "grep '^ops:' /etc/shadow | cut -d: -f2 | cut -c1-3"])
    assert shadow.startswith("$"), "cloud-init did not set the ops password"
    # ... but it is nowhere in state, CLI output (of every step above) or logs.
    ok(project.virtstack("inventory", "-s", project.stack, "--format", "json"))
    places = {"state": project.state_text(), "cli output": "\n".join(project.transcript)}
    for log in [
        *(PROJECT_ROOT / ".virtstack/logs").glob("*"),
        *Path("/var/log/virtstack").glob("*.log"),
        *(Path(project.env.get("PULUMI_HOME", str(Path.home() / ".pulumi"))) / "logs").glob("*"),
    ]:
        if log.is_file():
            places[str(log)] = log.read_text(errors="replace")
    for where, text in places.items():
        assert PASSWORD not in text, f"the password is in plaintext in {where}"
    assert "secret" in places["state"]  # the user data is there, encrypted


# ------------------------------------------------------------------------------ 5: crash mid-apply


def test_5_crash_mid_apply_then_converge(tmp_path: Path, real_parts: None) -> None:
    prefix = f"vsc{secrets.token_hex(3)}"
    spec = base_spec(prefix, secrets.randbelow(200) + 20)
    spec["vms"] = {f"{prefix}-vm": vm(prefix, count=4, memory="256MiB")}
    project = new_project(tmp_path, spec, prefix)
    names = instance_names(f"{prefix}-vm", 4)
    try:
        for delay in (1.0, 2.5, 4.0):
            proc = start_up(project)
            time.sleep(delay)
            kill_tree(proc.pid)
            proc.wait()
            ok(project.virtstack("up", "-s", project.stack, "--yes"))
            assert all(domain_info(URI, n) and domain_info(URI, n)["running"] for n in names)
            ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)
            ok(project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash"))
            assert libvirt_inventory(prefix) == empty(prefix)
    finally:
        teardown(project, prefix)


# ------------------------------------------------------------------------------ 6: daemon restart


def test_6_daemon_restart_during_up(tmp_path: Path, real_parts: None) -> None:
    pidfile = Path(os.environ.get("VIRTSTACK_RUN_DIR", "/run/virtstack")) / "libvirtd.pid"
    if not pidfile.exists():
        pytest.fail(
            f"{pidfile} missing: the daemon was not started by scripts/hypervisor-up.sh", pytrace=False
        )
    prefix = f"vsr{secrets.token_hex(3)}"
    spec = base_spec(prefix, secrets.randbelow(200) + 20)
    spec["vms"] = {f"{prefix}-vm": vm(prefix, count=2, memory="256MiB", running=False)}
    project = new_project(tmp_path, spec, prefix)
    try:
        proc = start_up(project)
        time.sleep(2.0)
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
        wait_for(
            lambda: subprocess.run(["pgrep", "-F", str(pidfile)], capture_output=True).returncode != 0,
            30,
            0.5,
            "libvirtd to stop",
        )
        subprocess.run([str(PROJECT_ROOT / "scripts/hypervisor-up.sh")], check=True, capture_output=True)
        proc.wait(timeout=600)  # it may have failed; what matters is the next run
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)
        assert sorted(libvirt_inventory(prefix)["domains"]) == instance_names(f"{prefix}-vm", 2)
    finally:
        teardown(project, prefix)
    assert libvirt_inventory(prefix) == empty(prefix)


# ------------------------------------------------------------------------------ 7: concurrent runs


def test_7_concurrent_up_one_wins_other_gets_a_lock_message(tmp_path: Path, real_parts: None) -> None:
    prefix = f"vsk{secrets.token_hex(3)}"
    spec = base_spec(prefix, secrets.randbelow(200) + 20)
    spec["vms"] = {f"{prefix}-vm": vm(prefix, count=2, memory="256MiB")}
    project = new_project(tmp_path, spec, prefix)
    locks = project.backend / ".pulumi" / "locks"
    try:
        first = start_up(project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for(lambda: list(locks.glob(f"**/{prefix}/*.json")), 60, 0.05, "the first run's lock")
        second = project.virtstack("up", "-s", project.stack, "--yes")
        out_first, _ = first.communicate(timeout=600)
        assert first.returncode == 0, out_first[-4000:]
        assert second.returncode == 1
        assert "locked" in (second.stdout + second.stderr).lower()
        ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)
        assert sorted(libvirt_inventory(prefix)["domains"]) == instance_names(f"{prefix}-vm", 2)
    finally:
        teardown(project, prefix)


# ------------------------------------------------------------------------------ 8: several hosts


@pytest.fixture
def second_host() -> Iterator[str]:
    name = f"vsit-h2-{secrets.token_hex(2)}"
    script = str(PROJECT_ROOT / "scripts/libvirt-instance.sh")
    uri = subprocess.run([script, "start", name], check=True, capture_output=True, text=True).stdout.strip()
    yield uri
    subprocess.run([script, "purge", name], capture_output=True)


def test_8_spread_over_two_hosts(tmp_path: Path, real_parts: None, second_host: str) -> None:
    prefix = f"vsm{secrets.token_hex(3)}"
    subnet = secrets.randbelow(200) + 20
    spec = base_spec(prefix, subnet)
    spec["hosts"]["node-2"] = {
        "uri": second_host,
        "capacity": {"vcpus": 8, "memory": "8GiB", "disk": "100GiB"},
        "pools": {prefix: {"path": f"/var/lib/virtstack/pools/{prefix}-node-2"}},
        # No networks: both daemons share this machine's kernel, where two bridges with one subnet
        # would clash (on real, separate hosts they would not). Placement is what this test is about.
    }
    spec["vms"] = {f"{prefix}-vm": vm(prefix, count=2, memory="256MiB", nics=[])}
    spec["placement"] = {"strategy": "spread"}
    project = new_project(tmp_path, spec, prefix)
    try:
        ok(project.virtstack("up", "-s", project.stack, "--yes"))
        placement = project.outputs()["placement"]
        assert sorted(placement.values()) == ["local", "node-2"], placement
        uris = {"local": URI, "node-2": second_host}
        for name, host in placement.items():
            assert domain_info(uris[host], name)["running"], (name, host)
            other = next(h for h in uris if h != host)
            assert domain_info(uris[other], name) is None
    finally:
        ok(project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash"))
        teardown(project, prefix)
