"""The ways a fleet is brought up in the provisioning benchmark, each timed the same way.

- `virtstack`: the `virtstack up --yes` command (refreshing preview + plan, then `up --plan`), with
  its own defaults (PULUMI_PARALLEL unset).
- `engine`: `pulumi up --yes --skip-preview` on the project (what the CLI's apply step runs), at the
  CLI's parallelism, with the bench trace hook on, for the breakdown.
- `virtstack-before`: `virtstack` on a copy of the project with the provisioning optimisation
  turned back (see baseline.py).
- `floor`: the hand-written libvirt-python script (floor.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt

from bench.floor import Floor
from bench.harness import LOCAL_URI, PulumiStack, cleanup, destroy_domains, inventory, log, nothing_left
from bench.specs import PROJECT_ROOT
from virtstack.fleet import instance_names

TRACE_DIR = Path(__file__).resolve().parent / "trace"


def cli_available() -> bool:
    exe = PROJECT_ROOT / ".venv/bin/virtstack"
    if not exe.exists():
        return False
    proc = subprocess.run([str(exe), "up", "--help"], capture_output=True, text=True, timeout=60)
    return proc.returncode == 0 and "--yes" in proc.stdout


class RunningWatcher:
    """Polls libvirt (every 0.2 s) for the moment every expected domain is running."""

    def __init__(self, uri: str, names: list[str]) -> None:
        self.uri, self.names = uri, set(names)
        self.t_all: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RunningWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = libvirt.open(self.uri)
                running = {
                    d.name()
                    for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING)
                    if d.name() in self.names
                }
            except libvirt.libvirtError:  # the daemon restarted under us: reconnect
                conn = None
                self._stop.wait(0.2)
                continue
            if running >= self.names:
                self.t_all = time.perf_counter()
                break
            self._stop.wait(0.2)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class Outcome:
    variant: str
    n: int
    seconds: float | None  # wall time of the command (or script); None when it failed
    all_running_seconds: float | None  # from start until libvirt reported every domain running
    teardown_seconds: float | None = None
    left: dict[str, Any] = field(default_factory=dict)
    breakdown: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _vm_names(prefix: str, n: int) -> list[str]:
    # The stack's own naming (the first VM keeps the group's name): a name that never appears left the
    # watcher waiting its full minute after every run and the "all running" figure empty.
    return instance_names(prefix, n)


def run_floor(prefix: str, spec: dict[str, Any], n: int, workers: int = 8) -> Outcome:
    names = _vm_names(prefix, n)
    try:
        floor = Floor(spec, prefix, workers=workers)
        watcher = RunningWatcher(LOCAL_URI, names).start()
        t0 = time.perf_counter()
        phases = floor.up()
        seconds = time.perf_counter() - t0
        watcher_deadline = time.perf_counter() + 60
        while watcher.t_all is None and time.perf_counter() < watcher_deadline:
            time.sleep(0.05)
        watcher.stop()
        destroy_domains(LOCAL_URI, prefix)
        all_running = (watcher.t_all - t0) if watcher.t_all else None
        t1 = time.perf_counter()
        left = cleanup([LOCAL_URI], prefix)
        return Outcome("floor", n, seconds, all_running, time.perf_counter() - t1, left, phases)
    except Exception as err:  # a failed run is reported, and cleaned up
        cleanup([LOCAL_URI], prefix)
        return Outcome("floor", n, None, None, error=f"{type(err).__name__}: {err}")


def run_pulumi(
    variant: str,
    prefix: str,
    spec: dict[str, Any],
    n: int,
    project: Path = PROJECT_ROOT,
    use_cli: bool = False,
    env: dict[str, str] | None = None,
) -> Outcome:
    """`virtstack up --yes` (use_cli) or `pulumi up --yes --skip-preview` from an empty stack."""
    names = _vm_names(prefix, n)
    trace = Path(f"/tmp/{prefix}-trace.jsonl")
    stack = PulumiStack(
        prefix,
        spec,
        project=project,
        extra_env={
            "PYTHONPATH": str(TRACE_DIR),
            "VSB_TRACE": str(trace),
            "VIRTSTACK_ROOT": str(project),
            **(env or {}),
        },
    )
    root_config = project / f"Pulumi.{prefix}.yaml"
    try:
        stack.init()
        if use_cli:
            shutil.copy(stack.config_file, root_config)  # the CLI reads the stack's config from the project
        watcher = RunningWatcher(LOCAL_URI, names).start()
        start = time.time()
        t0 = time.perf_counter()
        if use_cli:
            stack.virtstack_up()
        else:
            stack.pulumi("up", "--yes", "--skip-preview")
        seconds = time.perf_counter() - t0
        end = time.time()
        deadline = time.perf_counter() + 60
        while watcher.t_all is None and time.perf_counter() < deadline:
            time.sleep(0.05)
        watcher.stop()
        destroy_domains(LOCAL_URI, prefix)  # don't let 25 TCG guests boot on while we tear down
        all_running = (watcher.t_all - t0) if watcher.t_all else None
        breakdown = breakdown_from_trace(trace, start, end) if trace.exists() else {}
        t1 = time.perf_counter()
        stack.pulumi("destroy", "--yes", "--skip-preview")
        teardown = time.perf_counter() - t1
        left = {LOCAL_URI: inventory(LOCAL_URI, prefix)}
        return Outcome(variant, n, seconds, all_running, teardown, left, breakdown)
    except Exception as err:
        return Outcome(variant, n, None, None, error=f"{type(err).__name__}: {str(err)[-1500:]}")
    finally:
        try:
            leftover = cleanup([LOCAL_URI], prefix)
            if not nothing_left(leftover):
                log(f"clean-up of {prefix} left {leftover}")
        finally:
            stack.remove()
            if root_config.exists():
                root_config.unlink()
            trace.unlink(missing_ok=True)


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted(
        [(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1])
    )
    best = cur = 0
    for _, step in edges:
        cur += step
        best = max(best, cur)
    return best


def breakdown_from_trace(path: Path, start: float, end: float) -> dict[str, float]:
    """Where the wall time of one `pulumi up` went, from the trace hook's records:

    engine_startup   command start → the Python program's interpreter starts (CLI, backend, language host)
    program          → the first provider operation (imports, stack file, placement, resource graph,
                       provider process start)
    provider_ops     wall time during which at least one provider operation ran
      libvirt          … of which at least one was inside libvirt calls / local tools (qemu-img, ISO)
    engine_tail      last operation's end → command end (outputs, checkpoint, shutdown)
    ops_cpu_sum      sum of operation durations (how much concurrency bought: ops_cpu_sum / provider_ops)
    max_concurrent_ops  most provider operations in flight at once (the provider's thread bound shows here)
    """
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    starts = [r for r in records if r["ev"] == "start"]
    ops = [r for r in records if r["ev"] == "op" and start <= r["t0"] <= end and r["op"] != "diff"]
    programs = sorted(r["t"] for r in starts if r["role"] == "program")
    if not ops or not programs:
        return {}
    # `virtstack up` runs the program twice: the refreshing preview, then the apply. The apply's
    # program is the last one started before the first create.
    first_create = min(r["t0"] for r in ops)
    program = max((t for t in programs if t <= first_create), default=programs[0])
    preview_phase = {"cli_preview_phase": program - start} if len(programs) > 1 else {}
    first_op = min(r["t0"] for r in ops)
    last_op = max(r["t1"] for r in ops)
    intervals = [(r["t0"], r["t1"]) for r in ops]
    # libvirt time per op is a duration, placed at the op's end (with_connection is its last part).
    lv_intervals = [(r["t1"] - r["lv"], r["t1"]) for r in ops]
    by_kind: dict[str, float] = {}
    for r in ops:
        key = f"{r['cls'].removesuffix('Provider').lower()}_{r['op']}_sum"
        by_kind[key] = by_kind.get(key, 0.0) + (r["t1"] - r["t0"])
    startup = {} if preview_phase else {"engine_startup": program - start}
    return {
        **preview_phase,
        **startup,
        "program": first_op - program,
        "provider_ops": _union(intervals),
        "libvirt": _union(lv_intervals),
        "engine_tail": end - last_op,
        "ops_cpu_sum": sum(b - a for a, b in intervals),
        "max_concurrent_ops": float(_max_overlap(intervals)),
        "ops": float(len(ops)),
        **{k: round(v, 3) for k, v in sorted(by_kind.items())},
    }


def env_for_project(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["VIRTSTACK_ROOT"] = str(project)
    return env
