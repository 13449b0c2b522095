"""virtstack.spec.yamldoc builds data itself for speed; it must give what PyYAML's constructor gives.

The reference is the same loader class (our resolvers: no base-60) run through PyYAML's own
construct_document, so any difference is the builder's.
"""

from __future__ import annotations

import datetime
import inspect
import re
import sys
import threading
from typing import Any

import pytest
import yaml

from virtstack.errors import SpecError
from virtstack.spec import yamldoc
from virtstack.spec.yamldoc import MAX_DEPTH, MAX_NODES, _Loader, _parse, _PureLoader, parse_yaml


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


# ------------------------------------------------- hostile input (issue 11)
# Every case runs through libyaml and through PyYAML's pure-Python parser: the limits are checked on
# the event stream, so the answer must not depend on the parser (nor on recursion limits).

LOADERS = pytest.mark.parametrize("loader", [_Loader, _PureLoader], ids=["libyaml", "pure-python"])


def error_lines(text: str, loader: type[yaml.SafeLoader]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        _parse(text, "f.yaml", loader)
    return str(caught.value).splitlines()


TIMESTAMP_HINT = "(expected a date such as 2001-12-14 or 2001-12-14T21:59:43Z)"

# Each of these ended `virtstack validate` with "unexpected ValueError/KeyError/AttributeError".
SCALAR_ERRORS = {
    "!!int abc": (
        "a: !!int abc\n",
        "f.yaml:1:4: invalid !!int value 'abc' (expected a whole number such as 42, 0x2a or 0o52)",
    ),
    "!!bool maybe": (
        "a: !!bool maybe\n",
        "f.yaml:1:4: invalid !!bool value 'maybe' (expected true, false, yes, no, on or off)",
    ),
    "!!float x": ("a: !!float x\n", "f.yaml:1:4: invalid !!float value 'x' (expected a number such as 1.5)"),
    "!!timestamp 2001-99": (
        "a:\n  b: !!timestamp 2001-99\n",
        "f.yaml:2:6: invalid !!timestamp value '2001-99' " + TIMESTAMP_HINT,
    ),
    "implicit impossible date": (
        "a: 2001-13-45\n",
        "f.yaml:1:4: invalid !!timestamp value '2001-13-45' " + TIMESTAMP_HINT,
    ),
    "5,000-digit integer": (
        "a: " + "9" * 5000 + "\n",
        "f.yaml:1:4: integer '99999999999999999999999…' is out of range (at most 64 bits)",
    ),
    "long hex integer": (
        "a: 0x" + "f" * 5000 + "\n",
        "f.yaml:1:4: integer '0xfffffffffffffffffffff…' is out of range (at most 64 bits)",
    ),
    "2**64": (
        f"a: {2**64}\n",
        "f.yaml:1:4: integer '18446744073709551616' is out of range (at most 64 bits)",
    ),
    "empty !!int": (
        "a: !!int ''\n",
        "f.yaml:1:4: invalid !!int value '' (expected a whole number such as 42, 0x2a or 0o52)",
    ),
    "local tag": ("a: !foo x\n", "f.yaml:1:4: unknown tag '!foo'"),
    "local tag on a mapping": ("a: !foo {x: 1}\n", "f.yaml:1:4: unknown tag '!foo'"),
    "!!str on a mapping": ("a: !!str {x: 1}\n", "f.yaml:1:4: tag '!!str' cannot be used on a mapping"),
    "undefined alias": ("a: *nope\n", "f.yaml:1:4: found undefined alias 'nope'"),
    "duplicate anchor": ("a: &x 1\nb: &x 2\n", "f.yaml:2:4: found duplicate anchor 'x' (first at line 1)"),
    "merge of a scalar": (
        "a: {<<: 1}\n",
        "f.yaml:1:9: a merge key (<<) needs a mapping or a list of mappings",
    ),
    "alias to a list as key": (
        "a: &k [1]\n? *k\n: 2\n",
        "f.yaml:2:3: a mapping key must be a single value, not a list or mapping",
    ),
    "NUL character": ("a: \x00\n", "f.yaml:1:4: invalid YAML: unacceptable character #x0000"),
}


@LOADERS
@pytest.mark.parametrize(("text", "expected"), SCALAR_ERRORS.values(), ids=SCALAR_ERRORS.keys())
def test_tag_and_scalar_errors_are_one_line_with_a_position(
    loader: type[yaml.SafeLoader], text: str, expected: str
) -> None:
    assert error_lines(text, loader) == [expected]


DEEP = {
    # 60 KB: crashed the interpreter through another libyaml build's recursive composer.
    "flow, 30,000 levels": "a: " + "[" * 30000 + "]" * 30000 + "\n",
    "block sequences, 30,000 levels": "- " * 30000 + "x\n",
    "block mappings, 200 levels": "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "x: 1\n",
}


@LOADERS
@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deep_nesting_is_refused_cleanly(loader: type[yaml.SafeLoader], text: str) -> None:
    [line] = error_lines(text, loader)
    # libyaml stops flow nesting itself at 1,000 levels (it scans ahead); anything else stops at ours.
    assert re.fullmatch(
        r"f\.yaml:\d+:\d+: (nested more than 64 levels deep|invalid YAML: exceeded maximum nesting depth.*)",
        line,
    )


@LOADERS
def test_nesting_up_to_the_limit_is_fine_and_one_more_level_is_not(loader: type[yaml.SafeLoader]) -> None:
    assert _parse("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f.yaml", loader)[0] is not None
    assert error_lines("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), loader) == [
        f"f.yaml:1:{MAX_DEPTH + 1}: nested more than {MAX_DEPTH} levels deep"
    ]


@LOADERS
def test_deep_documents_need_no_recursion(loader: type[yaml.SafeLoader]) -> None:
    # The builder keeps its own stack: a document at the depth limit parses with almost no Python
    # stack left, so no interpreter or libyaml build can run out of it here.
    result: list[Any] = []

    def parse() -> None:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(len(inspect.stack()) + 40)
        try:
            result.append(_parse("[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n", "f.yaml", loader)[0])
        finally:
            sys.setrecursionlimit(limit)

    thread = threading.Thread(target=parse)
    thread.start()
    thread.join()
    assert result and result[0] is not None


@LOADERS
def test_alias_uses_are_limited(loader: type[yaml.SafeLoader], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamldoc, "MAX_ALIASES", 3)
    assert _parse("a: &a 1\nb: [*a, *a, *a]\n", "f.yaml", loader)[0] == {"a": 1, "b": [1, 1, 1]}
    assert error_lines("a: &a 1\nb: [*a, *a, *a, *a]\n", loader) == ["f.yaml:2:17: more than 3 aliases"]


@LOADERS
def test_values_are_limited_as_they_arrive(
    loader: type[yaml.SafeLoader], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(yamldoc, "MAX_NODES", 10)
    assert error_lines("[" + "1, " * 20 + "]\n", loader) == [
        "f.yaml:1:29: the document has more than 10 values (counting what aliases stand for)"
    ]


def test_text_size_is_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamldoc, "MAX_TEXT_CHARS", 1024 * 1024)
    with pytest.raises(SpecError) as caught:
        parse_yaml("a: " + "x" * 1024 * 1024 + "\n", "f.yaml")
    assert str(caught.value) == "f.yaml: the document is larger than 1 MiB"


@LOADERS
@pytest.mark.parametrize("text", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_both_parsers_give_the_same_data(loader: type[yaml.SafeLoader], text: str) -> None:
    assert repr(_parse(text, "f.yaml", loader)) == repr(parse_yaml(text, "f.yaml"))


def test_merge_lists_earlier_mappings_win() -> None:
    # The YAML merge-key spec: own keys first, then earlier mappings of the list over later ones.
    data, _ = parse_yaml("a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc: {<<: [*a, *b], y: 3}\n", "f.yaml")
    assert data["c"] == {"x": 1, "y": 3, "z": 2}
    assert list(data["c"]) == ["x", "y", "z"]


def test_keys_equal_as_data_are_duplicates() -> None:
    # 1 and true are one key in the data: one value was silently lost before.
    _, issues = parse_yaml("1: a\ntrue: b\n", "f.yaml")
    assert [str(issue) for issue in issues] == ["f.yaml:2:1: duplicate key 'true' (first at line 1)"]


def test_anchor_on_a_merge_key_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        parse_yaml("b: &b {x: 1}\nc: {&m <<: *b}\n", "f.yaml")
    assert str(caught.value) == "f.yaml:2:5: an anchor on a merge key (<<) is not supported"


def test_duplicates_are_found_next_to_value_keys() -> None:
    # "=" is YAML 1.1's value key, read as the string "=": the duplicate search must not choke on it.
    data, issues = parse_yaml("=: 1\na: 1\na: 2\n", "f.yaml")
    assert data == {"=": 1, "a": 2}
    assert [str(issue) for issue in issues] == ["f.yaml:3:1: duplicate key 'a' (first at line 2)"]
