"""Setup times (issue 15): `scripts/setup.sh` warm (this checkout, everything cached) and cold (a fresh
clone of this checkout's HEAD with empty caches: its own VIRTSTACK_CACHE, Go module and build caches
and pip cache, so the toolchain is built, the image built and every Python package fetched again).
The cold run is `make up`'s setup (`scripts/setup.sh --for up`: the steps the stacks in stacks/ need;
the libvirt plugin's Go build is left out unless one has a pulumi-libvirt host), the target's subject.

What a shared machine cannot undo is said in the result: the Debian packages stay installed and the
libvirt daemon stays up (the cold run finds them), so `apt` and `daemons` are warm in both figures.
The shared cache (/var/cache/virtstack) is never touched: the cold run's caches live in a temporary
directory removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.specs import PROJECT_ROOT

COLD_TIMEOUT = 1800


def _steps(root: Path) -> dict[str, float]:
    out = {}
    for f in sorted((root / ".virtstack/setup").glob("*.seconds")):
        if f.stem == "total":
            continue
        try:
            out[f.stem] = float(f.read_text().strip())
        except ValueError:
            continue
    return out


def run_setup(root: Path, env: dict[str, str], timeout: float, *args: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    command = ["bash", "scripts/setup.sh", *args]
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    row: dict[str, Any] = {
        "seconds": seconds,
        "steps": _steps(root),
        "exit": proc.returncode,
        "command": " ".join(command[1:]),
    }
    if proc.returncode != 0:
        row["error"] = proc.stderr[-1500:]
    return row


def _env(extra: dict[str, str], cold: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTSTACK_", "PULUMI_"))}
    env.pop("PYTHONPATH", None)
    if cold:
        # `make bench` runs under scripts/env.sh: its PATH holds this machine's built toolchain (which
        # build-toolchain.sh would take as "a pulumi already on PATH") and this checkout's venv.
        env["PATH"] = os.pathsep.join(
            d for d in env.get("PATH", "").split(os.pathsep) if d and not _holds_pulumi_or_project(d)
        )
    env.update(extra)
    return env


def _holds_pulumi_or_project(directory: str) -> bool:
    path = Path(directory)
    return (path / "pulumi").exists() or path.is_relative_to(PROJECT_ROOT)


def warm() -> dict[str, Any]:
    return run_setup(PROJECT_ROOT, _env({}), 600)


def cold() -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vsb-setup-cold-"))
    # mkdtemp makes it 0700: QEMU's user could not read the probe's kernel in the cache below it.
    tmp.chmod(0o755)
    try:
        repo = tmp / "repo"
        subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(repo)], check=True)
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        subprocess.run(["git", "checkout", "-q", head], cwd=repo, check=True)
        env = _env(
            {
                "VIRTSTACK_CACHE": str(tmp / "cache"),
                "GOMODCACHE": str(tmp / "gomod"),
                "GOCACHE": str(tmp / "gocache"),
                "PIP_CACHE_DIR": str(tmp / "pip"),
            },
            cold=True,
        )
        row = run_setup(repo, env, COLD_TIMEOUT, "--for", "up")
        row["commit"] = head
        return row
    finally:
        # Go's module cache is read-only by design.
        subprocess.run(["chmod", "-R", "u+w", str(tmp)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(cold() if sys.argv[1:] == ["cold"] else warm(), indent=1))
