"""`make bench`: every benchmark in one unattended run; prints a table and writes bench/RESULTS.md and
bench/results.json (same figures, stable keys). Sections write their results as they finish, so a
run cut short still leaves what it measured.

    python -m bench.run [--sections setup,scale,provisioning,backends,ready,waves,preview,sim,peers]
                        [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import baseline, peers, preview, ready, report, setup_times, sim, waves
from bench.harness import LOCAL_URI, log, machine_facts, new_prefix
from bench.specs import IMAGE, PROJECT_ROOT, fleet_spec
from bench.variants import TRACE_DIR, Outcome, cli_available, run_floor, run_pulumi
from virtstack.settings import Settings

HERE = Path(__file__).resolve().parent
SECTIONS = ("setup", "scale", "provisioning", "backends", "ready", "waves", "preview", "sim", "peers")


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# ------------------------------------------------------------------------------------------ setup


def section_setup(res: dict[str, Any], cold: bool = True) -> None:
    figs, runs = res["figures"], res["runs"].setdefault("setup", [])
    kinds = [("warm", setup_times.warm), ("cold", setup_times.cold), ("warm", setup_times.warm)]
    if not cold:
        kinds = [k for k in kinds if k[0] != "cold"]
        res["notes"].append("setup: cold run skipped (--skip-cold-setup)")
    for name, fn in kinds:
        row = {"kind": name, **fn()}
        runs.append(row)
        if "error" in row:
            res["failures"].append(f"setup {name}: {row['error'][-600:]}")
            log(f"setup {name}: FAILED")
            continue
        log(f"setup {name}: {row['seconds']:.1f}s ({row['steps']})")
        figs[f"setup_{name}_seconds"] = row["seconds"]
        figs[f"setup_{name}_steps"] = row["steps"]
        report.write(res)
    res["notes"].append(
        "setup cold = `scripts/setup.sh --for up` (what `make up` runs before bringing the stack up) in "
        "a fresh clone with empty VIRTSTACK_CACHE, Go module/build caches and pip cache; the Debian "
        "packages and the running libvirt daemon are shared with the machine and stay (warm in both); "
        "setup warm = the whole `make setup` (every step)"
    )


# ------------------------------------------------------------------------------------------ waves


def section_waves(res: dict[str, Any]) -> None:
    figs, runs = res["figures"], res["runs"].setdefault("waves", [])
    variants = [
        ("all_at_once", lambda p: waves.ready_virtstack(p, 190, waves.N)),
        ("waves", lambda p: waves.ready_virtstack(p, 191, None)),
        ("script", lambda p: waves.ready_script(p, 192)),
    ]
    for name, fn in variants:
        row = {"variant": name, **fn(new_prefix("w"))}
        runs.append(row)
        if "error" in row:
            res["failures"].append(f"waves {name}: {row['error'][:600]}")
            log(f"waves {name}: FAILED {row['error'][:300]}")
        else:
            figs[f"ready_all_n10_seconds_{name}"] = row["ready_all_seconds"]
            log(f"waves {name}: all 10 agents answered after {row['ready_all_seconds']:.1f}s")
        report.write(res)
    best = min(
        (figs[k] for k in ("ready_all_n10_seconds_script", "ready_all_n10_seconds_all_at_once") if k in figs),
        default=None,
    )
    figs["ready_all_n10_ratio_waves_best"] = _ratio(figs.get("ready_all_n10_seconds_waves"), best)
    figs["ready_all_n10_ratio_waves_all_at_once"] = _ratio(
        figs.get("ready_all_n10_seconds_waves"), figs.get("ready_all_n10_seconds_all_at_once")
    )


# ------------------------------------------------------------------------------------------ scale


def section_scale(res: dict[str, Any]) -> None:
    figs, runs = res["figures"], res["runs"].setdefault("scale", [])
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    for n in (1000, 10000):
        for group in (1, 20):
            for trace in (False, True):
                if trace and n == 10000 and group == 1:
                    continue  # tracemalloc on the 10k flat file takes minutes; maxrss is reported
                args = [sys.executable, "-m", "bench.scale", str(n), "500", str(group)]
                if trace:
                    args.append("--tracemalloc")
                proc = subprocess.run(
                    args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
                )
                if proc.returncode != 0:
                    res["failures"].append(f"scale {n}/{group}: {proc.stderr[-500:]}")
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["tracemalloc"] = trace
                runs.append(row)
                k = f"{n // 1000}k" + ("" if group == 1 else "_grouped")
                if trace:
                    figs[f"validate_{k}_tracemalloc_peak_bytes"] = row["tracemalloc_peak_bytes"]
                else:
                    figs[f"validate_{k}_seconds"] = row["seconds"]
                    figs[f"validate_{k}_load_seconds"] = row["load_seconds"]
                    figs[f"validate_{k}_plan_seconds"] = row["plan_seconds"]
                    figs[f"validate_{k}_maxrss_bytes"] = row["maxrss_bytes"]
                log(
                    f"validate {n} VMs ({'one entry per VM' if group == 1 else f'{group} per entry'})"
                    f"{' [tracemalloc]' if trace else ''}: {row['seconds']:.2f}s"
                )
    # The whole command, as a user runs it (interpreter, imports, output included).
    exe = PROJECT_ROOT / ".venv/bin/virtstack"
    if exe.exists():
        import tempfile

        import yaml

        from bench.specs import scale_spec

        for group in (1, 20):
            with tempfile.TemporaryDirectory(prefix="vsb-validate-") as tmp:
                path = Path(tmp) / "stack.yaml"
                path.write_text(yaml.safe_dump(scale_spec(10000, 500, group), sort_keys=False))
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [str(exe), "validate", "-f", str(path)],
                    cwd=PROJECT_ROOT,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                seconds = time.perf_counter() - t0
            k = "" if group == 1 else "_grouped"
            if proc.returncode == 0:
                figs[f"validate_cli_10k{k}_seconds"] = seconds
                log(f"virtstack validate -f (10k VMs{k}): {seconds:.2f}s")
            else:
                res["failures"].append(
                    f"virtstack validate 10k{k}: exit {proc.returncode}: {proc.stderr[-300:]}"
                )


# ----------------------------------------------------------------------------------- provisioning


def section_provisioning(res: dict[str, Any], rounds: int) -> None:
    figs, runs = res["figures"], res["runs"].setdefault("provisioning", [])
    use_cli = cli_available()
    res["notes"].append(
        "virtstack figure (a) = `virtstack up --yes` (refreshing preview + saved plan, then `up --plan`)"
        if use_cli
        else "virtstack figure (a) = `pulumi up --yes --skip-preview` (no `virtstack up` command yet)"
    )
    res["notes"].append("before = this tree with " + ", ".join(baseline.baseline_notes()))
    trace_path = str(TRACE_DIR)
    engine_parallel = Settings.from_env({}).parallel
    # `virtstack`: the CLI's own defaults (PULUMI_PARALLEL unset: virtstack sets 16). `engine`: what
    # the CLI's apply step runs, alone, at the same parallelism. `virtstack-before`: the copy with the
    # optimisation turned back through the settings (baseline.py), its CLI too.
    variants = [
        (
            "virtstack",
            lambda p, s, n: run_pulumi("virtstack", p, s, n, use_cli=use_cli, env={"PULUMI_PARALLEL": ""}),
        ),
        (
            "virtstack-before",
            lambda p, s, n: run_pulumi(
                "virtstack-before",
                p,
                s,
                n,
                use_cli=use_cli,
                env={**baseline.baseline_env(), "PYTHONPATH": f"{trace_path}:{PROJECT_ROOT}"},
            ),
        ),
        (
            "engine",
            lambda p, s, n: run_pulumi("engine", p, s, n, env={"PULUMI_PARALLEL": str(engine_parallel)}),
        ),
        ("floor", lambda p, s, n: run_floor(p, s, n)),
    ]
    for n in (10, 25):
        for r in range(rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for name, fn in order:
                prefix = new_prefix("u")
                try:
                    spec = fleet_spec(prefix, n, {"local": LOCAL_URI}, 100 + (r % 50))
                    # The floor starts every domain at once: so does virtstack here (the default
                    # starts them in waves as guests come up: the `waves` section measures that).
                    spec["hosts"]["local"]["boot_concurrency"] = n
                    outcome = fn(prefix, spec, n)
                except Exception as err:  # one broken run must not end the section
                    outcome = Outcome(name, n, None, None, error=f"{type(err).__name__}: {err}")
                row = {"round": r, **outcome.as_dict()}
                runs.append(row)
                if outcome.error:
                    res["failures"].append(f"{name} N={n} round {r}: {outcome.error[:600]}")
                    log(f"{name} N={n}: FAILED {outcome.error[:300]}")
                else:
                    log(
                        f"{name} N={n} round {r}: {outcome.seconds:.1f}s (all running at "
                        f"{outcome.all_running_seconds or float('nan'):.1f}s)"
                    )
                report.write(res)
        by = {name: [x for x in runs if x["variant"] == name and x["n"] == n] for name, _ in variants}
        med = {name: _median([x["seconds"] for x in rows]) for name, rows in by.items()}
        figs[f"up_virtstack_n{n}_seconds"] = med["virtstack"]
        figs[f"up_virtstack_before_n{n}_seconds"] = med["virtstack-before"]
        figs[f"up_engine_n{n}_seconds"] = med["engine"]
        figs[f"up_floor_n{n}_seconds"] = med["floor"]
        figs[f"up_floor_ratio_n{n}"] = _ratio(med["virtstack"], med["floor"])
        figs[f"up_floor_ratio_before_n{n}"] = _ratio(med["virtstack-before"], med["floor"])
        figs[f"up_engine_floor_ratio_n{n}"] = _ratio(med["engine"], med["floor"])
        # After each run's own teardown (pulumi destroy / the floor's clean-up): anything left?
        figs[f"up_n{n}_teardown_left_anything"] = any(
            bool(names)
            for x in runs
            if x["n"] == n and x.get("left")
            for inv in x["left"].values()
            for names in inv.values()
        )
        names = ("engine", "virtstack", "virtstack-before")
        for name in names:
            bds = [x["breakdown"] for x in by[name] if x.get("breakdown")]
            if bds:
                keys = sorted({k for b in bds for k in b})
                figs[f"up_{name}_n{n}_breakdown"] = {k: _median([b.get(k) for b in bds]) for k in keys}
        report.write(res)


# -------------------------------------------------------------------------------------- backends


def section_backends(res: dict[str, Any], rounds: int, n: int = 10) -> None:
    """`virtstack up --yes` of the same N-VM stack with the host on each backend (native, and
    pulumi-libvirt through the bridged plugin), alternating which goes first."""
    figs, runs = res["figures"], res["runs"].setdefault("backends", [])
    use_cli = cli_available()
    backends = ["native", "pulumi-libvirt"]
    for r in range(rounds):
        for backend in backends[r % 2 :] + backends[: r % 2]:
            prefix = new_prefix("b")
            spec = fleet_spec(prefix, n, {"local": LOCAL_URI}, 160 + (r % 20))
            spec["hosts"]["local"]["backend"] = backend
            # pulumi-libvirt starts every domain at once: so does the native host here (its default
            # boots in waves as guests come up, which the `waves` section measures).
            spec["hosts"]["local"]["boot_concurrency"] = n
            try:
                # This tree's code for the CLI too (as for virtstack-before), not an installed copy.
                env = {"PULUMI_PARALLEL": "", "PYTHONPATH": f"{TRACE_DIR}:{PROJECT_ROOT}"}
                outcome = run_pulumi(backend, prefix, spec, n, use_cli=use_cli, env=env)
            except Exception as err:  # one broken run must not end the section
                outcome = Outcome(backend, n, None, None, error=f"{type(err).__name__}: {err}")
            runs.append({"round": r, **outcome.as_dict()})
            if outcome.error:
                res["failures"].append(f"backend {backend} N={n} round {r}: {outcome.error[:600]}")
                log(f"backend {backend} N={n}: FAILED {outcome.error[:300]}")
            else:
                log(f"backend {backend} N={n} round {r}: {outcome.seconds:.1f}s")
            report.write(res)
    med = {b: _median([x["seconds"] for x in runs if x["variant"] == b and x["n"] == n]) for b in backends}
    figs[f"up_backend_native_n{n}_seconds"] = med["native"]
    figs[f"up_backend_pulumi_libvirt_n{n}_seconds"] = med["pulumi-libvirt"]
    figs[f"up_backend_ratio_pulumi_libvirt_native_n{n}"] = _ratio(med["pulumi-libvirt"], med["native"])
    report.write(res)


# ------------------------------------------------------------------------------------------ ready


def section_ready(res: dict[str, Any], rounds: int) -> None:
    figs, runs = res["figures"], res["runs"].setdefault("ready", [])
    use_cli = cli_available()
    for r in range(rounds):
        order = [("virtstack", True), ("bare", False)]
        if r % 2:
            order.reverse()
        for name, is_virtstack in order:
            prefix = new_prefix("r")
            subnet = 180 + r
            row = (
                ready.ready_virtstack(prefix, subnet, use_cli)
                if is_virtstack
                else ready.ready_bare(prefix, subnet)
            )
            row.update(variant=name, round=r)
            runs.append(row)
            if "error" in row:
                res["failures"].append(f"ready {name} round {r}: {row['error'][:600]}")
                log(f"ready {name}: FAILED {row['error'][:300]}")
            else:
                log(
                    f"ready {name} round {r}: agent answered {row['ready_seconds']:.1f}s after start "
                    f"(up took {row['up_seconds']:.1f}s)"
                )
            report.write(res)
    vs = _median([x.get("ready_seconds") for x in runs if x["variant"] == "virtstack"])
    bare = _median([x.get("ready_seconds") for x in runs if x["variant"] == "bare"])
    figs["ready_virtstack_seconds"] = vs
    figs["ready_bare_seconds"] = bare
    figs["ready_ratio"] = _ratio(vs, bare)
    figs["ready_virtstack_up_seconds"] = _median(
        [x.get("up_seconds") for x in runs if x["variant"] == "virtstack"]
    )


# ---------------------------------------------------------------------------------------- preview


def section_preview(res: dict[str, Any], repeats: int) -> None:
    out = preview.run(new_prefix("v"), 110, repeats=repeats)
    res["runs"]["preview"] = out
    if "error" in out:
        res["failures"].append(f"preview: {out['error'][:800]}")
    for key in (
        "preview_20_seconds",
        "preview_200_seconds",
        "preview_ratio_200_20",
        "cli_plan_20_seconds",
        "cli_plan_200_seconds",
        "cli_plan_ratio_200_20",
        "up_20_seconds",
        "up_200_seconds",
        "instances_start_seconds",
    ):
        if key in out:
            res["figures"][key if key.startswith(("preview", "cli_plan")) else f"preview_setup_{key}"] = out[
                key
            ]
    floor = (out.get("floor_read_200") or {}).get("seconds")
    figs = res["figures"]
    if floor:
        figs["floor_read_200_seconds"] = floor
        figs["plan_floor_ratio_200"] = _ratio(out.get("cli_plan_200_seconds"), floor)
        figs["noop_up_200_seconds"] = out.get("noop_up_200_seconds")
        figs["noop_up_floor_ratio_200"] = _ratio(out.get("noop_up_200_seconds"), floor)
        figs["plan_floor_ratio_before_200"] = _ratio(out.get("cli_plan_before_200_seconds"), floor)
        figs["noop_up_floor_ratio_before_200"] = _ratio(out.get("noop_up_before_200_seconds"), floor)
    rss = out.get("up_200_maxrss") or {}
    if rss:
        figs["up_200_maxrss_bytes"] = max(rss.values())
        for role, value in rss.items():
            figs[f"up_200_{role}_maxrss_bytes"] = value
    if "preview_ratio_200_20" in out:
        log(
            f"preview: 20 VMs {out['preview_20_seconds']:.1f}s, 200 VMs {out['preview_200_seconds']:.1f}s, "
            f"ratio {out['preview_ratio_200_20']:.2f}"
        )


# -------------------------------------------------------------------------------------------- sim


# Stacks of the simulated fleet run two at once: measured on this machine (2 cores, shared), 4 stacks of
# 50 VMs took up 52.6 s / plan 18.1 s two at once against 72.6 s / 26.3 s one after another.
SIM_FLEET_CONCURRENCY = 2
# One stack's up at these sizes (VMs; hosts = VMs / 10), each bounded by 300 s; the second size again
# with PULUMI_SKIP_CHECKPOINTS=true. Sized so the sim section stays within about 15 minutes.
SIM_SWEEP_SIZES = (50, 100, 200)


def section_sim(res: dict[str, Any]) -> None:
    figs = res["figures"]
    # The 2,000 VMs as a fleet is run: 20 rack stacks of 10 hosts and 100 VMs on one shared backend.
    out = sim.fleet(new_prefix("s"), stacks=20, hosts=10, vms=100, concurrency=SIM_FLEET_CONCURRENCY)
    res["runs"]["sim"] = out
    if "error" in out:
        res["failures"].append(f"sim: {out['error'][:800]}")
    figs["sim_fleet_stacks"] = out["stacks"]
    figs["sim_fleet_concurrency"] = out["concurrency"]
    for name in ("up", "plan", "destroy"):
        row = out.get(name)
        if not row or any(x["exit"] != 0 for x in row["stacks"]):
            continue
        figs[f"sim_{name}_2000_seconds"] = row["seconds"]
        if row["maxrss"]:
            figs[f"sim_{name}_2000_maxrss_bytes"] = max(row["maxrss"].values())
            for role, value in row["maxrss"].items():
                figs[f"sim_{name}_2000_{role}_maxrss_bytes"] = value
    if out.get("state_bytes_per_stack"):
        figs["sim_state_2000_bytes_per_stack"] = out["state_bytes_per_stack"]
        figs["sim_state_2000_bytes_total"] = out["state_bytes_total"]
    if "plan_changes_stacks" in out:
        figs["sim_plan_2000_stacks_with_changes"] = out["plan_changes_stacks"]
        if out["plan_changes_stacks"]:
            res["failures"].append(
                f"sim: the plan after up reports changes in {out['plan_changes_stacks']} stacks"
            )
    if "domains_after_destroy" in out:
        figs["sim_destroy_2000_domains_left"] = out["domains_after_destroy"]
        if out["domains_after_destroy"]:
            res["failures"].append(f"sim: destroy left {out['domains_after_destroy']} domains on the hosts")

    # Where one stack bends: up at a few sizes, and one size without the backend's checkpoints.
    one = sim.sweep(new_prefix("s"), sizes=SIM_SWEEP_SIZES, timeout=300, skip_at=SIM_SWEEP_SIZES[1])
    res["runs"]["sim_one_stack"] = one
    done = {n: row for n, row in one["sizes"].items() if row["exit"] == 0}
    for n, row in one["sizes"].items():
        if row["exit"] != 0:
            figs[f"sim_one_stack_up_{n}_unfinished_after_seconds"] = row["seconds"]
            continue
        figs[f"sim_one_stack_up_{n}_seconds"] = row["seconds"]
        figs[f"sim_one_stack_up_{n}_seconds_per_vm"] = row["seconds"] / n
        if row["maxrss"].get("engine"):
            figs[f"sim_one_stack_up_{n}_engine_maxrss_bytes"] = row["maxrss"]["engine"]
        if row.get("state_bytes"):
            figs[f"sim_one_stack_state_{n}_bytes"] = row["state_bytes"]
    sizes = sorted(done)
    if len(sizes) >= 2:
        lo, hi = sizes[-2], sizes[-1]
        figs[f"sim_one_stack_growth_ratio_{hi}_{lo}"] = done[hi]["seconds"] / done[lo]["seconds"]
    skip = one["skip_checkpoints"]
    if skip["exit"] == 0 and skip["vms"] in done:
        n = skip["vms"]
        figs[f"sim_one_stack_up_{n}_seconds_skip_checkpoints"] = skip["seconds"]
        figs[f"sim_one_stack_checkpoint_share_{n}"] = 1 - skip["seconds"] / done[n]["seconds"]


# ------------------------------------------------------------------------------------------ peers


def _twice(
    res: dict[str, Any], label: str, run: Callable[..., dict[str, Any]], tag: str, n: int, subnet: int
) -> dict[str, Any]:
    """`run(prefix, n, subnet)` for a peer, once more (with a new prefix) if it failed: a shared
    daemon can fail a run for reasons of its own."""
    row = run(new_prefix(tag), n, subnet)
    if "error" in row:
        error = row["error"]
        excerpt = error if len(error) <= 300 else f"{error[:150]} … {error[-150:]}"
        res["notes"].append(f"{label}: first attempt failed ({excerpt}), retried")
        row = run(new_prefix(tag), n, subnet)
    return row


def section_peers(res: dict[str, Any]) -> None:
    figs, pres = res["figures"], res.setdefault("peers", {})
    pres["module_proxy"] = peers.proxy_facts()
    ok, text = peers.build_tofu()
    pres["tofu_build"] = text
    vs = {n: figs.get(f"up_virtstack_n{n}_seconds") for n in (10, 25)}
    if ok:
        pres["tofu_version"] = peers.tofu_version()
        refused = pres["module_proxy"]["terraform-provider-libvirt v0.8.1"]
        pres["tofu_provider"] = f"terraform-provider-libvirt {peers.BUILT_PROVIDER} (v0.8.1: {refused})"
        for n in (10, 25):
            row = _twice(res, f"tofu N={n}", peers.run_tofu, "t", n, 200)
            pres[f"tofu_n{n}"] = row
            peers.log_peer("tofu", row)
            if "error" in row:
                res["failures"].append(f"tofu N={n}: {row['error'][:600]}")
            else:
                figs[f"peer_tofu_n{n}_seconds"] = row["seconds"]
                figs[f"peer_ratio_tofu_n{n}"] = _ratio(vs[n], row["seconds"])
            report.write(res)
    else:
        res["failures"].append(f"OpenTofu peer not built: {text[-600:]}")
    ok, text = peers.kcli_install()
    if ok:
        pres["kcli_version"] = peers.kcli_version()
        for n in (10, 25):
            row = _twice(res, f"kcli N={n}", peers.run_kcli, "k", n, 201)
            if "error" in row:  # kcli's threaded mode failed twice: measure it sequential instead
                seq = peers.run_kcli(new_prefix("k"), n, 201, threaded=False)
                pres[f"kcli_sequential_n{n}"] = seq
                peers.log_peer("kcli (sequential)", seq)
                if "error" not in seq:
                    figs[f"peer_kcli_sequential_n{n}_seconds"] = seq["seconds"]
                    figs[f"peer_ratio_kcli_sequential_n{n}"] = _ratio(vs[n], seq["seconds"])
            pres[f"kcli_n{n}"] = row
            peers.log_peer("kcli", row)
            if "error" in row:
                res["failures"].append(f"kcli N={n}: {row['error'][:600]}")
            else:
                figs[f"peer_kcli_n{n}_seconds"] = row["seconds"]
                figs[f"peer_ratio_kcli_n{n}"] = _ratio(vs[n], row["seconds"])
            report.write(res)
    else:
        res["failures"].append(f"kcli not installed: {text[-600:]}")


# ------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per provisioning size")
    ap.add_argument("--ready-rounds", type=int, default=2)
    ap.add_argument("--preview-repeats", type=int, default=3)
    ap.add_argument("--skip-cold-setup", action="store_true", help="setup: the warm runs only")
    args = ap.parse_args()
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not IMAGE.exists():
        print(f"bench: the guest image {IMAGE} is missing (run `make setup`)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_facts(),
        "sections": wanted,
        "figures": {},
        "runs": {},
        "notes": [],
        "failures": [],
    }
    report.write(res)
    for name in wanted:
        log(f"== {name}")
        t = time.perf_counter()
        try:
            if name == "setup":
                section_setup(res, cold=not args.skip_cold_setup)
            elif name == "waves":
                section_waves(res)
            elif name == "sim":
                section_sim(res)
            elif name == "scale":
                section_scale(res)
            elif name == "provisioning":
                section_provisioning(res, args.rounds)
            elif name == "backends":
                section_backends(res, args.rounds)
            elif name == "ready":
                section_ready(res, args.ready_rounds)
            elif name == "preview":
                section_preview(res, args.preview_repeats)
            elif name == "peers":
                section_peers(res)
            else:
                res["failures"].append(f"unknown section {name}")
        except Exception:
            res["failures"].append(f"section {name} crashed: {traceback.format_exc()[-1500:]}")
            log(f"section {name} crashed:\n{traceback.format_exc()}")
        res.setdefault("section_seconds", {})[name] = time.perf_counter() - t
        report.write(res)
    res["total_seconds"] = time.perf_counter() - t0
    report.write(res)
    print(report.table(res))
    print(f"\nwrote {HERE / 'RESULTS.md'} and {HERE / 'results.json'} in {res['total_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
