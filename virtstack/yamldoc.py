"""YAML text -> plain Python data, with the checks a stack file needs, in one pass over the events.

Public API:
    parse_yaml(text: str, file: str) -> tuple[Any, list[SpecIssue]]
        The document's data (None for an empty document) and its duplicate-key issues.
        Raises SpecError for invalid YAML, documents past the limits below, bad tagged scalars
        (``!!int abc``) and self-referencing aliases; every such issue carries line and column.
    MAX_DEPTH, MAX_NODES, MAX_ALIASES, MAX_TEXT_CHARS

Dialect: YAML 1.1 as PyYAML's safe loader reads it, except that colon-separated numbers are *not*
base-60 integers, so an unquoted MAC such as 52:54:00:12:34:56 stays a string, and integers past
64 bits are errors (no stack field takes one; Python refuses to even print those over 4,300
digits).  Duplicate keys are reported (PyYAML would silently keep the last one).  Aliases are
allowed, but not to their own ancestor.

Limits, all checked on the parser's event stream while the data is built, so a hostile file is
refused before it costs memory or time, whichever libyaml build (or none) parses it:
    MAX_TEXT_CHARS   the document's size;
    MAX_DEPTH        nesting of mappings and sequences (no recursion anywhere either: the
                     builder keeps its own stack, so an interpreter's C stack is never at risk);
    MAX_NODES        values, counting an alias as the values it stands for (a "billion laughs"
                     file is refused after MAX_NODES steps, not after expanding it);
    MAX_ALIASES      alias uses.

Why events, not `yaml.load`: composing PyYAML's node graph (in C, recursively) and then walking it
cost more than building the data straight from the events, and the graph would exist before any
limit could be checked.  The common tags are constructed here; other scalar tags (timestamps,
binary, explicit !!float, …) go through PyYAML's own constructor, so the data is what
`yaml.safe_load` gives.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

import yaml

from virtstack.errors import SpecError, SpecIssue

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_NODES", "MAX_TEXT_CHARS", "parse_yaml"]

MAX_TEXT_CHARS = 16 * 1024 * 1024  # a 10,000-VM stack with one entry per VM is 2.9 MB
MAX_DEPTH = 64  # stack files need about 6 levels
MAX_NODES = 1_000_000  # that 10,000-VM stack has about 350,000
MAX_ALIASES = 100_000

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

_ScalarEvent = yaml.ScalarEvent
_MappingStart = yaml.MappingStartEvent
_SequenceStart = yaml.SequenceStartEvent
_MappingEnd = yaml.MappingEndEvent
_SequenceEnd = yaml.SequenceEndEvent
_Alias = yaml.AliasEvent
_NOKEY: Any = object()  # a mapping waiting for its next key
_MERGE: Any = object()  # a mapping's "<<" key: its value is merged, not stored
_OPEN: Any = object()  # an anchored collection still being built


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


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


_SCALAR_HINTS = {
    _BOOL_TAG: " (expected true, false, yes, no, on or off)",
    _INT_TAG: " (expected a whole number such as 42, 0x2a or 0o52)",
    _FLOAT_TAG: " (expected a number such as 1.5)",
    "tag:yaml.org,2002:timestamp": " (expected a date such as 2001-12-14 or 2001-12-14T21:59:43Z)",
}


class _Builder:
    """Builds the data from the loader's events, checking the limits as the events arrive."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.has_duplicates = False

    # -------------------------------------------------------------- errors

    def fail(self, mark: Any, message: str) -> NoReturn:
        line, column = _position(mark)
        raise SpecError([SpecIssue(self.file, "", message, line, column)])

    def scalar_error(self, event: Any) -> NoReturn:
        """A scalar whose tag cannot take its value: `!!int abc`, `!!bool maybe`, 5,000 digits…"""
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        value: str = event.value
        if tag == _INT_TAG and _INT_SYNTAX.match(value):
            self.fail(event.start_mark, f"integer {_shorten(value, 24)} is out of range (at most 64 bits)")
        hint = _SCALAR_HINTS.get(tag, "")
        self.fail(event.start_mark, f"invalid {_short_tag(tag)} value {_shorten(value)}{hint}")

    # -------------------------------------------------------------- values

    def special_scalar(self, event: Any, tag: str) -> Any:
        """A scalar with a tag the builder does not construct itself: PyYAML decides."""
        loader = self.loader
        if tag not in loader.yaml_constructors:
            self.fail(event.start_mark, f"unknown tag {_short_tag(tag)!r}")
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        value = _construct(loader, node)
        if type(value) is int and not -_INT_LIMIT < value < _INT_LIMIT:
            self.scalar_error(event)
        return value

    def special_collection(self, tag: str, value: Any, start: Any) -> Any:
        """!!set, !!omap and !!pairs, built like PyYAML's SafeConstructor builds them."""
        if tag == _SET_TAG:
            return set(value)
        ordered = []
        what = "an ordered map" if tag == _OMAP_TAG else "pairs"
        for item in value:
            if type(item) is not dict or len(item) != 1:
                self.fail(start.start_mark, f"while constructing {what}: expected a mapping of one item")
            ordered.append(next(iter(item.items())))
        return ordered

    def merged(self, own: dict[Any, Any], merges: list[tuple[Any, Any]]) -> dict[Any, Any]:
        """A mapping with merge keys (``<<: *base`` or ``<<: [*a, *b]``): its own keys win over merged
        ones, and a mapping merged earlier wins over one merged later, as the YAML merge-key spec
        says; keys keep the order in which they first appear."""
        result: dict[Any, Any] = {}
        for value, mark in merges:
            if type(value) is dict:
                items = [value]
            elif type(value) is list and all(type(item) is dict for item in value):
                items = value
            else:
                self.fail(mark, "a merge key (<<) needs a mapping or a list of mappings")
            for item in items:
                for key, item_value in item.items():
                    if key not in result:
                        result[key] = item_value
        result.update(own)
        return result

    # ---------------------------------------------------------------- walk

    def build(self) -> Any:
        loader = self.loader
        get = loader.get_event
        resolve = loader.resolve
        bool_values = loader.bool_values
        scalar_node = yaml.ScalarNode
        plain_int = _PLAIN_INT.match
        anchors: dict[str, tuple[Any, int, Any]] = {}  # name -> (value or _OPEN, size, mark)
        # The open collections, innermost last; each entry saves the enclosing one's state.
        stack: list[tuple[Any, Any, bool, Any, int, Any, str | None]] = []
        container: Any = None
        key: Any = _NOKEY
        is_map = False
        merges: Any = None  # list of (value, mark) once the open mapping has a merge key
        start = 0  # `count` when the open collection started
        opened: Any = None  # the open collection's start event
        special: str | None = None  # its tag when it is !!set, !!omap or !!pairs
        count = aliases = 0  # values so far (aliases count as what they stand for), alias uses
        max_nodes, max_depth, max_aliases = MAX_NODES, MAX_DEPTH, MAX_ALIASES

        get()  # StreamStart
        if isinstance(get(), yaml.StreamEndEvent):
            return None
        event: Any = None
        mark: Any = None  # start of the collection just closed
        try:
            while True:
                event = get()
                cls = event.__class__
                if cls is _ScalarEvent:
                    tag = event.tag
                    value = event.value
                    if tag is None or tag == "!":
                        tag = resolve(scalar_node, value, event.implicit)
                    if tag == _STR_TAG:
                        pass
                    elif tag == _INT_TAG and plain_int(value):
                        value = int(value)
                    elif tag == _BOOL_TAG:
                        value = bool_values[value.lower()]
                    elif tag == _NULL_TAG:
                        value = None
                    elif is_map and key is _NOKEY and tag in (_MERGE_TAG, _VALUE_TAG):
                        # "<<" merges; YAML 1.1's "=" key is read as the string "=", as PyYAML does.
                        value = _MERGE if tag == _MERGE_TAG else value
                    else:
                        value = self.special_scalar(event, tag)
                    count += 1
                    if count > max_nodes:
                        self.too_many(event)
                    if event.anchor is not None:
                        if value is _MERGE:  # PyYAML would merge wherever *alias is a key
                            self.fail(event.start_mark, "an anchor on a merge key (<<) is not supported")
                        self.anchor(anchors, event, value, 1)
                elif cls is _MappingStart or cls is _SequenceStart:
                    count += 1
                    if len(stack) >= max_depth:
                        self.fail(event.start_mark, f"nested more than {max_depth} levels deep")
                    if count > max_nodes:
                        self.too_many(event)
                    stack.append((container, key, is_map, merges, start, opened, special))
                    start, opened, merges, special = count - 1, event, None, None
                    tag = event.tag
                    if cls is _MappingStart:
                        container, key, is_map = {}, _NOKEY, True
                        if tag is not None and tag not in ("!", _MAP_TAG):
                            special = self.collection_tag(event, tag, (_SET_TAG,))
                    else:
                        container, is_map = [], False
                        if tag is not None and tag not in ("!", _SEQ_TAG):
                            special = self.collection_tag(event, tag, (_OMAP_TAG, _PAIRS_TAG))
                    if event.anchor is not None:
                        self.anchor(anchors, event, _OPEN, 0)
                    continue
                elif cls is _MappingEnd or cls is _SequenceEnd:
                    value = container
                    if merges is not None:
                        value = self.merged(value, merges)
                    if special is not None:
                        value = self.special_collection(special, value, opened)
                    if opened.anchor is not None:
                        anchors[opened.anchor] = (value, count - start, opened.start_mark)
                    mark = opened.start_mark
                    container, key, is_map, merges, start, opened, special = stack.pop()
                    if container is None:
                        return self.finish(value, mark)
                elif cls is _Alias:
                    found = anchors.get(event.anchor)
                    if found is None:
                        self.fail(event.start_mark, f"found undefined alias {event.anchor!r}")
                    value, size, _ = found
                    if value is _OPEN:
                        self.fail(found[2], "an alias refers to its own ancestor")
                    aliases += 1
                    count += size
                    if aliases > max_aliases:
                        self.fail(event.start_mark, f"more than {max_aliases:,} aliases")
                    if count > max_nodes:
                        self.too_many(event)
                else:  # pragma: no cover - the parser only emits the events above inside a document
                    raise AssertionError(f"unexpected {cls.__name__}")
                if container is None:  # the document is a single scalar or alias
                    return self.finish(value, event.start_mark)
                if not is_map:
                    container.append(value)
                elif key is _NOKEY:
                    if cls is not _ScalarEvent:
                        self.check_hashable(value, mark if cls is not _Alias else event.start_mark)
                    key = value
                elif key is _MERGE:
                    if merges is None:
                        merges = []
                    merges.append(
                        (value, mark if cls is _MappingEnd or cls is _SequenceEnd else event.start_mark)
                    )
                    key = _NOKEY
                else:
                    if key in container:
                        self.has_duplicates = True
                    container[key] = value
                    key = _NOKEY
        except (ValueError, KeyError, IndexError, AttributeError, TypeError, OverflowError) as error:
            # Constructing a scalar failed: int("abc"), bool_values["maybe"], a timestamp regex
            # that did not match, "!!int ''" indexing an empty string, int() of 5,000 digits…
            if event is not None and event.__class__ is _ScalarEvent:
                self.scalar_error(event)
            raise error

    def anchor(self, anchors: dict[str, tuple[Any, int, Any]], event: Any, value: Any, size: int) -> None:
        first = anchors.get(event.anchor)
        if first is not None:
            line, _ = _position(first[2])
            self.fail(event.start_mark, f"found duplicate anchor {event.anchor!r} (first at line {line})")
        anchors[event.anchor] = (value, size, event.start_mark)

    def collection_tag(self, event: Any, tag: str, allowed: tuple[str, ...]) -> str:
        if tag not in allowed:
            if tag in self.loader.yaml_constructors:
                kind = "mapping" if isinstance(event, yaml.MappingStartEvent) else "sequence"
                self.fail(event.start_mark, f"tag {_short_tag(tag)!r} cannot be used on a {kind}")
            self.fail(event.start_mark, f"unknown tag {_short_tag(tag)!r}")
        return tag

    def check_hashable(self, value: Any, mark: Any) -> None:
        """A collection used as a mapping key (`? [1, 2]`): PyYAML's "found unhashable key"."""
        try:
            hash(value)
        except TypeError:
            self.fail(mark, "a mapping key must be a single value, not a list or mapping")

    def too_many(self, event: Any) -> NoReturn:
        self.fail(
            event.start_mark,
            f"the document has more than {MAX_NODES:,} values (counting what aliases stand for)",
        )

    def finish(self, value: Any, root_mark: Any) -> Any:
        """After the root value: the document must end, and be the only one."""
        self.loader.get_event()  # DocumentEnd
        event = self.loader.get_event()
        if not isinstance(event, yaml.StreamEndEvent):
            line, _ = _position(root_mark)
            self.fail(
                event.start_mark,
                f"but found another document (expected a single document in the stream at line {line})",
            )
        return value


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
                    message = f"duplicate key {_shorten(key_node.value)} (first at line {first_line})"
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


