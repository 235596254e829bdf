"""Shared fixtures. No test may reach the network: any connection beyond this machine's
loopback (where the emulator server of the crash tests listens) fails loudly."""

from __future__ import annotations

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
