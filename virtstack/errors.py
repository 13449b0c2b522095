"""Exceptions shared by every virtstack module.

Public API:
    VirtstackError(message)      -- base class; ``str()`` is one clean line for users.
    SpecIssue(file, path, message, line=0, column=0)
                                 -- one problem in a stack file; ``str()`` is
                                    ``"{file}: {path}: {message}"`` (or
                                    ``"{file}: {message}"`` when path is empty,
                                    ``"{file}:{line}:{column}: {message}"`` when
                                    the YAML position is known).
    SpecError(issues)            -- a stack file is invalid; carries *all* issues
                                    found, ``str()`` is one issue per line, at most
                                    MAX_SHOWN_ISSUES of them and a line counting the rest.
    shorten(text, limit=40)      -- user input quoted for a message, cut short.

Only these exceptions should ever reach a user for bad input: callers (the CLI)
print ``str(exc)`` and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_SHOWN_ISSUES", "SpecError", "SpecIssue", "VirtstackError", "shorten"]

# A hostile or broken file can have tens of thousands of problems; past this many, more lines only
# bury the first ones (and a CI log or terminal has to hold them all).
MAX_SHOWN_ISSUES = 100


class VirtstackError(Exception):
    """Base class of every error virtstack reports to a user.

    The message is meant to be shown as-is, so it is kept to one line
    (subclasses that carry several problems, like SpecError, use one line each).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, order=True)
class SpecIssue:
    """One problem found in a stack file.

    ``file`` is the file as the user named it, ``path`` the dotted location
    inside the document (``vms.web.nics[0].ip``; empty for whole-file
    problems such as YAML syntax errors).  ``line`` and ``column`` (1-based,
    0 when unknown) place problems found while reading the YAML, in the
    ``file:line:column:`` form editors and CI annotations understand.
    """

    file: str
    path: str
    message: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            where = f"{self.file}:{self.line}:{self.column}"
            return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if self.path:
            return f"{self.file}: {self.path}: {self.message}"
        return f"{self.file}: {self.message}"


class SpecError(VirtstackError):
    """A stack file (or the fleet it describes) is invalid.

    Always carries at least one issue; ``str()`` lists them one per line in the
    order they were found (which is deterministic for a given input).
    """

    def __init__(self, issues: Iterable[SpecIssue]) -> None:
        self.issues: list[SpecIssue] = list(issues)
        if not self.issues:
            # An empty SpecError would print nothing useful; catch the bug early.
            raise ValueError("SpecError needs at least one issue")
        lines = [str(issue) for issue in self.issues[:MAX_SHOWN_ISSUES]]
        hidden = len(self.issues) - len(lines)
        if hidden > 0:
            lines.append(f"{self.issues[0].file}: … and {hidden:,} more problems (fix the ones above first)")
        super().__init__("\n".join(lines))

    @classmethod
    def single(cls, file: str, path: str, message: str) -> SpecError:
        """Shortcut for an error with exactly one issue."""
        return cls([SpecIssue(file, path, message)])


def shorten(text: str, limit: int = 40) -> str:
    """Quote user input for an error message without letting it run on."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
