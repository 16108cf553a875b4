"""The web console for call-takers, dispatchers and supervisors, under /console.

Server-rendered pages (Jinja) with plain CSS and small vanilla scripts; no build step and
nothing loaded from outside the app (Leaflet is vendored in dispatch/web/static/vendor).
"""

from __future__ import annotations

from flask import Flask, redirect, url_for
from werkzeug.wrappers import Response

from dispatch.web.context import WebContext

__all__ = ["install"]


def install(app: Flask, context: WebContext) -> None:
    """Mount the console on ``app``: session settings, the blueprint, and ``/`` leading to it."""
    from dispatch.console import security, views

    security.configure(app, context)
    app.register_blueprint(views.bp)

    def root() -> Response:
        """The console is the home page."""
        return redirect(url_for("console.board"))

    app.add_url_rule("/", "console_root", root)
