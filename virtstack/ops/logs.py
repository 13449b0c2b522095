"""Log files: the engine's full output when an operation fails, and tracebacks of unexpected errors.

Public API:
    write_log(directory, prefix, text, now=None) -> Path   -- <directory>/<prefix>-<timestamp>.log
    crash_log(directory, error, argv, now=None) -> Path    -- virtstack-<timestamp>.log: the command line
                                                              and the traceback
"""

from __future__ import annotations

import os
import traceback
from datetime import datetime
from pathlib import Path

__all__ = ["crash_log", "write_log"]


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)


def write_log(directory: Path, prefix: str, text: str, now: datetime | None = None) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # logs quote engine output: owner only
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = directory / f"{_safe(prefix)}-{stamp}.log"
    counter = 1
    while path.exists():  # two failures in one second keep both logs
        counter += 1
        path = directory / f"{_safe(prefix)}-{stamp}-{counter}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # logs may quote stack values
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def crash_log(directory: Path, error: BaseException, argv: list[str], now: datetime | None = None) -> Path:
    text = (
        "virtstack "
        + " ".join(argv)
        + "\n\n"
        + "".join(traceback.format_exception(type(error), error, error.__traceback__))
    )
    return write_log(directory, "virtstack", text, now)
