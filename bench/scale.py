"""Pure-Python scale: load + validate + place a stack of N VMs over H hosts, in a fresh process.

    python -m bench.scale N H [--tracemalloc]   → one JSON line on stdout

Timed: virtstack.spec.loader.load_stack (YAML, schema, cross-validation) + virtstack.placement.place_fleet
(expansion, placement, MAC checks), after the imports. Memory: the process's peak RSS
(ru_maxrss, interpreter and imports included) and, with --tracemalloc (a separate run, since tracing
slows Python down), the peak of Python allocations during load + plan.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    n, h = int(sys.argv[1]), int(sys.argv[2])
    group = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 1
    trace = "--tracemalloc" in sys.argv
    t_start = time.perf_counter()
    import yaml

    from bench.specs import scale_spec
    from virtstack.cli.validate import collector_paused
    from virtstack.placement import place_fleet
    from virtstack.spec.loader import load_stack

    t_imported = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vsb-scale-") as tmp:
        path = Path(tmp) / "stack.yaml"
        path.write_text(yaml.safe_dump(scale_spec(n, h, group), sort_keys=False))
        size = path.stat().st_size
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if trace:
            import tracemalloc

            tracemalloc.start()
        # As `virtstack validate` runs it: the collector paused at the command's edge.
        with collector_paused():
            t0 = time.perf_counter()
            stack = load_stack(path)
            t1 = time.perf_counter()
            fleet_plan = place_fleet(stack.spec, str(path), fleet=stack.fleet)
            t2 = time.perf_counter()
        peak = None
        if trace:
            import tracemalloc

            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    placed = len(fleet_plan.placement.assignments)
    assert placed == n, f"placed {placed} of {n}"
    print(
        json.dumps(
            {
                "vms": n,
                "hosts": h,
                "group": group,
                "file_bytes": size,
                "import_seconds": t_imported - t_start,
                "load_seconds": t1 - t0,
                "plan_seconds": t2 - t1,
                "seconds": t2 - t0,
                "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "maxrss_before_bytes": rss_before * 1024,
                "tracemalloc_peak_bytes": peak,
            }
        )
    )


if __name__ == "__main__":
    main()
