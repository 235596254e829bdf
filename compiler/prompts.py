"""Render prompt templates and build each scene's media lists. Scene → RenderedScene.

Prompts are Jinja2 templates run in a sandbox with StrictUndefined. `{{ image.NAME }}`,
`{{ element.NAME }}` and `{{ video.NAME }}` add the reference to the scene's list (once,
in order of first mention, typed frames first) and yield its `<<<image_N>>>` token.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from .diagnostics import Diagnostic, did_you_mean
from .load import JsonPath
from .model import (
    REF_KINDS,
    ImageRef,
    RefKind,
    RenderedScene,
    Scene,
    Storyboard,
)

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_LITERAL_TOKEN = re.compile(r"<<<\s*(image|element|video)_?\s*\d*\s*>>>")
# `{{ name }}` and `{{ name.attr }}`: the whole template language most prompts use.
_SIMPLE_EXPR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\s*\}\}")
_PLAIN_VALUE = (str, int, float, bool)
_ANY_TOKEN = re.compile(r"<<<[^<>]*>>>")
_TOKEN = re.compile(r"<<<(image|element|video)_[1-9][0-9]*>>>")
# What an unknown or broken reference renders to; its problem is reported where it is named.
_UNRESOLVED = re.compile(r"<<<(image|element|video)_\?>>>")


class _Namespace:
    """`image`, `element` or `video` in a prompt: attribute access mentions a reference."""

    __slots__ = ("_kind", "_mentions")

    def __init__(self, kind: RefKind, mentions: _Mentions) -> None:
        self._kind = kind
        self._mentions = mentions

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._mentions.mention(self._kind, name)

    def __getitem__(self, name: object) -> str:
        return self._mentions.mention(self._kind, str(name))

    def __str__(self) -> str:
        return self._mentions.bare(self._kind)


class _Mentions:
    """The media lists of one scene, filled in order of first mention."""

    def __init__(self, board: Storyboard, scene: Scene) -> None:
        self.board = board
        self.scene = scene
        # Each kind's list in payload order, and each name's 1-based token number. An image
        # used as both first and end frame takes two slots but keeps its first number.
        self.slots: dict[str, list[Any]] = {kind: [] for kind in REF_KINDS}
        self.numbers: dict[str, dict[str, int]] = {kind: {} for kind in REF_KINDS}
        self.problems: list[Diagnostic] = []
        self.at: JsonPath = scene.path
        self.in_prompt: dict[tuple[str, str], JsonPath] = {}
        self.namespaces: dict[str, _Namespace] = {
            kind: _Namespace(kind, self) for kind in REF_KINDS
        }

    def problem(self, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(self.board.loc(self.at), code, message, hint))

    def known(self, kind: RefKind, name: str) -> bool:
        return name in self.board.refs.table(kind)

    def mention(self, kind: RefKind, name: str) -> str:
        table = self.board.refs.table(kind)
        ref = table.get(name)
        if ref is None:
            if (kind, name) not in self.board.refs.broken:
                self.problem(
                    "unknown-ref",
                    f"unknown {kind} '{name}'",
                    did_you_mean(name, table) or f"declare it under refs.{kind}s",
                )
            return f"<<<{kind}_?>>>"
        self.in_prompt.setdefault((kind, name), self.at)
        numbers = self.numbers[kind]
        if name not in numbers:
            if kind == "video" and (self.scene.video is None or self.scene.video.ref != name):
                self.problem(
                    "video-undeclared",
                    f"the prompt names video '{name}' but the scene does not use it",
                    f"add `video: {{ref: {name}, refer_type: base|feature}}` to the scene; "
                    "refer_type is never defaulted",
                )
            self.slots[kind].append(ref)
            numbers[name] = len(self.slots[kind])
        return f"<<<{kind}_{numbers[name]}>>>"

    def add_frame(self, image: ImageRef) -> None:
        self.slots["image"].append(image)
        self.numbers["image"].setdefault(image.name, len(self.slots["image"]))

    def bare(self, kind: RefKind) -> str:
        self.problem(
            "template-error",
            f"'{{{{ {kind} }}}}' names no {kind}",
            f"write {{{{ {kind}.NAME }}}}",
        )
        return ""


@functools.lru_cache(maxsize=8192)
def _parse(source: str) -> tuple[nodes.Template, frozenset[str]] | TemplateSyntaxError:
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        return exc
    return ast, frozenset(meta.find_undeclared_variables(ast))


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
    source: str, path: JsonPath, variables: dict[str, Any], mentions: _Mentions
) -> str | None:
    mentions.at = path
    if _LITERAL_TOKEN.search(source):
        token = _LITERAL_TOKEN.search(source)
        assert token is not None
        mentions.problem(
            "literal-ref-token",
            f"hand-written reference token '{token.group(0)}'",
            f"write {{{{ {token.group(1)}.NAME }}}} and let storyboard number the references",
        )
        return None
    if "{" not in source:
        return source.strip()
    fast = _render_simple(source, variables, mentions)
    if fast is not None:
        return fast.strip()
    parsed = _parse(source)
    if isinstance(parsed, TemplateSyntaxError):
        where = f" (template line {parsed.lineno})" if parsed.lineno and parsed.lineno > 1 else ""
        mentions.problem(
            "template-syntax", f"{parsed.message}{where}", "check the {{ }} and {% %} pairs"
        )
        return None
    ast, undeclared = parsed
    missing = sorted(undeclared - set(variables) - set(REF_KINDS))
    for name in missing:
        mentions.problem(
            "undefined-var",
            f"'{name}' is undefined",
            _undefined_hint(name, variables),
        )
    if missing:
        return None
    context: dict[str, Any] = {**variables, **mentions.namespaces}
    try:
        text = _ENV.from_string(ast).render(context).strip()
    except TemplateError as exc:
        mentions.problem("template-error", str(exc.message or exc), None)
    except (ArithmeticError, TypeError, ValueError) as exc:
        mentions.problem("template-error", f"{type(exc).__name__}: {exc}", None)
        return None
    for token in _ANY_TOKEN.findall(text):
        if not _TOKEN.fullmatch(token) and not _UNRESOLVED.fullmatch(token):
            mentions.problem(
                "ref-token-mangled",
                f"an expression turned a reference into '{token}', which Kling would not read",
                "apply filters to text, not to {{ image.NAME }} and its kin",
            )
            return None
    return text


def _undefined_hint(name: str, variables: dict[str, Any]) -> str:
    if name in ("images", "elements", "videos"):
        return f"write {{{{ {name[:-1]}.NAME }}}} to use a reference"
    close = did_you_mean(name, variables) if variables else None
    if close and close.startswith("did you mean"):
        return close
    return f"define it under `vars:` (at the top or on the scene), e.g. `{name}: ...`"


def render_scene(board: Storyboard, scene: Scene) -> tuple[RenderedScene | None, list[Diagnostic]]:
    """Render a scene's prompts; None if any prompt could not be rendered."""
    mentions = _Mentions(board, scene)
    variables = scene.vars
    for name in REF_KINDS:
        if name in variables:
            mentions.at = (
                ("vars", name)
                if name in board.doc.data.get("vars", {})
                else (*scene.path, "vars", name)
            )
            mentions.problem(
                "reserved-var",
                f"'{name}' is reserved for references and cannot be a var",
                f"rename the var; `{{{{ {name}.NAME }}}}` names a ref",
            )
    if mentions.problems:
        return None, mentions.problems

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
        elif ("image", name) not in board.refs.broken:
            mentions.problem(
                "unknown-ref",
                f"unknown image '{name}'",
                did_you_mean(name, board.refs.images) or "declare it under refs.images",
            )
    if scene.video is not None:
        mentions.at = (*scene.video.path, "ref")
        if not mentions.known("video", scene.video.ref):
            if ("video", scene.video.ref) not in board.refs.broken:
                mentions.problem(
                    "unknown-ref",
                    f"unknown video '{scene.video.ref}'",
                    did_you_mean(scene.video.ref, board.refs.videos)
                    or "declare it under refs.videos",
                )

    prompt: str | None = None
    shot_prompts: list[str] = []
    failed = False
    if scene.prompt is not None:
        prompt = _render(scene.prompt, (*scene.path, "prompt"), variables, mentions)
        failed = prompt is None
    for shot in scene.shots:
        text = _render(shot.template, (*shot.path, "prompt"), variables, mentions)
        failed = failed or text is None
        shot_prompts.append(text or "")
    if not failed:
        texts = [prompt or "", *shot_prompts]
        for (ref_kind, ref_name), at in mentions.in_prompt.items():
            token = f"<<<{ref_kind}_{mentions.numbers[ref_kind][ref_name]}>>>"
            if not any(token in text for text in texts):
                mentions.at = at
                mentions.problem(
                    "ref-token-lost",
                    f"{ref_kind} '{ref_name}' is used in the prompt "
                    "but its token never reaches the output",
                    f"write {{{{ {ref_kind}.{ref_name} }}}} on its own, outside filters and tests",
                )
    if scene.video is not None and mentions.known("video", scene.video.ref):
        mentions.mention("video", scene.video.ref)
    if failed or mentions.problems:
        return None, mentions.problems
    return (
        RenderedScene(
            scene=scene,
            prompt=prompt,
            shot_prompts=tuple(shot_prompts),
            images=tuple(mentions.slots["image"]),
            elements=tuple(mentions.slots["element"]),
            videos=tuple(mentions.slots["video"]),
            first_frame=frames["first_frame"],
            end_frame=frames["end_frame"],
        ),
        [],
    )
