"""Byte sizes as written in stack files.

Public API:
    parse_size(value: object) -> int      -- bytes; raises ValueError with a
                                             message fit for users.
    format_size(n: int) -> str            -- ``"4 GiB"``, ``"1.5 GiB"``, ``"512 MiB"``.
    KIB, MIB, GIB, TIB                    -- 1024-based unit constants.

Accepted input:
    * an int: a number of bytes (``1073741824``);
    * a string: a number, optionally with a decimal fraction, then optionally
      spaces, then a unit: ``"512MiB"``, ``"4 GiB"``, ``"1.5GiB"``, ``"200GB"``,
      ``"100M"``, ``"1TiB"``, ``"4096"``.

Units (case-insensitive):
    * ``KiB MiB GiB TiB PiB`` and the Kubernetes-style ``Ki Mi Gi Ti Pi`` are
      1024-based;
    * ``KB MB GB TB PB`` *and the bare letters* ``K M G T P`` are 1000-based (SI);
    * ``B`` or no unit means bytes.

The bare letters are 1000-based so that ``100M`` and ``100MB`` mean the same
thing.  Beware that this differs from qemu-img and libvirt, where ``M`` means
MiB; write ``MiB``/``GiB`` to be unambiguous (the examples do).

A fractional result is rounded down to whole bytes (``"0.1KiB"`` is 102 bytes).
Floats (YAML ``1.5``), booleans and negative numbers are rejected.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation

from virtstack.errors import shorten

__all__ = ["GIB", "KIB", "MIB", "SIZE_HELP", "SIZE_PATTERN", "TIB", "format_size", "parse_size"]

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4
PIB = 1024**5

# Sizes end up in libvirt XML as unsigned long long; anything past a signed
# 64-bit int is certainly a typo and would only overflow somewhere later.
_MAX_BYTES = 2**63 - 1

_FACTORS: dict[str, int] = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtp", start=1):
    _FACTORS[_letter] = 1000**_power
    _FACTORS[_letter + "b"] = 1000**_power
    _FACTORS[_letter + "i"] = 1024**_power
    _FACTORS[_letter + "ib"] = 1024**_power

_NUMBER = r"([0-9]+(\.[0-9]+)?|\.[0-9]+)"
# The accepted syntax, also published in the stack file's JSON Schema (ECMA-262 regex: no named
# groups).  Group 1 is the number, group 3 the unit; the units are the keys of _FACTORS.
SIZE_PATTERN = rf"^\s*{_NUMBER}\s*([KkMmGgTtPp][Ii]?[Bb]?|[Bb])?\s*$"
SIZE_HELP = (
    "Bytes, or a number with a unit: 512MiB, 4GiB, 1.5GiB (KiB/MiB/GiB/TiB and Ki/Mi/Gi/Ti are "
    "1024-based), 200GB or 100M (KB/MB/GB/TB and K/M/G/T are 1000-based)."
)
_SIZE_RE = re.compile(SIZE_PATTERN)
# Only for the message when SIZE_PATTERN does not match: a number with some other word after it.
_OTHER_UNIT_RE = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-z]+)\s*$")

_HINT = "expected bytes or a number with a unit, e.g. 512MiB, 4GiB, 1.5GiB or 200GB"


def parse_size(value: object) -> int:
    """Return ``value`` as a number of bytes (see the module docstring)."""
    # bool is an int subclass; `memory: true` is never meant as 1 byte.
    if isinstance(value, bool):
        raise ValueError(f"must be a size, not a boolean ({_HINT})")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        if value > _MAX_BYTES:
            raise ValueError("is too large")
        return value
    if isinstance(value, float):
        raise ValueError(
            "a bare number must be a whole number of bytes; add a unit for fractions, e.g. 1.5GiB"
        )
    if not isinstance(value, str):
        raise ValueError(f"must be a size ({_HINT})")
    return _parse_size_text(value)


@functools.lru_cache(maxsize=4096)
def _parse_size_text(value: str) -> int:
    # Cached: a stack repeats a handful of sizes ("1GiB", "8GiB") on thousands of VMs.  Errors
    # are raised, hence never cached.
    match = _SIZE_RE.match(value)
    if match is None:
        if value.strip().startswith("-"):
            raise ValueError("must not be negative")
        other = _OTHER_UNIT_RE.match(value)
        if other is not None:
            raise ValueError(
                f"unknown size unit {other[3]!r} in {shorten(value)} "
                "(use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"
            )
        raise ValueError(f"invalid size {shorten(value)} ({_HINT})")
    factor = _FACTORS[(match[3] or "").lower()]
    try:
        # Decimal keeps "1.5GiB" exact; float would not for larger units.
        number = Decimal(match[1])
    except InvalidOperation:  # pragma: no cover - the regex only admits valid decimals
        raise ValueError(f"invalid size {shorten(value)} ({_HINT})") from None
    size = int(number * factor)  # int() truncates toward zero: whole bytes
    if size > _MAX_BYTES:
        raise ValueError(f"size {shorten(value)} is too large")
    return size


_FORMAT_UNITS = [(PIB, "PiB"), (TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")]


def format_size(n: int) -> str:
    """Human form of a byte count, 1024-based, at most two decimals.

    ``format_size(4 * GIB) == "4 GiB"``, ``format_size(1536 * MIB) == "1.5 GiB"``,
    ``format_size(100) == "100 B"``.  The output parses back with parse_size to
    the same value whenever it needs no rounding.
    """
    if n < 0:
        return "-" + format_size(-n)
    for factor, name in _FORMAT_UNITS:
        if n >= factor:
            value = (Decimal(n) / factor).quantize(Decimal("0.01"))
            text = format(value, "f").rstrip("0").rstrip(".")
            return f"{text} {name}"
    return f"{n} B"
