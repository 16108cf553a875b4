"""Every string the console shows exists in Bahasa Indonesia and English."""

from __future__ import annotations

import re
from pathlib import Path

from dispatch.actions import REFUSALS
from dispatch.console import i18n
from dispatch.models import INCIDENT_STATES, ROLES
from dispatch.web.api_models import DISPOSITIONS

CONSOLE = Path(i18n.__file__).resolve().parent
STATIC = CONSOLE.parent / "web" / "static" / "console"
KEY_CALL = re.compile(r"""\b_t?\(\s*["']([a-z_]+\.[a-z_0-9.]+)["']""")
JS_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_0-9.]+)["']""")


def test_both_languages_have_the_same_keys() -> None:
    assert set(i18n.ID) == set(i18n.EN)
    assert all(text.strip() for text in [*i18n.ID.values(), *i18n.EN.values()])


def test_every_literal_key_used_by_templates_views_and_scripts_exists() -> None:
    used: set[str] = set()
    for path in [*CONSOLE.glob("templates/console/*.html"), CONSOLE / "views.py"]:
        used |= set(KEY_CALL.findall(path.read_text(encoding="utf-8")))
    js = set()
    for path in STATIC.glob("*.js"):
        js |= set(JS_KEY.findall(path.read_text(encoding="utf-8")))
    assert used, "the pattern found no key: it is broken"
    assert sorted(used - set(i18n.EN)) == []
    assert sorted(js - set(i18n.js_strings("en"))) == []


def test_keys_built_from_domain_values_exist() -> None:
    prefixes = {
        "state.": INCIDENT_STATES,
        "role.": ROLES,
        "disposition.": DISPOSITIONS,
        "service.": ("police", "disaster", "ambulance"),
        "assignment.": ("active", "accepted", "on_scene", "resolved", "cancelled", "exhausted"),
        "step.": ("notify_unit", "next_unit", "supervisor"),
        "unit_status.": ("available", "busy", "off_duty"),
        "classification.": ("normal", "prank", "ghost", "info"),
        "action.error.": tuple(REFUSALS),
    }
    for prefix, values in prefixes.items():
        for value in values:
            assert f"{prefix}{value}" in i18n.EN, f"{prefix}{value}"


def test_translate_fills_parameters_and_falls_back() -> None:
    assert i18n.translate("en", "incident.title", id=7) == "Incident #7"
    assert i18n.translate("id", "incident.title", id=7) == "Kejadian #7"
    assert i18n.translate("xx", "nav.board") == "Papan"  # unknown language: Indonesian
    assert i18n.translate("en", "no.such.key") == "no.such.key"


def test_durations() -> None:
    assert i18n.duration(None) == "—"
    assert i18n.duration(4.9) == "4 s"
    assert i18n.duration(185) == "3 min 05 s"
    assert i18n.duration(2 * 3600 + 4 * 60) == "2 h 04 min"
