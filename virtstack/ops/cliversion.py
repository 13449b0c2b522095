"""The version of a `pulumi` binary, remembered per binary so each virtstack command does not start
one more process (`pulumi version`, ~0.1 s) before the engine's own.

The Automation API asks every new PulumiCommand for its CLI's version (to check it is new enough).
The answer only changes when the binary does, so it is kept in a small JSON file keyed by the
binary's real path, size and modification time: a rebuilt or replaced binary is asked again.

Public API:
    cli_version(command, cache_file, run=_ask) -> str    e.g. "3.274.1" (no leading "v")
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["cli_version"]


def _ask(command: str) -> str:
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    return subprocess.check_output([command, "version"], env=env).decode("utf-8")


def _key(command: str) -> str | None:
    """realpath:size:mtime_ns of the binary, or None when it cannot be looked at (then always ask)."""
    found = command if os.sep in command else None
    if found is None:
        import shutil

        found = shutil.which(command)
    if found is None:
        return None
    try:
        real = os.path.realpath(found)
        stat = os.stat(real)
    except OSError:
        return None
    return f"{real}:{stat.st_size}:{stat.st_mtime_ns}"


def _load(cache_file: Path) -> dict[str, str]:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _store(cache_file: Path, data: dict[str, str]) -> None:
    """Atomically (a rename): two commands at once each write a whole file."""
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs the next run 0.1 s
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".cli-version-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, sort_keys=True)
        os.replace(tmp, cache_file)


def cli_version(command: str, cache_file: Path, run: Callable[[str], str] = _ask) -> str:
    key = _key(command)
    cached = _load(cache_file)
    if key is not None and key in cached:
        return cached[key]
    version = run(command).strip().removeprefix("v")
    if key is not None and version:
        # Only this binary's entry is kept current; entries of binaries that are gone are dropped.
        kept = {k: v for k, v in cached.items() if Path(k.rsplit(":", 2)[0]).exists()}
        _store(cache_file, {**kept, key: version})
    return version
