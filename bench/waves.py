"""Boots in waves (issue 15): time from the start of `up` until the guest agents of all N=10 real
guests answer (guest-ping through libvirt, never the network), three ways on the same daemon:

- `all_at_once`: virtstack with `boot_concurrency: 10` (every domain started at once, as before);
- `waves`: virtstack with its default (TCG on 2 cores → 2 at a time, the next as one is up);
- `script`: a hand-written libvirt-python script (bench/floor.py's objects, defined by a thread pool)
  that starts `SCRIPT_WAVE` domains at a time and the next as soon as one's agent answers — the
  best policy measured by hand for this machine (shared/notes/guest-image.md: 2 at once 37.5 s each,
  3 → 64 s, 4 → 95 s).
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.floor import Floor
from bench.harness import LOCAL_URI, PulumiStack, cleanup, destroy_domains, log, nothing_left, open_conn
from bench.ready import AGENT_TIMEOUT, wait_agent
from bench.specs import PROJECT_ROOT, fleet_spec
from virtstack.fleet import instance_names

N = 10
SCRIPT_WAVE = 2


# All at once under TCG on 2 busy cores, 10 guests took longer than bench.ready's 420 s.
ALL_READY_TIMEOUT = 1200.0


def _all_ready(names: list[str], t0: float) -> dict[str, float]:
    def one(name: str) -> float | None:
        try:
            return wait_agent(name, t0, ALL_READY_TIMEOUT)
        except RuntimeError:
            return None

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        got = dict(zip(names, pool.map(one, names), strict=True))
    answered = {n: t for n, t in got.items() if t is not None}
    if len(answered) != len(names):
        raise RuntimeError(
            f"{len(answered)} of {len(names)} guest agents answered within {ALL_READY_TIMEOUT:.0f}s"
            + (f" (the last at {max(answered.values()):.0f}s)" if answered else "")
        )
    return answered


def ready_virtstack(prefix: str, subnet: int, concurrency: int | None) -> dict[str, Any]:
    spec = fleet_spec(prefix, N, {"local": LOCAL_URI}, subnet)
    if concurrency is not None:
        spec["hosts"]["local"]["boot_concurrency"] = concurrency
    names = instance_names(prefix, N)
    stack = PulumiStack(prefix, spec, extra_env={"VIRTSTACK_ROOT": str(PROJECT_ROOT)})
    root_config = PROJECT_ROOT / f"Pulumi.{prefix}.yaml"
    try:
        stack.init()
        shutil.copy(stack.config_file, root_config)
        t0 = time.perf_counter()
        up_done: dict[str, float] = {}

        def up() -> None:
            stack.virtstack_up(timeout=1800)
            up_done["seconds"] = time.perf_counter() - t0

        upper = threading.Thread(target=up)
        upper.start()
        ready = _all_ready(names, t0)
        upper.join()
        if "seconds" not in up_done:
            raise RuntimeError("virtstack up failed")
        destroy_domains(LOCAL_URI, prefix)
        stack.pulumi("destroy", "--yes", "--skip-preview")
        return {"ready_all_seconds": max(ready.values()), "up_seconds": up_done["seconds"], "ready": ready}
    except Exception as err:
        return {"error": f"{type(err).__name__}: {str(err)[-1500:]}"}
    finally:
        left = cleanup([LOCAL_URI], prefix)
        if not nothing_left(left):
            log(f"clean-up of {prefix} left {left}")
        stack.remove()
        if root_config.exists():
            root_config.unlink()


def ready_script(prefix: str, subnet: int, wave: int = SCRIPT_WAVE) -> dict[str, Any]:
    spec = fleet_spec(prefix, N, {"local": LOCAL_URI}, subnet, running=False)
    try:
        floor = Floor(spec, prefix, workers=8)
        t0 = time.perf_counter()
        floor.up()  # everything defined, nothing started
        names = floor.names()
        conn = open_conn(LOCAL_URI)
        ready: dict[str, float] = {}
        lock = threading.Lock()
        free = threading.Semaphore(wave)

        def boot(name: str) -> None:
            try:
                t = wait_agent(name, t0, AGENT_TIMEOUT)
                with lock:
                    ready[name] = t
            finally:
                free.release()

        threads = []
        try:
            for name in names:
                free.acquire()
                conn.lookupByName(name).create()
                th = threading.Thread(target=boot, args=(name,))
                th.start()
                threads.append(th)
            for th in threads:
                th.join()
        finally:
            conn.close()
        if len(ready) != len(names):
            raise RuntimeError(f"agents answered for {len(ready)} of {len(names)}")
        return {"ready_all_seconds": max(ready.values()), "ready": ready, "wave": wave}
    except Exception as err:
        return {"error": f"{type(err).__name__}: {str(err)[-1500:]}"}
    finally:
        cleanup([LOCAL_URI], prefix)
