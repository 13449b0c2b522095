"""Fuzz suite (issue 11): thousands of mutated copies of the shipped stacks, fixed seeds.

Every outcome must be a valid, placeable stack or a SpecError whose every line names the file and
a location (``file:line:col:`` from the YAML reader, ``file: path:`` from the schema and
validation, or one of a few whole-file problems).  Anything else — ValueError, KeyError,
RecursionError, a multi-line issue — fails with the seed and the text to reproduce it.

Before issue 11, 77 of 6,000 random mutations of the two stacks crashed `virtstack validate`.
"""

# Long literal lists of hostile values.
# ruff: noqa: E501

from __future__ import annotations

import copy
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from virtstack.errors import SpecError
from virtstack.placement import place_fleet
from virtstack.spec import yamldoc
from virtstack.spec.loader import parse_spec

REPO = Path(__file__).resolve().parents[2]
STACKS = {name: (REPO / "stacks" / name).read_text() for name in ("dev.yaml", "lab.yaml")}
MUTANTS_PER_STACK = 3000  # x 2 stacks: 6,000 documents, a few seconds

# Scalars a careless or hostile contributor might write (each crashed something, or could).
HOSTILE_SCALARS = [
    "!!int abc",
    "!!bool maybe",
    "!!float x",
    "!!timestamp 2001-99",
    "9" * 5000,
    "-" + "9" * 25,
    "0x" + "f" * 40,
    "0b" + "1" * 70,
    "0o777777777777777777777777",
    "2001-13-45",
    "!!int ''",
    "!!float ''",
    "!!binary '!!'",
    "!!set {a, b}",
    "!!omap [a]",
    "!!pairs [{a: 1}]",
    "*undefined",
    "&dup x",
    "!foo x",
    "!!python/object:os.system x",
    "!!str",
    "!!map",
    "!!seq x",
    "<<",
    "=",
    "~",
    "-1",
    "0",
    "10000",
    "10001",
    "1e309",
    ".nan",
    "-.inf",
    "1.5",
    "yes",
    "off",
    "1:2:3",
    "52:54:00:12:34:56",
    "''",
    '""',
    "'unterminated",
    '"\\x"',
    "[",
    "]",
    "{",
    "}",
    "[1, [2, {3: 4}]]",
    "{a: 1, a: 2}",
    "? [a]\n",
    "a" * 300,
    "\u202eevil",
    "qemu+ssh://h/system?command=/tmp/evil",
    "/etc/shadow",
    "512 MiB",
    "1PiB",
    "99999999999TiB",
    "0.0001KiB",
    "- x",
    "&a [*a]",
    "|",
    ">",
    "%YAML 1.1",
    "@",
    "`",
    "#",
    "\t",
    "\x00",
    "\ufeff",
    "\x85",
]
FRAGMENTS = [
    "[",
    "]",
    "{",
    "}",
    ":",
    ": ",
    "- ",
    "&a ",
    "*a",
    "!!",
    "<<: ",
    "\t",
    '"',
    "'",
    "#",
    "? ",
    "|",
    ">",
    ",",
    "\n",
    "  ",
    "\x00",
    "\u2028",
]
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**63),
    10**30,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x" * 200,
    [],
    {},
    [None],
    {"": None},
    {"x": [1, {"y": []}]},
    "10.77.0.999",
    "10.77.0.0/33",
    "ff:ff:ff:ff:ff:ff",
    "qemu:///system",
    "test:///default",
    "/",
    "..",
    "-",
    "0644",
    0o644,
    "512MiB",
    "-5GiB",
    [[[[[]]]]],
]
WHOLE_FILE = re.compile(
    r"the top level must be a mapping.*|the document is larger than .*|the file is larger than .*|not UTF-8 .*"
)
ISSUE = re.compile(r"(?P<file>[^:]+)(?::(?P<line>\d+):(?P<col>\d+))?: (?P<rest>.+)")


