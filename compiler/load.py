"""Read a storyboard file into plain data plus a table of source positions. Bytes → SourceDoc.

PyYAML's safe loader still has YAML 1.1 traps that bite filmmakers: `sound: on` becomes
True, `aspect_ratio: 16:9` becomes the sexagesimal integer 969, dates become `datetime`,
duplicate keys silently keep the last value, and aliases can expand without bound. We let
libyaml compose the node graph and build the data ourselves, so every value gets its
1-based position and every trap becomes a diagnostic instead of a surprise.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .diagnostics import Diagnostic, Location

# A film of 1,000 scenes with long prompts is well under 1 MB; the bound keeps the worst
# file (every prompt a distinct template to compile) to seconds, not minutes.
MAX_FILE_BYTES = 2 * 1024 * 1024
# Nodes built by following aliases; a normal board reuses a few shot lists, a "billion
# laughs" document asks for billions.
MAX_ALIAS_EXPANSION = 100_000
MAX_DEPTH = 64

JsonPath = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _CoreResolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core-schema scalars: only true/false are booleans, no sexagesimals, no dates."""


_CoreResolver.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreResolver.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_CoreResolver.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_CoreResolver.add_implicit_resolver(
    _NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_CoreResolver.add_implicit_resolver(_MERGE, re.compile(r"^<<$"), ["<"])

if yaml.__with_libyaml__:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    class _Composer(CParser, _CoreResolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _CoreResolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class _Composer(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.composer.Composer,
        _CoreResolver,
    ):
        def __init__(self, text: str) -> None:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _CoreResolver.__init__(self)


# Where a text value sits: its first and last (exclusive) character as 0-based
# (line, column) pairs, and its YAML style ("" plain, "'", '"', "|" or ">").
Span = tuple[int, int, int, int, str]

# The line breaks YAML knows (libyaml counts lines by these), and those editors count:
# positions are given in the editor's lines, where NEL, LS and PS break no line.
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_BREAK_CHARS = "\r\n\x85\u2028\u2029"
_EDITOR_BREAK = re.compile("\r\n|[\r\n]")


@dataclass(slots=True)
class SourceDoc:
    """A loaded storyboard: its data, and where each value and key sits in the file."""

    path: str
    data: Any
    values: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    text: str = ""
    spans: dict[JsonPath, Span] = field(default_factory=dict)
    _yaml_starts: list[int] | None = None
    _same_lines: bool | None = None  # no NEL, LS or PS: YAML's lines are the editor's
    _line_starts: list[int] | None = None

    def loc(self, path: JsonPath, *, key: bool = False) -> Location:
        """The position of the value at `path` (or its key), else of its nearest ancestor."""
        table = self.keys if key else self.values
        while True:
            pos = table.get(path)
            if pos is not None:
                return Location(self.path, pos[0], pos[1])
            if not path:
                return Location(self.path, 1, 1)
            path = path[:-1]
            table = self.values

    def loc_in(self, path: JsonPath, offset: int) -> Location:
        """The position of character `offset` of the text value at `path`.

        Works for every scalar style: plain and quoted values folded over lines, escapes
        in double quotes, and `|`/`>` block scalars with chomping and indentation
        indicators. Falls back to the value's own position when it has no text span.
        """
        span = self.spans.get(path)
        value = self._value_at(path)
        if span is None or not isinstance(value, str):
            return self.loc(path)
        first, last = self.index(span[0], span[1]), self.index(span[2], span[3])
        index = _source_index(self.text, first, last, span[4], value, offset)
        line, col = self.at_index(index)
        return Location(self.path, line, col)

    def index(self, line: int, column: int) -> int:
        """The offset in the text of a 0-based YAML mark (line, column)."""
        starts = self.yaml_starts()
        return starts[line] + column if line < len(starts) else len(self.text)

    def at_index(self, index: int) -> tuple[int, int]:
        """The 1-based (line, column) of an offset, as an editor counts them."""
        starts = self.line_starts()
        line = bisect.bisect_right(starts, index) - 1
        return line + 1, index - starts[line] + 1

    def position(self, line: int, column: int) -> tuple[int, int]:
        """A 0-based YAML mark as a 1-based editor position. The one place that adds 1."""
        if self._same_lines is None:
            self._same_lines = not any(c in self.text for c in "\x85\u2028\u2029")
        if self._same_lines:
            return line + 1, column + 1  # the usual case: YAML and editors count alike
        return self.at_index(self.index(line, column))

    def yaml_starts(self) -> list[int]:
        if self._yaml_starts is None:
            self._yaml_starts = [0, *(m.end() for m in _LINE_BREAK.finditer(self.text))]
        return self._yaml_starts

    def line_starts(self) -> list[int]:
        if self._line_starts is None:
            self._line_starts = [0, *(m.end() for m in _EDITOR_BREAK.finditer(self.text))]
        return self._line_starts

    def _value_at(self, path: JsonPath) -> Any:
        value = self.data
        for part in path:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return None
        return value


_SIMPLE_ESCAPES = {"x": 2, "u": 4, "U": 8}


def _source_index(text: str, start: int, end: int, style: str, value: str, offset: int) -> int:
    """Where character `offset` of `value` was written in `text[start:end]`.

    Walks the value and its source together: a character written as itself matches
    itself; a folded line break matches the break it came from; an escape matches its
    backslash; indentation, quotes and chomping are skipped. Never leaves the span.
    """
    j = start
    if style in ("'", '"'):
        j += 1
    elif style in ("|", ">"):
        # The content starts on the line after the indicator (and its comment).
        brk = _LINE_BREAK.search(text, start, end)
        j = brk.end() if brk else end
    i = 0
    while i < len(value) and j < end:
        char, src = value[i], text[j]
        if style == '"' and src == "\\" and j + 1 < end:
            follow = text[j + 1]
            if follow in _BREAK_CHARS:  # an escaped line break joins the lines
                j += 2
                while j < end and text[j] in " \t" + _BREAK_CHARS:
                    j += 1
                continue
            if i == offset:
                return j
            j += 2 + _SIMPLE_ESCAPES.get(follow, 0)
            i += 1
            continue
        if src == char or (char in " \n" and src in _BREAK_CHARS):
            if i == offset:
                return j
            j += 2 if text.startswith("\r\n", j) else 1
            i += 1
            continue
        j += 1  # indentation, a quote, a folded space: not part of the value
    # Past the value's end (or a walk that lost its way): the nearest place in the span.
    return max(start, min(j, end - 1))


class _LoadFailed(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic


def _mark(doc: SourceDoc, node: Node) -> tuple[int, int]:
    # PyYAML marks are 0-based; SourceDoc.position adds the 1 (and counts lines as
    # editors do).
    return doc.position(node.start_mark.line, node.start_mark.column)


class _Builder:
    """Turn a composed node graph into plain data, recording positions on the way."""

    def __init__(self, doc: SourceDoc) -> None:
        self.doc = doc
        self.problems: list[Diagnostic] = []
        self.expanded = 0
        self.anchored: set[int] = set()

    def loc(self, node: Node) -> Location:
        line, col = _mark(self.doc, node)
        return Location(self.doc.path, line, col)

    def problem(self, node: Node, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(self.loc(node), code, message, hint))

    def build(self, node: Node, path: JsonPath, active: tuple[int, ...], aliased: bool) -> Any:
        node_id = id(node)
        if node_id in active:
            raise _LoadFailed(
                Diagnostic(
                    self.loc(node),
                    "yaml-alias",
                    "this alias refers to a node that contains it (a recursive structure)",
                    "a storyboard is a tree: copy the values instead of aliasing their parent",
                )
            )
        if len(path) > MAX_DEPTH:
            raise _LoadFailed(
                Diagnostic(self.loc(node), "yaml-depth", f"nesting deeper than {MAX_DEPTH}")
            )
        # An anchored node met a second time is an alias being expanded.
        if node_id in self.anchored:
            aliased = True
        if aliased:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_EXPANSION:
                raise _LoadFailed(
                    Diagnostic(
                        self.loc(node),
                        "yaml-alias",
                        f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values",
                        "this looks like an alias bomb; write the values out or alias less",
                    )
                )
        self.doc.values[path] = _mark(self.doc, node)
        if isinstance(node, ScalarNode):
            value = self.scalar(node)
            if isinstance(value, str):
                start, end = node.start_mark, node.end_mark
                span = (start.line, start.column, end.line, end.column, node.style or "")
                self.doc.spans[path] = span
            return value
        self.anchored.add(node_id)
        active = (*active, node_id)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self.bad_tag(node)
            return [
                self.build(child, (*path, i), active, aliased) for i, child in enumerate(node.value)
            ]
        assert isinstance(node, MappingNode)
        template = self.unquoted_template(node)
        if template is not None:
            self.doc.spans[path] = (
                node.start_mark.line,
                node.start_mark.column,
                node.end_mark.line,
                node.end_mark.column,
                "",
            )
            return template
        if node.tag != _MAP:
            self.bad_tag(node)
        return self.mapping(node, path, active, aliased)

    def unquoted_template(self, node: MappingNode) -> str | None:
        """`prompt: {{ keeper }}` is a YAML mapping (of a mapping): say so, and carry on
        with the text as written, so the rest of the file is still checked."""
        if not node.flow_style:
            return None
        start = self.doc.index(node.start_mark.line, node.start_mark.column)
        end = self.doc.index(node.end_mark.line, node.end_mark.column)
        text = self.doc.text[start:end]
        if not text.startswith("{{"):
            return None
        self.problem(
            node,
            "yaml-unquoted-template",
            "a value that starts with '{{' is read by YAML as a mapping, not as text",
            f"quote it: {_quoted_example(text)}",
        )
        return text

    def mapping(
        self, node: MappingNode, path: JsonPath, active: tuple[int, ...], aliased: bool
    ) -> dict[str, Any]:
        own: list[tuple[str, Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self.merge_pairs(value_node))
                continue
            key = self.key(key_node)
            if key is None:
                continue
            if key in seen:
                self.problem(
                    key_node,
                    "yaml-duplicate-key",
                    f"duplicate key '{key}' "
                    f"(first defined at line {_mark(self.doc, seen[key])[0]})",
                    "YAML would silently keep only the last value; remove or rename one",
                )
                continue
            seen[key] = key_node
            own.append((key, key_node, value_node))
        result: dict[str, Any] = {}
        # Merged keys give way to the mapping's own keys, and to earlier merge sources.
        for key_node, value_node in merged:
            key = key_node.value
            if self.key_ok(key_node) and key not in seen and key not in result:
                child = (*path, key)
                self.doc.keys[child] = _mark(self.doc, key_node)
                result[key] = self.build(value_node, child, active, True)
        for key, key_node, value_node in own:
            child = (*path, key)
            self.doc.keys[child] = _mark(self.doc, key_node)
            result[key] = self.build(value_node, child, active, aliased)
        return result

    def merge_pairs(self, node: Node) -> Iterator[tuple[Node, Node]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problem(
                    source,
                    "yaml-merge",
                    "a merge key '<<' takes an alias to a mapping, or a list of them",
                )
                continue
            yield from ((k, v) for k, v in source.value if k.tag != _MERGE)

    def key_ok(self, node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == _STR

    def key(self, node: Node) -> str | None:
        if self.key_ok(node):
            assert isinstance(node, ScalarNode)
            return str(node.value)
        shown = node.value if isinstance(node, ScalarNode) else type(node).__name__[:-4].lower()
        self.problem(
            node,
            "yaml-key-type",
            f"keys must be strings, not {_TYPE_NAMES.get(node.tag, node.tag)} '{shown}'",
            "quote the key if you meant the text",
        )
        return None

    def bad_tag(self, node: Node) -> None:
        self.problem(
            node,
            "yaml-tag",
            f"unsupported YAML tag '{node.tag}'",
            "storyboards use plain YAML values; remove the tag",
        )

    def scalar(self, node: ScalarNode) -> Any:
        value: str = node.value
        tag = node.tag
        if tag == _STR or tag == "!":
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return value.lower() == "true"
        if tag == _INT:
            return _to_int(value)
        if tag == _FLOAT:
            return _to_float(value)
        if tag == _MERGE:
            return value
        self.bad_tag(node)
        return value


_TYPE_NAMES = {_INT: "the integer", _FLOAT: "the number", _BOOL: "the boolean", _NULL: "null"}


def _to_int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _to_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(text)


def _quoted_example(text: str) -> str:
    line = text.splitlines()[0] if text else text
    shown = line if len(line) <= 40 else line[:37] + "..."
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'


_UNQUOTED_TEMPLATE = re.compile(r"^(\s*(?:-\s+)?(?:[^\s:#][^:#]*:\s+|-\s+))(\{[{%])")


def _unquoted_template_at(doc: SourceDoc, line: int) -> tuple[int, str] | None:
    """A (YAML) line whose value starts with `{{` or `{%`: the brace's offset, and the
    value's text."""
    starts = doc.yaml_starts()
    if not 0 <= line < len(starts):
        return None
    end = starts[line + 1] if line + 1 < len(starts) else len(doc.text)
    text = doc.text[starts[line] : end].rstrip("\r\n\x85\u2028\u2029")
    match = _UNQUOTED_TEMPLATE.match(text)
    if match is None:
        return None
    return starts[line] + match.start(2), text[match.start(2) :]


def _syntax_hint(problem: str) -> str:
    if "\\t" in problem or "tab" in problem:
        return "YAML indents with spaces only; replace the tab with spaces"
    if "mapping values are not allowed" in problem or "expected <block end>" in problem:
        return "check the indentation here and on the line above; quote text that contains ': '"
    if "could not find expected ':'" in problem:
        return "a key needs ': ' after it; quote text that spans lines"
    if "found undefined alias" in problem:
        return "define the anchor (&name) before using the alias (*name)"
    if "expected a single document" in problem:
        return "a storyboard file holds one YAML document; remove the '---' separators"
    return "fix the YAML syntax at this position"


def _decode(raw: bytes, path: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise _LoadFailed(
            Diagnostic(
                Location(path, line, col),
                "yaml-encoding",
                f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                "save the file as UTF-8",
            )
        ) from None


def load(file: Path, display_path: str | None = None) -> tuple[SourceDoc, list[Diagnostic]]:
    """Load one storyboard file. Returns the document and the problems found while loading.

    When a problem stops loading altogether (bad syntax, bad encoding), `doc.data` is None.
    """
    path = display_path or file.as_posix()
    doc = SourceDoc(path, None)
    text = ""
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _LoadFailed(
                Diagnostic(
                    Location(path, 1, 1),
                    "yaml-size",
                    f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}",
                    "split the storyboard into several files",
                )
            )
        text = _decode(file.read_bytes(), path)
        doc.text = text
        if "\x00" in text:
            raise _LoadFailed(
                Diagnostic(Location(path, 1, 1), "yaml-encoding", "file contains NUL bytes")
            )
        composer = _Composer(text)
        try:
            root = composer.get_single_node()
        finally:
            composer.dispose()
        if root is None:
            raise _LoadFailed(
                Diagnostic(
                    Location(path, 1, 1),
                    "yaml-empty",
                    "the storyboard is empty",
                    "run `storyboard new NAME` for a commented starter",
                )
            )
        builder = _Builder(doc)
        doc.data = builder.build(root, (), (), False)
        return doc, builder.problems
    except _LoadFailed as failed:
        doc.data = None
        return doc, [failed.diagnostic]
    except yaml.reader.ReaderError as exc:
        # A control character: find its place in the text, since the error has no mark.
        line, col = doc.at_index(exc.position)
        return SourceDoc(path, None), [
            Diagnostic(
                Location(path, line, col),
                "yaml-encoding",
                f"control character U+{exc.character:04X} is not allowed in YAML",
                "delete it; it may have come in with pasted text",
            )
        ]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = doc.position(mark.line, mark.column) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        message = problem + (f" ({exc.context})" if exc.context and exc.problem else "")
        for near in (exc.context_mark, exc.problem_mark):
            found = _unquoted_template_at(doc, near.line) if near else None
            if near is not None and found is not None:
                brace_line, brace_col = doc.at_index(found[0])
                return SourceDoc(path, None), [
                    Diagnostic(
                        Location(path, brace_line, brace_col),
                        "yaml-unquoted-template",
                        "a value that starts with '{{' or '{%' must be quoted in YAML",
                        f"quote the whole value: {_quoted_example(found[1])}",
                    )
                ]
        return SourceDoc(path, None), [
            Diagnostic(Location(path, line, col), "yaml-syntax", message, _syntax_hint(problem))
        ]
