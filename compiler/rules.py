"""Kling's rules that JSON Schema cannot express, checked per model. RenderedScene → diagnostics.

Each rule is a small function registered under the id that diagnostics print; the R
numbers are those of ../shared/kling-api.md §3, as Kling's 2026 change log (§11) amends
them: where a user may remember the older rule, the hint cites the date of the change.
Limits come from `models.yaml`. A generated image's own request (Omni-Image, §11.1) is
checked by `check_image`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from .diagnostics import Diagnostic, Location, Severity
from .model import (
    RenderedImage,
    RenderedScene,
    Storyboard,
    capabilities,
    change,
    limits,
    omni_image,
    strict_reading,
)


@dataclass(frozen=True, slots=True)
class Check:
    """What a rule sees: the board (for positions), the rendered scene and its model."""

    board: Storyboard
    rs: RenderedScene
    caps: dict[str, Any]

    @property
    def scene(self) -> Any:
        return self.rs.scene

    def at(self, *keys: str | int) -> Location:
        return self.board.loc((*self.rs.scene.path, *keys))

    def setting(self, name: str) -> Location:
        return self.board.setting_loc(self.rs.scene, name)

    @property
    def model(self) -> str:
        return str(self.rs.scene.settings.model)

    @property
    def where(self) -> str:
        """The suffix naming the scene, for a rule that may point at a shared value;
        `merge_per_scene` folds the repeats of one shared value into one diagnostic."""
        return f", in {self.rs.scene.label}"

    @property
    def complete(self) -> bool:
        """Whether the media lists are whole; if not, they are lower bounds."""
        return self.rs.complete

    @property
    def has_video(self) -> bool:
        return self.rs.scene.video is not None

    @property
    def base_edit(self) -> bool:
        video = self.rs.scene.video
        return video is not None and video.refer_type == "base"


Rule = Callable[[Check], Iterator[Diagnostic]]
RULES: dict[str, tuple[Rule, frozenset[str]]] = {}


def rule(code: str, needs: str = "") -> Callable[[Rule], Rule]:
    """Register a rule. `needs` names the parts of a scene it reads (see `Scene.unknown`):
    when one of them is broken, and so already reported, the rule is skipped.

    A broken model, mode or sound falls back to its default (kling-v3-omni, pro, off),
    whose limits are the loosest of every model's: what a rule finds then is an error
    whatever the author meant, so those rules still run."""

    def register(fn: Rule) -> Rule:
        RULES[code] = (fn, frozenset(needs.split()))
        return fn

    return register


def _error(loc: Location, code: str, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(loc, code, message, hint)


def duration_case(rs: RenderedScene) -> str:
    """Which row of kling-api.md §3.3 sets this scene's allowed durations."""
    scene = rs.scene
    if scene.multi_shot:
        return "multi_shot"
    if scene.video is not None:
        return "base_edit" if scene.video.refer_type == "base" else "feature_video"
    if not rs.images and not rs.elements:
        return "text"
    if rs.first_frame is not None and len(rs.images) == 1 and not rs.elements:
        return "first_frame"
    return "reference"


_CASE_NAMES = {
    "text": "text-to-video",
    "first_frame": "a first-frame-only scene",
    "reference": "a scene with frames, reference images or elements",
    "feature_video": "a scene with a reference video",
    "multi_shot": "a multi-shot scene",
}


def allowed_durations(caps: dict[str, Any], case: str) -> tuple[set[int], str]:
    spec = caps["durations"][case]
    if "seconds" in spec:
        values = set(spec["seconds"])
        return values, " or ".join(str(v) for v in sorted(values)) + " s"
    return set(range(spec["min"], spec["max"] + 1)), f"{spec['min']}-{spec['max']} s"


# -- R15: what the model can do -------------------------------------------------------


@rule("model-mode", "mode")
def _model_mode(c: Check) -> Iterator[Diagnostic]:
    mode = c.scene.settings.mode
    if mode not in c.caps["modes"]:
        yield _error(
            c.setting("mode"),
            "model-mode",
            f"{c.model} has no '{mode}' mode (R15){c.where}",
            f"use one of {', '.join(c.caps['modes'])}, or model kling-v3-omni for 4K "
            f"({change('mode_4k')})",
        )


@rule("model-sound", "sound")
def _model_sound(c: Check) -> Iterator[Diagnostic]:
    if c.scene.settings.sound and not c.caps["sound"]:
        yield _error(
            c.setting("sound"),
            "model-sound",
            f"{c.model} makes no native audio (R15){c.where}",
            "set `sound: off`, or use model kling-v3-omni",
        )


