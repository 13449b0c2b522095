"""Peers, on the same daemon, the same VMs (the built image, 256 MiB, one vCPU, CoW root disk on a base
volume, cloud-init disk, one NIC on an isolated network), the same N:

- OpenTofu + terraform-provider-libvirt, built from the Go module proxy (peers/build.sh). The provider
  version the bench asks for is 0.8.1; the proxy refuses it, so the newest version it serves (0.7.6)
  is used — the exact refusal is recorded. `tofu apply -auto-approve` (default -parallelism=10) after
  an untimed `tofu init` from a local filesystem mirror.
- kcli (PyPI, in its own venv) `kcli create plan --threaded` with a plan of N VMs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.harness import LOCAL_URI, cleanup, destroy_domains, inventory, log, start_group
from bench.specs import IMAGE, POOL_ROOT
from bench.variants import RunningWatcher
from virtstack.settings import Settings

HERE = Path(__file__).resolve().parent
CACHE = Settings.from_env().cache / "bench"
BIN = CACHE / "bin"
WANTED_PROVIDER = "v0.8.1"
BUILT_PROVIDER = "0.7.6"
GOPROXY = "https://proxy.golang.org"


def _proxy_answer(path: str) -> str:
    """The module proxy's answer for one path: 'HTTP <code>: <first line of the body>'."""
    url = f"{GOPROXY}/{path}"
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            return f"HTTP {resp.status}: {resp.read(200).decode(errors='replace').strip().splitlines()[0]}"
    except urllib.error.HTTPError as err:
        body = err.read(200).decode(errors="replace").strip()
        return f"HTTP {err.code}: {body.splitlines()[0] if body else err.reason}"
    except OSError as err:
        return f"unreachable: {err}"


def proxy_facts() -> dict[str, str]:
    return {
        "terraform-provider-libvirt v0.8.1": _proxy_answer(
            f"github.com/dmacvicar/terraform-provider-libvirt/@v/{WANTED_PROVIDER}.info"
        ),
        "terraform-provider-libvirt v0.7.6": _proxy_answer(
            "github.com/dmacvicar/terraform-provider-libvirt/@v/v0.7.6.info"
        ),
        "opentofu v1.12.6": _proxy_answer("github.com/opentofu/opentofu/@v/v1.12.6.info"),
    }


def tofu_version() -> str:
    out = subprocess.run([str(BIN / "tofu"), "version"], capture_output=True, text=True).stdout
    return next((line for line in out.splitlines() if line.startswith("OpenTofu")), out.strip()[:200])


def build_tofu() -> tuple[bool, str]:
    proc = subprocess.run([str(HERE / "peers/build.sh"), "all"], capture_output=True, text=True, timeout=1500)
    text = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0, text[-1500:]


# ------------------------------------------------------------------------------------------- tofu

USER_DATA = "#cloud-config\nusers:\n  - name: ops\n"


def _tofu_config(prefix: str, n: int, subnet: int) -> str:
    return f"""
terraform {{
  required_providers {{
    libvirt = {{ source = "dmacvicar/libvirt", version = "{BUILT_PROVIDER}" }}
  }}
}}
provider "libvirt" {{ uri = "{LOCAL_URI}" }}

resource "libvirt_pool" "p" {{
  name = "{prefix}"
  type = "dir"
  path = "{POOL_ROOT / prefix}"
}}
resource "libvirt_network" "n" {{
  name      = "{prefix}"
  mode      = "none"
  bridge    = "{prefix}br"
  addresses = ["10.153.{subnet}.0/24"]
  dhcp {{ enabled = true }}
}}
resource "libvirt_volume" "base" {{
  name   = "{prefix}-base.qcow2"
  pool   = libvirt_pool.p.name
  source = "{IMAGE}"
  format = "qcow2"
}}
resource "libvirt_volume" "root" {{
  count          = {n}
  name           = "{prefix}-${{count.index + 1}}-root.qcow2"
  pool           = libvirt_pool.p.name
  base_volume_id = libvirt_volume.base.id
  size           = 3221225472
  format         = "qcow2"
}}
resource "libvirt_cloudinit_disk" "seed" {{
  count     = {n}
  name      = "{prefix}-${{count.index + 1}}-seed.iso"
  pool      = libvirt_pool.p.name
  user_data = "#cloud-config\\nhostname: {prefix}-${{count.index + 1}}\\nusers:\\n  - name: ops\\n"
  meta_data = "instance-id: {prefix}-${{count.index + 1}}\\nlocal-hostname: {prefix}-${{count.index + 1}}\\n"
}}
resource "libvirt_domain" "vm" {{
  count     = {n}
  name      = "{prefix}-${{count.index + 1}}"
  type      = "qemu"
  memory    = 256
  vcpu      = 1
  cloudinit = libvirt_cloudinit_disk.seed[count.index].id
  disk {{ volume_id = libvirt_volume.root[count.index].id }}
  network_interface {{ network_id = libvirt_network.n.id }}
  console {{
    type        = "pty"
    target_port = "0"
  }}
}}
"""


