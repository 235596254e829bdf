"""Is a URL's host public? One answer for every URL storyboard accepts or fetches.

A host is judged on its normalised address, so that the spellings a resolver accepts for
one machine are judged alike: `127.1`, `0x7f000001`, `2130706433`, `017700000001` and
`0` (the BSD `inet_aton` forms), IPv4-mapped IPv6 (`::ffff:127.0.0.1`), a trailing dot
(`localhost.`), upper case and IDNA. Names other than `localhost` and the special-use
suffixes are not resolved here (no network at compile time); Kling resolves them itself.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

# RFC 6761 and 6762 special-use names that never lead to a public host.
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".invalid")


def normalise_host(host: str) -> str:
    """Lower case, no trailing dots, no brackets, IDNA-encoded."""
    host = host.strip().rstrip(".").strip("[]").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a numeric host spells, in any form a resolver takes; None for a name."""
    host = normalise_host(host)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            # inet_aton takes the shorthand, hexadecimal, octal and integer forms.
            packed = socket.inet_aton(host)
        except OSError:
            return None
        address = ipaddress.IPv4Address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_private_host(host: str) -> bool:
    """True for loopback, private, link-local, reserved and special-use hosts."""
    name = normalise_host(host)
    if not name or name == "localhost" or name.endswith(_PRIVATE_SUFFIXES):
        return True
    address = host_address(name)
    return address is not None and not address.is_global


def same_origin(url: str, base_url: str) -> bool:
    """Whether `url` is on the very scheme, host and port of `base_url`."""
    a, b = urlsplit(url), urlsplit(base_url)
    if a.scheme != b.scheme or a.hostname is None or b.hostname is None:
        return False
    return normalise_host(a.hostname) == normalise_host(b.hostname) and _port(a) == _port(b)


def fetchable(url: str, base_url: str) -> bool:
    """May a result URL be downloaded? Public https, or the API's own origin.

    The API's origin covers the emulator (in-process, or a server the user named with
    KLING_BASE_URL); anything else from a lockfile or a server's answer is refused.
    """
    parts = urlsplit(url)
    if same_origin(url, base_url):
        return True
    return parts.scheme == "https" and not is_private_host(parts.hostname or "")


def _port(parts: SplitResult) -> int | None:
    try:
        port = parts.port
    except ValueError:
        return -1
    return port if port is not None else {"http": 80, "https": 443}.get(parts.scheme)
