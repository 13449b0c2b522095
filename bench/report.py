"""bench/results.json (every figure under a stable key, plus every run) and bench/RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIMES = "\u00d7"  # the multiplication sign of ratios

# (key, label, unit) in table order; a key missing from a run is shown as "—".
SUMMARY = [
    ("setup_cold_seconds", "`make up`'s setup, fresh clone, empty caches  (target: make up ≤ 300)", "s"),
    ("setup_warm_seconds", "`make setup`, everything cached (warm)", "s"),
    ("ready_all_n10_seconds_all_at_once", "10 real guests, up start → all agents answer: all at once", "s"),
    ("ready_all_n10_seconds_waves", "… started in waves (boot_concurrency default: 2 here)", "s"),
    ("ready_all_n10_seconds_script", "… hand-written script, waves of 2", "s"),
    ("ready_all_n10_ratio_waves_best", "waves ÷ the best of the others  (target ≤ 1.1)", TIMES),
    ("ready_all_n10_ratio_waves_all_at_once", "waves ÷ all at once", TIMES),
    (
        "ready_n10_agents_answered_by_420s_all_at_once",
        "10 real guests: agents answered 420 s after up began, all at once",
        "",
    ),
    ("ready_n10_agents_answered_by_420s_waves", "… in waves", ""),
    ("validate_cli_10k_seconds_main_now", "`virtstack validate -f` 10k, main (A/B, same minutes)", "s"),
    ("validate_cli_10k_seconds_merged", "… this branch merged with that main (A/B)", "s"),
    ("validate_cli_10k_cpu_seconds_merged", "… its CPU time (user+sys)", "s"),
    ("sim_one_stack_up_50_seconds", "simulated, ONE stack: `virtstack up` 50 VMs / 5 test-driver hosts", "s"),
    ("sim_one_stack_up_100_seconds", "… 100 VMs / 10 hosts", "s"),
    ("sim_one_stack_up_200_seconds", "… 200 VMs / 20 hosts", "s"),
    ("sim_one_stack_up_200_unfinished_after_seconds", "… 200 VMs: not finished after", "s"),
    ("sim_one_stack_up_50_seconds_per_vm", "… per VM at 50", "s"),
    ("sim_one_stack_up_100_seconds_per_vm", "… per VM at 100", "s"),
    ("sim_one_stack_up_200_seconds_per_vm", "… per VM at 200", "s"),
    ("sim_one_stack_growth_ratio_200_100", "… time 200 VMs ÷ 100 VMs (2.0 = linear)", TIMES),
    ("sim_one_stack_up_100_seconds_skip_checkpoints", "… 100 VMs with PULUMI_SKIP_CHECKPOINTS=true", "s"),
    (
        "sim_one_stack_checkpoint_share_100",
        "… share of up's time that is the state checkpoints (100 VMs)",
        "",
    ),
    ("sim_one_stack_up_200_engine_maxrss_bytes", "… peak RSS of the engine at 200 VMs", "MiB"),
    ("sim_one_stack_state_200_bytes", "… state file at 200 VMs", "MiB"),
    ("sim_up_2000_seconds", "simulated fleet 2,000 VMs / 200 hosts in 20 rack stacks: `virtstack up`", "s"),
    ("sim_plan_2000_seconds", "… no-change `virtstack plan` of every stack", "s"),
    ("sim_plan_2000_stacks_with_changes", "… stacks whose plan reports changes (must be 0)", ""),
    ("sim_destroy_2000_seconds", "… `virtstack destroy` of every stack", "s"),
    ("sim_destroy_2000_domains_left", "… domains left on the hosts after destroy (must be 0)", ""),
    ("sim_up_2000_maxrss_bytes", "… up: peak RSS, largest process of any stack", "MiB"),
    ("sim_up_2000_engine_maxrss_bytes", "… up: peak RSS of the engine (pulumi)", "MiB"),
    ("sim_up_2000_provider_maxrss_bytes", "… up: peak RSS of the provider", "MiB"),
    ("sim_up_2000_program_maxrss_bytes", "… up: peak RSS of the program", "MiB"),
    ("sim_state_2000_bytes_per_stack", "… state file per stack (largest)", "MiB"),
    ("sim_state_2000_bytes_total", "… state files of all stacks", "MiB"),
    ("sim_fleet_concurrency", "… stacks run at once", ""),
    ("up_virtstack_n10_seconds", "up, N=10: virtstack", "s"),
    ("up_floor_n10_seconds", "up, N=10: floor (libvirt-python, thread pool)", "s"),
    ("up_floor_ratio_n10", "up, N=10: virtstack ÷ floor  (target ≤ 1.3)", TIMES),
    ("up_virtstack_n25_seconds", "up, N=25: virtstack", "s"),
    ("up_floor_n25_seconds", "up, N=25: floor", "s"),
    ("up_floor_ratio_n25", "up, N=25: virtstack ÷ floor  (target ≤ 1.2)", TIMES),
    ("up_virtstack_before_n10_seconds", "up, N=10: virtstack before the optimisation", "s"),
    ("up_floor_ratio_before_n10", "up, N=10: before ÷ floor", TIMES),
    ("up_virtstack_before_n25_seconds", "up, N=25: virtstack before the optimisation", "s"),
    ("up_floor_ratio_before_n25", "up, N=25: before ÷ floor", TIMES),
    ("up_engine_n10_seconds", "up, N=10: `pulumi up --skip-preview` alone (same parallelism)", "s"),
    ("up_engine_floor_ratio_n10", "up, N=10: pulumi up ÷ floor", TIMES),
    ("up_engine_n25_seconds", "up, N=25: `pulumi up --skip-preview` alone (same parallelism)", "s"),
    ("up_engine_floor_ratio_n25", "up, N=25: pulumi up ÷ floor", TIMES),
    ("up_backend_native_n10_seconds", "up, N=10: host with backend native", "s"),
    ("up_backend_pulumi_libvirt_n10_seconds", "up, N=10: host with backend pulumi-libvirt", "s"),
    ("up_backend_ratio_pulumi_libvirt_native_n10", "up, N=10: pulumi-libvirt ÷ native", TIMES),
    ("ready_virtstack_seconds", "1 VM, up start → guest agent answers: virtstack", "s"),
    ("ready_bare_seconds", "1 VM, start → guest agent answers: defined by hand", "s"),
    ("ready_ratio", "time to ready: virtstack ÷ bare", TIMES),
    ("preview_20_seconds", "no-change `pulumi preview`, 20 VMs over 10 hosts", "s"),
    ("preview_200_seconds", "no-change `pulumi preview`, 200 VMs over 10 hosts", "s"),
    ("preview_ratio_200_20", "preview 200 ÷ 20  (target ≤ 10)", TIMES),
    ("cli_plan_20_seconds", "`virtstack plan` (refreshing), 20 VMs", "s"),
    ("cli_plan_200_seconds", "`virtstack plan` (refreshing), 200 VMs", "s"),
    ("cli_plan_ratio_200_20", "`virtstack plan` 200 ÷ 20", TIMES),
    ("floor_read_200_seconds", "libvirt-python reads the same 200 VMs' objects in parallel (floor)", "s"),
    ("plan_floor_ratio_200", "`virtstack plan` 200 ÷ that floor  (target ≤ 3)", TIMES),
    ("noop_up_200_seconds", "no-change `virtstack up`, 200 VMs over 10 hosts", "s"),
    ("noop_up_floor_ratio_200", "no-change up 200 ÷ the floor  (target ≤ 3)", TIMES),
    ("plan_floor_ratio_before_200", "`virtstack plan` 200 ÷ the floor, before (baseline.py)", TIMES),
    ("noop_up_floor_ratio_before_200", "no-change up 200 ÷ the floor, before (baseline.py)", TIMES),
    ("up_200_maxrss_bytes", "peak RSS of a 200-VM `pulumi up`, largest process", "MiB"),
    ("up_200_engine_maxrss_bytes", "… the engine (pulumi)", "MiB"),
    ("up_200_provider_maxrss_bytes", "… the provider", "MiB"),
    ("up_200_program_maxrss_bytes", "… the program", "MiB"),
    ("validate_1k_seconds", "load+validate+place 1,000 VMs / 500 hosts (one entry per VM)", "s"),
    (
        "validate_10k_seconds",
        "load+validate+place 10,000 VMs / 500 hosts (one entry per VM)  (target < 1)",
        "s",
    ),
    ("validate_1k_grouped_seconds", "… 1,000 VMs, 20 VMs per entry (count: 20)", "s"),
    ("validate_10k_grouped_seconds", "… 10,000 VMs, 20 VMs per entry (count: 20)", "s"),
    ("validate_10k_maxrss_bytes", "peak RSS, 10,000 VMs one entry per VM (whole process)", "MiB"),
    ("validate_10k_grouped_tracemalloc_peak_bytes", "peak Python allocations, 10,000 VMs grouped", "MiB"),
    ("validate_1k_tracemalloc_peak_bytes", "peak Python allocations, 1,000 VMs one entry per VM", "MiB"),
    ("validate_cli_10k_seconds", "`virtstack validate -f`, 10,000 VMs one entry per VM (whole command)", "s"),
    ("validate_cli_10k_grouped_seconds", "`virtstack validate -f`, 10,000 VMs grouped (whole command)", "s"),
    ("peer_tofu_n10_seconds", "OpenTofu + terraform-provider-libvirt, N=10 (`tofu apply`)", "s"),
    ("peer_ratio_tofu_n10", "virtstack ÷ OpenTofu, N=10", TIMES),
    ("peer_tofu_n25_seconds", "OpenTofu + terraform-provider-libvirt, N=25", "s"),
    ("peer_ratio_tofu_n25", "virtstack ÷ OpenTofu, N=25", TIMES),
    ("peer_kcli_n10_seconds", "kcli `create plan --threaded`, N=10", "s"),
    ("peer_ratio_kcli_n10", "virtstack ÷ kcli, N=10", TIMES),
    ("peer_kcli_n25_seconds", "kcli `create plan --threaded`, N=25", "s"),
    ("peer_ratio_kcli_n25", "virtstack ÷ kcli, N=25", TIMES),
    ("peer_kcli_sequential_n25_seconds", "kcli `create plan` (sequential; --threaded failed), N=25", "s"),
    ("peer_ratio_kcli_sequential_n25", "virtstack ÷ kcli sequential, N=25", TIMES),
    ("peer_kcli_sequential_n10_seconds", "kcli `create plan` (sequential; --threaded failed), N=10", "s"),
    ("peer_ratio_kcli_sequential_n10", "virtstack ÷ kcli sequential, N=10", TIMES),
]


# Issue 15's targets: (key, limit, the limit in words). Met when the figure is at most the limit.
TARGETS = [
    ("up_floor_ratio_n10", 1.3, f"≤ 1.3{TIMES} the floor"),
    ("up_floor_ratio_n25", 1.2, f"≤ 1.2{TIMES} the floor"),
    ("noop_up_floor_ratio_200", 3.0, f"≤ 3{TIMES} the parallel reader"),
    ("plan_floor_ratio_200", 3.0, f"≤ 3{TIMES} the parallel reader"),
    ("ready_all_n10_ratio_waves_best", 1.1, f"≤ 1.1{TIMES} the best other way"),
    ("setup_cold_seconds", 300.0, "make up ≤ 300 s (its setup alone here)"),
    ("validate_cli_10k_seconds", 1.0, "< 1 s"),
]


def _evidence(key: str, figs: dict[str, Any]) -> str:
    """What the same run measured about why a target's figure is what it is."""
    g = figs.get
    if key.startswith("up_floor_ratio_n"):
        n = key.removeprefix("up_floor_ratio_n")
        floor, engine = g(f"up_floor_n{n}_seconds"), g(f"up_engine_n{n}_seconds")
        bd = g(f"up_virtstack_n{n}_breakdown") or {}
        if not floor or engine is None:
            return "not measured"
        limit = dict((k, v) for k, v, _ in TARGETS)[key]
        return (
            f"budget over the floor {floor * (limit - 1):.2f} s; `pulumi up --skip-preview` alone "
            f"{engine:.2f} s = {engine / floor:.2f}{TIMES} the floor; on top of it the CLI's refreshing "
            f"preview and saved plan {_s(bd.get('cli_preview_phase'))} s and, after the engine's last "
            f"operation, {_s(bd.get('engine_tail'))} s (outputs and the VM check, which watches each "
            "VM 3 s from its start for a guest QEMU pauses)"
        )
    if key in ("noop_up_floor_ratio_200", "plan_floor_ratio_200"):
        return (
            f"floor (parallel libvirt-python reads) {_s(g('floor_read_200_seconds'))} s; a bare "
            f"no-change `pulumi preview` of the same stack {_s(g('preview_200_seconds'))} s; before the "
            "fixed-cost cuts "
            f"{_fmt(g(key.replace('_200', '_before_200')), TIMES)}"
        )
    if key == "ready_all_n10_ratio_waves_best":
        return (
            f"waves {_s(g('ready_all_n10_seconds_waves'))} s, all at once "
            f"{_s(g('ready_all_n10_seconds_all_at_once'))} s, hand-written script "
            f"{_s(g('ready_all_n10_seconds_script'))} s"
        )
    if key == "setup_cold_seconds":
        steps = g("setup_cold_steps") or {}
        return "steps (in parallel): " + ", ".join(f"{k} {_s(v)} s" for k, v in sorted(steps.items()))
    if key == "validate_cli_10k_seconds":
        return (
            f"in-process load+validate+place of the same size {_s(g('validate_10k_seconds'))} s "
            f"(the rest is the interpreter, imports and output)"
        )
    return ""


