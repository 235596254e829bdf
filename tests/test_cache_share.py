"""`Cache.share`: a local voice sample lent to Kling through the team's s3:// cache as a
presigned link (design.md §10), against moto's real S3 server on 127.0.0.1 (the `s3`
fixture of test_cache) and a folder for `file://`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from compiler.cache import Cache, CacheCannotShare, CacheCorrupt, open_cache
from compiler.errors import CacheError
from tests.conftest import AWS_SECRET, BUCKET


@pytest.fixture
def cache_url(s3: str, request: pytest.FixtureRequest) -> str:  # noqa: F811 (the fixture)
    """A cache of this test's own under the s3 fixture's bucket: moto keeps its buckets
    for the whole process, so every test lists and counts only what it stored."""
    return f"{s3}/{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]}"


def _prefix(url: str) -> str:
    return urlsplit(url).path.strip("/")


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def _stored_samples(url: str) -> list[str]:
    listed = _s3_client().list_objects_v2(Bucket=BUCKET, Prefix=f"{_prefix(url)}/samples/")
    return [item["Key"] for item in listed.get("Contents", [])]


def _sample(folder: Path, size: int, name: str = "mira-voice.wav") -> tuple[Path, str]:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(url: str) -> bytes:
    response = httpx.get(url, trust_env=False)
    response.raise_for_status()
    return response.content


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of every upload obstore is asked to make (an attempt, whether or not it
    completes)."""
    import obstore

    made: list[str] = []
    put: Callable[..., Any] = obstore.put

    def counted(store: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        made.append(path)
        return put(store, path, *args, **kwargs)

    monkeypatch.setattr(obstore, "put", counted)
    return made


def test_the_link_gives_the_files_bytes_under_its_suffix(
    tmp_path: Path,
    cache_url: str,
) -> None:
    cache = open_cache(cache_url)
    assert cache.can_share
    sample, sha = _sample(tmp_path, 2_500_000)  # several read chunks
    url = cache.share(sha, sample, ".wav")
    path = urlsplit(url).path
    assert path.endswith(".wav") and path.endswith(f"/{_prefix(cache_url)}/samples/{sha}.wav")
    assert _fetch(url) == sample.read_bytes()
    assert _stored_samples(cache_url) == [f"{_prefix(cache_url)}/samples/{sha}.wav"]
    # A signature, never the secret key; the default link lasts an hour.
    query = parse_qs(urlsplit(url).query)
    assert AWS_SECRET not in url and "X-Amz-Signature" in query
    assert query["X-Amz-Expires"] == ["3600"]


def test_a_suffix_is_kept_lower_case_for_kling_to_read_the_kind(
    tmp_path: Path,
    cache_url: str,
) -> None:
    cache = open_cache(cache_url)
    sample, sha = _sample(tmp_path, 50_000, "take.MP3")
    url = cache.share(sha, sample, sample.suffix)
    assert urlsplit(url).path.endswith(f"samples/{sha}.mp3")
    assert _fetch(url) == sample.read_bytes()
    with pytest.raises(ValueError, match="not a file suffix"):
        cache.share(sha, sample, "mp3")


@pytest.mark.parametrize("minutes", [17, 7 * 24 * 60])
def test_the_link_lasts_what_was_asked(
    tmp_path: Path,
    cache_url: str,
    minutes: int,
) -> None:
    cache = open_cache(cache_url)
    sample, sha = _sample(tmp_path, 10_000)
    url = cache.share(sha, sample, ".wav", expires=timedelta(minutes=minutes))
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(minutes * 60)]
    assert _fetch(url) == sample.read_bytes()


@pytest.mark.parametrize(
    "expires", [timedelta(0), timedelta(days=7, seconds=1), timedelta(seconds=1.5)]
)
def test_a_link_lasts_whole_seconds_up_to_seven_days(
    tmp_path: Path,
    cache_url: str,
    puts: list[str],
    expires: timedelta,
) -> None:
    sample, sha = _sample(tmp_path, 10_000)
    with pytest.raises(ValueError, match="1 s to 7 days"):
        open_cache(cache_url).share(sha, sample, ".wav", expires=expires)
    assert puts == [] and _stored_samples(cache_url) == []


