"""Untrusted inputs (issue 15): a collaborator's lockfile, a server's words, a huge image,
a money value that is not a number. Nothing leaks, escapes or exhausts the machine."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from compiler.cli import main
from compiler.gate import BoardCost, judge
from compiler.hosts import fetchable, is_private_host
from tests.rendering import BOARD, FakeTime, lock_of, make_emulator, render
from tests.test_crash import KEY, Server, server  # noqa: F401 (a fixture)

SECRET = KEY  # the emulator server of tests.test_crash takes this API key


@pytest.fixture
def cwd(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    for name in ("KLING_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return project


# -- money ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "shown"),
    [("budget_usd: .nan", ".nan"), ("usd_per_unit: .nan", ".nan"), ("usd_per_unit: .inf", ".inf")],
)
def test_a_money_value_that_is_not_a_number_is_a_diagnostic(
    cwd: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    line: str,
    shown: str,
) -> None:
    monkeypatch.setenv("KLING_API_KEY", SECRET)  # paid work: the autouse guard proves no request
    (cwd / "film.yaml").write_text(BOARD.replace("title: Test Film", f"title: T\n{line}"), "utf-8")
    name = line.split(":")[0]
    for command in (["render", "film.yaml"], ["compile", "film.yaml", "--json"]):
        assert main(command) == 1
        out, err = capsys.readouterr()
        assert (
            f"film.yaml:3:{len(name) + 3}: error[not-finite]: '{name}' must be a finite number, "
            f"got {shown}"
        ) in out + err
        assert "NaN" not in out and "Infinity" not in out
    assert not (cwd / "film.lock").exists()


def test_the_gate_refuses_an_estimate_it_cannot_compare() -> None:
    nan, inf = Decimal("NaN"), Decimal("Infinity")
    for costs, budget in (
        ([BoardCost("a.yaml", nan, Decimal(10))], None),
        ([BoardCost("a.yaml", Decimal(1), nan)], None),
        ([BoardCost("a.yaml", inf, None)], Decimal(100)),
        ([BoardCost("a.yaml", Decimal(1), None)], nan),
    ):
        for yes in (False, True):
            verdict = judge(costs, yes=yes, budget=budget)
            assert not verdict.approved and not verdict.askable
    assert judge([BoardCost("a.yaml", Decimal("0.5"), Decimal(1))], yes=False, budget=None).approved


# -- the lockfile --------------------------------------------------------------------------


def _rendered(project: Path) -> dict[str, Any]:
    render(project, make_emulator(FakeTime()))
    doc: dict[str, Any] = json.loads((project / "film.lock").read_text("utf-8"))
    return doc


def _write(project: Path, doc: dict[str, Any]) -> None:
    (project / "film.lock").write_text(json.dumps(doc), "utf-8")


@pytest.mark.parametrize(
    ("where", "value", "named"),
    [
        ("file", "../../outside/x.mp4", "clip → file: '../../outside/x.mp4'"),
        ("file", "/etc/hostname", "clip → file: '/etc/hostname'"),
        ("file", 5, "clip → file: 5"),
        ("status", None, "opening → takes → 1 → status: None"),
        ("units_charged", "1e308", "units_charged: '1e308'"),
    ],
)
def test_a_malformed_lockfile_is_refused_naming_the_entry(
    cwd: Path, capsys: pytest.CaptureFixture[str], where: str, value: object, named: str
) -> None:
    doc = _rendered(cwd)
    take = doc["scenes"]["opening"]["takes"]["1"]
    if where == "file":
        take["clip"]["file"] = value
    else:
        take[where] = value
    _write(cwd, doc)
    before = (cwd / "film.lock").read_bytes()
    for command in (
        ["plan", "film.yaml"],
        ["status", "film.yaml"],
        ["render", "film.yaml"],
        ["preview", "film.yaml"],
    ):
        assert main(command) == 1, command
        err = capsys.readouterr().err
        assert err.startswith("storyboard: error: film.lock: scenes → opening → takes → 1")
        assert named in err
        assert "restore the lockfile from git" in err
        assert "Traceback" not in err and "internal error" not in err
    assert (cwd / "film.lock").read_bytes() == before  # never overwritten


def test_a_clip_reached_through_a_symlink_out_of_renders_is_never_used(
    cwd: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _rendered(cwd)
    outside = tmp_path_factory.mktemp("outside")
    clip = cwd / "renders" / "film" / "coda.mp4"
    (outside / "coda.mp4").write_bytes(clip.read_bytes())
    clip.unlink()
    clip.symlink_to(outside / "coda.mp4")
    lock = lock_of(cwd)
    task = lock.task("coda", 1)
    assert task is not None and task.clip is not None
    assert task.clip.path(cwd / "renders") is None
    outcome = render(cwd, make_emulator(FakeTime()))
    # Planned as a lost placeholder and made again; the file outside was never read into the film.
    assert {r.scene: r.outcome for r in outcome.results}["coda"] == "rendered"
    assert not clip.is_symlink()


def test_a_lockfile_url_on_a_private_host_is_never_fetched(cwd: Path) -> None:
    emulator = make_emulator(FakeTime())
    render(cwd, emulator, kling=True)
    doc = json.loads((cwd / "film.lock").read_text("utf-8"))
    doc["scenes"]["coda"]["takes"]["1"]["video_url"] = "http://127.0.0.1:9/steal.mp4"
    _write(cwd, doc)
    (cwd / "renders" / "film" / "coda.mp4").unlink()
    outcome = render(cwd, emulator, kling=True)
    coda = {r.scene: r for r in outcome.results}["coda"]
    assert coda.outcome == "failed"
    assert str(coda.error) == (
        "refused to download http://127.0.0.1:9/steal.mp4: a result is fetched only over "
        "public https or from the API's own host (a lockfile or an answer named it)"
    )
    assert not (cwd / "renders" / "film" / "coda.mp4").exists()
    assert emulator.stats()["total_creates"] == 3  # and nothing was paid instead


@pytest.mark.parametrize(
    "host",
    [
        "127.1",
        "0x7f000001",
        "2130706433",
        "017700000001",
        "0",
        "localhost.",
        "LocalHost",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "10.1.2.3",
        "169.254.169.254",
        "printer.local",
    ],
)
def test_private_hosts_in_every_spelling(host: str) -> None:
    assert is_private_host(host.strip("[]"))
    assert not fetchable(f"https://{host}/clip.mp4", "https://api-singapore.klingai.com")
    assert fetchable("https://cdn.example.com/clip.mp4", "https://api-singapore.klingai.com")
    assert fetchable("http://127.0.0.1:8765/c.mp4", "http://127.0.0.1:8765")  # the API's own


@pytest.mark.parametrize(
    "host", ["127.1", "0x7f000001", "2130706433", "017700000001", "0", "localhost."]
)
def test_a_storyboard_url_on_a_private_host_is_a_diagnostic(
    cwd: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    text = BOARD.replace("coast: coast.png", f'coast: {{url: "https://{host}/coast.png"}}')
    (cwd / "film.yaml").write_text(text, "utf-8")
    assert main(["validate", "film.yaml"]) == 1
    assert (
        f"error[url-public]: image URL points at a private host '{host.rstrip('.').lower()}"
        in capsys.readouterr().out.replace("'localhost.'", "'localhost'")
    )


# -- size bombs --------------------------------------------------------------------------------


def test_a_huge_image_is_refused_before_anything_decodes_it(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 13,000 x 13,000 of one colour: a few hundred kB as PNG, 500 MB decoded.
    Image.new("L", (13_000, 13_000), 90).save(cwd / "coast.png", optimize=True)
    assert (cwd / "coast.png").stat().st_size < 2_000_000
    assert main(["render", "film.yaml"]) == 1
    out = capsys.readouterr().err
    assert (
        "film.yaml:7:12: error[image-pixels]: image 'coast.png' is 13000x13000 px "
        "(169 megapixels); storyboard takes at most 40 megapixels" in out
    )
    assert "hint: downscale it" in out


def test_a_scene_id_longer_than_64_characters_is_a_diagnostic(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_id = "a" * 300
    (cwd / "film.yaml").write_text(BOARD.replace("id: coda", f"id: {long_id}"), "utf-8")
    assert main(["render", "film.yaml"]) == 1
    assert "error[size]: 'id' takes at most 64 character(s), got 300" in capsys.readouterr().err


# -- secrets in a server's words ------------------------------------------------------------


def test_a_secret_echoed_by_the_server_reaches_no_output(
    cwd: Path,
    server: Server,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KLING_API_KEY", SECRET)
    monkeypatch.setenv("KLING_BASE_URL", server.url)
    server.fault(
        kind="fail_task",
        op="create",
        match="lights the lamp",
        message=f"rejected request with Authorization: Bearer {SECRET} (key {SECRET})",
    )
    outputs = []
    assert (
        main(["render", "film.yaml", "--backend", "kling", "--yes", "--poll-interval", "0.2"]) == 3
    )
    outputs.append(capsys.readouterr())
    assert main(["status", "film.yaml", "--backend", "kling"]) == 3
    outputs.append(capsys.readouterr())
    for command in (
        ["plan", "film.yaml"],
        ["plan", "film.yaml", "--json"],
        ["preview", "film.yaml"],
    ):
        assert main([*command, "--backend", "kling"]) == 0
        outputs.append(capsys.readouterr())
    text = "".join(o.out + o.err for o in outputs)
    assert "rejected request with Authorization: Bearer *** (key ***)" in text
    files = [
        p for p in cwd.rglob("*") if p.is_file() and p.suffix in (".lock", ".html", ".json", ".txt")
    ]
    assert any(p.suffix == ".html" for p in files)
    for path in files:
        assert SECRET not in path.read_text("utf-8", errors="replace"), path
    assert SECRET not in text
    assert os.environ["KLING_API_KEY"] == SECRET  # the secret was there to leak
