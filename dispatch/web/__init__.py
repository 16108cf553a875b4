"""The Flask application factory (blueprints are registered here, nothing runs at import)."""

from __future__ import annotations

from flask import Blueprint, Flask

from dispatch.web.context import WebContext

__all__ = ["WebContext", "create_app"]


def create_app(context: WebContext, *extra: tuple[Blueprint, str]) -> Flask:
    """Build the web app around an already-wired service context.

    ``extra`` are (blueprint, url_prefix) pairs mounted as well (the Twilio sandbox in demo mode).
    """
    from dispatch import console
    from dispatch.web import api, hardening, health, i18n, limits, links_page, sms_gateway_hooks, twilio_hooks

    app = Flask(__name__)
    app.extensions["dispatch"] = context
    hardening.install(app, https=(context.settings.public_url or "").startswith("https://"))
    limits.install(app, context.settings.web.max_content_length)
    i18n.install(app)  # Flask-Babel: the console's and the link page's catalogues
    app.register_blueprint(health.bp)
    app.register_blueprint(twilio_hooks.bp)
    app.register_blueprint(sms_gateway_hooks.bp)
    app.register_blueprint(links_page.bp)
    spec = api.make_spec()
    app.register_blueprint(api.create_api_blueprint(spec))
    spec.register(app)  # serves /api/openapi.json, generated from the routes' models
    for blueprint, prefix in extra:
        app.register_blueprint(blueprint, url_prefix=prefix)
    console.install(app, context)  # after the extras: the console links to the sandbox's phones in demo mode
    return app
