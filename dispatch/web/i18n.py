"""Flask-Babel for every page the app renders: the console, the one-tap link page.

Whoever knows the reader's language for a request says so with :func:`use` (the console: the
user's choice; the link page: the language of the notification's recipient); templates then get
their ``_`` from the catalogues in ``dispatch/translations`` in that language.
"""

from __future__ import annotations

from flask import Flask, g
from flask_babel import Babel

from dispatch.console.i18n import DEFAULT, DIRECTORY, LANGUAGES


def install(app: Flask) -> None:
    """Serve the gettext catalogues to the app's templates."""
    Babel(app, locale_selector=_locale, default_locale=DEFAULT, default_translation_directories=str(DIRECTORY))


def use(language: str) -> None:
    """Render this request in ``language`` (Indonesian when it is not one we have)."""
    g.language = language if language in LANGUAGES else DEFAULT


def language() -> str:
    """The language this request renders in."""
    chosen: str = g.get("language", DEFAULT)
    return chosen


def _locale() -> str:
    return language()