def test_sharing_twice_uploads_once(
    tmp_path: Path,
    cache_url: str,
    puts: list[str],
) -> None:
    sample, sha = _sample(tmp_path, 300_000)
    first = open_cache(cache_url).share(sha, sample, ".wav")
    assert puts == [f"samples/{sha}.wav"]
    # Another machine (another Cache on the same bucket) shares the same sample.
    second = open_cache(cache_url).share(sha, sample, ".wav", expires=timedelta(minutes=5))
    assert puts == [f"samples/{sha}.wav"]  # no second upload: not even an attempt
    assert _stored_samples(cache_url) == [f"{_prefix(cache_url)}/samples/{sha}.wav"]
    assert _fetch(first) == _fetch(second) == sample.read_bytes()


# One read chunk; more than a multipart part (a conditional put is one PUT all the same).
@pytest.mark.parametrize("size", [100_000, 12_000_000])
def test_a_file_that_is_not_its_sha256_is_refused_and_nothing_is_stored(
    tmp_path: Path,
    cache_url: str,
    size: int,
) -> None:
    cache = open_cache(cache_url)
    sample, sha = _sample(tmp_path, size)
    wrong = hashlib.sha256(b"the sample compiled, before it was edited").hexdigest()
    with pytest.raises(CacheCorrupt) as refused:
        cache.share(wrong, sample, ".wav")
    assert str(sample) in str(refused.value) and f"sha256 {wrong[:16]}" in str(refused.value)
    assert _stored_samples(cache_url) == []
    pending = _s3_client().list_multipart_uploads(Bucket=BUCKET, Prefix=_prefix(cache_url))
    assert not pending.get("Uploads")  # nor parts of an upload left behind
    # The same file under its own sha256 is lent as usual.
    assert _fetch(cache.share(sha, sample, ".wav")) == sample.read_bytes()


def test_a_file_changed_after_it_was_shared_is_refused(
    tmp_path: Path,
    cache_url: str,
    puts: list[str],
) -> None:
    cache = open_cache(cache_url)
    sample, sha = _sample(tmp_path, 80_000)
    url = cache.share(sha, sample, ".wav")
    original = sample.read_bytes()
    sample.write_bytes(os.urandom(80_000))  # edited since compile: still claims `sha`
    with pytest.raises(CacheCorrupt, match="is not the file shared as sha256"):
        cache.share(sha, sample, ".wav")
    assert len(puts) == 1 and _fetch(url) == original


def test_an_object_of_another_size_in_the_cache_is_not_lent(
    tmp_path: Path,
    cache_url: str,
) -> None:
    import obstore

    cache = open_cache(cache_url)
    sample, sha = _sample(tmp_path, 40_000)
    obstore.put(cache._store, Cache.sample_key(sha, ".wav"), b"not the sample")  # noqa: SLF001
    with pytest.raises(CacheCorrupt, match=f"holds samples/{sha}.wav with other content"):
        cache.share(sha, sample, ".wav")


def test_a_file_cache_cannot_lend_a_sample_and_says_what_to_do(tmp_path: Path) -> None:
    shared = tmp_path / "shared-drive"
    cache = open_cache(f"file://{shared.as_posix()}")
    assert not cache.can_share
    sample, sha = _sample(tmp_path, 10_000)
    with pytest.raises(CacheCannotShare) as refused:
        cache.share(sha, sample, ".wav")
    assert isinstance(refused.value, CacheError)
    text = str(refused.value)
    assert "only through an s3:// cache" in text
    assert "sample: {url: https://...}" in text and "STORYBOARD_CACHE" in text
    assert list(shared.iterdir()) == []  # nothing stored
