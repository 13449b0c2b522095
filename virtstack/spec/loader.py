"""Load a stack file: YAML -> StackSpec, with every problem as a SpecIssue.

Public API:
    load_stack(path, display_name=None, deployed=()) -> LoadedStack(spec, fleet)
        Reads, parses, validates the schema, expands the fleet once and
        cross-validates it (virtstack.validate).  Raises SpecError carrying all
        issues; issues name the file as given (or ``display_name``).
    parse_stack(text, file, deployed=()) -> LoadedStack
        The same for text already in memory.
    load_spec(path, display_name=None) / parse_spec(text, file) -> StackSpec
    issues_from_validation_error(error, file) -> list[SpecIssue]
    format_loc(loc) -> str        -- ("vms", "web", "nics", 0, "ip") -> "vms.web.nics[0].ip"

YAML dialect and limits: see virtstack.spec.yamldoc (safe YAML 1.1 without base-60
numbers, duplicate keys are errors, size, depth, value and alias limits checked
while reading, self-referencing aliases rejected; positions as file:line:col).

Issue order: duplicate keys, then schema problems in pydantic's order (model
field order, then entry order), then cross-validation problems.  Cross
validation only runs once the file is structurally valid, and stops at the
fleet-wide totals (virtstack.validate.check_totals) before expanding counts.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, ValidationError

from virtstack.errors import SpecError, SpecIssue
from virtstack.fleet import VmInstance, expand_fleet
from virtstack.spec.models import StackSpec
from virtstack.spec.scalars import ISSUES_ERROR_TYPE
from virtstack.spec.yamldoc import MAX_TEXT_CHARS, parse_yaml
from virtstack.validate import check_totals, validate_spec

__all__ = [
    "LoadedStack",
    "format_loc",
    "issues_from_validation_error",
    "load_spec",
    "load_stack",
    "parse_spec",
    "parse_stack",
]

MAX_FILE_BYTES = MAX_TEXT_CHARS  # refused before decoding, rather than after


# ------------------------------------------------------ pydantic -> SpecIssue

_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_loc(loc: Sequence[str | int]) -> str:
    """Dotted path of a location: ("vms", "web", "nics", 0, "ip") -> vms.web.nics[0].ip."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] around a type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (for key hints)."""
    tp: Any = StackSpec
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s" if not word.endswith("y") else f"{n} {word[:-1]}ies"


_TYPE_MESSAGES = {
    "missing": "required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "recursion_loop": "refers to itself",
}


def _issues_from_error(err: Any) -> Iterator[tuple[list[str | int], str]]:
    loc: list[str | int] = list(err["loc"])
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    if kind == ISSUES_ERROR_TYPE:
        for sub_loc, message in ctx["issues"]:
            yield loc + list(sub_loc), message
        return
    if kind == "extra_forbidden" and loc:
        key = loc.pop()
        message = f"unknown key {_short_repr(key)}"
        model = _model_at(loc)
        if model is not None and isinstance(key, str):
            close = difflib.get_close_matches(key, list(model.model_fields), n=1)
            if close:
                message += f" (did you mean '{close[0]}'?)"
        yield loc, message
        return
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        message = str(ctx["error"])
    elif kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
    elif kind == "literal_error":
        expected = ctx.get("expected", "one of the allowed values")
        message = f"must be {expected} (got {_short_repr(err.get('input'))})"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "greater than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        bound = next(iter(ctx.values()), "?")
        message = f"must be {words} {bound}"
    elif kind == "too_short":
        message = f"must have at least {_plural(int(ctx.get('min_length', 1)), 'entry')}"
    elif kind == "too_long":
        message = f"must have at most {_plural(int(ctx.get('max_length', 0)), 'entry')}"
    else:
        raw: str = err.get("msg", "is invalid")
        message = raw.replace("Input should be", "must be").replace("Value error, ", "")
    if loc and loc[-1] == "[key]":
        # A bad mapping key: report it at the mapping, naming the key.
        loc.pop()
        key = loc.pop() if loc else "?"
        if not message.startswith("invalid name"):
            message = f"key {_short_repr(key)} {message}"
    yield loc, message


def issues_from_validation_error(error: ValidationError, file: str) -> list[SpecIssue]:
    issues = []
    for err in error.errors(include_url=False):
        for loc, message in _issues_from_error(err):
            issues.append(SpecIssue(file, format_loc(loc), message))
    return issues


# ---------------------------------------------------------------- entry points


@dataclass(frozen=True)
class LoadedStack:
    """A validated stack file and its fleet, expanded once (validation checked that very list)."""

    spec: StackSpec
    fleet: tuple[VmInstance, ...]


def parse_stack(text: str, file: str, deployed: Collection[str] = ()) -> LoadedStack:
    """Parse and validate ``text``; ``deployed`` names the VMs of the last deployment (see
    virtstack.fleet.instance_names), so the fleet validated is the one that will be placed."""
    data, issues = parse_yaml(text, file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError.single(
            file, "", "the top level must be a mapping with hosts, images, vms and placement"
        )
    try:
        spec = StackSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(issues + issues_from_validation_error(error, file)) from None
    if issues:
        raise SpecError(issues)
    totals = check_totals(spec, file)
    if totals:  # before expanding: a typo'd count must not expand forever
        raise SpecError(totals)
    fleet = tuple(expand_fleet(spec, deployed))
    issues = validate_spec(spec, file, fleet)
    if issues:
        raise SpecError(issues)
    return LoadedStack(spec, fleet)


def parse_spec(text: str, file: str) -> StackSpec:
    return parse_stack(text, file).spec


def _read_at_most(handle: BinaryIO, limit: int) -> bytes:
    """Up to `limit` bytes, in chunks: `read(limit)` would allocate the whole limit (64 MiB) on every
    load, however small the file."""
    chunks, size = [], 0
    while size < limit:
        chunk = handle.read(min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def load_stack(
    path: str | Path, display_name: str | None = None, deployed: Collection[str] = ()
) -> LoadedStack:
    """Read ``path`` and parse_stack it; issues name the file as ``display_name`` (default: path)."""
    file = display_name if display_name is not None else str(path)
    try:
        with open(path, "rb") as handle:
            raw = _read_at_most(handle, MAX_FILE_BYTES + 1)
    except OSError as error:
        raise SpecError.single(file, "", f"cannot read the file: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError.single(file, "", f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8-sig")  # -sig: tolerate a BOM from Windows editors
    except UnicodeDecodeError as error:
        raise SpecError.single(file, "", f"not UTF-8 text (bad byte at offset {error.start})") from None
    return parse_stack(text, file, deployed)


def load_spec(path: str | Path, display_name: str | None = None) -> StackSpec:
    """load_stack for callers that need only the spec."""
    return load_stack(path, display_name).spec
