"""Errors the ops layer reports to users (all VirtstackError: the CLI prints them without a traceback)."""

from __future__ import annotations

from virtstack.errors import VirtstackError

__all__ = ["Cancelled", "DataLossRefused", "EngineError", "Interrupted", "Refused", "StackNotFound"]


class EngineError(VirtstackError):
    """The Pulumi engine failed; the message names each failing resource and the engine log."""

    def __init__(self, message: str, log_path: str | None = None) -> None:
        if log_path:
            message = f"{message}\n(full engine output: {log_path})"
        super().__init__(message)
        self.log_path = log_path


class StackNotFound(VirtstackError):
    """A command that needs a deployed stack was given one that does not exist."""

    def __init__(self, stack: str) -> None:
        super().__init__(f"stack {stack} does not exist (create it with `virtstack up -s {stack}`)")
        self.stack = stack


class Refused(VirtstackError):
    """A command refused to go on (no terminal to ask, or the user said no)."""


class Cancelled(Refused):
    """The user answered no; nothing was changed."""


class DataLossRefused(Refused):
    """The plan deletes or recreates disks that hold data, and --allow-data-loss was not given."""

    def __init__(self, disks: list[str]) -> None:
        listed = ", ".join(disks)
        super().__init__(
            f"refusing to apply: the plan destroys {len(disks)} disk(s) holding data ({listed}); "
            "review the plan and re-run with --allow-data-loss if that is intended "
            "(`protect: true` on a VM keeps it from any deletion)"
        )
        self.disks = disks


class Interrupted(VirtstackError):
    """Ctrl-C stopped an operation; the message says how to continue."""