@rule("model-multi-shot", "structure")
def _model_multi_shot(c: Check) -> Iterator[Diagnostic]:
    scene = c.scene
    if not scene.multi_shot or (c.caps["multi_shot"] and c.caps["auto_shots"]):
        return
    if scene.shots and c.caps["multi_shot"]:
        return
    hint = "split the shots into scenes, or use model kling-v3-omni"
    if scene.auto_shots:
        hint = "give the scene a single `prompt` and `duration`, or use model kling-v3-omni"
    if scene.first_frame is not None:
        hint += f" ({change('multi_shot_frames')})"
    yield _error(c.at("shots"), "model-multi-shot", f"{c.model} has no multi-shot (R15)", hint)


# -- R1, R4: prompt lengths -----------------------------------------------------------


@rule("prompt-length")
def _prompt_length(c: Check) -> Iterator[Diagnostic]:
    prompt = c.rs.prompt
    if prompt is None:
        return
    limit = limits()["prompt_chars"]
    if len(prompt) > limit:
        yield _error(
            c.at("prompt"),
            "prompt-length",
            f"the rendered prompt is {len(prompt):,} characters; "
            f"Kling takes at most {limit:,} (R1)",
            "shorten it, or split the scene into shots",
        )
    elif not prompt and c.complete:
        yield _error(
            c.at("prompt"),
            "prompt-empty",
            "the rendered prompt is empty (R1)",
            "describe what happens in the scene",
        )


@rule("shot-prompt-length")
def _shot_prompt_length(c: Check) -> Iterator[Diagnostic]:
    limit = limits()["shot_prompt_chars"]
    for i, text in enumerate(c.rs.shot_prompts):
        if (*c.scene.path, "shots", i, "prompt") in c.rs.unrendered:
            continue
        if len(text) > limit:
            yield _error(
                c.at("shots", i, "prompt"),
                "shot-prompt-length",
                f"shot {i + 1}'s rendered prompt is {len(text):,} characters; "
                f"a shot takes at most {limit} (R4)",
                "shorten it, or split the shot in two",
            )
        elif not text and c.complete:
            yield _error(
                c.at("shots", i, "prompt"),
                "prompt-empty",
                f"shot {i + 1}'s rendered prompt is empty (R4)",
                "describe what happens in the shot",
            )


# -- R2, R4, R5: shots and durations --------------------------------------------------


@rule("shot-count", "shots structure")
def _shot_count(c: Check) -> Iterator[Diagnostic]:
    shots = c.scene.shots
    if c.caps["multi_shot"] and len(shots) > c.caps["max_shots"]:
        yield _error(
            c.at("shots", c.caps["max_shots"]),
            "shot-count",
            f"{len(shots)} shots; a task takes at most {c.caps['max_shots']} (R4)",
            "split the scene in two",
        )


@rule("shot-duration", "structure")
def _shot_duration(c: Check) -> Iterator[Diagnostic]:
    if not c.caps["multi_shot"]:
        return
    cap = c.caps["max_shot_seconds"]
    for i, shot in enumerate(c.scene.shots):
        if f"shots.{i}.duration" in c.scene.unknown:
            continue
        if shot.duration > cap:
            yield _error(
                c.at("shots", i, "duration"),
                "shot-duration",
                f"shot {i + 1} lasts {shot.duration} s; a shot is at most {cap} s (R4)",
                strict_reading("shot_seconds"),
            )


@rule("shot-duration-sum", "shots shots.duration video structure")
def _shot_duration_sum(c: Check) -> Iterator[Diagnostic]:
    shots = c.scene.shots
    if not shots or not c.caps["multi_shot"]:
        return
    total = sum(shot.duration for shot in shots)
    allowed, text = allowed_durations(c.caps, "multi_shot")
    if c.has_video and not c.base_edit:
        allowed &= allowed_durations(c.caps, "feature_video")[0]
        text = f"{min(allowed)}-{max(allowed)} s with a reference video"
    if total in allowed:
        return
    if total > max(allowed):
        running, culprit = 0, len(shots)
        for i, shot in enumerate(shots):
            running += shot.duration
            if running > max(allowed):
                culprit = i + 1
                break
        hint = f"split the scene in two, or shorten shot {culprit}"
    else:
        hint = "lengthen a shot, or merge this scene with its neighbour"
    yield _error(
        c.at("shots"),
        "shot-duration-sum",
        f"shots add up to {total} s; a task is {text} (R4, R5)",
        hint,
    )


