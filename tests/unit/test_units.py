"""Size parsing and formatting (virtstack.units)."""

# Expected messages are kept whole on one line each, so they can be grepped for.
# ruff: noqa: E501

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtstack.units import GIB, KIB, MIB, SIZE_PATTERN, TIB, format_size, parse_size

VALID = [
    (0, 0),
    (1024, 1024),
    ("4096", 4096),
    ("512MiB", 512 * MIB),
    ("4GiB", 4 * GIB),
    ("16GiB", 16 * GIB),
    ("1.5GiB", 3 * GIB // 2),
    ("200GB", 200 * 10**9),
    ("1TiB", TIB),
    ("100M", 100 * 10**6),
    ("100MB", 100 * 10**6),
    ("100Mi", 100 * MIB),
    ("4 GiB", 4 * GIB),
    (" 4gib ", 4 * GIB),
    ("2k", 2000),
    ("2KiB", 2 * KIB),
    ("10B", 10),
    (".5GiB", GIB // 2),
    ("0.1KiB", 102),  # fractions of a byte are dropped
    ("1PiB", 1024**5),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[repr(v[0]) for v in VALID])
def test_parse_size_valid(text: object, expected: int) -> None:
    assert parse_size(text) == expected


INVALID = [
    ("", "invalid size '' (expected bytes or a number with a unit, e.g. 512MiB, 4GiB, 1.5GiB or 200GB)"),
    (
        "lots",
        "invalid size 'lots' (expected bytes or a number with a unit, e.g. 512MiB, 4GiB, 1.5GiB or 200GB)",
    ),
    (
        "4 G B",
        "invalid size '4 G B' (expected bytes or a number with a unit, e.g. 512MiB, 4GiB, 1.5GiB or 200GB)",
    ),
    ("4XB", "unknown size unit 'XB' in '4XB' (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"),
    ("-1GiB", "must not be negative"),
    (-5, "must not be negative"),
    (
        True,
        "must be a size, not a boolean (expected bytes or a number with a unit, e.g. 512MiB, 4GiB, 1.5GiB or 200GB)",
    ),
    (1.5, "a bare number must be a whole number of bytes; add a unit for fractions, e.g. 1.5GiB"),
    (None, "must be a size (expected bytes or a number with a unit, e.g. 512MiB, 4GiB, 1.5GiB or 200GB)"),
    ([1], "must be a size (expected bytes or a number with a unit, e.g. 512MiB, 4GiB, 1.5GiB or 200GB)"),
    (2**63, "is too large"),
    ("99999999PiB", "size '99999999PiB' is too large"),
]


@pytest.mark.parametrize(("value", "message"), INVALID, ids=[repr(v[0]) for v in INVALID])
def test_parse_size_invalid(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (KIB, "1 KiB"),
        (512 * MIB, "512 MiB"),
        (4 * GIB, "4 GiB"),
        (3 * GIB // 2, "1.5 GiB"),
        (18 * GIB, "18 GiB"),
        (TIB, "1 TiB"),
        (GIB + 1, "1 GiB"),
        (-2 * GIB, "-2 GiB"),
        (int(1.25 * GIB), "1.25 GiB"),
    ],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


@given(
    st.integers(min_value=0, max_value=10**6), st.sampled_from(["KiB", "MiB", "GiB", "TiB", "K", "MB", "g"])
)
def test_parse_with_unit_is_exact(k: int, unit: str) -> None:
    factor = {"KiB": KIB, "MiB": MIB, "GiB": GIB, "TiB": TIB, "K": 1000, "MB": 10**6, "g": 10**9}[unit]
    assert parse_size(f"{k}{unit}") == k * factor
    assert parse_size(f"{k} {unit}") == k * factor


@given(st.integers(min_value=0, max_value=2**50))
def test_format_parses_back_within_rounding(n: int) -> None:
    back = parse_size(format_size(n))
    # Two decimals of a unit <= n: off by at most 0.5% of n, plus the byte
    # that parsing truncates (exact below 1 KiB).
    assert abs(back - n) <= n * 0.005 + 1


@pytest.mark.parametrize(
    "unit",
    [
        "",
        "B",
        "b",
        "K",
        "KB",
        "Ki",
        "KiB",
        "kib",
        "M",
        "MB",
        "Mi",
        "MiB",
        "G",
        "GB",
        "Gi",
        "GiB",
        "T",
        "TB",
        "Ti",
        "TiB",
        "P",
        "PB",
        "Pi",
        "PiB",
    ],
)
def test_every_unit_is_in_the_published_pattern_and_parses(unit: str) -> None:
    """SIZE_PATTERN is both the parser's syntax and the JSON Schema's: a unit the parser takes is one
    an editor accepts, and the factor is 1000- or 1024-based by the 'i'."""
    assert re.match(SIZE_PATTERN, f"3{unit}")
    power = "_KMGTP".find(unit[:1].upper()) if unit[:1].upper() in "KMGTP" else 0
    base = 1024 if unit[1:2].lower() == "i" else 1000
    assert parse_size(f"3{unit}") == 3 * base**power
