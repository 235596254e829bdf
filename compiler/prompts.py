"""Render prompt templates and build each scene's media lists. Scene → RenderedScene.

Prompts are Jinja2 templates run in a sandbox with StrictUndefined. `{{ image.NAME }}`,
`{{ element.NAME }}` and `{{ video.NAME }}` add the reference to the scene's list (once,
in order of first mention, typed frames first) and yield its `<<<image_N>>>` token.

The sandbox exposes only what a prompt needs, and every problem is a diagnostic at the
offending text inside the prompt, never an exception:
- text, numbers, lists and mappings are the only values; attributes of them (methods),
  underscore names and Python objects printed as text are refused;
- no randomness (`random`, `lipsum`, `cycler`, ...): a compile of the same files is
  byte-identical, so a render never pays again for a prompt that only looks changed;
- every loop iteration, call, filter and attribute costs steps from a fixed budget, and
  macro nesting, `range`, every value built and the rendered text have a size limit, so
  a template can neither hang nor fill memory (no threads, no signals, no clocks);
- the compiler places reference tokens itself, as private markers it swaps for
  `<<<image_N>>>` after rendering: a token the template assembles (`'<<<' ~ ...`), or a
  marker a filter changed, is found and refused.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import FILTERS
from jinja2.runtime import Context, LoopContext, Macro, Undefined
from jinja2.sandbox import SandboxedEnvironment
from jinja2.tests import TESTS

from .diagnostics import Diagnostic, did_you_mean
from .load import JsonPath
from .model import (
    REF_KINDS,
    ImageRef,
    RefKind,
    RenderedImage,
    RenderedScene,
    Scene,
    Storyboard,
)

# -- resource bounds (README "Limits") ---------------------------------------------------

MAX_TEMPLATE_CHARS = 20_000  # one prompt as written
MAX_STEPS = 100_000  # loop iterations, calls, filters and lookups of one prompt
MAX_FILE_STEPS = 2_000_000  # the same, for all prompts of one storyboard together
MAX_NESTING = 20  # macro calls (and recursive loops) inside each other
MAX_RANGE = 10_000  # items of one range()
MAX_VALUE = 100_000  # characters (or items) of any one value a template builds
MAX_OUTPUT = 20_000  # characters one prompt renders to (Kling takes 2,500)
MAX_INT_BITS = 4_096  # whole numbers a template computes

# -- the sandbox -------------------------------------------------------------------------


class _Refusal(TemplateError):
    """A template did something prompts do not allow; carries its diagnostic."""

    def __init__(self, code: str, message: str, hint: str | None = None, needle: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.text = message
        self.hint = hint
        self.needle = needle


def _limit(message: str, hint: str, needle: str = "") -> _Refusal:
    return _Refusal("template-limit", message, hint, needle)


@dataclass(slots=True)
class TemplateBudget:
    """What the prompts of one storyboard share while they render: the steps they may
    still take all together, and the reference tokens written in its vars."""

    remaining: int = MAX_FILE_STEPS
    quoted: set[str] | None = None


@dataclass(slots=True)
class _Budget:
    """The steps one prompt may take, and how deep its calls are nested now."""

    limit: int = MAX_STEPS
    file_wide: bool = False
    steps: int = 0
    depth: int = 0

    def tick(self, cost: int = 1) -> None:
        self.steps += cost
        if self.steps > self.limit:
            if self.file_wide:
                raise _limit(
                    f"the storyboard's prompts take more than {MAX_FILE_STEPS:,} steps "
                    "to render altogether",
                    "loops and macros do too much work; write the prompts out, or simplify",
                    "for",
                )
            raise _limit(
                f"the template takes more than {MAX_STEPS:,} steps to render",
                "a loop or macro does too much work; a prompt needs a few steps",
                "for",
            )


_BUDGET: ContextVar[_Budget | None] = ContextVar("prompt_budget", default=None)


def _budget() -> _Budget:
    # Outside a render (constant folding while compiling), each call gets a fresh budget.
    return _BUDGET.get() or _Budget()


def _describe(value: Any) -> str:
    if isinstance(value, _Namespace):
        return f"'{value.kind}'"
    if isinstance(value, Macro):
        return f"the macro '{value.name}'"
    if isinstance(value, LoopContext):
        return "'loop'"
    if callable(value):
        return "a function"
    return f"a Python {type(value).__name__} object"


def _not_text(value: Any) -> _Refusal:
    if isinstance(value, _Namespace):
        return _Refusal(
            "template-error",
            f"'{{{{ {value.kind} }}}}' names no {value.kind}",
            f"write {{{{ {value.kind}.NAME }}}}",
            value.kind,
        )
    if isinstance(value, Macro):
        return _Refusal(
            "template-unsafe",
            f"the macro '{value.name}' is used as a value",
            f"call it: {{{{ {value.name}() }}}}",
            value.name,
        )
    if isinstance(value, LoopContext):
        return _Refusal(
            "template-unsafe",
            "'loop' is not text",
            "use loop.index, loop.first, loop.last or loop.length",
            "loop",
        )
    return _Refusal(
        "template-unsafe",
        f"{_describe(value)} cannot be used as text in a prompt",
        "prompts are made of text, numbers, lists and mappings",
    )


def _weigh(value: Any, budget: _Budget) -> int:
    """The size of a value (characters and items), refusing anything that is not plain
    data: a function or object turned into text would put Python's words (and memory
    addresses, different on every run) into the prompt."""
    total = visited = 0
    stack = [value]
    while stack:
        item = stack.pop()
        visited += 1
        if isinstance(item, str):
            total += len(item) or 1
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            total += 1
        elif isinstance(item, int):
            if item.bit_length() > MAX_INT_BITS:
                raise _limit(
                    f"a number with more than {MAX_INT_BITS:,} bits",
                    "prompts need small numbers",
                )
            total += 1
        elif isinstance(item, list | tuple):
            total += 1
            stack.extend(item)
        elif isinstance(item, dict):
            total += 1
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Undefined):
            total += 1  # using it raises the usual "is undefined" error
        else:
            raise _not_text(item)
        if total > MAX_VALUE:
            raise _limit(
                f"a value grows beyond {MAX_VALUE:,} characters or items",
                "prompts are short; build less text",
            )
    budget.tick(visited)
    return total


def _settle(result: Any, budget: _Budget) -> Any:
    """A filter's result as plain data: lazy sequences become (bounded) lists."""
    if not isinstance(result, str | int | float | list | tuple | dict | Undefined) and (
        result is not None and isinstance(result, Iterable)
    ):
        items = []
        for item in result:
            items.append(item)
            budget.tick()
            if len(items) > MAX_VALUE:
                raise _limit(
                    f"a filter makes more than {MAX_VALUE:,} items",
                    "prompts are short; build less",
                )
        result = items
    _weigh(result, budget)
    return result