@rule("duration-range", "duration shots video structure")
def _duration_range(c: Check) -> Iterator[Diagnostic]:
    case = duration_case(c.rs)
    if case == "base_edit" or (case == "multi_shot" and not c.scene.auto_shots):
        return  # the video's length, or the sum of the shots (shot-duration-sum)
    if c.scene.auto_shots and not c.caps["multi_shot"]:
        return  # no multi-shot at all (model-multi-shot)
    duration = c.scene.duration
    if duration is None:
        return  # missing or broken, and reported as such
    allowed, text = allowed_durations(c.caps, case)
    name = _CASE_NAMES[case]
    if c.scene.auto_shots and c.has_video and not c.base_edit:
        allowed &= allowed_durations(c.caps, "feature_video")[0]
        text, name = f"{min(allowed)}-{max(allowed)} s", "a multi-shot scene with a reference video"
    if duration in allowed:
        return
    if not c.complete and duration in allowed_durations(c.caps, "reference")[0]:
        return  # a reference that failed to resolve may make this a reference scene
    hint = f"allowed for {name} on {c.model}: {text}"
    omni = capabilities("kling-v3-omni")
    if c.has_video and c.caps is not omni and duration in allowed_durations(omni, case)[0]:
        hint += f"; or use model kling-v3-omni ({change('video_seconds')})"
    yield _error(
        c.at("duration"),
        "duration-range",
        f"duration {duration} s is not allowed here (R5)",
        hint,
    )


@rule("multi-shot-frames", "structure")
def _multi_shot_frames(c: Check) -> Iterator[Diagnostic]:
    # R2 as amended on 05/07/2026 (§11): kling-v3-omni takes a first frame, or first + end
    # frames, with multi-shot. A model without multi-shot is reported as such instead.
    if not c.scene.multi_shot or not c.caps["multi_shot"] or c.caps["multi_shot_frames"]:
        return
    for frame in ("first_frame", "end_frame"):
        if getattr(c.scene, frame) is not None:
            yield _error(
                c.at(frame),
                "multi-shot-frames",
                f"{c.model} takes no {frame.replace('_', ' ')} on a multi-shot scene (R2)",
                "reference the image in a prompt instead, {{ image.NAME }}; or use model "
                f"kling-v3-omni ({change('multi_shot_frames')})",
            )


@rule("shots-with-base-edit", "video structure")
def _shots_with_base_edit(c: Check) -> Iterator[Diagnostic]:
    if c.scene.multi_shot and c.base_edit:
        yield _error(
            c.at("video", "refer_type"),
            "shots-with-base-edit",
            "a base edit keeps the input video's length, so it cannot be split into shots (R13)",
            "use a single `prompt`, or `refer_type: feature`",
        )


@rule("shots-with-feature-video", "video structure")
def _shots_with_feature_video(c: Check) -> Iterator[Diagnostic]:
    # §11 (06/17/2026): a feature reference video with multi-shot requires shot_type
    # intelligence, the shots described in `prompt` (R3).
    if c.scene.shots and c.has_video and not c.base_edit and c.caps["multi_shot"]:
        yield _error(
            c.at("shots"),
            "shots-with-feature-video",
            "a multi-shot scene with a `feature` reference video cannot list its shots (R3)",
            change("feature_video_shots")
            + ": write the shots in `prompt`, with `shots: auto` and a `duration`",
        )


# -- R6-R10: frames, images and elements ----------------------------------------------


@rule("ref-count", "video")
def _ref_count(c: Check) -> Iterator[Diagnostic]:
    count = len(c.rs.images) + len(c.rs.elements)
    key = "max_images_and_elements_with_video" if c.has_video else "max_images_and_elements"
    limit = c.caps[key]
    if count > limit:
        where = " with a video" if c.has_video else ""
        yield _error(
            c.at("shots" if c.scene.shots else "prompt"),
            "ref-count",
            f"{len(c.rs.images)} images + {len(c.rs.elements)} elements = {count}; "
            f"a task{where} takes at most {limit} (R6)",
            "drop a reference, or split the scene",
        )


@rule("end-frame-alone", "first_frame")
def _end_frame_alone(c: Check) -> Iterator[Diagnostic]:
    if c.scene.end_frame is not None and c.scene.first_frame is None:
        hint = "add `first_frame:`, or use the image as a reference: {{ image.NAME }}"
        if c.scene.multi_shot and c.caps["multi_shot_frames"]:
            hint = change("multi_shot_frames") + ", but an end frame still needs the first; " + hint
        yield _error(
            c.at("end_frame"), "end-frame-alone", "an end frame needs a first frame (R7)", hint
        )


