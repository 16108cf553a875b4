"""Users, roles and API tokens. Passwords and tokens are only ever stored hashed.

Roles are ordered: a dispatcher can do what a call-taker can, an admin what a dispatcher can.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from flask import current_app, g, jsonify, request
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from dispatch.models import METRICS_ROLE, ROLES, ApiToken, LoginThrottle, User

log = logging.getLogger(__name__)

RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}
TOKEN_PREFIX = "dsp_"


def hash_password(password: str) -> str:
    """A salted, slow hash (werkzeug's scrypt)."""
    return generate_password_hash(password)


MIN_PASSWORD = 8  # the console's and the CLI's rule alike


def password_problem(password: str) -> str | None:
    """Why a new password is refused (in English, for the CLI), or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    return None


def check_password(user: User, password: str) -> bool:
    return bool(user.password_hash) and check_password_hash(user.password_hash or "", password)


FREE_LOGIN_FAILURES = 5
FIRST_LOGIN_BLOCK = timedelta(seconds=30)
LONGEST_LOGIN_BLOCK = timedelta(minutes=15)


def login_block(failures: int) -> timedelta:
    """How long a username is refused at one address after ``failures`` wrong passwords in a row.

    A few free attempts for typos, then 30 s doubling up to 15 minutes: a guesser gets a
    handful of tries an hour. Counted per client address, so the guesser blocks only
    themselves, never the call-taker at their own desk.
    """
    if failures < FREE_LOGIN_FAILURES:
        return timedelta(0)
    doublings = min(failures - FREE_LOGIN_FAILURES, 10)
    return min(FIRST_LOGIN_BLOCK * 2**doublings, LONGEST_LOGIN_BLOCK)


@dataclass(frozen=True)
class LoginAttempt:
    """``user`` when the password was right; ``retry_after`` when the username is blocked here."""

    user: User | None
    retry_after: timedelta = timedelta(0)


def attempt_login(session: Session, username: str, password: str, address: str, now: datetime) -> LoginAttempt:
    """Check a console password in the caller's transaction, counting failures per username and address.

    While a username is blocked at an address its password is not even checked there, so guessing
    goes no faster by trying harder. Unknown usernames keep no state.
    """
    # The user row lock serialises attempts on one username (and the first insert of its throttle row).
    user = session.execute(select(User).where(User.username == username).with_for_update()).scalar_one_or_none()
    if user is None:
        return LoginAttempt(None)
    address = address[:64]
    throttle = session.execute(
        select(LoginThrottle).where(LoginThrottle.username == username, LoginThrottle.address == address)
    ).scalar_one_or_none()
    if throttle is not None and throttle.blocked_until is not None and throttle.blocked_until > now:
        return LoginAttempt(None, retry_after=throttle.blocked_until - now)
    if user.active and check_password(user, password):
        if throttle is not None:
            session.delete(throttle)
        return LoginAttempt(user)
    if throttle is None:
        throttle = LoginThrottle(username=username, address=address, failures=0)
        session.add(throttle)
    throttle.failures += 1
    throttle.updated_at = now
    block = login_block(throttle.failures)
    if block:
        throttle.blocked_until = now + block
        log.warning(
            "console login for %s from %s blocked for %ds after %d failed attempts",
            username,
            address,
            block.total_seconds(),
            throttle.failures,
        )
    return LoginAttempt(None)


def clear_login_blocks(session: Session, username: str) -> None:
    """Let a user back in at once (a new password set by an admin)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.username == username))


def hash_token(token: str) -> str:
    """Tokens are long random strings, so a fast hash is enough to make a stolen table useless."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: User, label: str | None, now: datetime) -> str:
    """Create a token for ``user``; the plain token is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), label=label, created_at=now))
    return token


def user_for_token(session: Session, token: str, now: datetime) -> User | None:
    """The active user owning this unrevoked token, or None."""
    row = session.execute(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    row.last_used_at = now
    return user


def allowed(role: str, minimum: str) -> bool:
    """Whether ``role`` may do what needs ``minimum``; the metrics role (and an admin) may read metrics only."""
    if minimum == METRICS_ROLE:
        return role in (METRICS_ROLE, "admin")
    return RANK.get(role, 0) >= RANK[minimum]


def require_role(minimum: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Flask view decorator: 401 without a valid bearer token or session, 403 below ``minimum``.

    Sets ``flask.g.user`` (id, username, role) for the view.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = _current_user()
            if user is None:
                response = jsonify(error="authentication required: send 'Authorization: Bearer <token>'")
                response.status_code = 401
                response.headers["WWW-Authenticate"] = 'Bearer realm="dispatch"'
                return response
            if not allowed(user["role"], minimum):
                response = jsonify(error=f"this needs the {minimum} role (you are {user['role']})")
                response.status_code = 403
                return response
            g.user = user
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _current_user() -> dict[str, Any] | None:
    context = current_app.extensions["dispatch"]
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        with context.sessions() as session, session.begin():
            user = user_for_token(session, header.removeprefix("Bearer ").strip(), context.clock())
            return _summary(user) if user else None
    session_user = current_app.extensions.get("dispatch.session_user")
    return session_user() if session_user else None


def _summary(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "role": user.role, "name": user.name}
