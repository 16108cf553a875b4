"""The console's and the link page's words in Bahasa Indonesia and English, from gettext catalogues.

The catalogues are ``dispatch/translations/<lang>/LC_MESSAGES/messages.po`` (edited with any
gettext tool; msgids are keys such as ``board.title``, parameters are ``%(name)s``), compiled to
the ``.mo`` beside them (committed; see README, "Translations"). Flask-Babel serves them to the
templates (``_``) in the language ``dispatch.web.i18n`` selects for the request; code that knows
its reader's language calls :func:`translate`.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("id", "en")
DEFAULT = "id"
DIRECTORY = Path(__file__).resolve().parent.parent / "translations"
DOMAIN = "messages"
# What the scripts need (alerts, the live indicator, map labels, durations).
JS_PREFIXES = (
    "live.",
    "sound.",
    "alert.",
    "map.",
    "state.",
    "unit_status.",
    "assignment.",
    "devices.silent",
    "devices.low_battery",
    "call.candidate_",
    "call.found",
    "call.not_found",
    "board.updated",
)


@cache
def translations(language: str) -> Translations:
    """The compiled catalogue of ``language`` (Indonesian when unknown)."""
    chosen = language if language in LANGUAGES else DEFAULT
    loaded = Translations.load(str(DIRECTORY), [chosen], DOMAIN)
    assert isinstance(loaded, Translations), f"no compiled catalogue for {chosen} in {DIRECTORY}"
    return loaded


@cache
def messages(language: str) -> dict[str, str]:
    """Every key and its text in ``language``, as the .po file has them (for the scripts and tests)."""
    chosen = language if language in LANGUAGES else DEFAULT
    with open(DIRECTORY / chosen / "LC_MESSAGES" / f"{DOMAIN}.po", "rb") as po:
        catalogue = read_po(po, locale=chosen)
    return {str(m.id): str(m.string) for m in catalogue if m.id and m.string}


class _Blank(dict[str, Any]):
    """Parameters of a text: one the caller lacks shows as a dash, never as an error."""

    def __missing__(self, key: str) -> str:
        return "—"


def translate(language: str, key: str, **params: Any) -> str:
    """The text for ``key`` in ``language`` (Indonesian when unknown), with ``params`` filled in.

    A key no catalogue has comes back as the key itself (tests fail on that, never the page).
    """
    text = translations(language).gettext(key)
    return text % _Blank(params)


def has(language: str, key: str) -> bool:
    """Whether the catalogue of ``language`` has a text for ``key``."""
    return key in messages(language)


def js_strings(language: str) -> dict[str, str]:
    """The subset of the catalogue the browser scripts use (``%(name)s`` parameters, ``%%``)."""
    return {key: value for key, value in messages(language).items() if key.startswith(JS_PREFIXES)}


def distance(metres: float | None) -> str:
    """A distance for the assign list: metres below 1 km, else kilometres with one decimal."""
    if metres is None:
        return "? km"
    return f"{metres:.0f} m" if metres < 1000 else f"{metres / 1000:.1f} km"


def seconds(value: float | None) -> str:
    """An interval for the statistics: tenths below 10 s (a dispatch often takes less than one)."""
    if value is not None and value < 10:
        return f"{value:.1f} s"
    return duration(value)


def duration(seconds: float | None) -> str:
    """A short elapsed time: ``45 s``, ``3 min 05 s``, ``2 h 04 min``.

    The units read the same in both languages on purpose, so the board's script (console.js
    ``duration``) can tick them forward without a catalogue.
    """
    if seconds is None or math.isnan(seconds):
        return "—"
    total = max(0, int(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
