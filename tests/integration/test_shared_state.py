"""Two operators, one state: two clones of the project on one real PostgreSQL backend (issue 14).

One scenario on one small stack (a pool, isolated networks, one 256 MiB guest), in order:
  0. the stack starts on a file backend and moves to PostgreSQL as README says
     (`pulumi stack export` / `pulumi stack import`): the plan there shows no changes;
  1. both clones `up` at once: one proceeds, the other fails at once naming the holder (user, host,
     time, operation); the state is intact (no changes left, the one VM running);
  2. the second clone's `plan` sees the first clone's change (from the shared state);
  3. the user data's secret is ciphertext in the table;
  4. PostgreSQL restarted between two `up`s: the next one works;
  5. a run killed mid-`up`: the next `up` names the lock and its holder, `pulumi cancel` (the
     documented way) clears it, and the next `up` converges with nothing orphaned in libvirt.
The server is scripts/postgres-up.sh's (the same `make setup` starts); the test's state lives in a
table of its own (`?table=`), dropped at the end.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.realenv import (
    PROJECT_ROOT,
    TEST_PASSPHRASE,
    URI,
    domain_info,
    kill_tree,
    libvirt_inventory,
    local_spec,
    require_real,
    wait_for,
)
from virtstack.settings import Settings

PASSWORD = f"pw-{secrets.token_hex(8)}-never-in-plaintext"
# What a clone needs of the project: the program, its packages, the stack files.
CLONED = ("Pulumi.yaml", "__main__.py", "components", "virtstack", "stacks", "schema", "pyproject.toml")


def postgres_url() -> str:
    script = PROJECT_ROOT / "scripts" / "postgres-up.sh"
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=600)
    require_real("PostgreSQL (scripts/postgres-up.sh)", proc.returncode == 0, proc.stderr.strip()[-500:])
    return proc.stdout.strip().splitlines()[-1]


def psql(url: str, sql: str) -> str:
    plain = re.sub(r"[?&]table=[^&]*", "", url).replace("virtstack?&", "virtstack?")
    proc = subprocess.run(["psql", "-X", "-At", plain, "-c", sql], capture_output=True, text=True, check=True)
    return proc.stdout


@dataclass
class Clone:
    """One operator's checkout of the project, on the shared backend."""

    root: Path
    stack: str
    backend: str
    spec_file: Path

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PULUMI_") and k not in ("VIRTSTACK_ROOT", "VIRTSTACK_STACK", "PYTHONPATH")
        }
        env.update(
            PULUMI_BACKEND_URL=self.backend,
            PULUMI_CONFIG_PASSPHRASE=TEST_PASSPHRASE,
            VIRTSTACK_ROOT=str(self.root),
            VIRTSTACK_LOG_DIR=str(self.root / "logs"),
            VIRTSTACK_PASSWORD_OPS=PASSWORD,
            PYTHONPATH=str(self.root),  # this clone's code, not the installed checkout's
        )
        env.update(Settings.from_env(env, root=self.root).engine_env(env))
        env["PULUMI_HOME"] = str(self.root / ".virtstack" / "pulumi-home")
        return env

    def run(self, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def virtstack(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return self.run(str(PROJECT_ROOT / ".venv/bin/virtstack"), *args, "-s", self.stack, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(PROJECT_ROOT / ".venv/bin/virtstack"), *args, "-s", self.stack],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def pulumi(self, *args: str, check: bool = True, backend: str | None = None) -> str:
        env = self.env
        if backend is not None:
            env["PULUMI_BACKEND_URL"] = backend
        proc = subprocess.run(
            ["pulumi", *args, "--non-interactive"], cwd=self.root, env=env, capture_output=True, text=True
        )
        if check:
            assert proc.returncode == 0, f"pulumi {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def write(self, spec: dict[str, Any]) -> None:
        self.spec_file.write_text(yaml.safe_dump(spec))


def clone(base: Path, name: str, stack: str, backend: str) -> Clone:
    root = base / name
    root.mkdir()
    for item in CLONED:
        src = PROJECT_ROOT / item
        if src.is_dir():
            shutil.copytree(src, root / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, root / item)
    (root / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    (root / ".virtstack").mkdir()
    (root / ".virtstack" / "images").symlink_to(PROJECT_ROOT / ".virtstack" / "images")
    hypervisor = PROJECT_ROOT / ".virtstack" / "hypervisor.json"
    if hypervisor.exists():
        shutil.copy2(hypervisor, root / ".virtstack" / "hypervisor.json")
    return Clone(root, stack, backend, root / "stacks" / f"{stack}.yaml")


def ok(proc: subprocess.CompletedProcess[str], code: int = 0) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}\n{out[-5000:]}"
    return out


def spec_of(prefix: str, subnet: int, *, networks: int = 1, memory: str = "256MiB") -> dict[str, Any]:
    spec = local_spec(prefix, subnet, vcpus=2, memory="2GiB", disk="20GiB")
    spec["images"]["debian-12"]["source"] = str(PROJECT_ROOT / ".virtstack/images/debian-12.qcow2")
    for n in range(2, networks + 1):
        cidr = f"10.{170 + n}.{subnet}.0/24"
        spec["hosts"]["local"]["networks"][f"{prefix}-n{n}"] = {"mode": "isolated", "cidr": cidr}
    spec["vms"] = {
        f"{prefix}-vm": {
            "image": "debian-12",
            "vcpus": 1,
            "memory": memory,
            "disk": "2GiB",
            "nics": [{"network": prefix}],
            "cloud_init": {"users": [{"name": "ops", "password_env": "VIRTSTACK_PASSWORD_OPS"}]},
        }
    }
    return spec


@pytest.fixture
def two_clones(tmp_path: Path, real_parts: None) -> Iterator[tuple[Clone, Clone, str, str]]:
    server = postgres_url()
    prefix = f"vsq{secrets.token_hex(3)}"
    table = f"vs_state_{prefix}"
    backend = f"{server}&table={table}"
    a = clone(tmp_path, "a", prefix, backend)
    b = clone(tmp_path, "b", prefix, backend)
    try:
        yield a, b, prefix, table
    finally:
        with contextlib.suppress(Exception):
            a.pulumi("cancel", "--stack", prefix, "--yes", check=False)
            a.virtstack("destroy", "--yes", "--allow-data-loss", "--no-trash")
            a.pulumi("stack", "rm", prefix, "--yes", "--force", check=False)
        _force_cleanup(prefix)
        with contextlib.suppress(Exception):
            psql(server, f"DROP TABLE IF EXISTS {table}")
            psql(server, f"DELETE FROM virtstack_run_holders WHERE stack LIKE '{table}/%'")


def _force_cleanup(prefix: str) -> None:
    import libvirt

    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains():
            if dom.name().startswith(prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        for net in conn.listAllNetworks():
            if net.name().startswith(prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    if net.isActive():
                        net.destroy()
                    net.undefine()
        for pool in conn.listAllStoragePools():
            if pool.name().startswith(prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    for vol in pool.listAllVolumes():
                        vol.delete()
                    if pool.isActive():
                        pool.destroy()
                    pool.undefine()
    finally:
        conn.close()


def test_two_operators_share_one_postgres_state(two_clones: tuple[Clone, Clone, str, str]) -> None:
    a, b, prefix, table = two_clones
    subnet = secrets.randbelow(200) + 20
    server = a.backend.split("&table=")[0]

    # 0. Deployed on a file backend, then moved to PostgreSQL as README says.
    file_backend = f"file://{a.root / '.virtstack' / 'state'}"
    (a.root / ".virtstack" / "state").mkdir(mode=0o700)
    a.write(spec_of(prefix, subnet))
    a.pulumi("stack", "init", prefix, backend=file_backend)
    env_file = {**a.env, "PULUMI_BACKEND_URL": file_backend}
    first = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/virtstack"), "up", "--yes", "-s", prefix],
        cwd=a.root,
        env=env_file,
        capture_output=True,
        text=True,
        timeout=900,
    )
    ok(first)
    exported = a.root / "stack.json"
    a.pulumi("stack", "export", "--stack", prefix, "--file", str(exported), backend=file_backend)
    a.pulumi("stack", "init", prefix)
    a.pulumi("stack", "import", "--stack", prefix, "--file", str(exported))
    exported.unlink()
    ok(a.virtstack("plan", "--detailed-exitcode"), 0)

    # b: the other operator's clone, with the same stack files (and Pulumi.<stack>.yaml, which holds
    # the passphrase's salt) as a team has them from git.
    b.write(spec_of(prefix, subnet))
    shutil.copy2(a.root / f"Pulumi.{prefix}.yaml", b.root / f"Pulumi.{prefix}.yaml")
    ok(b.virtstack("plan", "--detailed-exitcode"), 0)

    # 1. Both `up` at once (a change each would make: the same second network).
    a.write(spec_of(prefix, subnet, networks=2))
    b.write(spec_of(prefix, subnet, networks=2))
    runs = [a.start("up", "--yes"), b.start("up", "--yes")]
    finished = wait_for(lambda: [p for p in runs if p.poll() is not None], 900, 0.05, "a run to end")
    loser = finished[0]
    winner = runs[1 - runs.index(loser)]
    assert winner.poll() is None, "the second run did not fail at once: it waited for the first"
    loser_out = loser.communicate()[0]
    winner_out = winner.communicate(timeout=900)[0]
    assert winner.returncode == 0, winner_out[-4000:]
    assert loser.returncode == 1, loser_out[-4000:]
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    holder = re.search(
        rf"stack {prefix} is locked by another update \(virtstack up by {re.escape(user)}@\S+ "
        r"\(pid \d+\) since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; still running\)",
        loser_out,
    )
    assert holder, loser_out
    assert "pulumi cancel --stack" in loser_out
    # State intact: nothing left to do for either clone, the VM untouched.
    ok(a.virtstack("plan", "--detailed-exitcode"), 0)
    ok(b.virtstack("plan", "--detailed-exitcode"), 0)
    assert domain_info(URI, f"{prefix}-vm")["running"]

    # 2. The second clone's plan sees the first clone's change.
    a.write(spec_of(prefix, subnet, networks=3))
    ok(a.virtstack("up", "--yes"))
    seen = ok(b.virtstack("plan", "--detailed-exitcode"), 2)  # b's file still has two networks
    assert re.search(rf"delete\s+network {prefix}-n3\b", seen), seen
    b.write(spec_of(prefix, subnet, networks=3))
    ok(b.virtstack("plan", "--detailed-exitcode"), 0)

    # 3. Secrets in the table are ciphertext.
    # Pulumi keeps each object as {"data": base64 of the bytes}: what is stored, decoded.
    stored = psql(server, f"SELECT data::text FROM {table} WHERE key LIKE '%/.pulumi/stacks/%'")
    rows = "\n".join(base64.b64decode(json.loads(line)["data"]).decode() for line in stored.splitlines())
    assert f"{prefix}-vm" in rows and "4dabf18193072939515e22adb298388d" in rows  # the secret sig
    assert PASSWORD not in rows and "ciphertext" in rows

    # 4. PostgreSQL restarted between two `up`s: the next one works.
    script = str(PROJECT_ROOT / "scripts" / "postgres-up.sh")
    subprocess.run([script, "stop"], check=True, capture_output=True, timeout=120)
    subprocess.run([script], check=True, capture_output=True, timeout=300)
    a.write(spec_of(prefix, subnet, networks=2))
    b.write(spec_of(prefix, subnet, networks=2))
    ok(b.virtstack("up", "--yes"))
    ok(a.virtstack("plan", "--detailed-exitcode"), 0)

    # 5. Killed mid-`up` (a memory change: the VM is updated), then the documented cancel.
    a.write(spec_of(prefix, subnet, networks=3, memory="320MiB"))
    b.write(spec_of(prefix, subnet, networks=3, memory="320MiB"))
    run = a.start("up", "--yes")
    assert run.stdout is not None
    lines: list[str] = []
    for line in run.stdout:
        lines.append(line)
        if "creating…" in line or "updating…" in line:
            break
    kill_tree(run.pid)
    run.wait()
    assert any("creating…" in line or "updating…" in line for line in lines), "".join(lines)
    refused = ok(b.virtstack("up", "--yes"), 1)
    assert re.search(
        rf"stack {prefix} is locked by another update \(virtstack up by {re.escape(user)}@\S+ \(pid \d+\) "
        r"since \S+; that run's connection to the state server has ended",
        refused,
    ), refused
    assert f"pulumi cancel --stack {prefix} --yes" in refused
    b.pulumi("cancel", "--stack", prefix, "--yes")
    ok(b.virtstack("up", "--yes"))
    ok(a.virtstack("plan", "--detailed-exitcode"), 0)
    found = libvirt_inventory(prefix)
    assert found["domains"] == [f"{prefix}-vm"]
    assert found["networks"] == sorted([prefix, f"{prefix}-n2", f"{prefix}-n3"])
    exported_state = json.loads(a.pulumi("stack", "export", "--stack", prefix))
    assert not exported_state["deployment"].get("pending_operations")
