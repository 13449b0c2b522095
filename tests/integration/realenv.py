"""Helpers for tests against the real engine and daemon: a throwaway Pulumi backend per test, the
project's program run by the real `pulumi` CLI, and guest checks through libvirt only (state, guest
agent, serial log) — never a network connection to a guest or bridge address."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from virtstack.provider.refresh import refresh_pool
from virtstack.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
URI = "qemu:///system"
# Test-only passphrase for throwaway stacks in temporary backends; never used for real secrets.
TEST_PASSPHRASE = "virtstack-test-only"


def local_spec(
    prefix: str, subnet: int, *, uri: str = URI, vcpus: int = 8, memory: str = "8GiB", disk: str = "100GiB"
) -> dict[str, Any]:
    """A stack with one host on this machine's daemon: a pool and an isolated network named `prefix`
    (10.152.`subnet`.0/24), the built image, and no VMs yet."""
    return {
        "hosts": {
            "local": {
                "uri": uri,
                "capacity": {"vcpus": vcpus, "memory": memory, "disk": disk},
                "pools": {prefix: {"path": f"/var/lib/virtstack/pools/{prefix}"}},
                "networks": {prefix: {"mode": "isolated", "cidr": f"10.152.{subnet}.0/24"}},
            }
        },
        "images": {"debian-12": {"source": str(PROJECT_ROOT / ".virtstack/images/debian-12.qcow2")}},
        "vms": {},
    }


def require_real(what: str, ok: bool, detail: str = "") -> None:
    """Skip when the real part is missing — unless VIRTSTACK_REQUIRE_REAL=1, where it is a failure."""
    if ok:
        return
    msg = f"{what} is not available{': ' + detail if detail else ''}"
    if os.environ.get("VIRTSTACK_REQUIRE_REAL") == "1":
        pytest.fail(f"VIRTSTACK_REQUIRE_REAL=1 but {msg}", pytrace=False)
    pytest.skip(msg)


def check_real_parts() -> None:
    pulumi = shutil.which("pulumi")
    require_real("the Pulumi CLI", pulumi is not None, "run `make setup`")
    version = subprocess.run([pulumi or "pulumi", "version"], capture_output=True, text=True)
    require_real("the Pulumi CLI", version.returncode == 0, version.stderr.strip())
    require_real(
        "the Python language host", shutil.which("pulumi-language-python") is not None, "run `make setup`"
    )
    try:
        import libvirt

        conn = libvirt.open(URI)
        conn.getVersion()
        conn.close()
        daemon_ok, detail = True, ""
    except Exception as err:  # any failure to reach the daemon is "missing"
        daemon_ok, detail = False, str(err)
    require_real(f"the libvirt daemon at {URI}", daemon_ok, detail)
    image = PROJECT_ROOT / ".virtstack/images/debian-12.qcow2"
    require_real("the guest image", image.exists(), f"{image} (run `make setup`)")


@dataclass
class PulumiProject:
    """The project's program on a throwaway stack in its own file backend."""

    stack: str
    backend: Path
    spec_file: Path
    transcript: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(PULUMI_BACKEND_URL=f"file://{self.backend}", PULUMI_CONFIG_PASSPHRASE=TEST_PASSPHRASE)
        env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        env.update(self.extra_env)
        # Everything else as every virtstack run gets it (virtstack.settings), the raw `pulumi` too.
        env.update(Settings.from_env(env, root=PROJECT_ROOT).engine_env(env))
        return env

    def pulumi(
        self, *args: str, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["pulumi", *args, "--stack", self.stack, "--non-interactive"],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n"
                f"--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def init(self) -> None:
        self.backend.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["pulumi", "stack", "init", self.stack, "--non-interactive"],
            cwd=PROJECT_ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        self.pulumi("config", "set", "virtstack:spec", str(self.spec_file))

    def virtstack(
        self, *args: str, timeout: float = 900, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The `virtstack` CLI on this stack (its output is kept for the secrets check)."""
        proc = subprocess.run(
            [str(PROJECT_ROOT / ".venv/bin/virtstack"), *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        self.transcript.append(proc.stdout + proc.stderr)
        return proc

    def remove(self) -> None:
        """Forget the stack (its state and its Pulumi.<stack>.yaml beside the project)."""
        subprocess.run(
            ["pulumi", "stack", "rm", self.stack, "--yes", "--force", "--non-interactive"],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )

    def outputs(self) -> dict[str, Any]:
        out = self.pulumi("stack", "output", "--json").stdout
        return json.loads(out or "{}")

    def state_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.backend.rglob("*.json"))


def wait_for(predicate: Any, timeout: float, interval: float = 1.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def agent_command(domain_name: str, command: str, timeout: int = 5, uri: str = URI) -> dict[str, Any] | None:
    """A guest agent command through libvirt; None while the agent does not answer."""
    import libvirt
    import libvirt_qemu

    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(domain_name)
        reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": command}), timeout, 0)
        return json.loads(reply)
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()


def console_log(domain_name: str) -> str:
    path = Path(f"/var/log/libvirt/qemu/{domain_name}-serial0.log")
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def libvirt_inventory(prefix: str) -> dict[str, list[str]]:
    """Everything libvirt holds whose name starts with `prefix`: domains, networks, pools, volumes."""
    import libvirt

    conn = libvirt.open(URI)
    try:
        volumes = []
        for pool in conn.listAllStoragePools():
            if pool.isActive():
                refresh_pool(pool)
                volumes += [
                    f"{pool.name()}/{v.name()}" for v in pool.listAllVolumes() if v.name().startswith(prefix)
                ]
        return {
            "domains": sorted(d.name() for d in conn.listAllDomains() if d.name().startswith(prefix)),
            "networks": sorted(n.name() for n in conn.listAllNetworks() if n.name().startswith(prefix)),
            "pools": sorted(p.name() for p in conn.listAllStoragePools() if p.name().startswith(prefix)),
            "volumes": sorted(volumes),
        }
    finally:
        conn.close()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once — what a crash of the machine's side does,
    including the engine's plugins (language host, provider), which are not in its process group."""
    import signal

    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    doomed, todo = [], [pid]
    while todo:
        p = todo.pop()
        doomed.append(p)
        todo += children.get(p, [])
    for p in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def domain_info(uri: str, name: str) -> dict[str, Any] | None:
    import libvirt

    conn = libvirt.open(uri)
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return None
        state, _max_kib, mem_kib, vcpus, _ = dom.info()
        return {
            "uuid": dom.UUIDString(),
            "running": state == libvirt.VIR_DOMAIN_RUNNING,
            "memory": mem_kib * 1024,
            "vcpus": vcpus,
            "persistent": bool(dom.isPersistent()),
        }
    finally:
        conn.close()


def guest_exec(domain_name: str, argv: list[str], timeout: float = 60, uri: str = URI) -> str:
    """Run a command in the guest through the guest agent (libvirt only) and return its stdout."""
    import base64

    import libvirt
    import libvirt_qemu

    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(domain_name)
        cmd = {
            "execute": "guest-exec",
            "arguments": {"path": argv[0], "arg": argv[1:], "capture-output": True},
        }
        pid = json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(cmd), 10, 0))["return"]["pid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = json.loads(
                libvirt_qemu.qemuAgentCommand(
                    dom, json.dumps({"execute": "guest-exec-status", "arguments": {"pid": pid}}), 10, 0
                )
            )["return"]
            if status.get("exited"):
                if status.get("exitcode", 1) != 0:
                    err = base64.b64decode(status.get("err-data", "")).decode(errors="replace")
                    raise AssertionError(f"{argv} exited {status.get('exitcode')}: {err}")
                return base64.b64decode(status.get("out-data", "")).decode(errors="replace")
            time.sleep(0.5)
        raise AssertionError(f"{argv} did not finish within {timeout}s")
    finally:
        conn.close()
