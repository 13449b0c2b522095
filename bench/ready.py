"""Time to ready: one VM, from the start of `up` until its guest agent answers (asked through libvirt:
qemu-agent-command guest-ping, never the network), against the bare boot of the same image defined by
hand (floor.py with one VM: same disks, seed and domain document)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from bench.floor import Floor
from bench.harness import LOCAL_URI, PulumiStack, cleanup, destroy_domains, log, nothing_left, open_conn
from bench.specs import PROJECT_ROOT, fleet_spec

AGENT_TIMEOUT = 420.0


def wait_agent(name: str, t0: float, timeout: float = AGENT_TIMEOUT) -> float:
    """Seconds from t0 until the guest agent of `name` answers guest-ping."""
    conn = open_conn(LOCAL_URI)
    try:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                dom = conn.lookupByName(name)
                reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-ping"}), 2, 0)
                if "return" in json.loads(reply):
                    return time.perf_counter() - t0
            except libvirt.libvirtError:
                if not conn.isAlive():  # the daemon restarted: reconnect
                    conn = open_conn(LOCAL_URI)
            time.sleep(0.25)
        raise RuntimeError(f"the guest agent of {name} did not answer within {timeout:.0f}s")
    finally:
        conn.close()


def ready_virtstack(prefix: str, subnet: int, use_cli: bool) -> dict[str, Any]:
    spec = fleet_spec(prefix, 1, {"local": LOCAL_URI}, subnet)
    stack = PulumiStack(prefix, spec, extra_env={"VIRTSTACK_ROOT": str(PROJECT_ROOT)})
    root_config = PROJECT_ROOT / f"Pulumi.{prefix}.yaml"
    try:
        stack.init()
        if use_cli:
            shutil.copy(stack.config_file, root_config)
        t0 = time.perf_counter()
        if use_cli:
            stack.virtstack_up(timeout=900)
        else:
            stack.pulumi("up", "--yes", "--skip-preview")
        up_seconds = time.perf_counter() - t0
        ready = wait_agent(prefix, t0)
        destroy_domains(LOCAL_URI, prefix)
        stack.pulumi("destroy", "--yes", "--skip-preview")
        return {"up_seconds": up_seconds, "ready_seconds": ready}
    except Exception as err:
        return {"error": f"{type(err).__name__}: {str(err)[-1500:]}"}
    finally:
        left = cleanup([LOCAL_URI], prefix)
        if not nothing_left(left):
            log(f"clean-up of {prefix} left {left}")
        stack.remove()
        if root_config.exists():
            root_config.unlink()


def ready_bare(prefix: str, subnet: int) -> dict[str, Any]:
    spec = fleet_spec(prefix, 1, {"local": LOCAL_URI}, subnet)
    try:
        floor = Floor(spec, prefix, workers=2)
        t0 = time.perf_counter()
        floor.up()
        up_seconds = time.perf_counter() - t0
        ready = wait_agent(prefix, t0)
        return {"up_seconds": up_seconds, "ready_seconds": ready}
    except Exception as err:
        return {"error": f"{type(err).__name__}: {str(err)[-1500:]}"}
    finally:
        cleanup([LOCAL_URI], prefix)


def console_tail(name: str) -> str:
    path = Path(f"/var/log/libvirt/qemu/{name}-serial0.log")
    try:
        return path.read_text(errors="replace")[-500:]
    except OSError:
        return ""
