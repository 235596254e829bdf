"""Shared fixtures. No test may reach the network: any connection beyond this machine's
loopback (where the emulator server of the crash tests listens) fails loudly."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases"


LOOPBACK = ("127.0.0.1", "::1", "localhost")


class NetworkBlocked(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def no_secrets_from_other_tests() -> Iterator[None]:
    """The process-wide secret registry starts empty in every test, as in a fresh run."""
    from compiler.redaction import SECRETS

    SECRETS.forget()
    yield
    SECRETS.forget()


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def loopback(address: object) -> bool:
        host = address[0] if isinstance(address, tuple) else address
        return host in LOOPBACK

    def guarded_connect(self: socket.socket, address: object) -> None:
        if self.family == socket.AF_UNIX or loopback(address):
            return real_connect(self, address)  # type: ignore[arg-type]
        raise NetworkBlocked(f"test tried to reach the network: {address!r}")

    def guarded_connect_ex(self: socket.socket, address: object) -> int:
        if self.family == socket.AF_UNIX or loopback(address):
            return real_connect_ex(self, address)  # type: ignore[arg-type]
        raise NetworkBlocked(f"test tried to reach the network: {address!r}")

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host in LOOPBACK:
            return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]
        raise NetworkBlocked(f"test tried to resolve a network name: {host!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture
def chdir_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project holding the small test film of tests/rendering.py and its image."""
    from tests.rendering import BOARD, write_image

    (tmp_path / ".git").mkdir()  # the project root for path checks
    write_image(tmp_path / "coast.png")
    (tmp_path / "film.yaml").write_text(BOARD, encoding="utf-8")
    return tmp_path


# ── a real S3 server (moto) on 127.0.0.1, for the render cache's tests ──────────────────

BUCKET = "team-renders"
AWS_SECRET = "moto-secret-Zq81"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 server (moto) on 127.0.0.1 with the bucket, for the whole test session:
    stopping one takes half a second, so each test gets a prefix of its own instead."""
    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="moto-access",
        aws_secret_access_key=AWS_SECRET,
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        moto.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """The S3 credentials in the environment, and a cache URL no other test uses (an
    empty cache: a prefix of the test's own in the session's bucket)."""
    env = {
        "AWS_ACCESS_KEY_ID": "moto-access",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    test = hashlib.sha256(request.node.nodeid.encode("utf-8")).hexdigest()[:12]
    return f"s3://{BUCKET}/{test}/film-cache"