@rule("frame-with-base-edit", "video")
def _frame_with_base_edit(c: Check) -> Iterator[Diagnostic]:
    if not c.base_edit:
        return
    for frame in ("first_frame", "end_frame"):
        if getattr(c.scene, frame) is not None:
            yield _error(
                c.at(frame),
                "frame-with-base-edit",
                f"a base video edit cannot have a {frame.replace('_', ' ')} (R8)",
                "remove the frame, or use `refer_type: feature`",
            )


@rule("o1-frames-images")
def _o1_frames_images(c: Check) -> Iterator[Diagnostic]:
    cap = c.caps["max_images_with_frames"]
    has_frames = c.scene.first_frame is not None or c.scene.end_frame is not None
    if cap is not None and has_frames and len(c.rs.images) > cap:
        frame = "end_frame" if c.scene.end_frame is not None else "first_frame"
        yield _error(
            c.at(frame),
            "o1-frames-images",
            f"{c.model} cannot set frames with more than {cap} images; "
            f"this scene has {len(c.rs.images)} (R9)",
            "drop reference images, or use model kling-v3-omni",
        )


@rule("element-limit", "first_frame end_frame")
def _element_limit(c: Check) -> Iterator[Diagnostic]:
    count = len(c.rs.elements)
    if c.scene.end_frame is not None and c.scene.first_frame is not None:
        limit, frames = c.caps["max_elements_with_end_frame"], "first + end frames"
    elif c.scene.first_frame is not None:
        limit, frames = c.caps["max_elements_with_first_frame"], "a first frame"
    else:
        return
    if count > limit:
        allowed = f"at most {limit}" if limit else "none"
        yield _error(
            c.at("shots" if c.scene.shots else "prompt"),
            "element-limit",
            f"{count} element{'s' * (count != 1)}; with {frames} {c.model} allows {allowed} (R10)",
            "drop elements, or drop the frames",
        )


# -- R11-R13: video input -------------------------------------------------------------


@rule("sound-with-video", "sound video")
def _sound_with_video(c: Check) -> Iterator[Diagnostic]:
    if c.has_video and c.scene.settings.sound and c.caps["sound"]:
        yield _error(
            c.setting("sound"),
            "sound-with-video",
            f"sound must be off when a scene uses a video (R12){c.where}",
            "set `sound: off` on this scene; `keep_original_sound: true` keeps the video's audio",
        )


@rule("video-duration")
def _video_duration(c: Check) -> Iterator[Diagnostic]:
    for video in c.rs.videos:
        if video.duration is None:
            continue
        spec = c.caps["video_input_seconds"]
        if not spec["min"] <= video.duration <= spec["max"]:
            longest = capabilities("kling-v3-omni")["video_input_seconds"]["max"]
            yield Diagnostic(
                c.board.loc((*video.path, "duration")),
                "video-duration",
                f"video '{video.name}' lasts {video.duration:g} s; {c.model} takes "
                f"{spec['min']}-{spec['max']} s videos (§2.1){c.where}",
                "trim the video"
                + (
                    f", or use model kling-v3-omni ({change('video_seconds')})"
                    if spec["min"] <= video.duration <= longest
                    else ""
                ),
            )


@rule("video-unmentioned", "video")
def _video_unmentioned(c: Check) -> Iterator[Diagnostic]:
    if not c.has_video or ("video", c.scene.video.ref) in c.board.refs.broken:
        return  # a broken video ref was reported where it is defined
    if not c.complete or c.rs.unrendered:
        return  # the prompt that names it may be the one that failed
    texts = [c.rs.prompt or "", *c.rs.shot_prompts]
    if not any("<<<video_1>>>" in text for text in texts):
        yield Diagnostic(
            c.at("video", "ref"),
            "video-unmentioned",
            f"the prompt never names video '{c.scene.video.ref}'",
            f"say what to do with it: {{{{ video.{c.scene.video.ref} }}}}",
            Severity.WARNING,
        )


