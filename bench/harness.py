"""What every benchmark needs: throwaway Pulumi stacks, timing, libvirt clean-up, machine facts.

Each run gets its own file backend and config file in a temporary directory (nothing is written to the
project's state or root), names start with `vsb`, and `cleanup()` removes every libvirt object whose
name starts with the run's prefix — from every host it touched — even after a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import yaml

from bench.specs import POOL_ROOT, PROJECT_ROOT

LOCAL_URI = "qemu:///system"
# Only for the throwaway stacks of a benchmark run; never for real secrets.
BENCH_PASSPHRASE = "virtstack-bench-only"


def _quiet(_ctx: object, _err: object) -> None:
    return None


libvirt.registerErrorHandler(_quiet, None)


def start_group(cmd: list[str], cwd: Path | str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`cmd` with its output captured, in a session of its own, so that a timeout can end it and
    everything it started (engine, plugins, provider) with one os.killpg."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def new_prefix(tag: str = "") -> str:
    return f"vsb{tag}{secrets.token_hex(2)}"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------- pulumi


@dataclass
class PulumiStack:
    """The project's program on a throwaway stack: own backend, own config file, spec from a file."""

    stack: str
    spec: dict[str, Any]
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vsb-pulumi-")))
    extra_env: dict[str, str] = field(default_factory=dict)
    project: Path = PROJECT_ROOT  # a directory with Pulumi.yaml and __main__.py

    @property
    def spec_file(self) -> Path:
        return self.workdir / "stack.yaml"

    @property
    def config_file(self) -> Path:
        return self.workdir / f"Pulumi.{self.stack}.yaml"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PULUMI_BACKEND_URL=f"file://{self.workdir / 'state'}",
            PULUMI_CONFIG_PASSPHRASE=BENCH_PASSPHRASE,
            PULUMI_SKIP_UPDATE_CHECK="true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
            PULUMI_DEBUG_COMMANDS="true",  # enables --event-log: engine events with timestamps
        )
        env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        env.update(self.extra_env)
        return env

    def write_spec(self, spec: dict[str, Any] | None = None) -> None:
        if spec is not None:
            self.spec = spec
        self.spec_file.write_text(yaml.safe_dump(self.spec, sort_keys=False))

    def init(self) -> None:
        (self.workdir / "state").mkdir(parents=True, exist_ok=True)
        self.write_spec()
        root_config = self.project / f"Pulumi.{self.stack}.yaml"
        existed = root_config.exists()
        subprocess.run(
            ["pulumi", "stack", "init", self.stack, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        # `stack init` may write the passphrase salt next to Pulumi.yaml: keep it in our own file.
        if root_config.exists() and not existed:
            shutil.move(str(root_config), self.config_file)
        self.pulumi("config", "set", "virtstack:spec", str(self.spec_file))

    def pulumi(
        self, *args: str, check: bool = True, timeout: float = 1200, event_log: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            "pulumi",
            *args,
            "--stack",
            self.stack,
            "--non-interactive",
            "--config-file",
            str(self.config_file),
        ]
        if event_log is not None:
            cmd += ["--event-log", str(event_log)]
        proc = subprocess.run(
            cmd, cwd=self.project, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"pulumi {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-5000:]}\n"
                f"--- stderr\n{proc.stderr[-3000:]}"
            )
        return proc

    def virtstack_up(self, timeout: float = 1200) -> None:
        """`virtstack up --yes` on this stack (the CLI reads the stack's config from the project, so
        callers copy `config_file` there first); raises with the output's end when it fails."""
        proc = subprocess.run(
            [str(PROJECT_ROOT / ".venv/bin/virtstack"), "up", "--yes", "--stack", self.stack],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr)[-3000:]
            raise RuntimeError(f"virtstack up exited {proc.returncode}: {output}")

    def timed(
        self, *args: str, check: bool = True, timeout: float = 1200
    ) -> tuple[float, float, list[dict[str, Any]], subprocess.CompletedProcess[str]]:
        """(start, seconds, engine events, process) of one pulumi command with an event log."""
        events_path = self.workdir / f"events-{time.monotonic_ns()}.jsonl"
        start = time.time()
        t0 = time.perf_counter()
        proc = self.pulumi(*args, check=check, timeout=timeout, event_log=events_path)
        seconds = time.perf_counter() - t0
        events = []
        if events_path.exists():
            for line in events_path.read_text().splitlines():
                if line.strip():
                    with contextlib.suppress(ValueError):
                        events.append(json.loads(line))
        return start, seconds, events, proc

    def remove(self) -> None:
        self.pulumi("stack", "rm", "--yes", "--force", check=False, timeout=120)
        shutil.rmtree(self.workdir, ignore_errors=True)
        stray = self.project / f"Pulumi.{self.stack}.yaml"
        if stray.exists():
            stray.unlink()


# ---------------------------------------------------------------------------------------- libvirt


def open_conn(uri: str, wait: float = 120.0) -> libvirt.virConnect:
    """A connection to `uri`, waiting out a daemon that is restarting (others on this machine may
    restart the shared daemon in the middle of a run)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def destroy_domains(uri: str, prefix: str) -> int:
    """Stop (hard, in parallel) every running domain of the prefix: keep the machine free once a
    figure is taken."""
    try:
        conn = open_conn(uri)
    except libvirt.libvirtError:
        return 0
    try:
        doms = [
            d
            for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            if d.name().startswith(prefix)
        ]

        def stop(dom: libvirt.virDomain) -> bool:
            try:
                dom.destroy()
                return True
            except libvirt.libvirtError:
                return False

        with ThreadPoolExecutor(max_workers=8) as pool:
            return sum(pool.map(stop, doms))
    except libvirt.libvirtError:
        return 0
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def inventory(uri: str, prefix: str) -> dict[str, list[str]]:
    conn = open_conn(uri)
    try:
        volumes = []
        for pool in conn.listAllStoragePools():
            if pool.isActive():
                try:
                    pool.refresh(0)
                    volumes += [
                        f"{pool.name()}/{v.name()}"
                        for v in pool.listAllVolumes()
                        if v.name().startswith(prefix)
                    ]
                except libvirt.libvirtError:
                    pass
        return {
            "domains": sorted(d.name() for d in conn.listAllDomains() if d.name().startswith(prefix)),
            "networks": sorted(n.name() for n in conn.listAllNetworks() if n.name().startswith(prefix)),
            "pools": sorted(p.name() for p in conn.listAllStoragePools() if p.name().startswith(prefix)),
            "volumes": sorted(volumes),
        }
    finally:
        conn.close()


def _cleanup_uri(uri: str, prefix: str) -> None:
    destroy_domains(uri, prefix)
    conn = open_conn(uri)
    try:
        for dom in conn.listAllDomains():
            if not dom.name().startswith(prefix):
                continue
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                )
            except libvirt.libvirtError:
                pass
        for pool in conn.listAllStoragePools():
            if not pool.isActive():
                continue
            try:
                pool.refresh(0)
                for vol in pool.listAllVolumes():
                    if vol.name().startswith(prefix) or pool.name().startswith(prefix):
                        vol.delete(0)
            except libvirt.libvirtError:
                pass
        for pool in conn.listAllStoragePools():
            if pool.name().startswith(prefix):
                try:
                    if pool.isActive():
                        with contextlib.suppress(libvirt.libvirtError):
                            pool.delete(0)
                        pool.destroy()
                    pool.undefine()
                except libvirt.libvirtError:
                    pass
        for net in conn.listAllNetworks():
            if net.name().startswith(prefix):
                try:
                    if net.isActive():
                        net.destroy()
                    net.undefine()
                except libvirt.libvirtError:
                    pass
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def cleanup(uris: Iterable[str], prefix: str) -> dict[str, dict[str, list[str]]]:
    """Remove every domain, volume, pool and network named `prefix…` on `uris`; returns what is left
    afterwards (all lists empty when the clean-up worked). Survives a daemon restart in between."""
    assert prefix.startswith("vsb") and len(prefix) >= 5, prefix
    left: dict[str, dict[str, list[str]]] = {}
    for uri in dict.fromkeys(uris):
        for _attempt in range(3):
            try:
                _cleanup_uri(uri, prefix)
                left[uri] = inventory(uri, prefix)
            except libvirt.libvirtError as err:
                left[uri] = {"error": [str(err)]}
                time.sleep(2)
                continue
            if not any(left[uri].values()):
                break
    for path in POOL_ROOT.glob(f"{prefix}*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in Path("/var/log/libvirt/qemu").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            path.unlink()
    return left


def nothing_left(left: dict[str, dict[str, list[str]]]) -> bool:
    return all(not any(inv.values()) for inv in left.values())


def wait_running(uri: str, names: list[str], timeout: float = 600) -> float:
    """Seconds (perf_counter) at which every named domain is running."""
    conn = open_conn(uri)
    try:
        deadline = time.perf_counter() + timeout
        pending = set(names)
        while pending and time.perf_counter() < deadline:
            for name in list(pending):
                try:
                    if conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                        pending.discard(name)
                except libvirt.libvirtError:
                    pass
            if pending:
                time.sleep(0.1)
        if pending:
            raise RuntimeError(f"not running after {timeout:.0f}s: {sorted(pending)[:5]}")
        return time.perf_counter()
    finally:
        conn.close()


# ------------------------------------------------------------------------------------ libvirt hosts


def start_instance(name: str) -> str:
    out = (
        subprocess.run(
            [str(PROJECT_ROOT / "scripts/libvirt-instance.sh"), "start", name],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        .stdout.strip()
        .splitlines()
    )
    return out[-1]


def purge_instance(name: str) -> None:
    subprocess.run(
        [str(PROJECT_ROOT / "scripts/libvirt-instance.sh"), "purge", name],
        capture_output=True,
        text=True,
        timeout=300,
    )


# ----------------------------------------------------------------------------------------- machine


def _cmd(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_facts() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    hyp = {}
    with contextlib.suppress(OSError, ValueError):
        hyp = json.loads((PROJECT_ROOT / ".virtstack/hypervisor.json").read_text())
    conn = open_conn(LOCAL_URI)
    try:
        lv = conn.getLibVersion()
        qv = conn.getVersion()
    finally:
        conn.close()
    import pulumi as pulumi_sdk  # noqa: F401

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "os": _cmd("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "python": platform.python_version(),
        "pulumi_cli": _cmd("pulumi", "version"),
        "pulumi_sdk": _sdk_version(),
        "libvirt": f"{lv // 1000000}.{lv // 1000 % 1000}.{lv % 1000}",
        "qemu": f"{qv // 1000000}.{qv // 1000 % 1000}.{qv % 1000}",
        "libvirt_python": libvirt.getVersion() and _pkg_version("libvirt-python"),
        "hypervisor": f"{hyp.get('domain_type', '?')} (from .virtstack/hypervisor.json)",
        "image": str(PROJECT_ROOT / ".virtstack/images/debian-12.qcow2"),
    }


def _pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def _sdk_version() -> str:
    return _pkg_version("pulumi")
