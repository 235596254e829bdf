"""The contact sheet: renders/NAME/index.html, its thumbnails, and a real browser's view of it."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from compiler.pipeline import CompileResult, compile_file
from compiler.preview import PromptPart, prompt_parts, write_preview
from tests.rendering import BOARD, FakeTime, lock_of, make_emulator, render

# The test film with a prompt full of markup, two takes, continuity and a disabled scene.
FILM = (
    BOARD.replace(
        '    prompt: "The beam sweeps the sea."',
        "    takes: 2\n"
        '    prompt: "The beam <b>sweeps</b> the sea & {{ image.coast }} fades.'
        ' <script>x</script>"',
    )
    + """\
  - id: follow
    first_frame: {after: opening}
    prompt: "The camera keeps moving along the cliff."
    duration: 3
  - id: outtake
    enabled: false
    prompt: "Fade to black."
    duration: 3
"""
)
SCENES = ["opening", "climb", "coda", "follow", "outtake"]


def _compile(project: Path) -> CompileResult:
    result = compile_file(project / "film.yaml", "film.yaml")
    assert result.ok, [d.headline() for d in result.diagnostics]
    return result


def _rendered(project: Path) -> Path:
    (project / "film.yaml").write_text(FILM, encoding="utf-8")
    render(project, make_emulator(FakeTime(), clip_max_side=640))  # continuity: sides >= 300
    return write_preview(_compile(project), project / "renders")


class _Elements(HTMLParser):
    """Every start tag with its attributes, in order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def with_class(self, name: str, tag: str | None = None) -> list[dict[str, str]]:
        return [
            attrs
            for t, attrs in self.tags
            if name in attrs.get("class", "").split() and (tag is None or t == tag)
        ]

    def by_tag(self, tag: str) -> list[dict[str, str]]:
        return [attrs for t, attrs in self.tags if t == tag]


def _card(page: str, scene: str) -> str:
    """The HTML of one scene card."""
    start = page.index(f'id="scene-{scene}"')
    return page[start : page.index("</article>", start)]


# -- prompts ----------------------------------------------------------------------------------


def test_prompt_parts_split_tokens_from_text() -> None:
    parts = prompt_parts(
        "Over <<<image_1>>> & <<<element_2>>> in <<<video_1>>>.", {"image_1": "s-image-1"}
    )
    assert parts == (
        PromptPart("Over "),
        PromptPart("<<<image_1>>>", "image", "#s-image-1", "image_1"),
        PromptPart(" & "),
        PromptPart("<<<element_2>>>", "element", None, "element_2"),
        PromptPart(" in "),
        PromptPart("<<<video_1>>>", "video", None, "video_1"),
        PromptPart("."),
    )
    assert prompt_parts("") == ()
    assert prompt_parts("<<<image_x>>>") == (PromptPart("<<<image_x>>>"),)


# -- before anything is rendered --------------------------------------------------------------


def test_before_rendering_the_sheet_shows_reference_images_and_no_film(project: Path) -> None:
    (project / "film.yaml").write_text(FILM, encoding="utf-8")
    index = write_preview(_compile(project), project / "renders")

    assert index == project / "renders" / "film" / "index.html"
    page = index.read_text(encoding="utf-8")
    assert "<video" not in page and "no film yet" in page
    assert "4 scenes without a clip: opening, climb, coda, follow" in page
    # The coast image is copied into thumbs/ (the sheet is self-contained in renders/).
    opening = _card(page, "opening")
    thumbs = re.findall(r'src="(thumbs/ref-[0-9a-f]{16}\.jpg)"', opening)
    assert thumbs and all((index.parent / src).is_file() for src in thumbs)
    with Image.open(index.parent / thumbs[0]) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) <= 480
    assert "image_1 · first frame" in opening
    # Continuity is shown as the last frame of its source, linked to the source's card.
    follow = _card(page, "follow")
    assert "last frame of opening" in follow and 'href="#scene-opening"' in follow
    assert 'from the last frame of <a href="#scene-opening">opening</a>' in follow
    assert 'class="badge state-badge" title="plan">new<' in opening
    assert "not rendered" in opening
    assert not list(index.parent.glob("*.mp4"))