APPLY_TIMEOUT = 150.0  # an apply of 25 VMs takes ~20 s; the provider has been seen to hang


def _run_group(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in its own process group; on timeout kill the whole group (tofu and its provider
    plugin) and raise TimeoutError."""
    proc = start_group(cmd, cwd, env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise TimeoutError(
            f"{' '.join(cmd[:2])} made no end within {timeout:.0f}s; last output: {out[-600:]}"
        ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _tofu_env(work: Path) -> dict[str, str]:
    mirror = (
        work / "mirror" / "registry.opentofu.org" / "dmacvicar" / "libvirt" / BUILT_PROVIDER / "linux_amd64"
    )
    mirror.mkdir(parents=True, exist_ok=True)
    shutil.copy(BIN / "terraform-provider-libvirt", mirror / f"terraform-provider-libvirt_v{BUILT_PROVIDER}")
    rc = work / "tofurc"
    rc.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{work / "mirror"}"\n  }}\n}}\n'
    )
    env = dict(os.environ)
    env.update(
        TF_CLI_CONFIG_FILE=str(rc),
        TF_IN_AUTOMATION="1",
        CHECKPOINT_DISABLE="1",
        TF_DATA_DIR=str(work / ".tofu"),
    )
    return env


def run_tofu(prefix: str, n: int, subnet: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vsb-tofu-"))
    names = [f"{prefix}-{i}" for i in range(1, n + 1)]
    out: dict[str, Any] = {"n": n}
    try:
        (work / "main.tf").write_text(_tofu_config(prefix, n, subnet))
        env = _tofu_env(work)
        tofu = str(BIN / "tofu")
        proc = subprocess.run(
            [tofu, "init", "-input=false", "-no-color"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"tofu init: {(proc.stdout + proc.stderr)[-1500:]}")
        watcher = RunningWatcher(LOCAL_URI, names).start()
        t0 = time.perf_counter()
        try:
            proc = _run_group(
                [tofu, "apply", "-auto-approve", "-input=false", "-no-color"], work, env, APPLY_TIMEOUT
            )
        except TimeoutError:
            watcher.stop()
            raise
        out["seconds"] = time.perf_counter() - t0
        deadline = time.perf_counter() + 30
        while watcher.t_all is None and time.perf_counter() < deadline:
            time.sleep(0.05)
        watcher.stop()
        destroy_domains(LOCAL_URI, prefix)
        out["all_running_seconds"] = (watcher.t_all - t0) if watcher.t_all else None
        if proc.returncode != 0:
            raise RuntimeError(f"tofu apply: {(proc.stdout + proc.stderr)[-1500:]}")
        t1 = time.perf_counter()
        proc = _run_group(
            [tofu, "destroy", "-auto-approve", "-input=false", "-no-color"], work, env, APPLY_TIMEOUT
        )
        out["teardown_seconds"] = time.perf_counter() - t1
        out["left_after_destroy"] = inventory(LOCAL_URI, prefix)
    except Exception as err:
        out["error"] = f"{type(err).__name__}: {str(err)[-1500:]}"
    finally:
        destroy_domains(LOCAL_URI, prefix)
        cleanup([LOCAL_URI], prefix)
        shutil.rmtree(work, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------------- kcli

KCLI_VENV = CACHE / "kcli-venv"


def kcli_install() -> tuple[bool, str]:
    """kcli from PyPI in its own venv (libvirt-python pinned to the project's version)."""
    if (KCLI_VENV / "bin" / "kcli").exists():
        return True, "cached"
    proc = subprocess.run(["python3", "-m", "venv", str(KCLI_VENV)], capture_output=True, text=True)
    if proc.returncode == 0:
        proc = subprocess.run(
            [str(KCLI_VENV / "bin/pip"), "install", "-q", "kcli", "libvirt-python==12.8.0"],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    return proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]


def kcli_version() -> str:
    proc = subprocess.run([str(KCLI_VENV / "bin/pip"), "show", "kcli"], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "?"


def _kcli(home: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home))
    return subprocess.run(
        [str(KCLI_VENV / "bin/kcli"), *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_kcli(prefix: str, n: int, subnet: int, threaded: bool = True) -> dict[str, Any]:
    """kcli's own pool and network (made through kcli, untimed), the image copied into the pool
    (untimed: kcli wants its images as pool volumes), then the timed `kcli create plan --threaded`."""
    home = Path(tempfile.mkdtemp(prefix="vsb-kcli-"))
    names = [f"{prefix}-{i}" for i in range(1, n + 1)]
    out: dict[str, Any] = {"n": n, "threaded": threaded}
    try:
        (home / ".kcli").mkdir()
        (home / ".kcli/config.yml").write_text(
            f"default:\n  client: local\n  pool: {prefix}\n"
            f"local:\n  type: kvm\n  host: 127.0.0.1\n  pool: {prefix}\n"
        )
        for args in (
            ("create", "pool", "-p", str(POOL_ROOT / prefix), prefix),
            ("create", "network", "-c", f"10.153.{subnet}.0/24", "-i", prefix),
        ):
            proc = _kcli(home, *args, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"kcli {' '.join(args)}: {(proc.stdout + proc.stderr)[-1000:]}")
        image = f"{prefix}-debian-12.qcow2"
        t_copy = time.perf_counter()
        shutil.copy(IMAGE, POOL_ROOT / prefix / image)
        out["image_copy_seconds"] = time.perf_counter() - t_copy
        subprocess.run(["virsh", "-c", LOCAL_URI, "pool-refresh", prefix], capture_output=True, check=False)
        plan = {
            name: {
                "image": image,
                "memory": 256,
                "numcpus": 1,
                "pool": prefix,
                "disks": [3],
                "nets": [prefix],
                "virttype": "qemu",
                "cpumodel": "qemu64",
                "cloudinit": True,
                "start": True,
                "wait": False,
                "reservedns": False,
                "reservehost": False,
                "cmds": [],
                "keys": [],
                "tpm": False,
                "rng": False,
                "notify": False,
            }
            for name in names
        }
        (home / "plan.yml").write_text(json.dumps(plan))  # JSON is YAML
        watcher = RunningWatcher(LOCAL_URI, names).start()
        t0 = time.perf_counter()
        extra = ["--threaded"] if threaded else []
        proc = _kcli(home, "create", "plan", *extra, "-f", str(home / "plan.yml"), prefix)
        out["seconds"] = time.perf_counter() - t0
        deadline = time.perf_counter() + 30
        while watcher.t_all is None and time.perf_counter() < deadline:
            time.sleep(0.05)
        watcher.stop()
        destroy_domains(LOCAL_URI, prefix)
        out["all_running_seconds"] = (watcher.t_all - t0) if watcher.t_all else None
        if proc.returncode != 0 or watcher.t_all is None:
            raise RuntimeError(
                f"kcli create plan: rc={proc.returncode} {(proc.stdout + proc.stderr)[-1500:]}"
            )
        t1 = time.perf_counter()
        _kcli(home, "delete", "plan", "--yes", prefix, timeout=600)
        out["teardown_seconds"] = time.perf_counter() - t1
        out["left_after_delete"] = inventory(LOCAL_URI, prefix)
    except Exception as err:
        out["error"] = f"{type(err).__name__}: {str(err)[-1500:]}"
    finally:
        destroy_domains(LOCAL_URI, prefix)
        left = cleanup([LOCAL_URI], prefix)
        out["left_after_cleanup"] = left
        shutil.rmtree(home, ignore_errors=True)
    return out


def log_peer(name: str, res: dict[str, Any]) -> None:
    if "error" in res:
        log(f"{name} N={res.get('n')}: FAILED {res['error'][:300]}")
    else:
        log(f"{name} N={res['n']}: {res['seconds']:.1f}s")
