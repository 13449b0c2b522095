"""Preview at scale: a no-change `pulumi preview` of 20 and of 200 VMs spread over 10 hosts — ten
independent libvirt daemons (scripts/libvirt-instance.sh), so ten connections. The VMs exist
(defined with running: false: no CPU cost); the stack grows from 20 to 200 VMs, so each host's base
image is uploaded once. Each host gets its own network and subnet (the instances share the kernel's
routing table)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import baseline
from bench.harness import PulumiStack, cleanup, log, purge_instance, start_instance
from bench.reader import read_all
from bench.sim import timed_with_rss
from bench.specs import IMAGE, POOL_ROOT, PROJECT_ROOT, SMALL_VM

HOSTS = 10


def spec_over_hosts(prefix: str, uris: dict[str, str], per_host: int, subnet0: int) -> dict[str, Any]:
    hosts, vms = {}, {}
    for i, (host, uri) in enumerate(uris.items()):
        net = f"{prefix}n{i}"
        hosts[host] = {
            "uri": uri,
            "domain_type": "qemu",
            "capacity": {"vcpus": 256, "memory": "256GiB", "disk": "10TiB"},
            "pools": {prefix: {"path": str(POOL_ROOT / f"{prefix}-{host}")}},
            "networks": {net: {"mode": "isolated", "cidr": f"10.153.{subnet0 + i}.0/24", "dhcp": True}},
        }
        vms[f"{prefix}{i}"] = {
            **SMALL_VM,
            "count": per_host,
            "host": host,
            "nics": [{"network": net}],
            "running": False,
            "autostart": False,
            "cloud_init": {"users": [{"name": "ops"}]},
        }
    return {
        "hosts": hosts,
        "images": {"debian-12": {"source": str(IMAGE)}},
        "vms": vms,
        "placement": {"strategy": "spread"},
    }


def _preview_seconds(stack: PulumiStack) -> float:
    t0 = time.perf_counter()
    stack.pulumi("preview", "--expect-no-changes")
    return time.perf_counter() - t0


def _cli_plan_seconds(stack: PulumiStack, root_config) -> float | None:
    exe = PROJECT_ROOT / ".venv/bin/virtstack"
    if not exe.exists():
        return None
    shutil.copy(stack.config_file, root_config)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(exe), "plan", "--stack", stack.stack],
        cwd=PROJECT_ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    seconds = time.perf_counter() - t0
    return seconds if proc.returncode == 0 else None


def _cli_seconds(
    stack: PulumiStack, root_config: Path, *args: str, env: dict[str, str] | None = None
) -> float | None:
    exe = PROJECT_ROOT / ".venv/bin/virtstack"
    shutil.copy(stack.config_file, root_config)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(exe), *args, "--stack", stack.stack],
        cwd=PROJECT_ROOT,
        env={**stack.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    seconds = time.perf_counter() - t0
    return seconds if proc.returncode == 0 else None


def run(prefix: str, subnet0: int, repeats: int = 3) -> dict[str, Any]:
    names = [f"{prefix}h{i}" for i in range(HOSTS)]
    out: dict[str, Any] = {"hosts": HOSTS}
    uris: dict[str, str] = {}
    stack: PulumiStack | None = None
    root_config = PROJECT_ROOT / f"Pulumi.{prefix}.yaml"
    try:
        t0 = time.perf_counter()
        for name in names:
            uris[name] = start_instance(name)
        out["instances_start_seconds"] = time.perf_counter() - t0
        stack = PulumiStack(
            prefix, spec_over_hosts(prefix, uris, 2, subnet0), extra_env={"VIRTSTACK_ROOT": str(PROJECT_ROOT)}
        )
        stack.init()
        for per_host in (2, 20):
            n = per_host * HOSTS
            stack.write_spec(spec_over_hosts(prefix, uris, per_host, subnet0))
            t1 = time.perf_counter()
            if n == 200:  # peak memory of a 200-VM up, per process (engine, program, provider)
                row = timed_with_rss(
                    ["pulumi", "up", "--yes", "--skip-preview", "--stack", stack.stack, "--non-interactive",
                     "--config-file", str(stack.config_file)],
                    PROJECT_ROOT, stack.env, 1800,
                )  # fmt: skip
                if row["exit"] != 0:
                    raise RuntimeError(f"pulumi up of 200 VMs: {row.get('error')}")
                out["up_200_maxrss"] = row["maxrss"]
            else:
                stack.pulumi("up", "--yes", "--skip-preview", timeout=1800)
            out[f"up_{n}_seconds"] = time.perf_counter() - t1
            log(f"preview: {n} VMs defined over {HOSTS} hosts in {out[f'up_{n}_seconds']:.1f}s")
            times = [_preview_seconds(stack) for _ in range(repeats)]
            out[f"preview_{n}_runs"] = times
            out[f"preview_{n}_seconds"] = statistics.median(times)
            cli = _cli_plan_seconds(stack, root_config)
            if cli is not None:
                out[f"cli_plan_{n}_seconds"] = cli
            if n == 200:
                # The floor of a no-change run (bench/reader.py), then a no-change `virtstack up`.
                out["floor_read_200"] = read_all(list(uris.values()), prefix)
                out["noop_up_200_seconds"] = _cli_seconds(stack, root_config, "up", "--yes")
                # The same two with the optimisations turned back (bench/baseline.py), right after.
                before = baseline.baseline_env()
                out["cli_plan_before_200_seconds"] = _cli_seconds(stack, root_config, "plan", env=before)
                out["noop_up_before_200_seconds"] = _cli_seconds(
                    stack, root_config, "up", "--yes", env=before
                )
        out["preview_ratio_200_20"] = out["preview_200_seconds"] / out["preview_20_seconds"]
        if "cli_plan_200_seconds" in out and "cli_plan_20_seconds" in out:
            out["cli_plan_ratio_200_20"] = out["cli_plan_200_seconds"] / out["cli_plan_20_seconds"]
    except Exception as err:
        out["error"] = f"{type(err).__name__}: {str(err)[-2000:]}"
    finally:
        if stack is not None:
            stack.remove()
        if root_config.exists():
            root_config.unlink()
        cleanup(uris.values(), prefix)
        for name in names:
            purge_instance(name)
        cleanup([], prefix)  # pool directories on this machine's disk
    return out