def targets(figs: dict[str, Any]) -> list[list[str]]:
    """One row per target: figure, target, met (yes / NO / not measured), the run's evidence."""
    rows = []
    for key, limit, words in TARGETS:
        value = figs.get(key)
        unit = TIMES if "ratio" in key else "s"
        met = "not measured" if value is None else ("yes" if value <= limit else "NO")
        rows.append([f"`{key}`", _fmt(value, unit), words, met, _evidence(key, figs)])
    return rows


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "MiB":
        return f"{value / 2**20:.0f} MiB"
    if unit == TIMES:
        return f"{value:.2f}{TIMES}"
    if isinstance(value, float):
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    return str(value)


def table(res: dict[str, Any]) -> str:
    figs = res["figures"]
    rows = [(label, _fmt(figs.get(key), unit)) for key, label, unit in SUMMARY if key in figs]
    width = max((len(r[0]) for r in rows), default=10)
    lines = [f"{'figure':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    if res.get("failures"):
        lines.append("")
        lines.append(f"{len(res['failures'])} failure(s): see bench/RESULTS.md")
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _s(v: Any) -> str:
    return "—" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def markdown(res: dict[str, Any]) -> str:
    figs, m = res["figures"], res["machine"]
    status = "complete" if res.get("total_seconds") else "in progress: " + ", ".join(res["sections"])
    if res.get("partial_note"):  # sections run on their own, not one complete `make bench`
        status = "parts: " + ", ".join(res["sections"])
    parts = [
        "# virtstack benchmarks",
        "",
        f"Written by `make bench` ({status}) on {res['date']}"
        + (f"; the run took {res['total_seconds'] / 60:.1f} min." if res.get("total_seconds") else "."),
        (
            "Every figure below was measured on this machine that morning (see the note)"
            if res.get("partial_note")
            else "Every figure below was measured in this run"
        )
        + "; ratios are virtstack ÷ the other side (lower is better"
        " for virtstack). Figures with several runs are medians; every run is listed further down and in"
        " `results.json`.",
        "",
        *([res["partial_note"], ""] if res.get("partial_note") else []),
        "## Machine",
        "",
        _md_table(["", ""], [[k, str(v)] for k, v in m.items()]),
        "",
        "## Issue 15's targets",
        "",
        _md_table(["figure", "value", "target", "met", "measured in this run about it"], targets(figs)),
        "",
        "## Figures",
        "",
        _md_table(
            ["figure", "value", "key in results.json"],
            [[label, _fmt(figs.get(key), unit), f"`{key}`"] for key, label, unit in SUMMARY if key in figs],
        ),
        "",
    ]
    prov = res["runs"].get("provisioning")
    if prov:
        parts += [
            "## Provisioning floor: every run",
            "",
            "N small VMs (the built image, 256 MiB, one vCPU, CoW root disk on one base volume, cloud-init"
            " seed ISO, one NIC on an isolated network) from an empty stack until every domain runs; the"
            " domains are hard-stopped right after, then torn down (`pulumi destroy`, or the floor's own"
            " clean-up) and libvirt is checked for leftovers. `seconds` is the command's wall time;"
            " `all running` is when libvirt (polled every 0.2 s) first showed every domain running.",
            "",
            _md_table(
                ["variant", "N", "round", "seconds", "all running", "teardown", "left behind", "error"],
                [
                    [
                        r["variant"],
                        str(r["n"]),
                        str(r["round"]),
                        _s(r["seconds"]),
                        _s(r["all_running_seconds"]),
                        _s(r.get("teardown_seconds")),
                        "nothing"
                        if not any(v for inv in (r.get("left") or {}).values() for v in inv.values())
                        else json.dumps(r["left"]),
                        (r.get("error") or "")[:120],
                    ]
                    for r in prov
                ],
            ),
            "",
        ]
    bd_rows = []
    for key in sorted(k for k in figs if k.endswith("_breakdown")):
        for part, value in figs[key].items():
            bd_rows.append([key.removesuffix("_breakdown").removeprefix("up_"), part, _s(value)])
    if bd_rows:
        parts += [
            "## Where virtstack's time goes",
            "",
            "From the bench trace hook (`bench/trace/sitecustomize.py`, on only in bench runs): "
            "`cli_preview_phase` = `virtstack up` start → the apply's program starts (the CLI's refreshing "
            "preview and plan); `engine_startup` = `pulumi up` start → the program's interpreter starts; "
            "`program` = → the first provider operation; `provider_ops` = wall time with ≥1 provider "
            "operation running, of which `libvirt` = inside libvirt calls and local tools (qemu-img, "
            "genisoimage); `engine_tail` = last operation → command end; `ops_cpu_sum` = the operations' "
            "summed durations; `max_concurrent_ops` = most operations in flight at once; `*_sum` = summed "
            "durations per resource kind and operation. "
            "Medians over rounds.",
            "",
            _md_table(["run", "part", "seconds"], bd_rows),
            "",
        ]
    rd = res["runs"].get("ready")
    if rd:
        parts += [
            "## Time to ready: every run",
            "",
            _md_table(
                ["variant", "round", "up seconds", "agent answered after", "error"],
                [
                    [
                        r["variant"],
                        str(r["round"]),
                        _s(r.get("up_seconds")),
                        _s(r.get("ready_seconds")),
                        (r.get("error") or "")[:160],
                    ]
                    for r in rd
                ],
            ),
            "",
        ]
    pv = res["runs"].get("preview")
    if pv:
        parts += ["## Preview at scale", "", "```json", json.dumps(pv, indent=1), "```", ""]
    sc = res["runs"].get("scale")
    if sc:
        parts += [
            "## Pure-Python scale: every run",
            "",
            "Each in a fresh process: `virtstack.spec.loader.load_stack` + `virtstack.placement.place_fleet`"
            " of a stack file with N VMs over 500 hosts (static address, data disk, cloud-init user each);"
            " imports not timed. `maxrss` is the process's peak RSS (interpreter and imports included).",
            "",
            _md_table(
                ["VMs", "per entry", "file", "load s", "plan s", "total s", "maxrss", "tracemalloc peak"],
                [
                    [
                        str(r["vms"]),
                        str(r["group"]),
                        f"{r['file_bytes'] / 2**20:.1f} MiB",
                        _s(r["load_seconds"]),
                        _s(r["plan_seconds"]),
                        _s(r["seconds"]),
                        f"{r['maxrss_bytes'] / 2**20:.0f} MiB",
                        "—"
                        if r["tracemalloc_peak_bytes"] is None
                        else f"{r['tracemalloc_peak_bytes'] / 2**20:.0f} MiB",
                    ]
                    for r in sc
                ],
            ),
            "",
        ]
    pr = res.get("peers")
    if pr:
        parts += ["## Peers", "", "```json", json.dumps(pr, indent=1), "```", ""]
    if res.get("notes"):
        parts += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    parts += ["## Failures", ""]
    parts += [f"- {f}" for f in res.get("failures", [])] or ["None."]
    if res.get("section_seconds"):
        parts += [
            "",
            "Section times: " + ", ".join(f"{k} {v:.0f} s" for k, v in res["section_seconds"].items()),
        ]
    return "\n".join(parts) + "\n"


def write(res: dict[str, Any]) -> None:
    (HERE / "results.json").write_text(json.dumps(res, indent=1, sort_keys=False, default=str) + "\n")
    (HERE / "RESULTS.md").write_text(markdown(res))
