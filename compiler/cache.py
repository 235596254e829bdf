"""A team's shared render cache: clips by sha256 on S3-compatible storage or a shared drive.

`STORYBOARD_CACHE` (or `--cache`) names it (README "A shared render cache"):
- `s3://BUCKET/PREFIX` on AWS S3, Cloudflare R2, MinIO or any S3-compatible service,
  configured by the standard `AWS_*` variables (`AWS_ENDPOINT_URL` included);
- `file:///PATH` on a shared drive.
Objects are content-addressed (`sha256/HEX`), so two machines that made the same clip
write the same object: uploads are write-if-absent, and every fetched object is checked
against its sha256 before it is used. obstore (the Rust object_store crate) does the
I/O: streaming reads, conditional puts, one small wheel for S3 and local folders alike.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlsplit

from .errors import CacheError
from .fsutil import publish
from .redaction import SECRETS, redact_secrets

if TYPE_CHECKING:
    from obstore.store import ObjectStore

CHUNK = 1 << 20
_AHEAD = 8  # chunks read ahead of the writer: memory stays under 8 MB per fetch
_AWS_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class CacheCorrupt(CacheError):
    """An object whose bytes are not the sha256 it is stored under: never used."""


@dataclass(frozen=True, slots=True)
class Fetched:
    path: Path
    bytes: int


class Cache:
    """One content-addressed store. Every method raises CacheError on trouble, with no
    credential in its text."""

    def __init__(self, store: ObjectStore, shown: str) -> None:
        self._store = store
        self.shown = shown  # the cache's URL, for messages

    def __repr__(self) -> str:
        return f"Cache({self.shown!r})"

    @staticmethod
    def key(sha256: str) -> str:
        return f"sha256/{sha256}"

    def has(self, sha256: str) -> bool:
        import obstore

        try:
            obstore.head(self._store, self.key(sha256))
        except FileNotFoundError:
            return False
        except Exception as exc:  # obstore's errors: network, auth, configuration
            raise self._error("look up", sha256, exc) from None
        return True

    def get(self, sha256: str, dest: Path) -> Fetched | None:
        """Stream the object into `dest` (atomically), checked; None when it is absent."""
        import obstore

        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
        digest, size = hashlib.sha256(), 0
        try:
            try:
                result = obstore.get(self._store, self.key(sha256))
                # No fsync: every use of a clip checks its sha256 first (plan.py), so a
                # file torn by a crash is fetched again, never used; the rename keeps
                # readers from seeing half of one.
                with part.open("xb") as out:
                    size = _drain(result.stream(min_chunk_size=CHUNK), out, digest)
            except FileNotFoundError:
                part.unlink(missing_ok=True)
                return None
            except OSError:
                raise
            except Exception as exc:
                raise self._error("fetch", sha256, exc) from None
            if digest.hexdigest() != sha256:
                raise CacheCorrupt(
                    f"the cache {self.shown} holds {self.key(sha256)} with other content "
                    f"(sha256 {digest.hexdigest()[:16]}…): not used; remove the object"
                )
            publish(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return Fetched(dest, size)

    def get_many(
        self, wanted: Iterable[tuple[str, Path]], workers: int = 4
    ) -> Iterator[tuple[str, Fetched | None]]:
        """`get` each (sha256, dest), several at once, yielding as each one ends.

        Fetches overlap one another's network waits, hashing and fsync, so a pull runs
        at the pace of the store rather than of one clip after another.
        """
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cache-get") as pool:
            futures = {pool.submit(self.get, sha, dest): sha for sha, dest in wanted}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:
                for future in futures:
                    future.cancel()

    def put(self, sha256: str, source: Path) -> bool:
        """Upload `source` under its sha256 unless the cache has it: True when uploaded."""
        import obstore
        from obstore.exceptions import AlreadyExistsError

        try:
            with source.open("rb") as handle:
                obstore.put(self._store, self.key(sha256), handle, mode="create")
        except AlreadyExistsError:
            return False
        except OSError:
            raise
        except Exception as exc:
            raise self._error("upload", sha256, exc) from None
        return True

    def _error(self, what: str, sha256: str, exc: Exception) -> CacheError:
        text = redact_secrets(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return CacheError(f"cache {self.shown}: could not {what} {self.key(sha256)}: {text}")


def _drain(chunks: Iterable[Any], out: BinaryIO, digest: Any) -> int:
    """Write and hash `chunks` while the next ones arrive: a worker thread writes and
    hashes (both release the GIL) as the store's stream is read, with at most
    `_AHEAD` chunks held in memory. `chunks` are buffers (obstore's Bytes)."""
    queue: Queue[memoryview | None] = Queue(maxsize=_AHEAD)
    failure: list[BaseException] = []

    def consume() -> None:
        while (view := queue.get()) is not None:
            if not failure:
                try:
                    out.write(view)
                    digest.update(view)
                except BaseException as exc:  # reported to the reader below
                    failure.append(exc)

    worker = threading.Thread(target=consume, name="cache-writer", daemon=True)
    worker.start()
    size = 0
    try:
        for chunk in chunks:
            if failure:
                break
            view = memoryview(chunk)  # no copy: the store's buffer as it is
            size += len(view)
            queue.put(view)
    finally:
        queue.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return size


def cache_url(flag: str | None, env: Mapping[str, str] = os.environ) -> str | None:
    """`--cache`, else `STORYBOARD_CACHE`, else none."""
    value = flag if flag is not None else env.get("STORYBOARD_CACHE", "")
    return value.strip() or None


def open_cache(url: str, env: Mapping[str, str] = os.environ) -> Cache:
    """The cache `url` names: `s3://BUCKET/PREFIX` or `file:///PATH`."""
    from obstore.store import LocalStore, S3Store

    parts = urlsplit(url)
    for name in _AWS_SECRETS:
        SECRETS.add(env.get(name, ""))
    try:
        if parts.scheme == "s3" and parts.netloc:
            endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
            options = {"allow_http": True} if endpoint and endpoint.startswith("http://") else {}
            config = {"endpoint": endpoint} if endpoint else {}
            store: ObjectStore = S3Store(
                parts.netloc,
                prefix=parts.path.strip("/") or None,
                config=config,  # type: ignore[arg-type]
                client_options=options,  # type: ignore[arg-type]
            )
            return Cache(store, f"s3://{parts.netloc}{parts.path.rstrip('/')}")
        if parts.scheme == "file" and parts.path:
            folder = Path(unquote(parts.path))
            return Cache(LocalStore(folder, mkdir=True), f"file://{folder.as_posix()}")
    except Exception as exc:
        raise CacheError(f"cannot open the cache {url}: {redact_secrets(str(exc))}") from None
    raise CacheError(
        f"'{url}' is not a cache URL: use s3://BUCKET/PREFIX or file:///PATH "
        "(--cache or STORYBOARD_CACHE)"
    )
