"""Past one machine, simulated (issue 15): `virtstack up`, `plan` and `destroy` of 2,000 VMs over 200
hosts, each host a libvirt test-driver instance (`test:///PATH/host-N.xml`: an in-memory hypervisor
of its own; accepted only with VIRTSTACK_SIMULATED_HOSTS=1). What it measures is the control plane —
the engine, the program, the provider, libvirt's API — with no disk data (the test driver stores
none: uploads are skipped) and no guest (the VMs are defined, not started).

The test driver gives every *connection* its own fresh instance: the provider keeps one connection
per host (VIRTSTACK_CONNECTIONS_PER_HOST=1), so everything one engine run creates is visible to that
run, but the next command (a new provider process) finds empty hosts. So `plan` after `up` reads 2,000
VMs' worth of objects that are not there (and plans them again) and `destroy` deletes what its
refresh no longer finds: their times are the engine's and the reads' cost at this size, not a
no-change plan's.

Memory: every 0.5 s the RSS of each process under the command is sampled from /proc; the peaks of the
engine (`pulumi`), the provider (the dynamic-provider server) and the program (the language host's
python) are reported, with the state file's size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import PulumiStack, log
from bench.specs import IMAGE, PROJECT_ROOT

HOSTS = 200
VMS = 2000
NODE_XML = """<node>
  <cpu><mhz>2000</mhz><model>sim</model><active>64</active><nodes>1</nodes><sockets>1</sockets>
    <cores>64</cores><threads>1</threads></cpu>
  <memory>{kib}</memory>
</node>
"""


def sim_spec(prefix: str, hosts_dir: Path, hosts: int = HOSTS, vms: int = VMS) -> dict[str, Any]:
    net = {"mode": "isolated", "cidr": "10.154.0.0/16", "dhcp": False}
    return {
        "hosts": {
            f"h{i:03d}": {
                "uri": f"test://{hosts_dir}/host-{i}.xml",
                "domain_type": "qemu",
                "capacity": {"vcpus": 64, "memory": "256GiB", "disk": "4TiB"},
                "pools": {prefix: {"path": f"/var/lib/virtstack/pools/{prefix}"}},
                "networks": {prefix: net},
            }
            for i in range(hosts)
        },
        "images": {"debian-12": {"source": str(IMAGE)}},
        "vms": {
            f"{prefix}-{i:04d}": {
                "image": "debian-12",
                "vcpus": 1,
                "memory": "256MiB",
                "disk": "3GiB",
                "nics": [{"network": prefix}],
                "running": False,
            }
            for i in range(vms)
        },
        "placement": {"strategy": "spread"},
    }


def _children(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _role(pid: int) -> tuple[str, int] | None:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        rss = next(
            int(line.split()[1]) * 1024
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    except (OSError, StopIteration, ValueError):
        return None
    if "provider" in cmd or "pulumi-resource" in cmd or "pulumi.dynamic" in cmd:
        return "provider", rss
    if "language" in cmd or "__main__" in cmd or "pulumi-language-python-exec" in cmd:
        return "program", rss
    if cmd.split(" ", 1)[0].endswith("pulumi"):
        return "engine", rss
    return "cli", rss


def timed_with_rss(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    peaks: dict[str, int] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in _children(proc.pid):
                found = _role(pid)
                if found:
                    peaks[found[0]] = max(peaks.get(found[0], 0), found[1])
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        done.set()
    seconds = time.perf_counter() - t0
    row: dict[str, Any] = {"seconds": seconds, "exit": proc.returncode, "maxrss": peaks}
    if proc.returncode != 0:
        row["error"] = (out + err)[-2000:]
    return row


def run(prefix: str, hosts: int = HOSTS, vms: int = VMS) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vsb-sim-"))
    hosts_dir = tmp / "hosts"
    hosts_dir.mkdir()
    for i in range(hosts):
        (hosts_dir / f"host-{i}.xml").write_text(NODE_XML.format(kib=256 * 1024 * 1024))
    extra = {
        "VIRTSTACK_ROOT": str(PROJECT_ROOT),
        "VIRTSTACK_SIMULATED_HOSTS": "1",
        "VIRTSTACK_CONNECTIONS_PER_HOST": "1",
    }
    stack = PulumiStack(prefix, sim_spec(prefix, hosts_dir, hosts, vms), extra_env=extra)
    root_config = PROJECT_ROOT / f"Pulumi.{prefix}.yaml"
    out: dict[str, Any] = {"hosts": hosts, "vms": vms}
    exe = str(PROJECT_ROOT / ".venv/bin/virtstack")
    try:
        stack.init()
        shutil.copy(stack.config_file, root_config)
        for name, args in (
            ("up", ["up", "--yes"]),
            ("plan", ["plan"]),
            ("destroy", ["destroy", "--yes", "--allow-data-loss", "--no-trash"]),
        ):
            row = timed_with_rss([exe, *args, "--stack", prefix], PROJECT_ROOT, stack.env, 3600)
            out[name] = row
            log(
                f"sim {vms} VMs / {hosts} hosts: {name} {row['seconds']:.1f}s exit {row['exit']} "
                f"rss {row['maxrss']}"
            )
            if name == "up":
                states = list((stack.workdir / "state").rglob(f"{prefix}.json*"))
                out["state_bytes"] = max((f.stat().st_size for f in states), default=None)
            if row["exit"] not in (0, 2):  # plan may say "changes" with 2 only when asked to
                out["error"] = f"{name}: {row.get('error', '')}"
                break
        return out
    finally:
        stack.remove()
        if root_config.exists():
            root_config.unlink()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import json
    import sys

    from bench.harness import new_prefix

    n_hosts, n_vms = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (HOSTS, VMS)
    print(json.dumps(run(new_prefix("s"), n_hosts, n_vms), indent=1))
