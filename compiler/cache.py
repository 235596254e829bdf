"""A team's shared render cache: clips by sha256 on S3-compatible storage or a shared drive.

`STORYBOARD_CACHE` (or `--cache`) names it (README "A shared render cache"):
- `s3://BUCKET/PREFIX` on AWS S3, Cloudflare R2, MinIO or any S3-compatible service,
  configured by the standard `AWS_*` variables (`AWS_ENDPOINT_URL` included);
- `file:///PATH` on a shared drive.
Objects are content-addressed (`sha256/HEX`), so two machines that made the same clip
write the same object: uploads are write-if-absent, and every fetched object is checked
against its sha256 before it is used. obstore (the Rust object_store crate) does the
I/O: streaming reads, conditional puts, one small wheel for S3 and local folders alike.

An `s3://` cache also lends Kling what it must fetch by URL (a custom voice's sample,
design.md §10): `Cache.share` stores the file under `samples/SHA256.EXT` and answers a
presigned GET link that lasts a while. A `file://` cache cannot sign, and says so.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from queue import Queue
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlsplit

from .errors import CacheError
from .fsutil import publish
from .redaction import SECRETS, redact_secrets

if TYPE_CHECKING:
    from obstore import ObjectMeta, SignCapableStore
    from obstore.store import ObjectStore

CHUNK = 1 << 20
_AHEAD = 8  # chunks read ahead of the writer: memory stays under 8 MB per fetch
_AWS_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
# S3's presigned URLs last at most 7 days (SigV4's X-Amz-Expires).
MAX_SHARE = timedelta(days=7)


class CacheCorrupt(CacheError):
    """An object whose bytes are not the sha256 it is stored under: never used (nor stored:
    `share` refuses a file that is not the sha256 it is shared as)."""


class CacheCannotShare(CacheError):
    """The cache cannot sign a link (a `file://` cache): Kling cannot fetch from it."""


@dataclass(frozen=True, slots=True)
class Fetched:
    path: Path
    bytes: int


class Cache:
    """One content-addressed store. Every method raises CacheError on trouble, with no
    credential in its text."""

    def __init__(self, store: ObjectStore, shown: str) -> None:
        from obstore.store import AzureStore, GCSStore, S3Store

        self._store = store
        self.shown = shown  # the cache's URL, for messages
        # The one decision whether this cache can lend Kling a file: a store that signs.
        self._signer: SignCapableStore | None = (
            store if isinstance(store, S3Store | GCSStore | AzureStore) else None
        )

    @property
    def can_share(self) -> bool:
        """Whether `share` can hand out a link (an `s3://` cache; not a `file://` one)."""
        return self._signer is not None

    def __repr__(self) -> str:
        return f"Cache({self.shown!r})"

    @staticmethod
    def key(sha256: str) -> str:
        return f"sha256/{sha256}"

    @staticmethod
    def sample_key(sha256: str, suffix: str) -> str:
        """Where `share` keeps a file: its own folder, and the file's suffix at the end
        (Kling and the emulator read a sample's kind from the URL path's extension)."""
        ext = suffix.lower()
        if not _SUFFIX.fullmatch(ext):
            raise ValueError(f"not a file suffix: {suffix!r} (say '.wav')")
        return f"samples/{sha256}{ext}"

    def has(self, sha256: str) -> bool:
        return self._head(sha256, self.key(sha256)) is not None

    def _head(self, sha256: str, key: str) -> ObjectMeta | None:
        import obstore

        try:
            return obstore.head(self._store, key)
        except FileNotFoundError:
            return None
        except Exception as exc:  # obstore's errors: network, auth, configuration
            raise self._error("look up", sha256, exc, key) from None

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

    def share(
        self,
        sha256: str,
        source: Path,
        suffix: str,
        expires: timedelta = timedelta(hours=1),
    ) -> str:
        """Lend `source` (whose content is `sha256`) to Kling: a presigned GET URL of it.

        The file is stored under `sample_key(sha256, suffix)` unless the cache has it
        (write-if-absent, like `put`: a second share sends no bytes), and checked against
        `sha256` as it is read: a file with other content raises CacheCorrupt and nothing
        is stored (the stream raises before it ends; obstore sends a conditional put as
        one request once it has the whole stream, so no byte of it leaves).

        The URL lasts `expires` (whole seconds, 1 s to 7 days) and carries a signature
        and the access key id (with temporary credentials, their session token too),
        never the secret key; it opens the object to anyone until it expires, so it is
        not for logs. A cache that cannot sign (`file://`) raises CacheCannotShare
        before anything is read.
        """
        import obstore

        if self._signer is None:
            raise CacheCannotShare(
                f"the cache {self.shown} cannot lend {source.name} to Kling: Kling fetches "
                "a voice sample by URL, and can fetch a local sample only through an s3:// "
                "cache (as a presigned link); give `sample: {url: https://...}`, or set "
                "STORYBOARD_CACHE (or --cache) to an s3:// cache"
            )
        if not timedelta(seconds=1) <= expires <= MAX_SHARE or expires % timedelta(seconds=1):
            raise ValueError(f"a shared link lasts whole seconds, 1 s to 7 days, not {expires}")
        key = self.sample_key(sha256, suffix)
        meta = self._head(sha256, key)
        if meta is None:
            self._put_verified(sha256, source, key)
        else:
            # Stored already: nothing is sent, but the file must still be what it claims.
            with source.open("rb") as handle:
                actual = hashlib.file_digest(handle, "sha256").hexdigest()
            if actual != sha256:
                raise self._not_its_sha(source, sha256, actual)
            if meta["size"] != source.stat().st_size:
                raise CacheCorrupt(
                    f"the cache {self.shown} holds {key} with other content "
                    f"({meta['size']} bytes, not {source.stat().st_size}): not lent to "
                    "Kling; remove the object"
                )
        try:
            return obstore.sign(self._signer, "GET", key, expires)
        except Exception as exc:  # credentials that cannot sign, say
            raise self._error("sign a link to", sha256, exc, key) from None

    def _put_verified(self, sha256: str, source: Path, key: str) -> None:
        """Upload `source` to `key` unless it is there, checked against `sha256` on the way."""
        import obstore
        from obstore.exceptions import AlreadyExistsError

        mismatch: list[str] = []
        try:
            with source.open("rb") as handle:
                obstore.put(self._store, key, _verified(handle, sha256, mismatch), mode="create")
        except AlreadyExistsError:
            return  # another machine stored it meanwhile (this file was checked all the same)
        except Exception as exc:
            if mismatch:  # raised inside the upload, whatever obstore made of it
                raise self._not_its_sha(source, sha256, mismatch[0]) from None
            if isinstance(exc, OSError):  # reading the file
                raise
            raise self._error("upload", sha256, exc, key) from None

    def _not_its_sha(self, source: Path, sha256: str, actual: str) -> CacheCorrupt:
        return CacheCorrupt(
            f"{source} is not the file shared as sha256 {sha256[:16]}… (its sha256 is "
            f"{actual[:16]}…: it changed since): not stored in {self.shown}"
        )

    def _error(self, what: str, sha256: str, exc: Exception, key: str | None = None) -> CacheError:
        text = redact_secrets(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        where = key or self.key(sha256)
        return CacheError(f"cache {self.shown}: could not {what} {where}: {text}")


def _verified(handle: BinaryIO, sha256: str, mismatch: list[str]) -> Iterator[bytes]:
    """The chunks of `handle`, hashed as they go, the last one held back until the digest
    is `sha256`: on a mismatch the digest is put in `mismatch` and the generator raises
    instead of ending, so an upload fed from it never completes."""
    digest = hashlib.sha256()
    held = handle.read(CHUNK)
    while True:
        digest.update(held)
        ahead = handle.read(CHUNK)
        if not ahead:
            break
        yield held
        held = ahead
    if digest.hexdigest() != sha256:
        mismatch.append(digest.hexdigest())
        raise CacheCorrupt("the file is not its sha256")
    yield held


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
