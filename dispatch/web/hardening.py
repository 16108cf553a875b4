"""What every request gets whatever blueprint serves it: bounded ids, and safe response headers.

Ids in paths fit a database integer: a larger one is a 404 like any unknown id, never an
overflow deep in the database driver (a 500). The one-tap link page carries a live token in its
URL and the API returns residents' addresses: neither may stay in a shared cache or a browser's
history cache, be framed by another site, or be read as anything but what it says. The console
sets its own policy (it may load map tiles).
"""

from __future__ import annotations

from flask import Flask, abort, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map
from werkzeug.wrappers import Response

LARGEST_ID = 2**31 - 1  # id columns are INTEGER: 32 bits on PostgreSQL (which refuses a larger bound value)


class DatabaseId(IntegerConverter):
    """``<int:...>`` in every route: 0 .. LARGEST_ID, anything else does not match (404)."""

    def __init__(self, url_map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = None) -> None:
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=LARGEST_ID if max is None else max)


# The link page has one inline <style> and posts its buttons to itself; nothing else loads.
LINK_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# JSON is never a document: nothing may run, load or frame it.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
HSTS = "max-age=31536000"  # a year: once a phone has seen the HTTPS site it never tries plain HTTP


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def policy_for(path: str) -> str | None:
    """The content security policy of a path that must not be cached, or None for the rest."""
    if path.startswith("/a/"):
        return LINK_PAGE_POLICY
    if is_api(path):
        return API_POLICY
    return None


def install(app: Flask, *, https: bool) -> None:
    """Bound ``<int:>`` route ids (before any blueprint is registered) and add the headers after
    every request (also to errors: a 404 page is a page too)."""
    app.url_map.converters["int"] = DatabaseId

    @app.before_request
    def _no_nul_characters() -> tuple[str, int] | None:
        # No form or query value of ours may hold a NUL: PostgreSQL refuses it in text, deep in a
        # transaction (a 500). Refused here, at the edge, for every form and query at once.
        fields = [*request.args.items(multi=True), *request.form.items(multi=True)]
        if any("\x00" in key or "\x00" in value for key, value in fields):
            abort(400, "Karakter NUL tidak diizinkan. / A NUL character is not allowed.")
        return None

    @app.errorhandler(HTTPException)
    def _api_errors_in_json(exc: HTTPException) -> HTTPException | tuple[Response, int]:
        # The API documents a JSON Problem for every error; an unknown path or method is one too.
        if not is_api(request.path):
            return exc
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.after_request
    def _secure(response: Response) -> Response:
        policy = policy_for(request.path)
        if policy is not None:
            response.headers["Cache-Control"] = "no-store"
            response.headers["Content-Security-Policy"] = policy
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Referrer-Policy"] = "no-referrer"  # the link's token must not leak on
        if https:
            response.headers["Strict-Transport-Security"] = HSTS
        return response
