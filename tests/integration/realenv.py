"""Helpers for tests against the real engine and daemon: a throwaway Pulumi backend per test, the
project's program run by the real `pulumi` CLI, and guest checks through libvirt only (state, guest
agent, serial log) — never a network connection to a guest or bridge address."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
URI = "qemu:///system"
# Test-only passphrase for throwaway stacks in temporary backends; never used for real secrets.
TEST_PASSPHRASE = "virtstack-test-only"


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

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PULUMI_BACKEND_URL=f"file://{self.backend}",
            PULUMI_CONFIG_PASSPHRASE=TEST_PASSPHRASE,
            PULUMI_SKIP_UPDATE_CHECK="true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        )
        env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        return env

    def pulumi(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
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
            cwd=PROJECT_ROOT, env=self.env, check=True, capture_output=True, text=True,
        )
        self.pulumi("config", "set", "virtstack:spec", str(self.spec_file))

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


def agent_command(domain_name: str, command: str, timeout: int = 5) -> dict[str, Any] | None:
    """A guest agent command through libvirt; None while the agent does not answer."""
    import libvirt
    import libvirt_qemu

    conn = libvirt.open(URI)
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
                pool.refresh(0)
                volumes += [f"{pool.name()}/{v.name()}" for v in pool.listAllVolumes() if v.name().startswith(prefix)]
        return {
            "domains": sorted(d.name() for d in conn.listAllDomains() if d.name().startswith(prefix)),
            "networks": sorted(n.name() for n in conn.listAllNetworks() if n.name().startswith(prefix)),
            "pools": sorted(p.name() for p in conn.listAllStoragePools() if p.name().startswith(prefix)),
            "volumes": sorted(volumes),
        }
    finally:
        conn.close()
