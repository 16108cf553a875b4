"""Every string the console and the link page show exists in Bahasa Indonesia and English.

The catalogues are gettext .po files; these tests use Babel's own extractor (babel.cfg) and
compiler, so what they check is what `pybabel extract` / `pybabel compile` see.
"""

from __future__ import annotations

import io
import re

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from dispatch.actions import REFUSALS
from dispatch.console import i18n, sentences
from dispatch.models import ASSIGNMENT_STATES, INCIDENT_STATES, ROLES
from dispatch.web.api_models import DISPOSITIONS
from tests.conftest import ROOT

STATIC = ROOT / "dispatch" / "web" / "static" / "console"
JS_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_0-9.]+)["']""")
KEYWORDS = {"_": None, "_t": None, "N_": None, "gettext": None}


def extracted() -> set[str]:
    """The msgids `pybabel extract -F babel.cfg -k _t -k N_` finds in the code and templates."""
    with open(ROOT / "babel.cfg", encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    return {str(message[2]) for message in extract_from_dir(str(ROOT), method_map, options_map, keywords=KEYWORDS)}


def test_both_languages_have_every_extracted_key_and_nothing_else() -> None:
    found = extracted()
    assert "board.title" in found and "state.unanswered" in found  # literal and vocabulary keys
    for language in i18n.LANGUAGES:
        keys = set(i18n.messages(language))
        assert sorted(found - keys) == [], f"{language}: keys the code uses but the catalogue lacks"
        assert sorted(keys - found) == [], f"{language}: keys nothing uses (or vocabulary.py lacks)"
    assert all(text.strip() for language in i18n.LANGUAGES for text in i18n.messages(language).values())


def test_the_committed_mo_files_are_compiled_from_the_po_files() -> None:
    for language in i18n.LANGUAGES:
        folder = i18n.DIRECTORY / language / "LC_MESSAGES"
        with open(folder / "messages.po", "rb") as po:
            catalogue = read_po(po, locale=language)
        compiled = io.BytesIO()
        write_mo(compiled, catalogue)
        assert compiled.getvalue() == (folder / "messages.mo").read_bytes(), (
            f"{language}: run `pybabel compile -d dispatch/translations` and commit the .mo"
        )


def test_parameters_match_between_languages() -> None:
    names = re.compile(r"%\((\w+)\)s")
    english = i18n.messages("en")
    for key, text in i18n.messages("id").items():
        assert set(names.findall(text)) == set(names.findall(english[key])), key
        assert text.replace("%%", "").count("%") == len(names.findall(text)), f"{key}: a lone % must be %%"


def test_every_key_used_by_the_scripts_is_sent_to_them() -> None:
    js = set()
    for path in STATIC.glob("*.js"):
        js |= set(JS_KEY.findall(path.read_text(encoding="utf-8")))
    assert js and sorted(js - set(i18n.js_strings("en"))) == []


def test_keys_built_from_domain_values_exist() -> None:
    prefixes = {
        "state.": INCIDENT_STATES,
        "role.": ROLES,
        "disposition.": DISPOSITIONS,
        "service.": ("police", "disaster", "ambulance"),
        "assignment.": ASSIGNMENT_STATES,
        "unit_status.": ("available", "busy", "off_duty"),
        "classification.": ("normal", "prank", "ghost", "info"),
        "action.error.": tuple(REFUSALS),
        "delivery.": sentences.DELIVERY_STATES,
    }
    for language in i18n.LANGUAGES:
        for prefix, values in prefixes.items():
            for value in values:
                assert i18n.has(language, f"{prefix}{value}"), f"{language}: {prefix}{value}"


def test_one_word_per_concept() -> None:
    indonesian = i18n.messages("id")
    # "diterima" is accepted (by a unit); what reached us is "masuk".
    assert "diterima" not in indonesian["state.received"]
    received = [k for k, v in indonesian.items() if re.search(r"\bditerima\b", v, re.IGNORECASE)]
    english = i18n.messages("en")
    assert all(re.search(r"accept", english[k], re.IGNORECASE) for k in received), [
        (k, english[k]) for k in received if not re.search(r"accept", english[k], re.IGNORECASE)
    ]


def test_translate_fills_parameters_and_falls_back() -> None:
    assert i18n.translate("en", "incident.title", id=7) == "Incident #7"
    assert i18n.translate("id", "incident.title", id=7) == "Kejadian #7"
    assert i18n.translate("xx", "nav.board") == "Papan"  # unknown language: Indonesian
    assert i18n.translate("en", "no.such.key") == "no.such.key"
    assert i18n.translate("en", "stats.target", pct=90) == "Target 90 %"


def test_durations() -> None:
    assert i18n.duration(None) == "—"
    assert i18n.duration(4.9) == "4 s"
    assert i18n.duration(185) == "3 min 05 s"
    assert i18n.duration(2 * 3600 + 4 * 60) == "2 h 04 min"
