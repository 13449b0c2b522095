"""Past one machine, simulated (issue 15): `virtstack up`, a no-change `plan` and `destroy` of 2,000 VMs over
200 hosts, each host a libvirt test-driver instance (`test:///PATH/host-N.xml`: an in-memory hypervisor
of its own; accepted only with VIRTSTACK_SIMULATED_HOSTS=1). What it measures is the control plane —
the engine, the program, the provider, libvirt's API — with no disk data (the test driver stores
none: uploads are skipped) and no guest (the VMs are defined, not started).

The hosts persist (virtstack/provider/simhosts.py): after each provider operation a host's objects are
written back to its file, so the next command's provider finds what the previous one made — the
`plan` after `up` is a real no-change plan (checked: `--detailed-exitcode` must say 0) and `destroy`
deletes every object (checked: no domain is left in any host file).

Two measurements (docs/scale.md reads them):
- `fleet`: the 2,000 VMs the way a fleet should be run — split into per-rack stacks (20 stacks of 10
  hosts and 100 VMs) on one shared backend; each phase (`up`, `plan`, `destroy`) runs over all stacks,
  sequentially or a few stacks at once; the phase's wall time is the figure.
- `sweep`: where ONE stack bends — `up` of a single stack at a few sizes (time per size, growth ratio),
  bounded by a timeout per size, and one size again with PULUMI_SKIP_CHECKPOINTS=true (how much of the
  time is the DIY backend's whole-state checkpoint after every step).

Memory: every 0.5 s the RSS of each process under the command is sampled from /proc; the peaks of the
engine (`pulumi`), the provider (the dynamic-provider server) and the program (the language host's
python) are reported, with the state file's size.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import PulumiStack, log, start_group
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


def _stop(proc: subprocess.Popen[str]) -> None:
    """End the command we started and everything under it (its own session): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def timed_with_rss(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    peaks: dict[str, int] = {}
    t0 = time.perf_counter()
    proc = start_group(cmd, cwd, env)
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
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise
    finally:
        done.set()
    seconds = time.perf_counter() - t0
    row: dict[str, Any] = {"seconds": seconds, "exit": proc.returncode, "maxrss": peaks}
    if proc.returncode != 0:
        row["error"] = (out + err)[-2000:]
    return row


SIM_ENV = {
    "VIRTSTACK_ROOT": str(PROJECT_ROOT),
    "VIRTSTACK_SIMULATED_HOSTS": "1",
    "VIRTSTACK_CONNECTIONS_PER_HOST": "1",
}
EXE = str(PROJECT_ROOT / ".venv/bin/virtstack")
COMMANDS = {
    "up": ["up", "--yes"],
    "plan": ["plan", "--detailed-exitcode"],
    "destroy": ["destroy", "--yes", "--allow-data-loss", "--no-trash"],
}


class Rack:
    """One stack with its own simulated hosts (files under `root/name/`), on `backend` when given."""

    def __init__(
        self, name: str, root: Path, hosts: int, vms: int, backend: Path | None, env: dict[str, str]
    ) -> None:
        self.name, self.hosts, self.vms = name, hosts, vms
        self.hosts_dir = root / name
        self.hosts_dir.mkdir(parents=True)
        for i in range(hosts):
            (self.hosts_dir / f"host-{i}.xml").write_text(NODE_XML.format(kib=256 * 1024 * 1024))
        extra = dict(SIM_ENV, **env)
        if backend is not None:
            extra["PULUMI_BACKEND_URL"] = f"file://{backend}"
        self.stack = PulumiStack(name, sim_spec(name, self.hosts_dir, hosts, vms), extra_env=extra)
        self.root_config = PROJECT_ROOT / f"Pulumi.{name}.yaml"

    def init(self) -> None:
        self.stack.init()
        shutil.copy(self.stack.config_file, self.root_config)

    def command(self, name: str, timeout: float) -> dict[str, Any]:
        try:
            return timed_with_rss(
                [EXE, *COMMANDS[name], "--stack", self.name], PROJECT_ROOT, self.stack.env, timeout
            )
        except subprocess.TimeoutExpired:
            return {
                "seconds": timeout,
                "exit": None,
                "maxrss": {},
                "error": f"{name}: not finished after {timeout:.0f}s",
            }

    def state_bytes(self) -> int | None:
        backend = self.stack.env["PULUMI_BACKEND_URL"].removeprefix("file://")
        files = [f for f in Path(backend).rglob(f"{self.name}.json") if ".history" not in f.parts]
        return max((f.stat().st_size for f in files), default=None)

    def domains_defined(self) -> int:
        return sum(f.read_text().count("<domain ") for f in self.hosts_dir.glob("host-*.xml"))

    def remove(self) -> None:
        self.stack.remove()
        if self.root_config.exists():
            self.root_config.unlink()


def _peaks(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        for role, value in row.get("maxrss", {}).items():
            out[role] = max(out.get(role, 0), value)
    return out


def fleet(
    prefix: str, stacks: int = 20, hosts: int = 10, vms: int = 100, concurrency: int = 2, timeout: float = 900
) -> dict[str, Any]:
    """`stacks` rack stacks of `hosts` hosts and `vms` VMs on one shared backend: each phase over all
    of them with `concurrency` stacks at once; per phase its wall time, peaks and per-stack rows."""
    tmp = Path(tempfile.mkdtemp(prefix="vsb-simfleet-"))
    backend = tmp / "backend"
    backend.mkdir()
    racks = [Rack(f"{prefix}r{i:02d}", tmp / "hosts", hosts, vms, backend, {}) for i in range(stacks)]
    out: dict[str, Any] = {
        "stacks": stacks,
        "hosts": stacks * hosts,
        "vms": stacks * vms,
        "concurrency": concurrency,
    }
    try:
        for rack in racks:
            rack.init()
        for phase in COMMANDS:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                rows = list(pool.map(Rack.command, racks, [phase] * len(racks), [timeout] * len(racks)))
            row = {"seconds": time.perf_counter() - t0, "maxrss": _peaks(rows), "stacks": rows}
            out[phase] = row
            failed = [
                f"{r.name}: {x.get('error', '')[-600:]}"
                for r, x in zip(racks, rows, strict=True)
                if x["exit"] != 0
            ]
            if phase == "up":
                sizes = [r.state_bytes() or 0 for r in racks]
                out["state_bytes_per_stack"] = max(sizes)
                out["state_bytes_total"] = sum(sizes)
                out["domains_after_up"] = sum(r.domains_defined() for r in racks)
            if phase == "plan":
                # --detailed-exitcode: 0 no changes, 2 changes — a no-change plan must say 0.
                out["plan_changes_stacks"] = sum(1 for x in rows if x["exit"] == 2)
            if phase == "destroy":
                out["domains_after_destroy"] = sum(r.domains_defined() for r in racks)
            log(
                f"sim fleet {stacks}x{vms} VMs (x{concurrency}): {phase} {row['seconds']:.1f}s "
                f"peaks {row['maxrss']} failed {len(failed)}"
            )
            if failed:
                out["error"] = f"{phase}: " + " | ".join(failed)[:3000]
                break
        return out
    finally:
        for rack in racks:
            rack.remove()
        shutil.rmtree(tmp, ignore_errors=True)


def single_up(prefix: str, vms: int, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`up` of one stack of `vms` VMs over vms/10 hosts (own backend); bounded by `timeout`."""
    tmp = Path(tempfile.mkdtemp(prefix="vsb-simone-"))
    rack = Rack(prefix, tmp, max(1, vms // 10), vms, None, env or {})
    try:
        rack.init()
        row = rack.command("up", timeout)
        row["vms"], row["hosts"] = vms, rack.hosts
        if row["exit"] == 0:
            row["state_bytes"] = rack.state_bytes()
        log(
            f"sim one stack {vms} VMs {env or ''}: up {row['seconds']:.1f}s exit {row['exit']} "
            f"rss {row['maxrss']}"
        )
        return row
    finally:
        rack.remove()
        shutil.rmtree(tmp, ignore_errors=True)


def sweep(
    prefix: str, sizes: tuple[int, ...] = (100, 200, 400), timeout: float = 300, skip_at: int = 200
) -> dict[str, Any]:
    """Where one stack bends: `up` at each size (stops at the first that does not finish), and
    `up` at `skip_at` with PULUMI_SKIP_CHECKPOINTS=true."""
    out: dict[str, Any] = {"sizes": {}}
    for vms in sizes:
        row = single_up(f"{prefix}n{vms}", vms, timeout)
        out["sizes"][vms] = row
        if row["exit"] != 0:
            break
    out["skip_checkpoints"] = single_up(
        f"{prefix}k{skip_at}", skip_at, timeout, {"PULUMI_SKIP_CHECKPOINTS": "true"}
    )
    return out


if __name__ == "__main__":
    import json
    import sys

    from bench.harness import new_prefix

    what = sys.argv[1] if len(sys.argv) > 1 else "fleet"
    args = [int(a) for a in sys.argv[2:]]
    if what == "fleet":  # python -m bench.sim fleet STACKS HOSTS VMS CONCURRENCY
        result = fleet(new_prefix("s"), *args)
    elif what == "one":  # python -m bench.sim one VMS [TIMEOUT]
        result = single_up(new_prefix("s"), args[0], float(args[1]) if len(args) > 1 else 900)
    else:  # python -m bench.sim sweep SIZE...
        result = sweep(new_prefix("s"), tuple(args) or (100, 200, 400))
    print(json.dumps(result, indent=1))
