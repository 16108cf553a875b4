"""Response headers for the pages and data that must never be cached, framed or sniffed.

The one-tap link page carries a live token in its URL and the API returns residents' addresses:
neither may stay in a shared cache or a browser's history cache, be framed by another site, or be
read as anything but what it says. The console sets its own policy (it may load map tiles).
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.wrappers import Response

# The link page has one inline <style> and posts its buttons to itself; nothing else loads.
LINK_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# JSON is never a document: nothing may run, load or frame it.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
HSTS = "max-age=31536000"  # a year: once a phone has seen the HTTPS site it never tries plain HTTP


def policy_for(path: str) -> str | None:
    """The content security policy of a path that must not be cached, or None for the rest."""
    if path.startswith("/a/"):
        return LINK_PAGE_POLICY
    if path == "/api" or path.startswith("/api/"):
        return API_POLICY
    return None


def install(app: Flask, *, https: bool) -> None:
    """Add the headers after every request (also to errors: a 404 page is a page too)."""

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