@rule("frame-aspect", "aspect_ratio first_frame")
def _frame_aspect(c: Check) -> Iterator[Diagnostic]:
    frame = c.rs.first_frame
    if frame is None:
        return
    if frame.is_generated:
        # Its pixels do not exist yet; the shape it is made at is known (§11.1).
        if frame.aspect_ratio != c.scene.settings.aspect_ratio:
            yield Diagnostic(
                c.at("first_frame"),
                "frame-aspect",
                f"first frame '{frame.name}' is generated at {frame.aspect_ratio}, not "
                f"{c.scene.settings.aspect_ratio}; the clip takes the frame's shape (R14)",
                f'set `aspect_ratio: "{c.scene.settings.aspect_ratio}"` on the generated '
                "image, so the clips cut together",
                Severity.WARNING,
            )
        return
    if frame.size is None:
        return
    width, height = frame.size
    w, h = (int(x) for x in c.scene.settings.aspect_ratio.split(":"))
    if abs((width / height) / (w / h) - 1) > 0.05:
        yield Diagnostic(
            c.at("first_frame"),
            "frame-aspect",
            f"first frame '{frame.name}' is {width}x{height} px, not "
            f"{c.scene.settings.aspect_ratio}; the clip takes the frame's shape (R14)",
            "crop the image to the film's aspect ratio so the clips cut together",
            Severity.WARNING,
        )


def check_scene(board: Storyboard, rs: RenderedScene) -> list[Diagnostic]:
    """Every rule that applies to a (possibly partly rendered) scene.

    A rule whose inputs are broken is skipped; a rule that counts media treats the lists
    of an incompletely rendered scene as lower bounds, so what it reports is certain.
    """
    c = Check(board, rs, capabilities(rs.scene.settings.model))
    unknown = rs.scene.unknown
    return [diag for fn, needs in RULES.values() if not needs & unknown for diag in fn(c)]


_PER_SCENE = re.compile(r"^(?P<base>.*), in (?P<scene>scene '[^']*'|scene \d+)$")


def merge_per_scene(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """One diagnostic per cause: a shared value (a top-level setting, a video ref) that
    breaks a rule in several scenes is reported once, naming every scene it breaks."""
    groups: dict[tuple[object, ...], list[str]] = {}
    merged: list[Diagnostic] = []
    for diag in diagnostics:
        match = _PER_SCENE.match(diag.message)
        if match is None:
            merged.append(diag)
            continue
        key = (diag.loc, diag.code, match["base"], diag.hint, diag.severity)
        if key not in groups:
            groups[key] = []
            merged.append(diag)
        if match["scene"] not in groups[key]:
            groups[key].append(match["scene"])
    out = []
    for diag in merged:
        match = _PER_SCENE.match(diag.message)
        if match is None:
            out.append(diag)
            continue
        scenes = groups[(diag.loc, diag.code, match["base"], diag.hint, diag.severity)]
        out.append(replace(diag, message=f"{match['base']}, in {_scene_list(scenes)}"))
    return out


def _scene_list(scenes: list[str]) -> str:
    if len(scenes) == 1:
        return scenes[0]
    names = [s.removeprefix("scene ") for s in scenes]
    shown = names[:5] + ([f"{len(names) - 5} more"] if len(names) > 5 else [])
    return "scenes " + ", ".join(shown[:-1]) + " and " + shown[-1]


# -- a generated image's own request (Omni-Image, kling-api.md §11.1) -----------------------


def check_image(board: Storyboard, ri: RenderedImage) -> list[Diagnostic]:
    """Omni-Image's rules for a generated image's request: the prompt's length, and at most
    10 images and elements together. Rules that need the image's pixels wait for it."""
    spec = omni_image()
    loc = board.loc(ri.path)
    problems = []
    prompt = ri.prompt
    if prompt is not None and len(prompt) > spec["prompt_chars"]:
        problems.append(
            _error(
                loc,
                "prompt-length",
                f"the rendered image prompt is {len(prompt):,} characters; Omni-Image takes "
                f"at most {spec['prompt_chars']:,} (§11.1)",
                "shorten it",
            )
        )
    elif prompt == "" and ri.complete:
        problems.append(
            _error(
                loc,
                "prompt-empty",
                "the rendered image prompt is empty (§11.1)",
                "describe the image",
            )
        )
    count = len(ri.images) + len(ri.elements)
    limit = spec["max_images_and_elements"]
    if count > limit:
        problems.append(
            _error(
                loc,
                "ref-count",
                f"{len(ri.images)} images + {len(ri.elements)} elements = {count}; an "
                f"Omni-Image task takes at most {limit} (§11.1)",
                "mention fewer images and elements in the image's prompt",
            )
        )
    return problems
