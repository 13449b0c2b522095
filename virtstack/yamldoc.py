"""YAML text -> plain Python data, with the checks a stack file needs, in one pass.

Public API:
    parse_yaml(text: str, file: str) -> tuple[Any, list[SpecIssue]]
        The document's data (None for an empty document) and its duplicate-key issues.
        Raises SpecError for invalid YAML, alias bombs and self-referencing aliases.

Dialect: YAML 1.1 as PyYAML's safe loader reads it, except that colon-separated numbers are *not*
base-60 integers, so an unquoted MAC such as 52:54:00:12:34:56 stays a string.  Duplicate keys are
reported (PyYAML would silently keep the last one).  Aliases are allowed, but a document whose
aliases expand past MAX_NODES values (a "billion laughs" file) or refer to themselves is rejected.

Why not `yaml.load`: the checks need PyYAML's node graph (line numbers, keys as written), and
walking it twice — once to check, once through SafeConstructor — cost more than the rest of
`virtstack validate` together on a 10,000-VM file.  `_Builder` constructs the common tags itself
while it checks, and hands anything unusual (merge keys, timestamps, binary, sets, …) to PyYAML's
own constructor, so the data is the same as `yaml.safe_load` gives.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

import yaml

from virtstack.errors import SpecError, SpecIssue

__all__ = ["MAX_NODES", "parse_yaml"]

MAX_NODES = 5_000_000

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe loader without YAML 1.1's base-60 numbers, resolving each distinct scalar once."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._tags: dict[tuple[str, tuple[bool, bool]], str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # The parser asks for every scalar; stack files repeat a few values (sizes, names, true)
        # thousands of times, and each answer is a walk over PyYAML's resolver regexes.
        if kind is not yaml.ScalarNode:
            # No path resolvers are registered, so collections get the default tags.
            return _MAP_TAG if kind is yaml.MappingNode else _SEQ_TAG
        key = (value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = super().resolve(kind, value, implicit)
        return tag


# PyYAML's int/float resolvers minus their sexagesimal alternatives.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG,
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _where(mark: Any) -> str:
    if mark is None:  # pragma: no cover - PyYAML always sets marks on parsed nodes
        return "unknown position"
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _Builder:
    """One depth-first walk over the node graph: duplicate keys, expansion size, self-reference, data.

    Aliases share nodes, so values and sizes are memoised per node: the walk is linear in the file
    even when the expanded document would be huge, and aliased values are shared objects, as PyYAML
    makes them.
    """

    def __init__(self, loader: _Loader, file: str, may_merge: bool) -> None:
        self.loader = loader
        self.file = file
        # False when the text cannot hold a merge key ("<<" or an explicit !!merge): then no
        # mapping needs scanning for one.
        self.may_merge = may_merge
        self.issues: list[SpecIssue] = []
        self.done: dict[int, tuple[Any, int]] = {}  # id(node) -> (value, expanded size)
        self.active: set[int] = set()
        self.reported: set[int] = set()  # mappings whose duplicate keys are reported

    def build(self, node: yaml.Node) -> tuple[Any, int]:
        if type(node) is yaml.ScalarNode:
            return self.scalar(node), 1
        key = id(node)
        found = self.done.get(key)
        if found is not None:
            return found
        if key in self.active:
            where = _where(node.start_mark)
            raise SpecError.single(self.file, "", f"{where}: an alias refers to its own ancestor")
        self.active.add(key)
        result = self.mapping(node) if type(node) is yaml.MappingNode else self.sequence(node)
        self.active.discard(key)
        if result[1] > MAX_NODES:  # compared here, not in a call: this runs for every collection
            self.too_large()
        self.done[key] = result
        return result

    def too_large(self) -> NoReturn:
        raise SpecError.single(
            self.file, "", f"the document expands to more than {MAX_NODES:,} values (through aliases)"
        )

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag == _STR_TAG:
            return value
        if tag == _INT_TAG and _PLAIN_INT.match(value):
            return int(value)
        if tag == _BOOL_TAG:
            return self.loader.bool_values[value.lower()]
        if tag == _NULL_TAG:
            return None
        return self.pyyaml(node)

    # mapping() and sequence() inline the string case of scalar(): most nodes of a stack file are
    # plain strings, and a call per node was a sixth of the whole parse.

    def sequence(self, node: yaml.Node) -> tuple[Any, int]:
        if node.tag != _SEQ_TAG:  # !!set, !!omap, !!pairs, custom tags: PyYAML decides
            return self.pyyaml_checked(node)
        items, size = [], 1
        for child in node.value:
            if type(child) is yaml.ScalarNode:
                items.append(child.value if child.tag == _STR_TAG else self.scalar(child))
                size += 1
            else:
                value, child_size = self.build(child)
                items.append(value)
                size += child_size
        return items, size

    def mapping(self, node: yaml.MappingNode) -> tuple[Any, int]:
        pairs = node.value
        if node.tag != _MAP_TAG or (self.may_merge and any(k.tag == _MERGE_TAG for k, _ in pairs)):
            return self.pyyaml_checked(node)
        result: dict[Any, Any] = {}
        size = 1
        for key_node, value_node in pairs:
            if type(key_node) is yaml.ScalarNode:
                key = key_node.value if key_node.tag == _STR_TAG else self.scalar(key_node)
                size += 1
            else:
                key, key_size = self.build(key_node)
                size += key_size
            if type(value_node) is yaml.ScalarNode:
                value = value_node.value if value_node.tag == _STR_TAG else self.scalar(value_node)
                size += 1
            else:
                value, value_size = self.build(value_node)
                size += value_size
            try:
                if key in result:
                    self.duplicate_keys(node)
                result[key] = value
            except TypeError:  # a list or mapping as a key
                context, problem = "while constructing a mapping", "found unhashable key"
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(context, node.start_mark, problem, mark) from None
        return result, size

    def duplicate_keys(self, node: yaml.MappingNode) -> None:
        """Every key written twice in ``node`` (as written: merged-in keys do not count).

        Runs on mappings PyYAML constructs, and on others once a key turns up twice."""
        if id(node) in self.reported:
            return
        self.reported.add(id(node))
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value:
            if type(key_node) is not yaml.ScalarNode or key_node.tag == _MERGE_TAG:
                continue
            first = seen.setdefault((key_node.tag, key_node.value), key_node)
            if first is not key_node:
                line = _where(first.start_mark).split(",")[0]
                where = _where(key_node.start_mark)
                self.issues.append(
                    SpecIssue(self.file, "", f"{where}: duplicate key '{key_node.value}' (first at {line})")
                )

    def pyyaml_checked(self, node: yaml.Node) -> tuple[Any, int]:
        """A subtree PyYAML constructs (merge keys, special tags); its nodes are still checked.

        Checking walks the subtree with this builder, which also measures it; its own values are
        dropped, since PyYAML's constructor gives merge keys and tags their meaning."""
        if type(node) is yaml.MappingNode:
            self.duplicate_keys(node)
            children = [part for pair in node.value for part in pair]
        else:
            children = node.value
        size = 1
        for child in children:
            # Scalars need no check (and a merge key "<<" has no value of its own).
            size += 1 if type(child) is yaml.ScalarNode else self.build(child)[1]
        if size > MAX_NODES:  # before PyYAML constructs anything of it
            self.too_large()
        return self.pyyaml(node), size

    def pyyaml(self, node: yaml.Node) -> Any:
        loader = self.loader
        value = loader.construct_object(node, deep=True)
        # construct_document's clean-up: the next call starts from an empty memo.
        loader.constructed_objects = {}
        loader.recursive_objects = {}
        loader.deep_construct = False
        return value


def _yaml_issue(file: str, error: yaml.YAMLError) -> SpecIssue:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        problem = error.problem or "invalid YAML"
        if error.context and error.context_mark is not None:
            problem += f" ({error.context} at line {error.context_mark.line + 1})"
        return SpecIssue(file, "", f"invalid YAML at {_where(error.problem_mark)}: {problem}")
    return SpecIssue(file, "", f"invalid YAML: {error}")


def parse_yaml(text: str, file: str) -> tuple[Any, list[SpecIssue]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        builder = _Builder(loader, file, may_merge="<<" in text or "merge" in text)
        data, _ = builder.build(node)
        return data, builder.issues
    except yaml.YAMLError as error:
        raise SpecError([_yaml_issue(file, error)]) from None
    except RecursionError:
        raise SpecError.single(file, "", "invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
