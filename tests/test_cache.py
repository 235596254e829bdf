"""The shared render cache (issue 13) against real parts: moto's S3 server on 127.0.0.1,
`storyboard emulator` as Kling, and a folder for `file://`.

Machine A renders with the cache set; machine B, a fresh clone with A's lockfile and an
empty renders/, renders the same storyboard with zero creates and zero downloads from
Kling, also once Kling's results have expired, and gets a film identical to A's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from compiler.cache import Cache, open_cache
from compiler.cli import main
from compiler.plan import Action
from tests.conftest import AWS_SECRET
from tests.rendering import FakeTime, make_emulator, plan_of, render
from tests.test_crash import AUTH, BOARD, KEY, Server, server  # noqa: F401 (a fixture)


def _machine(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "film.yaml").write_text(BOARD, encoding="utf-8")
    return folder


def _render(folder: Path, server: Server, cache: str, monkeypatch: pytest.MonkeyPatch) -> int:  # noqa: F811
    monkeypatch.chdir(folder)
    monkeypatch.setenv("KLING_API_KEY", KEY)
    monkeypatch.setenv("KLING_BASE_URL", server.url)
    return main(
        [
            "render",
            "film.yaml",
            "--backend",
            "kling",
            "--yes",
            "--poll-interval",
            "0.2",
            "--cache",
            cache,
        ]
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_collaborator_renders_from_the_cache_with_no_create_and_no_download(
    tmp_path: Path,
    server: Server,  # noqa: F811 (the fixture)
    s3: str,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = _machine(tmp_path, "a")
    assert _render(a, server, s3, monkeypatch) == 0
    after_a = server.get("/_emulator/stats")
    assert after_a["total_creates"] == 3 and after_a["downloads"] == 3
    film = _sha(a / "renders" / "film.mp4")

    # Machine B: a fresh clone (the storyboard and A's lockfile), nothing rendered.
    b = _machine(tmp_path, "b")
    shutil.copy(a / "film.lock", b / "film.lock")
    capsys.readouterr()
    monkeypatch.chdir(b)
    assert main(["plan", "film.yaml", "--backend", "kling", "--cache", s3]) == 0
    table = capsys.readouterr().out
    assert table.count("fetch") >= 3 and "0 to submit" in table
    assert _render(b, server, s3, monkeypatch) == 0
    assert server.get("/_emulator/stats") == after_a  # zero creates, zero downloads
    assert _sha(b / "renders" / "film.mp4") == film

    # Kling's results expire after 30 days: the cache still has them.
    httpx.post(server.url + "/_emulator/expire", headers=AUTH, json={}).raise_for_status()
    c = _machine(tmp_path, "c")
    shutil.copy(a / "film.lock", c / "film.lock")
    assert _render(c, server, s3, monkeypatch) == 0
    assert server.get("/_emulator/stats") == after_a
    assert _sha(c / "renders" / "film.mp4") == film
    out, err = capsys.readouterr()
    assert AWS_SECRET not in out + err and KEY not in out + err


def test_a_corrupt_object_is_an_error_and_never_used(
    tmp_path: Path,
    server: Server,  # noqa: F811 (the fixture)
    s3: str,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = _machine(tmp_path, "a")
    assert _render(a, server, s3, monkeypatch) == 0
    cache = open_cache(s3)
    lock = (a / "film.lock").read_text("utf-8")
    dawn = next(c for c in (a / "renders" / "film").glob("dawn.mp4"))
    sha = _sha(dawn)
    assert sha in lock
    import obstore

    obstore.put(cache._store, Cache.key(sha), b"not the clip", mode="overwrite")  # noqa: SLF001
    b = _machine(tmp_path, "b")
    shutil.copy(a / "film.lock", b / "film.lock")
    capsys.readouterr()
    assert _render(b, server, s3, monkeypatch) == 3
    err = capsys.readouterr().err
    assert f"the cache {s3} holds sha256/{sha} with other content" in err
    assert not (b / "renders" / "film" / "dawn.mp4").exists()
    assert not (b / "renders" / "film.mp4").exists()
    assert server.get("/_emulator/stats")["total_creates"] == 3  # nothing paid instead


def test_two_renders_racing_on_one_cache_upload_each_object_once(
    tmp_path: Path, s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads: list[str] = []
    put = Cache.put

    def counted(self: Cache, sha256: str, source: Path) -> bool:
        made = put(self, sha256, source)
        if made:
            uploads.append(sha256)
        return made

    monkeypatch.setattr(Cache, "put", counted)
    cache = open_cache(s3)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(os.urandom(300_000))
    sha = _sha(clip)
    answers: list[bool] = []
    barrier = threading.Barrier(4)

    def race() -> None:
        barrier.wait()
        answers.append(cache.put(sha, clip))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [False, False, False, True]
    assert uploads == [sha]
    fetched = cache.get(sha, tmp_path / "back.mp4")
    assert fetched is not None and _sha(fetched.path) == sha


def test_push_and_pull_through_a_shared_folder(
    project: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shared = tmp_path_factory.mktemp("shared-drive")
    url = f"file://{shared.as_posix()}"
    render(project, make_emulator(FakeTime()))
    monkeypatch.chdir(project)
    for name in ("KLING_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["push", "film.yaml", "--cache", url]) == 0
    assert capsys.readouterr().out.startswith("film.yaml: pushed 3 file(s), ")
    assert len(list((shared / "sha256").iterdir())) == 3
    assert main(["push", "film.yaml", "--cache", url]) == 0
    assert "pushed 0 file(s), 0.0 MB; 3 already in the cache" in capsys.readouterr().out

    clips = project / "renders" / "film"
    before = {p.name: _sha(p) for p in clips.glob("*.mp4")}
    shutil.rmtree(clips)
    # The plan fetches from the cache rather than making placeholders again.
    plan = plan_of(project, "emulator", cache=open_cache(url))
    assert [t.action for t in plan.takes] == [Action.FETCH] * 3
    assert main(["pull", "film.yaml", "--cache", url]) == 0
    assert "pulled 3 file(s)" in capsys.readouterr().out
    assert {p.name: _sha(p) for p in clips.glob("*.mp4")} == before


def test_a_bad_cache_url_is_a_usage_error(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)
    assert main(["plan", "film.yaml", "--cache", "ftp://nowhere/x"]) == 2
    assert (
        "'ftp://nowhere/x' is not a cache URL: use s3://BUCKET/PREFIX or file:///PATH"
        in capsys.readouterr().err
    )
