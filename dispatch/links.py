"""Short signed tokens for one-tap links: per recipient (notification) and action.

Short because the link must fit in one 160-character SMS next to the alert.
The signature is a truncated HMAC-SHA256 (72 bits): forging one means guessing
it online, one request at a time. Expiry and single use are checked against
the database by the caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ACTIONS = {"v": "view", "a": "accept", "d": "decline"}
_LETTERS = {name: letter for letter, name in ACTIONS.items()}


def make_token(secret: bytes, notification_id: int, action: str) -> str:
    """Token for ``action`` (view, accept, decline) on one notification."""
    body = f"{_base36(notification_id)}{_LETTERS[action]}"
    return f"{body}.{_mac(secret, body)}"


def read_token(secret: bytes, token: str) -> tuple[int, str] | None:
    """(notification_id, action) for a genuine token, else None."""
    body, _, mac = token.partition(".")
    # Compared as bytes: compare_digest refuses non-ASCII str, and a URL can carry anything.
    given = mac.encode("utf-8", "surrogateescape")
    if len(body) < 2 or body[-1] not in ACTIONS or not hmac.compare_digest(given, _mac(secret, body).encode()):
        return None
    try:
        return int(body[:-1], 36), ACTIONS[body[-1]]
    except ValueError:
        return None


def _mac(secret: bytes, body: str) -> str:
    digest = hmac.new(secret, body.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()[:9]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out