def test_a_storyboard_with_errors_has_no_sheet(project: Path) -> None:
    (project / "film.yaml").write_text(BOARD.replace("duration: 3", "duration: 99"), "utf-8")
    result = compile_file(project / "film.yaml", "film.yaml")
    with pytest.raises(ValueError, match="errors"):
        write_preview(result, project / "renders")


# -- after a render ---------------------------------------------------------------------------


def test_after_rendering_the_sheet_shows_the_film_clips_prompts_and_money(project: Path) -> None:
    index = _rendered(project)
    page = index.read_text(encoding="utf-8")
    tags = _Elements(page)

    # The film, relative to the page, with the first scene's first frame as its poster.
    videos = tags.by_tag("video")
    assert len(videos) == 1 and videos[0]["src"] == "../film.mp4" and "controls" in videos[0]
    assert videos[0]["poster"].startswith("thumbs/")
    assert "<title>Test Film · contact sheet</title>" in page

    # One card per scene, in order; the disabled one greyed and marked.
    cards = tags.with_class("scene-card", "article")
    assert [card["id"] for card in cards] == [f"scene-{scene}" for scene in SCENES]
    assert "is-disabled" in cards[-1]["class"] and "is-disabled" not in cards[0]["class"]
    assert ">disabled<" in _card(page, "outtake")

    # The prompt is text, never markup: escaped once, and its token still highlighted.
    coda = _card(page, "coda")
    assert "<b>" not in page and "<script>x" not in page
    assert "The beam &lt;b&gt;sweeps&lt;/b&gt; the sea &amp; " in coda
    assert "&lt;script&gt;x&lt;/script&gt;" in coda
    assert "&amp;amp;" not in page and "&amp;lt;" not in page
    tokens = tags.with_class("token", "span")
    assert {t["class"] for t in tokens} == {"token token-image"}
    assert len(tokens) == 2  # opening and coda say <<<image_1>>>; follow does not
    assert '<a class="token-link" href="#coda-image-1"><span class="token token-image"' in coda
    assert 'id="coda-image-1"' in coda  # the link's target, with the image's thumbnail
    assert '<span class="token token-image" title="image_1 · coast · reference">' in coda
    assert "&lt;&lt;&lt;image_1&gt;&gt;&gt;</span></a> fades." in coda

    # Multi-shot prompts list each shot with its duration.
    climb = _card(page, "climb")
    assert "shot 1 · 2 s" in climb and "shot 2 · 2 s" in climb
    assert "He lights the lamp." in climb

    # First and last frames of every rendered scene's selected clip, as JPEG thumbnails.
    for scene in ("opening", "climb", "coda", "follow"):
        card = _card(page, scene)
        first = re.search(r'src="(thumbs/[0-9a-f]{16}-first\.jpg)"', card)
        last = re.search(r'src="(thumbs/[0-9a-f]{16}-last\.jpg)"', card)
        assert first and last, scene
        assert (index.parent / first[1]).is_file() and (index.parent / last[1]).is_file()
        assert f'href="{scene}.mp4"' in card
    for img in tags.by_tag("img"):
        assert (index.parent / img["src"]).is_file(), img
    # The continuity source's last frame stands for the follower's first frame.
    last_of_opening = re.search(r'src="(thumbs/[0-9a-f]{16}-last\.jpg)"', _card(page, "opening"))
    assert last_of_opening and last_of_opening[1] in _card(page, "follow")
    # The lockfile names the thumbnails: the clip's sha256.
    clip = lock_of(project).scenes["opening"].takes[1].clip
    assert clip is not None and f"thumbs/{clip.sha256[:16]}-first.jpg" in page

    # Settings, state, takes and money.
    assert "<span>3 s</span><span>std</span><span>sound off</span>" in _card(page, "opening")
    assert "sound on" in coda
    rows = re.findall(r'<tr class="take( selected)?">', coda)
    assert rows == [" selected", ""]  # take 1 is the selected one
    assert "★ selected" in coda and 'href="coda.take2.mp4"' in coda
    assert 'title="plan">unchanged<' in coda and ">succeed<" in coda
    charged = "1.8 units · emulated"  # std, silent: 0.6 units/s x 3 s, not billed
    assert charged in _card(page, "opening")
    assert "<dt>charged to date</dt>" in page
    assert ">nothing<" in page  # nothing left to render
    total = sum(
        float(t.units_charged or 0)
        for entry in lock_of(project).scenes.values()
        for t in entry.takes.values()
    )
    assert f"{total:g} units counted by the emulator, nothing billed" in page