_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?")


def _check_percent(fmt: str) -> None:
    for match in _PERCENT.finditer(fmt):
        for size in match.groups():
            if size == "*":
                raise _Refusal(
                    "template-unsafe",
                    "'*' widths in % formatting are not available in prompts",
                    "write the width as a number",
                    "%",
                )
            if size is not None and int(size) > MAX_VALUE:
                raise _limit(
                    f"a % format width of {int(size):,} is more than {MAX_VALUE:,}",
                    "prompts are short",
                    "%",
                )


def _check_repeat(left: Any, right: Any, budget: _Budget) -> None:
    if (
        isinstance(left, int)
        and not isinstance(left, bool)
        and isinstance(right, str | list | tuple)
    ):
        left, right = right, left
    if isinstance(left, str | list | tuple) and isinstance(right, int):
        if right > 0 and _weigh(left, budget) * right > MAX_VALUE:
            raise _limit(
                f"repeating a value {right:,} times makes more than {MAX_VALUE:,} "
                "characters or items",
                "prompts are short; repeat less",
                "*",
            )
    elif isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > 2 * MAX_INT_BITS:
            raise _limit(f"a number with more than {MAX_INT_BITS:,} bits", "use smaller numbers")


def _check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if right * left.bit_length() > MAX_INT_BITS:
            raise _limit(
                f"a number with more than {MAX_INT_BITS:,} bits", "use smaller numbers", "**"
            )


# Filters with a size argument: their output can be far larger than their input.
def _pre_center(args: dict[str, Any]) -> None:
    _bounded(args.get("width", 80), "center", "width")


def _pre_indent(args: dict[str, Any]) -> None:
    width = args.get("width", 4)
    size = len(width) if isinstance(width, str) else width
    lines = str(args.get("s", "")).count("\n") + 1
    if isinstance(size, int):
        _bounded(size * lines, "indent", "width")


def _pre_wordwrap(args: dict[str, Any]) -> None:
    width = args.get("width", 79)
    if isinstance(width, int) and width >= 1:
        breaks = len(str(args.get("s", ""))) // width + 1
        _bounded(breaks * len(args.get("wrapstring") or "\n"), "wordwrap", "width")


def _pre_replace(args: dict[str, Any]) -> None:
    text, old, new = args.get("s"), args.get("old"), args.get("new")
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        times = text.count(old) if old else len(text) + 1
        count = args.get("count")
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _bounded(times * len(new), "replace", "new")


def _pre_join(args: dict[str, Any]) -> None:
    value, joint = args.get("value"), args.get("d", "")
    if isinstance(value, list | tuple | str | dict) and isinstance(joint, str):
        _bounded(len(value) * len(joint), "join", "join")


def _pre_batch(args: dict[str, Any]) -> None:
    _bounded(args.get("linecount"), "batch", "batch")


def _pre_slice(args: dict[str, Any]) -> None:
    _bounded(args.get("slices"), "slice", "slice")


def _pre_format(args: dict[str, Any]) -> None:
    if isinstance(args.get("value"), str):
        _check_percent(args["value"])


def _bounded(size: Any, name: str, needle: str) -> None:
    if isinstance(size, int) and size > MAX_VALUE:
        raise _limit(
            f"'{name}' would make more than {MAX_VALUE:,} characters or items",
            "prompts are short; use a smaller size",
            needle,
        )


_PRECHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": _pre_center,
    "indent": _pre_indent,
    "wordwrap": _pre_wordwrap,
    "replace": _pre_replace,
    "join": _pre_join,
    "batch": _pre_batch,
    "slice": _pre_slice,
    "format": _pre_format,
}

# What prompts can use: text, numbers and list filters. Left out: `random` (a compile
# must give the same prompt every time), the HTML and JSON ones (a prompt is not
# markup), and `attr` (attributes are the sandbox's business).
_ALLOWED_FILTERS = (
    "abs batch capitalize center count d default dictsort first float format groupby "
    "indent int items join last length list lower map max min reject rejectattr replace "
    "reverse round select selectattr slice sort string striptags sum title trim truncate "
    "unique upper wordcount wordwrap"
).split()
_REMOVED_FILTERS = {
    "random": "a compile must give the same prompt every time, or every render pays again",
    "tojson": "a prompt is text, not JSON",
    "pprint": "a prompt is text, not Python",
}


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    passes_arg = hasattr(fn, "jinja_pass_arg")
    precheck = _PRECHECKS.get(name)
    signature = inspect.signature(fn) if precheck else None

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        for value in (*args[1 if passes_arg else 0 :], *kwargs.values()):
            _weigh(value, budget)
        if precheck is not None and signature is not None:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                pass  # the call itself reports the wrong arguments
            else:
                precheck(bound.arguments)
        return _settle(fn(*args, **kwargs), budget)

    return guarded


def _guard_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        return fn(*args, **kwargs)

    return guarded


