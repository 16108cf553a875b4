"""Console sessions: a server-side session row behind a signed cookie, CSRF tokens, role checks.

The session cookie holds only a random session id (stored hashed in ``console_sessions``), the
user id, a fingerprint of the password hash, the CSRF token and the language. The session row and
the user row are read again on every request, so a logout, a deactivated user, a changed role or a
reset password takes effect at the next click: a copied cookie is worth nothing after logout.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, jsonify, redirect, render_template, request, session, url_for
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from dispatch.auth import allowed, hash_token
from dispatch.models import ConsoleSession, User
from dispatch.web.context import WebContext

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_LIFETIME = timedelta(hours=12)  # one shift; the cookie expires even if the browser stays open
LANGUAGES = ("id", "en")

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class ConsoleUser:
    """The logged-in user, as read from the database for this request."""

    id: int
    username: str
    name: str
    role: str
    language: str

    def can(self, minimum: str) -> bool:
        """Whether this user's role is at least ``minimum``."""
        return allowed(self.role, minimum)


def session_secret(signing_key: bytes) -> bytes:
    """The cookie-signing key, derived so a session cookie can never pass for a one-tap link token."""
    return hmac.new(signing_key, b"dispatch-console-session", hashlib.sha256).digest()


def password_fingerprint(password_hash: str | None) -> str:
    """Changes whenever the password does: a reset logs every other session of that user out."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def configure(app: Flask, context: WebContext) -> None:
    """Cookie settings for the console session, and the session hook for the HTTP API."""
    if not app.secret_key:
        app.secret_key = session_secret(context.signing_key)
    public = context.settings.public_url or ""
    app.config.update(
        SESSION_COOKIE_NAME="dispatch_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=public.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # Only a request that changes the session sends the cookie back. Otherwise every live
        # fetch re-sent the session it started with, and one finishing just after an action
        # overwrote the cookie holding that action's confirmation (the flash was lost). It also
        # makes SESSION_LIFETIME a fixed shift from login rather than a sliding window.
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    # dispatch.auth.require_role falls back to this when a request has no bearer token,
    # so the console's own fetches can use the API with the login session.
    app.extensions["dispatch.session_user"] = api_session_user


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_valid() -> bool:
    """Whether this request carries the session's CSRF token in the form or the header."""
    return _same_token(session.get("csrf"), request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD))


def _same_token(expected: object, given: str | None) -> bool:
    # As bytes: compare_digest raises on non-ASCII str, and a forged form can send anything.
    if not isinstance(expected, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def load_user(context: WebContext) -> ConsoleUser | None:
    """The session's user, re-read from the database; a stale or ended session is cleared."""
    user_id, sid = session.get("uid"), session.get("sid")
    if not isinstance(user_id, int) or not isinstance(sid, str):
        if user_id is not None:
            session.clear()
        return None
    now = context.clock()
    with context.sessions() as db, db.begin():
        live = db.execute(
            select(ConsoleSession.id).where(
                ConsoleSession.token_hash == hash_token(sid),
                ConsoleSession.user_id == user_id,
                ConsoleSession.ended_at.is_(None),
                ConsoleSession.expires_at > now,
            )
        ).first()
        row = db.get(User, user_id)
        if (
            live is None
            or row is None
            or not row.active
            or session.get("pwv") != password_fingerprint(row.password_hash)
        ):
            session.clear()
            return None
        return ConsoleUser(
            row.id, row.username, row.name, row.role, row.language if row.language in LANGUAGES else "id"
        )


def log_in(db: Session, user: User, now: datetime) -> None:
    """Start a fresh session for ``user`` (a new CSRF token too: nothing carries over from before)."""
    sid = secrets.token_urlsafe(32)
    # Forget this user's sessions that have run out, so the table holds only live ones.
    db.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id, ConsoleSession.expires_at <= now))
    db.add(
        ConsoleSession(token_hash=hash_token(sid), user_id=user.id, created_at=now, expires_at=now + SESSION_LIFETIME)
    )
    session.clear()
    session.permanent = True
    session["uid"] = user.id
    session["sid"] = sid
    session["pwv"] = password_fingerprint(user.password_hash)
    session["csrf"] = secrets.token_urlsafe(32)


def log_out(db: Session, now: datetime) -> None:
    """End this browser's session on the server too, then forget it here."""
    sid = session.get("sid")
    if isinstance(sid, str):
        db.execute(
            update(ConsoleSession)
            .where(ConsoleSession.token_hash == hash_token(sid), ConsoleSession.ended_at.is_(None))
            .values(ended_at=now)
        )
    session.clear()


def end_sessions(db: Session, user_id: int, now: datetime) -> None:
    """End every console session of a user (a new password)."""
    db.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user_id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=now)
    )


def api_session_user() -> dict[str, Any] | None:
    """The API's view of a console session: unsafe methods also need the CSRF header."""
    if "uid" not in session:
        return None
    if request.method not in SAFE_METHODS and not _same_token(session.get("csrf"), request.headers.get(CSRF_HEADER)):
        return None
    context: WebContext = current_app.extensions["dispatch"]
    user = load_user(context)
    if user is None:
        return None
    return {"id": user.id, "username": user.username, "role": user.role, "name": user.name}


def current_user() -> ConsoleUser | None:
    """The user loaded for this request by the console's before_request hook."""
    return cast(ConsoleUser | None, g.get("console_user"))


def wants_json() -> bool:
    """Fetches and event streams get JSON errors; pages get HTML."""
    return request.path.endswith(".json") or request.path.endswith("/events") or request.is_json


def requires(minimum: str) -> Callable[[View], View]:
    """Console view decorator: log in first (pages redirect, JSON 401), then at least ``minimum`` (403)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                if wants_json():
                    return jsonify(error="login required"), 401
                return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
            if not user.can(minimum):
                if wants_json():
                    return jsonify(error=f"this needs the {minimum} role (you are {user.role})"), 403
                return render_template("console/error.html", code=403, minimum=minimum), 403
            return view(*args, **kwargs)

        return cast(View, wrapper)

    return decorate


def safe_next(target: str | None) -> str | None:
    """Only redirect back inside the console after login (never to another site)."""
    if (
        target
        and target.startswith("/console/")
        and "\\" not in target
        and target.isprintable()  # no newline: it would end up in a Location header
        and len(target) <= 2000
    ):
        return target
    return None


def security_headers(response: Response, tile_url: str | None) -> Response:
    """No inline scripts, no framing, no sniffing; images from us (and the tile server, if any)."""
    images = "'self' data:"
    if tile_url and "://" in tile_url:
        scheme, rest = tile_url.split("://", 1)
        host = rest.split("/", 1)[0]
        if "{s}" in host:
            host = host.replace("{s}", "*")
        images += f" {scheme}://{host}"
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src {images}; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response