def test_thumbnails_are_reused_and_follow_the_selected_take(project: Path) -> None:
    index = _rendered(project)
    thumbs = index.parent / "thumbs"
    before = {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()}
    page = index.read_text(encoding="utf-8")

    assert write_preview(_compile(project), project / "renders") == index
    assert {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()} == before
    assert index.read_text(encoding="utf-8") == page  # same inputs, same page
    assert not [p for p in index.parent.rglob("*") if p.name.startswith(".")]  # no temp files

    # Selecting take 2 shows its clip; take 1's thumbnails go, nothing else is redone.
    text = FILM.replace("takes: 2", "takes: 2\n    selected: 2")
    (project / "film.yaml").write_text(text, encoding="utf-8")
    write_preview(_compile(project), project / "renders")
    coda = lock_of(project).scenes["coda"].takes
    take1, take2 = coda[1].clip, coda[2].clip
    assert take1 is not None and take2 is not None and take1.sha256 != take2.sha256
    after = {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()}
    assert f"{take2.sha256[:16]}-first.jpg" in after
    assert f"{take1.sha256[:16]}-first.jpg" not in after
    kept = set(before) & set(after)
    assert kept and all(after[name] == before[name] for name in kept)
    page = index.read_text(encoding="utf-8")
    assert re.findall(r'<tr class="take( selected)?">', _card(page, "coda")) == ["", " selected"]
    # The film still holds take 1: the sheet says it is out of date.
    assert "older than the storyboard" in page


def test_a_failed_task_shows_its_reason_and_a_paid_retry(project: Path) -> None:
    emulator = make_emulator(FakeTime())
    emulator.faults.add("fail_task", "create", match="lights the lamp", message="risk <control>")
    render(project, emulator)
    page = write_preview(_compile(project), project / "renders").read_text(encoding="utf-8")

    climb = _card(page, "climb")
    assert 'title="plan">failed-before<' in climb and ">failed<" in climb
    assert "risk &lt;control&gt;" in climb  # Kling's reason, escaped
    assert "thumbs/" not in climb and "not rendered yet" in climb  # no clip, no image refs
    assert "no film yet" in page and "1 scene without a clip: climb" in page
    assert "<video" not in page
    assert ">$0.34<" in page  # to render: the paid retry of climb, 4 s std at $0.084/s

    # The retry succeeds; the failed task stays in the ledger.
    render(project, emulator)
    page = write_preview(_compile(project), project / "renders").read_text(encoding="utf-8")
    climb = _card(page, "climb")
    assert 'title="plan">unchanged<' in climb and "thumbs/" in climb
    assert "1 earlier task replaced" in climb
    assert "<video" in page


# -- in a real browser ------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
]
# Counts the images the browser actually decoded; added to a copy of the page only.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.dataset.images = images.length;
  document.body.dataset.loaded = images.filter(function (img) {
    return img.complete && img.naturalWidth > 0;
  }).length;
});
</script>
"""


def _chromium(tmp_path: Path, *args: str) -> str:
    chromium = shutil.which("chromium")
    assert chromium is not None
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="needs Debian's chromium on PATH for a headless browser (apt-get install chromium)",
)
def test_a_headless_browser_renders_the_sheet_with_its_images(
    project: Path, tmp_path: Path
) -> None:
    index = _rendered(project)
    probe = index.with_name("probe.html")
    probe.write_text(
        index.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), "utf-8"
    )

    dom = _chromium(tmp_path, "--dump-dom", probe.as_uri())
    tags = _Elements(dom)
    cards = tags.with_class("scene-card", "article")
    assert len(cards) == len(SCENES)
    assert len(tags.with_class("token", "span")) == 2
    body = tags.by_tag("body")[0]
    images = int(body["data-images"])
    assert images >= 2 * 4 + 2  # first and last frames of four clips, and more
    assert body["data-loaded"] == str(images), "some thumbnails did not load"
    # The browser saw text where the prompt had markup.
    assert "The beam &lt;b&gt;sweeps&lt;/b&gt; the sea &amp; " in dom
    assert not [t for t, _ in tags.tags if t == "b"]

    screenshot = tmp_path / "sheet.png"
    _chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,1600", index.as_uri())
    with Image.open(screenshot) as image:
        assert image.size == (1280, 1600)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500  # thumbnails and text, not a blank page
    background = max(colours)[1]
    assert sum(background) < 3 * 60, background  # the dark theme


# -- at any aspect ------------------------------------------------------------------------

ASPECT_BOARD = """\
storyboard: 1
title: Aspect {aspect}
mode: std
aspect_ratio: "{aspect}"
refs:
  images:
    still: still.png