def text_mutant(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        kind = rng.randrange(7)
        if kind == 0:  # replace a value
            match = re.match(r"^(\s*(?:- )?[^:#]*:\s)(.*)$", lines[i])
            value = rng.choice(HOSTILE_SCALARS)
            lines[i] = match.group(1) + value if match else lines[i] + " " + value
        elif kind == 1:
            del lines[i]
            if not lines:
                lines = [""]
        elif kind == 2:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif kind == 3:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == 4:  # insert a fragment somewhere in the line
            at = rng.randint(0, len(lines[i]))
            lines[i] = lines[i][:at] + rng.choice(FRAGMENTS) + lines[i][at:]
        elif kind == 5:  # indentation
            lines[i] = " " * rng.choice([0, 1, 2, 3, 4, 6, 8]) + lines[i].lstrip(" ")
        else:  # a list item or a key from elsewhere in the file
            lines[i] = lines[i] + rng.choice(["", "\n" + lines[rng.randrange(len(lines))]])
    return "\n".join(lines)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += paths(value, (*prefix, i))
    return found


def data_mutant(rng: random.Random, data: Any) -> str:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        where = rng.choice(paths(data))
        if not where:
            continue
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        choice = rng.randrange(4)
        if choice == 0:
            parent[where[-1]] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
        elif choice == 1 and isinstance(parent, dict):
            del parent[where[-1]]
        elif choice == 2 and isinstance(parent[where[-1]], dict | list):  # duplicate an entry
            target = parent[where[-1]]
            if isinstance(target, list) and target:
                target.append(copy.deepcopy(rng.choice(target)))
            elif isinstance(target, dict) and target:
                key = rng.choice(list(target))
                target[f"{key}x"[:63] if isinstance(key, str) else key] = copy.deepcopy(target[key])
        elif choice == 3:
            parent[where[-1]] = rng.choice([0, 1, 2, 9999, 10000, 10001, 2**31])
    # libyaml's emitter when there is one: the pure-Python one took most of this suite's time.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True)


def check(text: str, file: str) -> None:
    try:
        place_fleet(parse_spec(text, file), file)
    except SpecError as error:
        assert error.issues
        for issue in error.issues:
            line = str(issue)
            assert "\n" not in line and "\r" not in line, line
            match = ISSUE.fullmatch(line)
            assert match and match["file"] == file, line
            # An unknown top-level key is located by its own name.
            located = issue.line > 0 or issue.path or issue.message.startswith("unknown key ")
            assert located or WHOLE_FILE.fullmatch(issue.message), line
            assert "Traceback" not in line and not re.search(r"unexpected \w+(Error|Exception)", line), line


@pytest.mark.parametrize("name", sorted(STACKS))
def test_mutated_stacks_never_crash(name: str) -> None:
    text = STACKS[name]
    data = yaml.safe_load(text)
    failures: list[str] = []
    for seed in range(MUTANTS_PER_STACK):
        rng = random.Random(f"{name}/{seed}")
        mutant = text_mutant(rng, text) if seed % 3 else data_mutant(rng, data)
        try:
            check(mutant, f"stacks/{name}")
        except Exception as error:  # collected: one run shows every failing seed
            failures.append(
                f"seed {seed}: {type(error).__name__}: {str(error)[:300]}\n--- text ---\n{mutant[:2000]}"
            )
    assert not failures, f"{len(failures)} of {MUTANTS_PER_STACK} mutants failed; first:\n" + failures[0]


TOKENS = [
    "a",
    "b",
    "1",
    "-1",
    "0x1f",
    "1.5",
    "yes",
    "~",
    "<<",
    "=",
    "!!int",
    "!!bool",
    "!!float",
    "!!str",
    "!!timestamp",
    "!!set",
    "!!omap",
    "!!binary",
    "!!merge",
    "!foo",
    "&a",
    "&b",
    "*a",
    "*b",
    ":",
    ": ",
    "- ",
    "? ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "\n  ",
    "\n    ",
    " ",
    "'",
    '"',
    "#",
    "|",
    ">",
    "---",
    "...",
    "%YAML 1.1",
    "2001-99",
    "2001-12-14",
    "9" * 30,
    "\t",
    "\x00",
    "\\",
    "@",
]


@pytest.mark.parametrize("loader", [yamldoc._Loader, yamldoc._PureLoader], ids=["libyaml", "pure-python"])
def test_random_token_documents_never_crash_the_reader(loader: type[yaml.SafeLoader]) -> None:
    failures = []
    for seed in range(2500):
        rng = random.Random(f"tokens/{seed}")
        text = "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 40)))
        try:
            yamldoc._parse(text, "f.yaml", loader)
        except SpecError as error:
            assert all(ISSUE.fullmatch(str(issue)) for issue in error.issues), str(error)
        except Exception as error:
            failures.append(f"seed {seed}: {type(error).__name__}: {error} in {text!r}")
    assert not failures, f"{len(failures)} failures; first: {failures[0]}"
