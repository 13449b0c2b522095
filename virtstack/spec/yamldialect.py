"""The YAML dialect of stack files (see virtstack.spec.yamldoc): PyYAML's safe loaders without
base-60 numbers, the tags the builder constructs itself, and the slow path that finds duplicate keys
with their positions once the builder has seen one.  Limits and the builder: virtstack.spec.yamldoc.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from virtstack.errors import SpecIssue, shorten

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_SET_TAG = "tag:yaml.org,2002:set"
_OMAP_TAG = "tag:yaml.org,2002:omap"
_PAIRS_TAG = "tag:yaml.org,2002:pairs"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_TAG_PREFIX = "tag:yaml.org,2002:"
# Decimal integers that int() takes quickly and that fit in 64 bits; longer ones take the slow path.
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,17})\Z")
_INT_LIMIT = 2**64
_INT_SYNTAX = re.compile(r"[-+]?(?:[0-9][0-9_]*|0[xob][0-9a-fA-F_]+)\Z")


def _resolvers(base: type[yaml.SafeLoader]) -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """PyYAML's implicit resolvers minus the sexagesimal alternatives of int and float."""
    table = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    int_re = re.compile(
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    )
    float_re = re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    )
    for tag, regexp, first in ((_INT_TAG, int_re, "-+0123456789"), (_FLOAT_TAG, float_re, "-+0123456789.")):
        for char in first:
            table.setdefault(char, []).append((tag, regexp))
    return table


def _loader_class(base: type[yaml.SafeLoader]) -> type[yaml.SafeLoader]:
    class Loader(base):  # type: ignore[valid-type,misc]
        """Safe loader without YAML 1.1's base-60 numbers, resolving each distinct scalar once."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._tags: dict[tuple[str, tuple[bool, bool]], str] = {}

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            # Asked for every scalar; stack files repeat a few values (sizes, names, true)
            # thousands of times, and each answer is a walk over PyYAML's resolver regexes.
            if kind is not yaml.ScalarNode:
                # No path resolvers are registered, so collections get the default tags.
                return _MAP_TAG if kind is yaml.MappingNode else _SEQ_TAG
            key = (value, implicit)
            tag = self._tags.get(key)
            if tag is None:
                tag = self._tags[key] = super().resolve(kind, value, implicit)
            return tag

    Loader.yaml_implicit_resolvers = _resolvers(base)
    return Loader


_Loader = _loader_class(_BaseLoader)
# The same dialect through PyYAML's pure-Python parser: tests check that nothing depends on whether
# PyYAML was built with libyaml (nor on which libyaml).
_PureLoader = _loader_class(yaml.SafeLoader)


def _position(mark: Any) -> tuple[int, int]:
    if mark is None:  # pragma: no cover - both parsers set marks on every event
        return 0, 0
    return mark.line + 1, mark.column + 1


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG_PREFIX) :] if tag.startswith(_TAG_PREFIX) else tag


class _Composing:
    """Composes PyYAML's node graph from a loader's events, in Python (recursive, so only run on a
    document the builder accepted: at most MAX_DEPTH levels)."""

    def get_single_node(self) -> Any:
        self.get_event()  # type: ignore[attr-defined]  # StreamStart
        if isinstance(self.peek_event(), yaml.StreamEndEvent):  # type: ignore[attr-defined]
            return None
        self.anchors: dict[str, yaml.Node] = {}
        return self.compose_document()

    compose_document: Any = yaml.composer.Composer.compose_document
    compose_node: Any = yaml.composer.Composer.compose_node
    compose_scalar_node: Any = yaml.composer.Composer.compose_scalar_node
    compose_sequence_node: Any = yaml.composer.Composer.compose_sequence_node
    compose_mapping_node: Any = yaml.composer.Composer.compose_mapping_node


_NodeLoaders: dict[type[yaml.SafeLoader], type[yaml.SafeLoader]] = {
    base: type(f"_Node{base.__name__}", (_Composing, base), {}) for base in (_Loader, _PureLoader)
}


def _duplicate_keys(text: str, file: str, loader_class: type[yaml.SafeLoader]) -> list[SpecIssue]:
    """Every key written twice in one mapping, with both positions.

    Only run when the builder saw a duplicate (an error path, so a second parse is fine): keys are
    compared as constructed, so `yes:` and `true:` clash as they do in the data."""
    loader = _NodeLoaders[loader_class](text)
    issues: list[SpecIssue] = []
    try:
        root = loader.get_single_node()
        todo, seen_nodes = [root], set()
        while todo:
            node = todo.pop()
            if node is None or type(node) is yaml.ScalarNode or id(node) in seen_nodes:
                continue
            seen_nodes.add(id(node))
            if type(node) is yaml.SequenceNode:
                todo.extend(reversed(node.value))
                continue
            first_at: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                todo.append(value_node)
                if type(key_node) is not yaml.ScalarNode or key_node.tag == _MERGE_TAG:
                    todo.append(key_node)
                    continue
                # "=" keys are strings (see the builder); other keys construct as in the data.
                plain = key_node.tag in (_STR_TAG, _VALUE_TAG)
                key = key_node.value if plain else _construct(loader, key_node)
                first = first_at.setdefault(key, key_node)
                if first is not key_node:
                    line, column = _position(key_node.start_mark)
                    first_line = first.start_mark.line + 1
                    message = f"duplicate key {shorten(key_node.value)} (first at line {first_line})"
                    issues.append(SpecIssue(file, "", message, line, column))
    finally:
        loader.dispose()
    return sorted(issues, key=lambda issue: (issue.line, issue.column))


def _construct(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    """One scalar through PyYAML's constructor, leaving it ready for the next (construct_document's
    clean-up)."""
    value = loader.construct_object(node, deep=True)
    loader.constructed_objects = {}
    loader.recursive_objects = {}
    loader.deep_construct = False
    return value