class _Range:
    """`range()` in prompts: whole numbers only, at most MAX_RANGE of them, as a list."""

    def __call__(self, *args: Any) -> list[int]:
        if not args or len(args) > 3 or not all(type(a) is int for a in args):
            raise _Refusal("template-error", "range() takes 1 to 3 whole numbers", None, "range")
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise _limit(
                f"range() of {len(numbers):,} numbers; the limit is {MAX_RANGE:,}",
                "prompts need few repetitions",
                "range",
            )
        _budget().tick(len(numbers) // 64 + 1)
        return list(numbers)

    def __repr__(self) -> str:
        return "range"


_RANGE = _Range()


def _loop_items(items: Any, cost: int) -> Iterator[Any]:
    """What `{% for %}` iterates over: every iteration costs its body's size in steps."""
    budget = _budget()
    for item in items:
        budget.tick(cost)
        yield item


_LOOP_ATTRS = frozenset(
    "index index0 revindex revindex0 first last length depth depth0 previtem nextitem "
    "cycle changed".split()
)
_METHOD_HINTS = {
    "upper": "{{ X | upper }}",
    "lower": "{{ X | lower }}",
    "title": "{{ X | title }}",
    "capitalize": "{{ X | capitalize }}",
    "strip": "{{ X | trim }}",
    "replace": "{{ X | replace('a', 'b') }}",
    "format": "{{ '%s' | format(X) }}",
    "items": "{{ X | items }}",
    "keys": "{{ X | list }}",
    "join": "{{ X | join(', ') }}",
}


def _attribute_refused(obj: Any, name: str) -> _Refusal:
    if name.startswith("_"):
        return _Refusal(
            "template-unsafe",
            f"'{name}' is not available in prompts (names starting with '_' are private)",
            "prompts use vars, refs and filters only",
            "." + name,
        )
    kinds = {
        str: "text",
        int: "a number",
        float: "a number",
        bool: "true/false",
        type(None): "none",
    }
    kinds.update({list: "a list", tuple: "a list", dict: "a mapping"})
    kind = kinds.get(type(obj)) or _describe(obj)
    example = _METHOD_HINTS.get(name)
    hint = (
        f"use a filter instead: {example}"
        if example
        else "prompts use filters instead of methods, e.g. {{ keeper | upper }}"
    )
    return _Refusal(
        "template-unsafe", f"'.{name}' of {kind} is not available in prompts", hint, "." + name
    )


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` joined through the environment's size check."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_text((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _PromptEnvironment(SandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, finalize=self._finalize)
        # Only what prompts need: no dict, lipsum, cycler, joiner or namespace.
        self.globals = {"range": _RANGE}
        self.filters = {name: _guard_filter(name, FILTERS[name]) for name in _ALLOWED_FILTERS}
        self.tests = {name: _guard_test(fn) for name, fn in TESTS.items()}  # type: ignore[arg-type]

    @staticmethod
    def _finalize(value: Any) -> Any:
        _weigh(value, _budget())
        return value

    def concat(self, parts: Iterable[str]) -> str:
        budget = _budget()
        out: list[str] = []
        total = 0
        for part in parts:
            budget.tick()
            total += len(part)
            if total > MAX_OUTPUT:
                raise _limit(
                    f"the template renders more than {MAX_OUTPUT:,} characters",
                    "Kling takes at most 2,500; a loop probably repeats too much",
                    "for",
                )
            out.append(part)
        return "".join(out)

    def join_text(self, parts: tuple[Any, ...]) -> str:
        budget = _budget()
        for part in parts:
            _weigh(part, budget)
        text = "".join(map(str, parts))
        if len(text) > MAX_VALUE:
            raise _limit(
                f"joining with '~' makes more than {MAX_VALUE:,} characters",
                "prompts are short; build less text",
                "~",
            )
        return text

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        _weigh(left, budget)
        _weigh(right, budget)
        if operator == "*":
            _check_repeat(left, right, budget)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_percent(left)
        return _settle(self.binop_table[operator](left, right), budget)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().tick()
        if isinstance(obj, _Namespace):
            return obj.mention(attribute)
        if isinstance(obj, LoopContext) and attribute in _LOOP_ATTRS:
            return getattr(obj, attribute)
        if isinstance(obj, dict):
            if attribute in obj:
                return obj[attribute]
            if hasattr(dict, attribute):
                raise _attribute_refused(obj, attribute)
            return self.undefined(obj=obj, name=attribute)
        if isinstance(obj, Undefined):
            return getattr(obj, attribute)  # raises the usual "is undefined" error
        raise _attribute_refused(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().tick()
        if isinstance(obj, _Namespace):
            return obj.mention(str(argument))
        if isinstance(obj, str | list | tuple | dict):
            try:
                return obj[argument]
            except (TypeError, LookupError, ValueError):
                if isinstance(argument, str) and not isinstance(obj, dict):
                    raise _attribute_refused(obj, argument) from None
                return self.undefined(obj=obj, name=argument)
        if isinstance(obj, LoopContext) and argument in _LOOP_ATTRS:
            return getattr(obj, argument)
        if isinstance(obj, Undefined):
            return obj[argument]
        raise _attribute_refused(obj, str(argument))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _budget()
        budget.tick()
        if __obj is _loop_items:
            return __context.call(__obj, *args, **kwargs)
        if isinstance(__obj, Undefined):
            __obj._fail_with_undefined_error()
        for value in (*args, *kwargs.values()):
            if not isinstance(value, Macro):
                _weigh(value, budget)
        nests = isinstance(__obj, Macro | LoopContext)
        allowed = (
            nests
            or __obj is _RANGE
            or (
                getattr(__obj, "__name__", "") in ("cycle", "changed")
                and isinstance(getattr(__obj, "__self__", None), LoopContext)
            )
        )
        if not allowed:
            raise _Refusal(
                "template-unsafe",
                f"{_describe(__obj) if callable(__obj) else 'this value'} cannot be called "
                "in a prompt",
                "prompts call macros, range() and loop.cycle() only",
            )
        if not nests:
            return _settle(__context.call(__obj, *args, **kwargs), budget)
        budget.depth += 1
        try:
            if budget.depth > MAX_NESTING:
                name = __obj.name if isinstance(__obj, Macro) else "loop"
                raise _limit(
                    f"calls nest more than {MAX_NESTING} deep (a macro that calls itself?)",
                    "give the recursion an end, or write the text out",
                    name or "",
                )
            return _settle(__context.call(__obj, *args, **kwargs), budget)
        finally:
            budget.depth -= 1


_ENV = _PromptEnvironment()

# -- compiling a prompt, and where its problems are --------------------------------------


@dataclass(frozen=True, slots=True)
class _Problem:
    """A problem inside one template: its offset in the template text."""

    offset: int
    code: str
    message: str
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class _Compiled:
    template: Any  # jinja2.Template, or None when the source has problems
    undeclared: frozenset[str]
    problems: tuple[_Problem, ...] = ()
    refs: tuple[tuple[RefKind, str, int], ...] = ()  # kind, name, template line


_CODE = re.compile(r"\{\{.*?(?:\}\}|$)|\{%.*?(?:%\}|$)", re.S)
_TEMPLATE_LINE = re.compile(r"\r\n|\r|\n")
_REMOVED_GLOBALS = {
    "lipsum": "it writes random placeholder text: write the words you mean",
    "cycler": "use loop.cycle('a', 'b') inside a {% for %}",
    "joiner": "use {{ items | join(', ') }}",
    "namespace": "prompts keep no state between loop iterations; compute the text directly",
    "dict": "write a mapping as {'key': 'value'}",
}


def _line_start(source: str, line: int) -> int:
    """The offset where template line `line` (1-based, as Jinja counts) starts."""
    if line <= 1:
        return 0
    for number, match in enumerate(_TEMPLATE_LINE.finditer(source), 2):
        if number == line:
            return match.end()
    return len(source)


def _locate(source: str, needle: str, line: int | None = None, *, last: bool = False) -> int:
    """Where `needle` is written inside `{{ }}` or `{% %}` (on template `line` when
    known), else the start of that line's first tag, else of the line."""
    spans = [(m.start(), m.end()) for m in _CODE.finditer(source)]
    lo = _line_start(source, line) if line else 0
    hi = _line_start(source, line + 1) if line else len(source)
    if needle:
        word = needle[0].isalnum() or needle[0] == "_"
        patterns = (
            [
                r"(?<![\w.])" + re.escape(needle) + r"(?!\w)",
                r"(?<!\w)" + re.escape(needle) + r"(?!\w)",
            ]
            if word
            else [re.escape(needle)]
        )
        for lo_, hi_ in ((lo, hi), (0, len(source))):
            for pattern in patterns:
                hits = [
                    start + m.start()
                    for start, end in spans
                    for m in re.finditer(pattern, source[start:end])
                    if lo_ <= start + m.start() < hi_
                ]
                if hits:
                    hit = hits[-1] if last else hits[0]
                    return hit + 1 if needle.startswith(".") else hit
    for start, _ in spans:
        if lo <= start < hi:
            return start
    return lo if lo < len(source) else 0


def _template_line(exc: BaseException) -> int | None:
    """The template line an exception was raised at (Jinja rewrites the traceback)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_QUOTED = re.compile(r"'([^']+)'")
# How Jinja names the tokens it expected or got, and how they are written.
_TOKEN_TEXT = {
    "end of statement block": "%}",
    "end of print statement": "}}",
    "begin of statement block": "{%",
    "begin of print statement": "{{",
}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _problem_from(source: str, exc: BaseException) -> _Problem:
    """A diagnostic for an exception raised while compiling or rendering a template."""
    line = _template_line(exc)
    if isinstance(exc, _Refusal):
        return _Problem(_locate(source, exc.needle, line), exc.code, exc.text, exc.hint)
    if isinstance(exc, RecursionError | MemoryError) or (
        isinstance(exc, SyntaxError) and not isinstance(exc, TemplateSyntaxError)
    ):
        return _Problem(
            _locate(source, "", line),
            "template-limit",
            "the template is nested too deeply or is too large to run",
            "simplify it: fewer brackets, blocks or loops inside each other",
        )
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    message = _ADDRESS.sub("", message.splitlines()[0] if message else message)
    quoted = _QUOTED.findall(message)
    needle = quoted[-1] if quoted else ""
    needle = _TOKEN_TEXT.get(needle, needle)
    if isinstance(exc, TemplateSyntaxError):
        end = "end of template" in message.lower()
        at = None if end else _syntax_offset(source, exc, needle)
        return _Problem(
            at if at is not None else _locate(source, needle, None if end else line, last=end),
            "template-syntax",
            message,
            "check the {{ }} and {% %} pairs" if end or "expected" in message else None,
        )
    if isinstance(exc, TemplateError):
        return _Problem(_locate(source, needle, line), "template-error", message.rstrip("."))
    message = _plain_words(message)
    operand = re.search(r"operand type\(s\) for (\S+?):", message)
    needle = operand.group(1) if operand else ""
    if isinstance(exc, ZeroDivisionError):
        lo, hi = _line_start(source, line or 1), _line_start(source, (line or 1) + 1)
        needle = next((op for op in ("//", "/", "%") if op in source[lo:hi]), "")
    return _Problem(
        _locate(source, needle, line), "template-error", f"{type(exc).__name__}: {message}"
    )


def _syntax_offset(source: str, exc: TemplateSyntaxError, needle: str) -> int | None:
    """Where a syntax error is: Jinja gives only its line, so find the shortest start of
    the template that fails the same way; the offending token ends there."""
    numbered = re.search(r" at (\d+)$", exc.message or "")
    if numbered:  # the lexer's own errors give the offset
        return min(int(numbered.group(1)), len(source))

    def fails_alike(end: int) -> bool:
        try:
            _ENV.parse(source[:end])
        except TemplateSyntaxError as other:
            return other.message == exc.message and other.lineno == exc.lineno
        except Exception:
            return False
        return False

    lo, hi = 0, len(source)
    if not fails_alike(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fails_alike(mid):
            hi = mid
        else:
            lo = mid + 1
    for quoted in (needle, *_QUOTED.findall(exc.message or "")):
        token = _TOKEN_TEXT.get(quoted, quoted)
        if token and source.endswith(token, 0, lo):
            return lo - len(token)
    start = lo
    while start > 0 and (source[start - 1].isalnum() or source[start - 1] == "_"):
        start -= 1
    return start if start < lo else max(0, lo - 1)


_INTERNAL_NAMES = (
    (re.compile(r"\b(?:sync_)?do_(\w+)\(\)"), r"the filter '\1'"),
    (re.compile(r"\btest_(\w+)\(\)"), r"the test '\1'"),
    (
        re.compile(r"^(eq|ne|lt|le|gt|ge) expected 2 arguments, got 1$"),
        r"the test '\1' needs a value to compare with",
    ),
)


def _plain_words(message: str) -> str:
    """Jinja's Python names for filters and tests, as a prompt writes them."""
    for pattern, words in _INTERNAL_NAMES:
        message = pattern.sub(words, message)
    return message


def _unknown(node: Any, source: str) -> _Problem:
    kind = "filter" if isinstance(node, nodes.Filter) else "test"
    at = _locate(source, node.name, node.lineno)
    if kind == "filter" and node.name in FILTERS:
        reason = _REMOVED_FILTERS.get(node.name, "a prompt is plain text")
        return _Problem(
            at,
            "template-filter",
            f"the filter '{node.name}' is not available in prompts",
            reason,
        )
    known = _ENV.filters if kind == "filter" else _ENV.tests
    close = did_you_mean(node.name, known)
    return _Problem(
        at,
        f"template-{kind}",
        f"no {kind} named '{node.name}'",
        close if close and close.startswith("did") else f"see the README for the {kind}s",
    )


def _vet(ast: nodes.Template, source: str) -> list[_Problem]:
    """What the sandbox refuses, found before anything runs."""
    problems = []
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        table = _ENV.filters if isinstance(node, nodes.Filter) else _ENV.tests
        if node.name not in table:
            problems.append(_unknown(node, source))
    for tag in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        word = {"Extends": "extends", "Include": "include"}.get(type(tag).__name__, "import")
        problems.append(
            _Problem(
                _locate(source, word, tag.lineno),
                "template-unsafe",
                f"'{{% {word} %}}' is not available in prompts",
                "a prompt is one template: use a macro or a var",
            )
        )
    for attr in ast.find_all(nodes.Getattr):
        inner = attr.node
        if isinstance(inner, nodes.Getattr) and inner.attr.startswith("_"):
            continue  # `x.__class__.__mro__`: the first refusal is the one to fix
        if attr.attr.startswith("_"):
            refusal = _attribute_refused(None, attr.attr)
            problems.append(
                _Problem(
                    _locate(source, attr.attr, attr.lineno),
                    refusal.code,
                    refusal.text,
                    refusal.hint,
                )
            )
    return problems


def _count_loops(ast: nodes.Template) -> None:
    """Make every `{% for %}` pay for each iteration: its body's size, in steps."""
    for loop in ast.find_all(nodes.For):
        cost = 1 + sum(1 for _ in loop.find_all(nodes.Node))
        loop.iter = nodes.Call(
            nodes.ImportedName(f"{__name__}._loop_items"),
            [loop.iter, nodes.Const(cost)],
            [],
            None,
            None,
            lineno=loop.lineno,
        )


class _AnyName(dict[str, Any]):
    """A filter or test table that knows every name: to list a template's variables
    even when it uses a filter that does not exist (that is reported on its own)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key) or _no_op


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


# Sandboxed like the real one, so that listing names never folds `[0] * 10**9` either.
_META_ENV = _PromptEnvironment()
_META_ENV.filters = _AnyName(_ENV.filters)
_META_ENV.tests = _AnyName(_ENV.tests)


def _undeclared(ast: nodes.Template) -> frozenset[str]:
    ast.set_environment(_META_ENV)
    try:
        return frozenset(meta.find_undeclared_variables(ast))
    finally:
        ast.set_environment(_ENV)


def _static_refs(ast: nodes.Template) -> list[tuple[RefKind, str, int]]:
    """Every `kind.NAME` and `kind['NAME']` written in a template, with its line."""
    found: list[tuple[RefKind, str, int]] = []
    node: Any
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not isinstance(target, nodes.Name) or target.name not in REF_KINDS:
            continue
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            name = node.arg.value
        else:
            continue
        found.append((target.name, name, node.lineno))
    return found


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> _Compiled:
    """Parse, vet and compile one template. Cached: most boards repeat their shapes."""
    token = _BUDGET.set(_Budget())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ast = _ENV.parse(source)
            except Exception as exc:  # syntax, or a parser that recursed too deep
                return _Compiled(None, frozenset(), (_problem_from(source, exc),))
            try:
                undeclared = _undeclared(ast)
            except Exception as exc:  # Python's own limits, met while folding constants
                return _Compiled(None, frozenset(), (_problem_from(source, exc),))
            refs = tuple(_static_refs(ast))
            problems = _vet(ast, source)
            if problems:
                return _Compiled(None, undeclared, tuple(problems), refs)
            _count_loops(ast)
            try:
                template = _ENV.from_string(ast)
            except Exception as exc:  # an assertion of Jinja's, or Python's own limits
                return _Compiled(None, undeclared, (_problem_from(source, exc),), refs)
            return _Compiled(template, undeclared, refs=refs)
    finally:
        _BUDGET.reset(token)


def _run(compiled: _Compiled, context: dict[str, Any], budget: _Budget) -> str:
    token = _BUDGET.set(budget)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text: str = compiled.template.render(context)
            return text
    finally:
        _BUDGET.reset(token)


# -- references --------------------------------------------------------------------------

_ANY_TOKEN = re.compile(r"<<<[^<>]*>>>")
# A token as a person would write one; `'<<<' ~ 'image_1>>>'` is assembled, not written.
_WRITTEN_TOKEN = re.compile(r"<<<[\w\s?#-]*>>>")
_REF_TOKEN = re.compile(r"<<<\s*(image|element|video)")
# `{{ name }}` and `{{ name.attr }}`: the whole template language most prompts use.
_SIMPLE_EXPR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\s*\}\}")
_PLAIN_VALUE = (str, int, float, bool)
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"


class _Namespace:
    """`image`, `element` or `video` in a prompt: attribute access mentions a reference."""

    __slots__ = ("kind", "_mentions")

    def __init__(self, kind: RefKind, mentions: _Mentions) -> None:
        self.kind = kind
        self._mentions = mentions

    def mention(self, name: str) -> str:
        return self._mentions.mention(self.kind, name)

    def __str__(self) -> str:
        raise _not_text(self)

    def __repr__(self) -> str:
        raise _not_text(self)


class _Mentions:
    """The media lists of one scene, filled in order of first mention.

    A mention yields a private marker, not the token itself: after rendering, markers
    become `<<<image_N>>>`, so a token the template builds by other means is found.
    """

    def __init__(
        self,
        board: Storyboard,
        at: JsonPath,
        nonce: str,
        *,
        video: str | None = None,
        video_known: bool = True,
        image_prompt: bool = False,
        narration: bool = False,
    ) -> None:
        self.board = board
        self.narration = narration  # a narration is words only: it mentions no media
        self.video = video  # the video the scene declares (`video: {ref: ...}`)
        self.video_known = video_known  # False: its `video:` is broken, and reported
        # The prompt of a generated image: Omni-Image takes images and elements only, and
        # a generated image may not mention another (so there is no cycle to make).
        self.image_prompt = image_prompt
        self.nonce = nonce
        # Each kind's list in payload order, and each name's 1-based token number. An image
        # used as both first and end frame takes two slots but keeps its first number.
        self.slots: dict[str, list[Any]] = {kind: [] for kind in REF_KINDS}
        self.numbers: dict[str, dict[str, int]] = {kind: {} for kind in REF_KINDS}
        self.problems: list[Diagnostic] = []
        self.at: JsonPath = at
        self.source = ""
        self.unresolved = False
        self.reported: set[tuple[JsonPath, str, str]] = set()
        self.issued: dict[str, str] = {}  # marker -> token
        self.broken_vars: frozenset[str] = frozenset()
        self.shadowed: frozenset[str] = frozenset()  # reserved names defined as vars
        self.in_prompt: dict[tuple[str, str], tuple[JsonPath, str]] = {}
        self.namespaces: dict[str, _Namespace] = {
            kind: _Namespace(kind, self) for kind in REF_KINDS
        }

    def problem(self, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(self.board.loc(self.at), code, message, hint))

    def problem_at(self, offset: int, code: str, message: str, hint: str | None = None) -> None:
        loc = self.board.doc.loc_in(self.at, offset)
        self.problems.append(Diagnostic(loc, code, message, hint))

    def known(self, kind: RefKind, name: str) -> bool:
        return name in self.board.refs.table(kind)

    def check_named(self, kind: RefKind, name: str, line: int | None = None) -> bool:
        """Whether a reference written in a prompt exists; if not, say so once."""
        table = self.board.refs.table(kind)
        if name in table and self.narration:
            return self.narration_refuses(kind, name, line)
        if name in table:
            return not self.image_prompt or self.image_prompt_takes(kind, name, table[name])
        self.unresolved = True
        refs = self.board.refs
        if (kind, name) in refs.broken or kind in refs.broken_kinds:
            return False  # its definition is broken, and reported there
        if (self.at, kind, name) not in self.reported:
            self.reported.add((self.at, kind, name))
            at = _locate(self.source, f"{kind}.{name}", line)
            if not self.source.startswith(f"{kind}.{name}", at):
                at = _locate(self.source, name, line)
            self.problem_at(
                at,
                "unknown-ref",
                f"unknown {kind} '{name}'",
                did_you_mean(name, table) or f"declare it under refs.{kind}s",
            )
        return False

    def mention(self, kind: RefKind, name: str) -> str:
        ref = self.board.refs.table(kind).get(name)
        if ref is None:
            self.check_named(kind, name)
            return ""
        if self.image_prompt and not self.image_prompt_takes(kind, name, ref):
            return ""
        if self.narration:
            self.narration_refuses(kind, name)
            return ""
        self.in_prompt.setdefault((kind, name), (self.at, self.source))
        numbers = self.numbers[kind]
        if name not in numbers:
            declared = self.video == name
            if kind == "video" and not declared and self.video_known:
                self.problem_at(
                    _locate(self.source, f"{kind}.{name}"),
                    "video-undeclared",
                    f"the prompt names video '{name}' but the scene does not use it",
                    f"add `video: {{ref: {name}, refer_type: base|feature}}` to the scene; "
                    "refer_type is never defaulted",
                )
            self.slots[kind].append(ref)
            numbers[name] = len(self.slots[kind])
        marker = f"{_MARK_OPEN}{self.nonce}{kind[0]}{numbers[name]}{_MARK_CLOSE}"
        self.issued[marker] = f"<<<{kind}_{numbers[name]}>>>"
        return marker

    def narration_refuses(self, kind: RefKind, name: str, line: int | None = None) -> bool:
        """A narration mentions a medium: say so once. Always False (not taken)."""
        self.unresolved = True
        if (self.at, kind, name) not in self.reported:
            self.reported.add((self.at, kind, name))
            at = _locate(self.source, f"{kind}.{name}", line)
            if not self.source.startswith(f"{kind}.{name}", at):
                at = _locate(self.source, name, line)
            self.problem_at(
                at,
                "narration-media",
                f"narration is spoken words and cannot use {kind} '{name}'",
                "say it in words; images, elements and videos belong in the scene's prompt",
            )
        return False

    def image_prompt_takes(self, kind: RefKind, name: str, ref: Any) -> bool:
        """Whether a generated image's prompt may mention this ref; if not, say so once."""
        if kind == "video":
            code, message = (
                "image-prompt-video",
                f"a generated image's prompt cannot use video '{name}': Omni-Image takes "
                "images and elements only",
            )
            hint = "describe what you want from the video in words"
        elif isinstance(ref, ImageRef) and ref.is_generated:
            code, message = (
                "image-prompt-generated",
                f"a generated image's prompt cannot use generated image '{name}'",
            )
            hint = (
                "an image is generated from local or URL images and elements only; "
                "describe it in words, or use a file"
            )
        else:
            return True
        self.unresolved = True
        if (self.at, kind, name) not in self.reported:
            self.reported.add((self.at, kind, name))
            at = _locate(self.source, f"{kind}.{name}")
            if not self.source.startswith(f"{kind}.{name}", at):
                at = _locate(self.source, name)
            self.problem_at(at, code, message, hint)
        return False

    def add_frame(self, image: ImageRef) -> None:
        self.slots["image"].append(image)
        self.numbers["image"].setdefault(image.name, len(self.slots["image"]))

    def finish(self, raw: str, quoted: set[str]) -> str | None:
        """Swap the markers for tokens; refuse tokens the template built itself."""
        failed = False
        for token in dict.fromkeys(_ANY_TOKEN.findall(raw)):
            if token in quoted:
                continue  # a hand-written token, already reported where it is written
            kind = _REF_TOKEN.match(token)
            at = (
                _locate(self.source, "<<<") if "<<<" in self.source else _locate(self.source, ">>>")
            )
            self.problem_at(
                at,
                "ref-token-assembled",
                f"the template puts together '{token}' itself",
                f"write {{{{ {kind.group(1) if kind else 'image'}.NAME }}}}: storyboard "
                "numbers the references and lists them in the task",
            )
            failed = True
        text = raw
        if _MARK_OPEN in text:
            for marker, token in self.issued.items():
                text = text.replace(marker, token)
        if _MARK_OPEN in text or _MARK_CLOSE in text or self.nonce in text:
            self.problem_at(
                _mangled_at(self.source),
                "ref-token-mangled",
                "a filter or expression changed a reference token, which Kling would not read",
                "apply filters to text, not to {{ image.NAME }} and its kin",
            )
            failed = True
        return None if failed else text


def _mangled_at(source: str) -> int:
    """The first reference with a filter or operator applied to it, else the first one."""
    ref = r"(?:image|element|video)\s*(?:\.\s*\w+|\[[^\]]*\])"
    for pattern in (ref + r"\s*(?:\||~|\[|\*|\+)", ref):
        found = re.search(pattern, source)
        if found:
            return found.start()
    return 0


def _render_simple(source: str, variables: dict[str, Any], mentions: _Mentions) -> str | None:
    """Render templates made only of `{{ var }}` and `{{ kind.NAME }}` without Jinja.

    Returns None when the template needs the real engine (anything else, or any name
    that is not plainly defined), which also produces the exact diagnostics.
    """
    matches = list(_SIMPLE_EXPR.finditer(source))
    rest = _SIMPLE_EXPR.sub("", source)
    if "{{" in rest or "{%" in rest or "{#" in rest:
        return None
    for match in matches:
        name, attr = match.groups()
        if attr is None:
            if name in REF_KINDS or not isinstance(variables.get(name), _PLAIN_VALUE):
                return None
        elif name not in REF_KINDS or name in variables or not mentions.known(name, attr):  # type: ignore[arg-type,unused-ignore]
            return None

    def substitute(match: re.Match[str]) -> str:
        name, attr = match.groups()
        if attr is None:
            return str(variables[name])
        return mentions.mention(name, attr)  # type: ignore[arg-type]

    return _SIMPLE_EXPR.sub(substitute, source)


def _render(
    source: str,
    path: JsonPath,
    variables: dict[str, Any],
    mentions: _Mentions,
    budget: TemplateBudget,
    quoted: set[str],
) -> str | None:
    """One prompt's final text, or None when it has problems (all of them reported)."""
    mentions.at, mentions.source = path, source
    failed = False
    for match in _WRITTEN_TOKEN.finditer(source):
        ref_kind = _REF_TOKEN.match(match.group(0))
        mentions.problem_at(
            match.start(),
            "literal-ref-token",
            f"hand-written reference token '{match.group(0)}'",
            f"write {{{{ {ref_kind.group(1) if ref_kind else 'image'}.NAME }}}} and let "
            "storyboard number the references",
        )
        quoted = quoted | {match.group(0)}
        failed = True
    if len(source) > MAX_TEMPLATE_CHARS:
        mentions.problem_at(
            0,
            "template-limit",
            f"the prompt is {len(source):,} characters as written; the limit is "
            f"{MAX_TEMPLATE_CHARS:,}",
            "Kling takes 2,500 characters; split the scene into shots",
        )
        return None
    if "{" not in source:
        return None if failed else source.strip()
    fast = _render_simple(source, variables, mentions)
    if fast is not None:
        text = mentions.finish(fast, quoted)
        return None if failed or text is None else text.strip()
    compiled = _compile(source)
    for kind, name, line in compiled.refs:
        mentions.check_named(kind, name, line)
    for problem in compiled.problems:
        mentions.problem_at(problem.offset, problem.code, problem.message, problem.hint)
    missing = sorted(compiled.undeclared - set(variables) - set(REF_KINDS))
    for name in missing:
        if name in mentions.broken_vars or "*" in mentions.broken_vars:
            continue  # its definition is broken, and reported there
        if name in _REMOVED_GLOBALS:
            message, hint = f"'{name}' is not available in prompts", _REMOVED_GLOBALS[name]
        else:
            message, hint = f"'{name}' is undefined", _undefined_hint(name, variables)
            if mentions.image_prompt and hint.startswith("define it"):
                hint = (
                    f"define it under the top-level `vars:`, e.g. `{name}: ...`; a generated "
                    "image's prompt does not see a scene's vars"
                )
        mentions.problem_at(_locate(source, name), "undefined-var", message, hint)
    if compiled.template is None or missing:
        return None
    limit = min(MAX_STEPS, budget.remaining)
    run_budget = _Budget(limit=limit, file_wide=limit < MAX_STEPS)
    try:
        raw = _run(compiled, {**variables, **mentions.namespaces}, run_budget)
    except Exception as exc:  # every failure of a template is the user's to fix
        if not (isinstance(exc, _Refusal) and exc.needle in mentions.shadowed):
            # (a bare `{{ image }}` meant the var named `image`, which is reported)
            problem = _problem_from(source, exc)
            mentions.problem_at(problem.offset, problem.code, problem.message, problem.hint)
        return None
    finally:
        budget.remaining = max(0, budget.remaining - run_budget.steps)
    text = mentions.finish(raw, quoted)
    return None if failed or text is None else text.strip()


def _undefined_hint(name: str, variables: dict[str, Any]) -> str:
    if name in ("images", "elements", "videos"):
        return f"write {{{{ {name[:-1]}.NAME }}}} to use a reference"
    close = did_you_mean(name, variables) if variables else None
    if close and close.startswith("did you mean"):
        return close
    return f"define it under `vars:` (at the top or on the scene), e.g. `{name}: ...`"


# -- vars: checked once, where they are defined -------------------------------------------


def _var_tables(board: Storyboard) -> Iterator[tuple[JsonPath, dict[str, Any]]]:
    data = board.doc.data
    if isinstance(data.get("vars"), dict):
        yield ("vars",), data["vars"]
    for scene in board.scenes:
        raw = data["scenes"][scene.path[-1]]
        if isinstance(raw.get("vars"), dict):
            yield (*scene.path, "vars"), raw["vars"]


def check_vars(board: Storyboard) -> list[Diagnostic]:
    """Problems of the `vars` tables themselves, each reported once where it is written."""
    problems = []
    for at, table in _var_tables(board):
        for name, value in table.items():
            if name in REF_KINDS:
                problems.append(
                    Diagnostic(
                        board.loc((*at, name), key=True),
                        "reserved-var",
                        f"'{name}' is reserved for references and cannot be a var",
                        f"rename the var; `{{{{ {name}.NAME }}}}` names a ref",
                    )
                )
            if isinstance(value, str):
                for match in _ANY_TOKEN.finditer(value):
                    kind = _REF_TOKEN.match(match.group(0))
                    problems.append(
                        Diagnostic(
                            board.doc.loc_in((*at, name), match.start()),
                            "literal-ref-token",
                            f"hand-written reference token '{match.group(0)}' in var '{name}'",
                            f"write {{{{ {kind.group(1) if kind else 'image'}.NAME }}}} in the "
                            "prompt and let storyboard number the references",
                        )
                    )
    return problems


def _quoted_tokens(board: Storyboard) -> set[str]:
    return {
        token
        for _, table in _var_tables(board)
        for value in table.values()
        if isinstance(value, str)
        for token in _ANY_TOKEN.findall(value)
    }


# -- a scene --------------------------------------------------------------------------------


def render_scene(
    board: Storyboard, scene: Scene, budget: TemplateBudget | None = None
) -> tuple[RenderedScene, list[Diagnostic]]:
    """Render a scene's prompts and build its media lists.

    Returns the scene as far as it could be rendered (`complete` is False when a prompt,
    frame or reference failed: its lists are then lower bounds) and every problem found.
    """
    budget = budget if budget is not None else TemplateBudget()
    sources = [scene.prompt or "", *(shot.template for shot in scene.shots)]
    nonce = hashlib.sha256("\x00".join(sources).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    mentions = _Mentions(
        board,
        scene.path,
        nonce,
        video=scene.video.ref if scene.video is not None else None,
        video_known="video" not in scene.unknown,
    )
    mentions.broken_vars = scene.broken_vars
    mentions.shadowed = frozenset(REF_KINDS) & set(scene.vars)
    variables = {k: v for k, v in scene.vars.items() if k not in REF_KINDS}
    if budget.quoted is None:
        budget.quoted = _quoted_tokens(board)
    quoted = budget.quoted
    complete = not scene.unknown

    frames: dict[str, ImageRef | None] = {}
    for frame in ("first_frame", "end_frame"):
        name = getattr(scene, frame)
        frames[frame] = None
        if name is None:
            continue
        mentions.at = (*scene.path, frame)
        if frame == "first_frame" and scene.after is not None:
            source = ImageRef(name, (*scene.path, frame), after=scene.after)
            frames[frame] = source
            mentions.add_frame(source)
        elif mentions.known("image", name):
            frames[frame] = board.refs.images[name]
            mentions.add_frame(board.refs.images[name])
        else:
            complete = False
            if ("image", name) not in board.refs.broken and "image" not in board.refs.broken_kinds:
                mentions.problem(
                    "unknown-ref",
                    f"unknown image '{name}'",
                    did_you_mean(name, board.refs.images) or "declare it under refs.images",
                )
    if scene.video is not None:
        mentions.at = (*scene.video.path, "ref")
        if not mentions.known("video", scene.video.ref):
            complete = False
            broken = board.refs.broken
            if ("video", scene.video.ref) not in broken and "video" not in board.refs.broken_kinds:
                mentions.problem(
                    "unknown-ref",
                    f"unknown video '{scene.video.ref}'",
                    did_you_mean(scene.video.ref, board.refs.videos)
                    or "declare it under refs.videos",
                )

    unrendered: list[JsonPath] = []
    prompt: str | None = None
    if scene.prompt is not None:
        at: JsonPath = (*scene.path, "prompt")
        prompt = _render(scene.prompt, at, variables, mentions, budget, quoted)
        if prompt is None:
            unrendered.append(at)
    shot_prompts: list[str] = []
    for i, shot in enumerate(scene.shots):
        at = (*shot.path, "prompt")
        if f"shots.{i}.prompt" in scene.unknown:
            unrendered.append(at)  # broken, and reported by the schema
            shot_prompts.append("")
            continue
        text = _render(shot.template, at, variables, mentions, budget, quoted)
        if text is None:
            unrendered.append(at)
        shot_prompts.append(text or "")
    if not unrendered:
        texts = [prompt or "", *shot_prompts]
        for (ref_kind, ref_name), where in mentions.in_prompt.items():
            token = f"<<<{ref_kind}_{mentions.numbers[ref_kind][ref_name]}>>>"
            if not any(token in text for text in texts):
                mentions.at, mentions.source = where
                mentions.problem_at(
                    _locate(mentions.source, f"{ref_kind}.{ref_name}"),
                    "ref-token-lost",
                    f"{ref_kind} '{ref_name}' is used in the prompt "
                    "but its token never reaches the output",
                    f"write {{{{ {ref_kind}.{ref_name} }}}} on its own, outside filters and tests",
                )
    if scene.video is not None and mentions.known("video", scene.video.ref):
        mentions.source = ""
        mentions.mention("video", scene.video.ref)
    rendered = RenderedScene(
        scene=scene,
        prompt=prompt,
        shot_prompts=tuple(shot_prompts),
        images=tuple(mentions.slots["image"]),
        elements=tuple(mentions.slots["element"]),
        videos=tuple(mentions.slots["video"]),
        first_frame=frames["first_frame"],
        end_frame=frames["end_frame"],
        unrendered=frozenset(unrendered),
        complete=complete and not unrendered and not mentions.unresolved,
    )
    return rendered, mentions.problems


# -- a generated image ----------------------------------------------------------------------


def render_image(
    board: Storyboard, ref: ImageRef, budget: TemplateBudget | None = None
) -> tuple[RenderedImage, list[Diagnostic]]:
    """Render a generated image's prompt (`refs.images.NAME.generate`) with the top-level
    vars, and build its own media lists: `<<<image_N>>>` counts its Omni-Image request's
    `image_list`, not a scene's."""
    assert ref.generate is not None
    budget = budget if budget is not None else TemplateBudget()
    at: JsonPath = (*ref.path, "generate")
    nonce = hashlib.sha256(ref.generate.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    mentions = _Mentions(board, at, nonce, image_prompt=True)
    mentions.broken_vars = board.broken_vars
    mentions.shadowed = frozenset(REF_KINDS) & set(board.vars)
    variables = {k: v for k, v in board.vars.items() if k not in REF_KINDS}
    if budget.quoted is None:
        budget.quoted = _quoted_tokens(board)
    prompt = _render(ref.generate, at, variables, mentions, budget, budget.quoted)
    if prompt is not None:
        for (ref_kind, ref_name), where in mentions.in_prompt.items():
            token = f"<<<{ref_kind}_{mentions.numbers[ref_kind][ref_name]}>>>"
            if token not in prompt:
                mentions.at, mentions.source = where
                mentions.problem_at(
                    _locate(mentions.source, f"{ref_kind}.{ref_name}"),
                    "ref-token-lost",
                    f"{ref_kind} '{ref_name}' is used in the prompt "
                    "but its token never reaches the output",
                    f"write {{{{ {ref_kind}.{ref_name} }}}} on its own, outside filters and tests",
                )
    rendered = RenderedImage(
        ref=ref,
        prompt=prompt,
        images=tuple(mentions.slots["image"]),
        elements=tuple(mentions.slots["element"]),
        complete=prompt is not None and not mentions.unresolved,
    )
    return rendered, mentions.problems


# -- a narration ----------------------------------------------------------------------------


def render_narration(
    board: Storyboard, scene: Scene, budget: TemplateBudget | None = None
) -> tuple[str | None, list[Diagnostic]]:
    """Render a scene's `narration` like a prompt (same sandbox, same vars) but with no
    media: mentioning an image, element or video is a problem. None: it failed (reported)."""
    assert scene.narration is not None
    budget = budget if budget is not None else TemplateBudget()
    at: JsonPath = (*scene.path, "narration")
    nonce = hashlib.sha256(scene.narration.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    mentions = _Mentions(board, at, nonce, narration=True)
    mentions.broken_vars = scene.broken_vars
    mentions.shadowed = frozenset(REF_KINDS) & set(scene.vars)
    variables = {k: v for k, v in scene.vars.items() if k not in REF_KINDS}
    if budget.quoted is None:
        budget.quoted = _quoted_tokens(board)
    text = _render(scene.narration, at, variables, mentions, budget, budget.quoted)
    if mentions.unresolved:
        text = None
    return text, mentions.problems
