"""Kling credentials: JWT minting and reuse, the API key header, reading the environment."""

from __future__ import annotations

import base64
import json

import httpx
import jwt
import pytest

from compiler.auth import ApiKeyAuth, JWTAuth, credentials_from_env
from compiler.errors import CredentialsError

ACCESS = "ak-test-ACCESS-KEY-0001"
SECRET = "sk-test-SECRET-KEY-0123456789abcdef0123"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    return decoded


def header(token: str) -> dict[str, object]:
    head = token.split(".")[0]
    parsed: dict[str, object] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return parsed


def test_token_follows_the_official_sample() -> None:
    clock = Clock(1_700_000_000.7)
    token = JWTAuth(ACCESS, SECRET, clock=clock).token()
    assert header(token) == {"alg": "HS256", "typ": "JWT"}
    assert claims(token) == {"iss": ACCESS, "exp": 1_700_001_800, "nbf": 1_699_999_995}


def test_token_is_reused_until_a_minute_before_expiry() -> None:
    clock = Clock(1000.0)
    auth = JWTAuth(ACCESS, SECRET, clock=clock)
    first = auth.token()
    clock.now = 1000.0 + 1800 - 61
    assert auth.token() == first
    clock.now = 1000.0 + 1800 - 60
    renewed = auth.token()
    assert renewed != first
    assert claims(renewed)["exp"] == 1000 + 1800 - 60 + 1800


def test_short_secret_keys_do_not_warn() -> None:
    # pytest runs with filterwarnings=error: PyJWT's key-length warning would raise here.
    assert JWTAuth(ACCESS, "short", clock=Clock()).token().count(".") == 2


def test_custom_lifetime() -> None:
    token = JWTAuth(ACCESS, SECRET, clock=Clock(0.0), lifetime=600).token()
    assert claims(token)["exp"] == 600


def test_reprs_hide_every_key() -> None:
    auth = JWTAuth(ACCESS, SECRET, clock=Clock())
    token = auth.token()
    for text in (repr(auth), str(auth)):
        assert SECRET not in text and ACCESS not in text and token not in text
    key_auth = ApiKeyAuth("kling-api-key-XYZ")
    assert "kling-api-key-XYZ" not in repr(key_auth) and "kling-api-key-XYZ" not in str(key_auth)


def test_redact_masks_secret_and_issued_tokens() -> None:
    auth = JWTAuth(ACCESS, SECRET, clock=Clock())
    token = auth.token()
    assert auth.redact(f"echo {token} and {SECRET}") == "echo *** and ***"
    assert ApiKeyAuth("k-123456").redact("Bearer k-123456") == "Bearer ***"


def test_api_key_header() -> None:
    request = httpx.Request("GET", "https://example.test/")
    flow = ApiKeyAuth("k-123456").auth_flow(request)
    assert next(flow).headers["Authorization"] == "Bearer k-123456"


def test_empty_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        JWTAuth(ACCESS, "")
    with pytest.raises(ValueError):
        ApiKeyAuth("")


def test_env_with_nothing_set_gives_none() -> None:
    assert credentials_from_env({}) is None
    assert credentials_from_env({"KLING_API_KEY": "", "KLING_ACCESS_KEY": " "}) is None


def test_env_api_key_wins() -> None:
    auth = credentials_from_env(
        {"KLING_API_KEY": "k-1", "KLING_ACCESS_KEY": ACCESS, "KLING_SECRET_KEY": SECRET}
    )
    assert isinstance(auth, ApiKeyAuth)


def test_env_key_pair_gives_jwt() -> None:
    auth = credentials_from_env({"KLING_ACCESS_KEY": ACCESS, "KLING_SECRET_KEY": SECRET + "\n"})
    assert isinstance(auth, JWTAuth)
    assert claims(auth.token())["iss"] == ACCESS  # the stray newline was dropped


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"KLING_ACCESS_KEY": ACCESS}, "KLING_SECRET_KEY"),
        ({"KLING_SECRET_KEY": SECRET, "KLING_ACCESS_KEY": ""}, "KLING_ACCESS_KEY"),
    ],
)
def test_env_half_a_pair_is_an_error(env: dict[str, str], missing: str) -> None:
    with pytest.raises(CredentialsError, match=f"{missing} is not") as caught:
        credentials_from_env(env)
    assert SECRET not in str(caught.value) and ACCESS not in str(caught.value)