def _yaml_issue(file: str, error: yaml.YAMLError, text: str) -> SpecIssue:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        problem = error.problem or "invalid YAML"
        if error.context and error.context_mark is not None:
            problem += f" ({error.context} at line {error.context_mark.line + 1})"
        line, column = _position(error.problem_mark)
        return SpecIssue(file, "", f"invalid YAML: {' '.join(problem.split())}", line, column)
    if isinstance(error, yaml.reader.ReaderError):
        # Not a marked error: it has a character offset.  Keep it to one line with a position.
        position = min(error.position, len(text))
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        return SpecIssue(
            file, "", f"invalid YAML: unacceptable character #x{error.character:04x}", line, column
        )
    return SpecIssue(file, "", f"invalid YAML: {' '.join(str(error).split())}")


def parse_yaml(text: str, file: str) -> tuple[Any, list[SpecIssue]]:
    return _parse(text, file, _Loader)


def _parse(text: str, file: str, loader_class: type[yaml.SafeLoader]) -> tuple[Any, list[SpecIssue]]:
    if len(text) > MAX_TEXT_CHARS:
        raise SpecError.single(file, "", f"the document is larger than {MAX_TEXT_CHARS // (1024 * 1024)} MiB")
    loader = None
    try:
        # Inside the try: PyYAML's pure-Python reader checks the characters as it is created.
        loader = loader_class(text)
        builder = _Builder(loader, file)
        data = builder.build()
    except yaml.YAMLError as error:
        raise SpecError([_yaml_issue(file, error, text)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not builder.has_duplicates:
        return data, []
    return data, _duplicate_keys(text, file, loader_class)
