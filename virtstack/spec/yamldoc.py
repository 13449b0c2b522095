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

from typing import Any, NoReturn

import yaml

from virtstack.errors import SpecError, SpecIssue, shorten
from virtstack.spec.yamldialect import (
    _BOOL_TAG,
    _FLOAT_TAG,
    _INT_LIMIT,
    _INT_SYNTAX,
    _INT_TAG,
    _MAP_TAG,
    _MERGE_TAG,
    _NULL_TAG,
    _OMAP_TAG,
    _PAIRS_TAG,
    _PLAIN_INT,
    _SEQ_TAG,
    _SET_TAG,
    _STR_TAG,
    _VALUE_TAG,
    _construct,
    _duplicate_keys,
    _Loader,
    _position,
    _PureLoader,
    _short_tag,
)

# _Loader and _PureLoader: the two parsers (libyaml, pure Python) the tests run every case through.
__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_NODES", "MAX_TEXT_CHARS", "_Loader", "_PureLoader", "parse_yaml"]

MAX_TEXT_CHARS = 16 * 1024 * 1024  # a 10,000-VM stack with one entry per VM is 2.9 MB
MAX_DEPTH = 64  # stack files need about 6 levels
MAX_NODES = 1_000_000  # that 10,000-VM stack has about 350,000
MAX_ALIASES = 100_000

_ScalarEvent = yaml.ScalarEvent
_MappingStart = yaml.MappingStartEvent
_SequenceStart = yaml.SequenceStartEvent
_MappingEnd = yaml.MappingEndEvent
_SequenceEnd = yaml.SequenceEndEvent
_Alias = yaml.AliasEvent
_NOKEY: Any = object()  # a mapping waiting for its next key
_MERGE: Any = object()  # a mapping's "<<" key: its value is merged, not stored
_OPEN: Any = object()  # an anchored collection still being built


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
            self.fail(event.start_mark, f"integer {shorten(value, 24)} is out of range (at most 64 bits)")
        hint = _SCALAR_HINTS.get(tag, "")
        self.fail(event.start_mark, f"invalid {_short_tag(tag)} value {shorten(value)}{hint}")

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
        plain_tags: dict[str, str] = {}  # plain scalar text -> its resolved tag
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
                        # Plain scalars resolve by their text alone (a few values — keys, sizes,
                        # names — repeat thousands of times); quoted ones are strings (PyYAML's
                        # resolver: no implicit regexes, no path resolvers registered).
                        implicit = event.implicit
                        if implicit[0]:
                            tag = plain_tags.get(value)
                            if tag is None:
                                tag = plain_tags[value] = resolve(scalar_node, value, implicit)
                        else:
                            tag = _STR_TAG
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
