"""Kling credentials as httpx auth hooks: a self-renewing JWT (AccessKey/SecretKey) or an API key.

kling-api.md §1.2-§1.3. Neither class shows a key or a token in its repr, and both can
`redact()` their secrets out of any text before it reaches an exception or a log.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Generator, Mapping

import httpx
import jwt

from .errors import CredentialsError
from .redaction import MASK as _MASK
from .redaction import SECRETS, redact_secrets

# kling-api.md §5: 1003 = token not yet valid (nbf), 1004 = token expired (exp).
_REMINT_CODES = frozenset({1003, 1004})
_RENEW_MARGIN = 60  # seconds before `exp` at which a cached token is replaced
_NBF_SKEW = 5  # the official sample backdates nbf by 5 s


class JWTAuth(httpx.Auth):
    """`Authorization: Bearer <HS256 JWT>` signed with the SecretKey.

    The token is reused until 60 s before it expires. When Kling answers HTTP 401 with
    code 1004 (expired) or 1003 (not yet valid), a fresh token is minted and the request
    is sent once more, the way httpx's DigestAuth answers its challenge.
    """

    requires_response_body = True  # the re-mint decision reads the body's `code`

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        clock: Callable[[], float] = time.time,
        lifetime: int = 1800,
    ) -> None:
        if not access_key or not secret_key:
            raise ValueError("JWTAuth needs both an access key and a secret key")
        if lifetime <= _RENEW_MARGIN:
            raise ValueError(f"lifetime must exceed {_RENEW_MARGIN} s, got {lifetime}")
        self._access_key = access_key
        self._secret_key = secret_key
        SECRETS.add(access_key)
        SECRETS.add(secret_key)
        self._clock = clock
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0
        # Recent tokens, so that redact() still catches one an old message might echo.
        self._issued: deque[str] = deque(maxlen=4)

    def __repr__(self) -> str:
        return f"JWTAuth(access_key={_MASK!r}, secret_key={_MASK!r}, lifetime={self._lifetime})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401 and _body_code(response) in _REMINT_CODES:
            request.headers["Authorization"] = f"Bearer {self.token(fresh=True)}"
            yield request

    def token(self, *, fresh: bool = False) -> str:
        """The current token, minted anew when `fresh` or within 60 s of its expiry."""
        with self._lock:
            now = self._clock()
            if fresh or self._token is None or now >= self._expires - _RENEW_MARGIN:
                self._token, self._expires = self._mint(now)
                self._issued.append(self._token)
                SECRETS.add(self._token)
            return self._token

    def redact(self, text: str) -> str:
        """`text` with the keys and any token this object issued masked."""
        for secret in (*self._issued, self._secret_key, self._access_key):
            text = text.replace(secret, _MASK)
        return text

    def _mint(self, now: float) -> tuple[str, int]:
        issued = int(now)
        expires = issued + self._lifetime
        claims = {"iss": self._access_key, "exp": expires, "nbf": issued - _NBF_SKEW}
        with warnings.catch_warnings():
            # PyJWT >= 2.10 warns about HMAC keys under 32 bytes; Kling issues the key,
            # the user cannot lengthen it, so the warning is noise (and an error in tests).
            warnings.filterwarnings("ignore", message="The HMAC key is")
            token = jwt.encode(claims, self._secret_key, algorithm="HS256", headers={"typ": "JWT"})
        return token, expires


class ApiKeyAuth(httpx.Auth):
    """`Authorization: Bearer <API key>` (kling-api.md §1.3)."""

    def __init__(self, api_key: str, *, secret: bool = True) -> None:
        """`secret=False` only for the in-process emulator's placeholder key ("emulator"),
        which is a plain word that masking would strip from every message."""
        if not api_key:
            raise ValueError("ApiKeyAuth needs a non-empty API key")
        self._api_key = api_key
        if secret:
            SECRETS.add(api_key)

    def __repr__(self) -> str:
        return f"ApiKeyAuth(api_key={_MASK!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request

    def redact(self, text: str) -> str:
        """`text` with the API key masked."""
        return text.replace(self._api_key, _MASK)


def credentials_from_env(env: Mapping[str, str]) -> httpx.Auth | None:
    """Kling credentials from the environment, or None when none are set.

    `KLING_API_KEY` wins when set; otherwise both `KLING_ACCESS_KEY` and
    `KLING_SECRET_KEY` are needed. Empty values count as unset. Only one of the pair is
    an error, not None: falling back to the emulator would hide the mistake.
    """
    api_key = env.get("KLING_API_KEY", "").strip()
    if api_key:
        return ApiKeyAuth(api_key)
    access_key = env.get("KLING_ACCESS_KEY", "").strip()
    secret_key = env.get("KLING_SECRET_KEY", "").strip()
    if access_key and secret_key:
        return JWTAuth(access_key, secret_key)
    if access_key or secret_key:
        have, missing = (
            ("KLING_ACCESS_KEY", "KLING_SECRET_KEY")
            if access_key
            else ("KLING_SECRET_KEY", "KLING_ACCESS_KEY")
        )
        raise CredentialsError(
            f"{have} is set but {missing} is not: set both, or KLING_API_KEY instead"
        )
    return None


def redact(auth: httpx.Auth | None, text: str) -> str:
    """`text` with whatever secrets `auth` holds masked (no-op for other auth types)."""
    if isinstance(auth, JWTAuth | ApiKeyAuth):
        text = auth.redact(text)
    return redact_secrets(text)


def _body_code(response: httpx.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None
