"""virtstack.yamldoc builds data itself for speed; it must give what PyYAML's constructor gives.

The reference is the same loader class (our resolvers: no base-60) run through PyYAML's own
construct_document, so any difference is the builder's.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import yaml

from virtstack.errors import SpecError
from virtstack.yamldoc import MAX_NODES, _Loader, parse_yaml


def reference(text: str) -> Any:
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


DOCUMENTS = {
    "plain strings and quoted numbers": "a: x\nb: \"1\"\nc: 'true'\nd: 52:54:00:12:34:56\n",
    "integers": "a: 0\nb: -5\nc: +3\nd: 0x1f\ne: 017\nf: 1_000\ng: 0b101\nh: 190:20:30\n",
    "floats": "a: 1.5\nb: -0.25\nc: .inf\nd: -.inf\ne: 1.0e+3\nf: 6.8523015e+5\n",
    "booleans": "a: yes\nb: No\nc: on\nd: OFF\ne: true\nf: False\ng: y\n",
    "nulls": "a: null\nb: ~\nc:\nd: Null\n",
    "timestamps": "a: 2001-12-14t21:59:43.10-05:00\nb: 2002-12-14\n",
    "binary": "a: !!binary aGVsbG8=\n",
    "set and omap": "a: !!set {x, y}\nb: !!omap [{k: 1}, {j: 2}]\nc: !!pairs [{k: 1}, {k: 2}]\n",
    "explicit tags": "a: !!str 12\nb: !!int '7'\nc: !!float '2'\nd: !!bool 'yes'\n",
    "non-string keys": "1: a\nfalse: b\n~: c\n2.5: d\n",
    "nested": "a: [1, [2, [3, {b: [x, {c: d}]}]]]\ne: {f: {g: {h: []}}}\ni: {}\n",
    "anchors and aliases": "x: &a {k: [1, 2]}\ny: *a\nz: [*a, *a]\ns: &s str\nt: *s\n",
    "merge keys": "base: &b {vcpus: 1, memory: 1GiB}\none: {<<: *b}\ntwo: {<<: *b, vcpus: 2}\n"
    "three: {<<: [*b, {disk: 4GiB}], memory: 2GiB}\n",
    "merge inside a list": "b: &b {x: 1}\nl: [{<<: *b, y: 2}, {z: 3}]\n",
    "scalar document": "just text\n",
    "list document": "- 1\n- two\n- {three: 3}\n",
    "multi-line strings": "a: |\n  line 1\n  line 2\nb: >\n  folded\n  text\n",
}


@pytest.mark.parametrize("text", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_same_data_as_pyyaml(text: str) -> None:
    data, issues = parse_yaml(text, "f.yaml")
    assert issues == []
    expected = reference(text)
    assert data == expected
    assert repr(data) == repr(expected)  # same types too (1 vs 1.0 vs True compare equal)


def test_aliases_share_one_object_like_pyyaml() -> None:
    data, _ = parse_yaml("x: &a {k: [1]}\ny: *a\n", "f.yaml")
    assert data["x"] is data["y"]


def test_types_of_common_scalars() -> None:
    data, _ = parse_yaml("i: 7\nf: 7.5\nb: yes\nn: ~\nt: 2002-12-14\ns: '7'\n", "f.yaml")
    assert [type(data[k]) for k in "ifbnts"] == [int, float, bool, type(None), datetime.date, str]


DUPLICATES = {
    "top level": ("a: 1\nb: 2\na: 3\n", ["3:1: duplicate key 'a' (first at line 1)"]),
    "nested": ("a:\n  x: 1\n  x: 2\n", ["3:3: duplicate key 'x' (first at line 2)"]),
    "three times": (
        "a: 1\na: 2\na: 3\n",
        [
            "2:1: duplicate key 'a' (first at line 1)",
            "3:1: duplicate key 'a' (first at line 1)",
        ],
    ),
    "in a merged mapping": (
        "b: &b {x: 1}\nc: {<<: *b, y: 1, y: 2}\n",
        ["2:19: duplicate key 'y' (first at line 2)"],
    ),
    "merged keys overridden are not duplicates": ("b: &b {x: 1}\nc: {<<: *b, x: 2}\n", []),
    "same value, different tag": ("'1': a\n1: b\n", []),
}


@pytest.mark.parametrize(("text", "messages"), DUPLICATES.values(), ids=DUPLICATES.keys())
def test_duplicate_keys(text: str, messages: list[str]) -> None:
    _, issues = parse_yaml(text, "f.yaml")
    assert [f"{issue.line}:{issue.column}: {issue.message}" for issue in issues] == messages
    assert all(issue.file == "f.yaml" and issue.path == "" for issue in issues)


ERRORS = {
    "unhashable key": (
        "? [1, 2]\n: x\n",
        "1:3: a mapping key must be a single value, not a list or mapping",
    ),
    "self reference": ("a: &x [1, *x]\n", "1:4: an alias refers to its own ancestor"),
    "syntax": (
        "a: [1, 2\n",
        "2:1: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence at line 1)",
    ),
    "unknown tag": (
        "a: !python/object:os.system x\n",
        "1:4: unknown tag '!python/object:os.system'",
    ),
}


@pytest.mark.parametrize(("text", "message"), ERRORS.values(), ids=ERRORS.keys())
def test_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_yaml(text, "f.yaml")
    assert [f"{issue.line}:{issue.column}: {issue.message}" for issue in caught.value.issues] == [message]
    assert str(caught.value) == f"f.yaml:{message}"


def test_alias_bomb_is_refused_without_expanding() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(SpecError) as caught:
        parse_yaml("\n".join(lines) + "\n", "f.yaml")
    assert [issue.message for issue in caught.value.issues] == [
        f"the document has more than {MAX_NODES:,} values (counting what aliases stand for)"
    ]


def test_empty_document() -> None:
    assert parse_yaml("", "f.yaml") == (None, [])
    assert parse_yaml("# only a comment\n", "f.yaml") == (None, [])


def test_scalars_resolve_once_per_distinct_value() -> None:
    loader = _Loader("a: [1GiB, 1GiB, 1GiB, yes, yes]\n")
    try:
        loader.get_single_node()
        assert sorted(value for value, _ in loader._tags) == ["1GiB", "a", "yes"]
    finally:
        loader.dispose()
    assert yaml.__with_libyaml__  # the speed claims assume the C parser is there