scenes:
  - id: opening
    first_frame: still
    prompt: "Dolly in over {{{{ image.still }}}} at dusk."
    duration: 3
  - id: coda
    prompt: "The beam sweeps the sea."
    duration: 3
  - id: later
    enabled: false
    prompt: "Fade to black."
    duration: 3
"""
# The size of every frame and of the player, as the browser laid them out.
MEASURE = """<script>
window.addEventListener("load", function () {
  var boxes = [];
  document.querySelectorAll(".frame img, .player video").forEach(function (el) {
    var box = el.getBoundingClientRect();
    boxes.push([el.tagName, el.naturalWidth || 0, el.naturalHeight || 0, box.width, box.height]
               .join(","));
  });
  document.body.dataset.boxes = boxes.join(";");
});
</script>
"""


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="needs Debian's chromium on PATH for a headless browser (apt-get install chromium)",
)
@pytest.mark.parametrize(
    ("aspect", "still", "thumb"),
    [
        ("16:9", (640, 360), (480, 270)),
        ("9:16", (360, 640), (360, 640)),
        ("1:1", (480, 480), (480, 480)),
    ],
)
def test_frames_and_the_player_keep_the_films_aspect_in_a_browser(
    project: Path,
    tmp_path: Path,
    aspect: str,
    still: tuple[int, int],
    thumb: tuple[int, int],
) -> None:
    from tests.rendering import write_image

    write_image(project / "still.png", still)
    (project / "film.yaml").write_text(ASPECT_BOARD.format(aspect=aspect), encoding="utf-8")
    render(project, make_emulator(FakeTime(), clip_max_side=640))
    index = write_preview(_compile(project), project / "renders")
    width, height = (int(n) for n in aspect.split(":"))
    ratio = width / height

    # Thumbnails keep the clip's shape, sharp at twice the size they are shown.
    for name in (index.parent / "thumbs").glob("*-first.jpg"):
        with Image.open(name) as image:
            assert image.size == thumb
    probe = index.with_name("measure.html")
    probe.write_text(
        index.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), "utf-8"
    )
    dom = _chromium(tmp_path, "--window-size=1280,1600", "--dump-dom", probe.as_uri())
    boxes = [row.split(",") for row in _Elements(dom).by_tag("body")[0]["data-boxes"].split(";")]
    frames = [(int(w), int(h), float(bw), float(bh)) for tag, w, h, bw, bh in boxes if tag == "IMG"]
    assert len(frames) == 4  # first and last frames of the two rendered scenes
    for natural_w, natural_h, shown_w, shown_h in frames:
        assert natural_w / natural_h == pytest.approx(ratio, rel=0.02)
        assert shown_w / shown_h == pytest.approx(ratio, rel=0.02), "cropped or stretched"
        assert shown_h >= 130 and shown_w >= 130  # not thumbnails the size of a stamp
        assert (natural_w, natural_h) >= (shown_w, shown_h)
    (player,) = [(float(bw), float(bh)) for tag, _, _, bw, bh in boxes if tag == "VIDEO"]
    assert player[0] / player[1] == pytest.approx(ratio, rel=0.02)
    assert max(player) >= 400

    screenshot = tmp_path / f"sheet-{width}x{height}.png"
    _chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,1600", index.as_uri())
    with Image.open(screenshot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500
