"""The message catalogue: every text the system sends to people, in Indonesian and English.

Pure functions only: each takes the facts and returns the finished text (or TwiML).

SMS rules, enforced here rather than by callers:

* **GSM-7 only.**  One non-GSM character (an emoji in a street name, a typographic
  quote pasted from a web page) silently switches the whole SMS to UCS-2, which drops a
  segment from 160 to 70 characters; carriers in Indonesia then split or truncate it.
  Every variable part therefore goes through :func:`to_gsm7` first.
* **One segment, 160 septets.**  Multi-part SMS arrive out of order or partly on cheap
  handsets; an alert must arrive whole.  When the text is too long, the free-text parts
  (address, reason, unit name) are shortened and marked with ``..``; the alert code, the
  reply instructions and the link are never cut, because they are what the responder
  acts on.  If they alone do not fit, the function raises ``ValueError``.
* Links are not transliterated (dropping a character would break the URL): a link must
  already be GSM-7 without spaces, otherwise ``ValueError``.

Distances: below 1 km in whole metres ("850 m"), from 1 km in km with one decimal,
half-up rounding, with a decimal comma in Indonesian ("1,2 km") and a point in English.
Negative, infinite, NaN or larger-than-the-Earth distances raise ``ValueError``: they
are bugs upstream, not something to print.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Final, Literal

from twilio.twiml.voice_response import VoiceResponse

from responders.replies import MAX_CODE_DIGITS

Language = Literal["id", "en"]
Service = Literal["police", "disaster", "ambulance"]
ResidentState = Literal["dispatched", "unanswered", "acknowledged", "on_scene", "resolved", "cancelled"]

SMS_MAX_SEPTETS: Final = 160
ELLIPSIS: Final = ".."
MAX_CODE: Final = 10**MAX_CODE_DIGITS - 1
# Half the Earth's circumference: no real distance between two points is longer.
_MAX_DISTANCE_M: Final = 20_040_000.0
# Spoken addresses are capped so a pasted paragraph cannot hold the responder on the line.
_MAX_SPOKEN_WHERE: Final = 200
# A shortened field keeps at least this many characters, or disappears.
_MIN_KEPT: Final = 6
# How many characters a cut may give back to end on a word boundary.
_WORD_SLACK: Final = 10
# More codes than this in a "which alert?" reply would crowd out the instructions.
_MAX_LISTED_CODES: Final = 8

# GSM 03.38 default alphabet, in table order (rows of 16).  0x1B (ESC) is not a character:
# it introduces the extension table below.
GSM7_BASIC: Final[frozenset[str]] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039eÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: sent as ESC + char, so each counts 2 septets.  The form feed (ESC 0x0A)
# is left out on purpose: it is a control character no message of ours should carry.
GSM7_EXTENDED: Final[frozenset[str]] = frozenset("^{}\\[~]|€")
_GSM7: Final = GSM7_BASIC | GSM7_EXTENDED

# Characters NFKD cannot reduce to GSM-7 but which have an obvious plain equivalent.
_TRANSLITERATION: Final[Mapping[str, str]] = MappingProxyType(
    {
        # Smart single and double quotes, primes, guillemets, backtick and acute accent.
        **dict.fromkeys(
            "\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u2032\u2033\u2039\u203a\u00ab\u00bb`\u00b4", "'"
        ),
        # Hyphen, non-breaking hyphen, figure/en/em dash, horizontal bar, minus, hyphen bullet.
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043", "-"),
        "\u2044": "/",  # fraction slash: NFKD turns one-half into "1", U+2044, "2"
        "\u0152": "OE",
        "\u0153": "oe",
        "\u0141": "L",
        "\u0142": "l",
        "\u0110": "D",
        "\u0111": "d",
        "\u0131": "i",  # dotless i
    }
)

_SERVICE_SMS: Final[Mapping[Language, Mapping[Service, str]]] = MappingProxyType(
    {
        "id": {"police": "POLISI", "disaster": "BPBD", "ambulance": "AMBULANS"},
        "en": {"police": "POLICE", "disaster": "DISASTER", "ambulance": "AMBULANCE"},
    }
)
# Spoken names: "B P B D" so text-to-speech says the letters, not a word.
_SERVICE_SPOKEN: Final[Mapping[Language, Mapping[Service, str]]] = MappingProxyType(
    {
        "id": {"police": "polisi", "disaster": "bencana, B P B D", "ambulance": "ambulans"},
        "en": {"police": "Police", "disaster": "Disaster", "ambulance": "Ambulance"},
    }
)
_UNKNOWN_WHERE: Final[Mapping[Language, str]] = MappingProxyType(
    {"id": "lokasi belum diketahui", "en": "location unknown"}
)
# (Say language, Say voice) per language, for every <Say> the voice webhooks produce.
VOICES: Final[Mapping[Language, tuple[str, str]]] = MappingProxyType(
    {"id": ("id-ID", "Google.id-ID-Standard-A"), "en": ("en-US", "Google.en-US-Standard-C")}
)
_NO_INPUT: Final[Mapping[Language, str]] = MappingProxyType(
    {
        "id": "Tidak ada tombol yang ditekan. Silakan jawab lewat SMS peringatan. Terima kasih.",
        "en": "No input received. Please answer by replying to the alert SMS. Goodbye.",
    }
)


# ---------------------------------------------------------------------------- GSM-7


def gsm7_length(text: str) -> int:
    """Length of ``text`` in GSM-7 septets: 1 per basic character, 2 per extension character.

    Raises ``ValueError`` naming the first character that GSM-7 cannot encode.
    """
    length = 0
    for position, char in enumerate(text):
        if char in GSM7_BASIC:
            length += 1
        elif char in GSM7_EXTENDED:
            length += 2
        else:
            raise ValueError(f"character {char!r} (U+{ord(char):04X}) at position {position} is not GSM-7")
    return length


def _transliterate_char(char: str) -> str:
    if char in _GSM7:
        return char
    if char in _TRANSLITERATION:
        return _TRANSLITERATION[char]
    if char.isspace():
        return " "  # tabs, no-break and ideographic spaces
    # NFKD splits accents off ("ā" -> "a" + macron) and unfolds compatibility forms
    # (the "fi" ligature -> "fi", full-width letters -> ASCII); whatever is still not
    # GSM-7 is dropped.
    pieces = []
    for piece in unicodedata.normalize("NFKD", char):
        if piece in _GSM7:
            pieces.append(piece)
        elif piece in _TRANSLITERATION:
            pieces.append(_TRANSLITERATION[piece])
        elif piece.isspace():
            pieces.append(" ")
    return "".join(pieces)


def to_gsm7(text: str) -> str:
    """Make ``text`` encodable in GSM-7, keeping as much of it readable as possible.

    Characters already in GSM-7 (including "é", "Ä", "€") are kept; smart quotes become
    ``'``; dashes become ``-``; other accented letters lose their accent ("ā" -> "a");
    anything else (emoji, other scripts, control characters) is dropped.

    >>> to_gsm7("“Jl. Āhmad Yani” — 👍")
    "'Jl. Ahmad Yani' - "
    """
    # NFC first so "e" + combining acute becomes the GSM-7 "é" instead of losing its accent.
    return "".join(_transliterate_char(char) for char in unicodedata.normalize("NFC", text))


def _field(value: str) -> str:
    """A variable part of an SMS: GSM-7, on one line, without doubled spaces."""
    return " ".join(to_gsm7(value).split())


def _free_text(value: str) -> str:
    """A free-text field (address, reason): like _field, without a final full stop.

    The templates put their own "." after it, and "Mangunharjo.." would read as a cut.
    """
    return _field(value).rstrip(" .")


def _shorten(text: str, max_septets: int) -> str:
    """Cut ``text`` to at most ``max_septets``, marking the cut with ``..``."""
    if gsm7_length(text) <= max_septets:
        return text
    budget = max_septets - len(ELLIPSIS)
    if budget < _MIN_KEPT:
        return ""  # "J.." says nothing; an empty slot is left out of the text instead
    kept: list[str] = []
    used = 0
    for char in text:
        width = 2 if char in GSM7_EXTENDED else 1
        if used + width > budget:
            break
        kept.append(char)
        used += width
    cut = "".join(kept)
    # Prefer ending on a whole word when that costs only a few characters: "Sudirman.."
    # reads better than "Sudir..", and a half word can be misread as another name.
    if len(cut) < len(text) and text[len(cut)] != " ":
        space = cut.rfind(" ")
        if space >= _MIN_KEPT and len(cut) - space <= _WORD_SLACK:
            cut = cut[:space]
    # Do not leave a dangling comma or space before the "..".
    return cut.rstrip(" ,.;:-/") + ELLIPSIS


@dataclass(frozen=True)
class _Shrink:
    """Shorten one field, but not below ``floor`` septets in this step."""

    field: str
    floor: int = 0


@dataclass(frozen=True)
class _Drop:
    """Remove an optional field entirely (it is useless half-cut, e.g. an incident number)."""

    field: str


def _tidy(text: str) -> str:
    return re.sub(r" {2,}", " ", text).strip()


def _sentence(text: str) -> str:
    """``text`` followed by ". ", or nothing at all if it is empty."""
    return f"{text}. " if text else ""


def _fit(
    render: Callable[[Mapping[str, str]], str],
    values: Mapping[str, str],
    steps: Sequence[_Shrink | _Drop] = (),
) -> str:
    """Render, then apply ``steps`` in order until the text fits in one SMS segment.

    Fields not named in ``steps`` are never touched.  Raises ``ValueError`` if the text
    still does not fit after every step.
    """

    def septets(fields: Mapping[str, str]) -> int:
        return gsm7_length(_tidy(render(fields)))

    current = dict(values)
    for step in steps:
        over = septets(current) - SMS_MAX_SEPTETS
        if over <= 0:
            break
        if isinstance(step, _Drop):
            current[step.field] = ""
        else:
            have = gsm7_length(current[step.field])
            current[step.field] = _shorten(current[step.field], max(step.floor, have - over))
    length = septets(current)
    if length > SMS_MAX_SEPTETS:
        raise ValueError(
            f"message needs {length} septets even with free text shortened "
            f"(limit {SMS_MAX_SEPTETS}); is the link too long? {_tidy(render(current))!r}"
        )
    # A field that vanished (too short to be useful) or ended on a word boundary may
    # have left room: give it back to the shortened fields, last shortened first.
    shrunk = [step.field for step in steps if isinstance(step, _Shrink)]
    for name in dict.fromkeys(reversed(shrunk)):
        have = gsm7_length(current[name])
        for target in range(have + SMS_MAX_SEPTETS - septets(current), have, -1):
            candidate = {**current, name: _shorten(values[name], target)}
            if gsm7_length(candidate[name]) > have and septets(candidate) <= SMS_MAX_SEPTETS:
                current = candidate
                break
    return _tidy(render(current))


def _link(link: str) -> str:
    link = link.strip()
    if not link or any(char.isspace() for char in link) or to_gsm7(link) != link:
        raise ValueError(f"link must be non-empty GSM-7 without spaces: {link!r}")
    return link


def _int(name: str, value: object) -> int:
    # bool is an int subclass, but True as an alert code is always a bug.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return value


def _code(code: object) -> int:
    value = _int("alert code", code)
    if not 0 <= value <= MAX_CODE:
        # A longer code could not be typed back: responders.replies reads at most 6 digits.
        raise ValueError(f"alert code must be 0..{MAX_CODE}, got {value}")
    return value


def _incident(incident_id: object) -> int:
    value = _int("incident id", incident_id)
    if value < 0:
        raise ValueError(f"incident id must not be negative, got {value}")
    return value


# ---------------------------------------------------------------------------- distances


def _rounded_distance(distance_m: float) -> tuple[Decimal, bool]:
    """(value, is_km): whole metres below 1 km, else km to one decimal, half-up."""
    if not math.isfinite(distance_m) or not 0 <= distance_m <= _MAX_DISTANCE_M:
        raise ValueError(f"distance must be 0..{_MAX_DISTANCE_M:.0f} m, got {distance_m!r}")
    exact = Decimal(repr(float(distance_m)))
    metres = exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    # Round first, compare after: 999.6 m is "1,0 km", not "1000 m".
    if metres < 1000:
        return metres, False
    return (exact / 1000).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP), True


def _number(language: Language, value: Decimal) -> str:
    text = str(value)
    return text.replace(".", ",") if language == "id" else text


def format_distance(language: Language, distance_m: float) -> str:
    """Distance as printed in an SMS: "850 m", "1,2 km" (id) or "1.2 km" (en)."""
    value, is_km = _rounded_distance(distance_m)
    return f"{_number(language, value)} {'km' if is_km else 'm'}"


def _spoken_distance(language: Language, distance_m: float) -> str:
    value, is_km = _rounded_distance(distance_m)
    if language == "id":
        return f"{_number(language, value)} {'kilometer' if is_km else 'meter'}"
    return f"{_number(language, value)} {'kilometers' if is_km else 'meters'}"


# ---------------------------------------------------------------------------- alerts


_BUTTON_SPOKEN: Final[Mapping[Language, str]] = MappingProxyType(
    {"id": "Tombol darurat milik", "en": "Panic button of"}
)
_CALL_SPOKEN: Final[Mapping[Language, str]] = MappingProxyType({"id": "Panggilan 112", "en": "112 call"})
_NEAR: Final[Mapping[Language, str]] = MappingProxyType({"id": "dekat", "en": "near"})


def _ended(text: str) -> str:
    """``text`` as a sentence of its own: a full stop, unless it ends cut (".."), then a space."""
    if not text:
        return ""
    return f"{text} " if text.endswith(ELLIPSIS) else f"{text}. "


def unknown_location(language: Language) -> str:
    """What an alert says when nothing at all is known of the place."""
    return _UNKNOWN_WHERE[language]


def pin_location(language: Language, coordinates: str, near: str | None) -> str:
    """A location known only as a pin: the coordinates, then the nearest named place.

    The coordinates come first so that shortening an SMS cuts the place name, never a number.
    """
    return f"{coordinates} ({_NEAR[language]} {near})" if near else coordinates


def alert_sms(
    language: Language,
    *,
    service: Service,
    code: int,
    where: str,
    distance_m: float | None,
    link: str,
    incident_id: int,
    button_owner: str | None = None,
    call_nature: str | None = None,
) -> str:
    """The alert SMS to a responder: service, code, what, place, distance, how to reply, link.

    Example (id): ``DARURAT POLISI #12: Toko Emas Sinar, Jl. Panglima Sudirman,
    Mangunharjo (1,2 km). Balas YA 12 terima / TOLAK 12. Kejadian 345. Link: http://x/a/abc``.
    Where space allows, a panic button's owner (``button_owner``) reads as part of the
    address, and a 112 call's nature (``call_nature``, its description) follows the place:
    ``#12: Jl. Suroyo (850 m). 112: perampokan, satu korban luka. Balas ...``.

    When the text is too long, ``where`` is shortened first (to 30 septets), then the
    nature or owner (to 20), then the incident number is left out, then the nature or
    owner, then ``where`` is shortened further, down to nothing. Raises ``ValueError`` if
    even that does not fit (a link that is far too long) or if the link is not GSM-7.
    """
    code = _code(code)
    incident_id = _incident(incident_id)
    link = _link(link)
    name = _SERVICE_SMS[language][service]
    distance = f" ({format_distance(language, distance_m)})" if distance_m is not None else ""
    nature = _free_text(call_nature or "")
    values = {
        "what": f"112: {nature}" if nature else _free_text(button_owner or ""),
        "where": _free_text(where) or _UNKNOWN_WHERE[language],
        "incident": f"Kejadian {incident_id}." if language == "id" else f"Incident {incident_id}.",
    }

    def render(v: Mapping[str, str]) -> str:
        # Once "where" is gone entirely the distance still follows the code: "#12 (1,2 km)."
        told = v["where"] if nature else ", ".join(part for part in (v["what"], v["where"]) if part)
        head = f": {told}{distance}" if told else distance
        place = (_ended(head) if head else ". ") + (_ended(v["what"]) if nature else "")
        if language == "id":
            return f"DARURAT {name} #{code}{place}Balas YA {code} terima / TOLAK {code}. {v['incident']} Link: {link}"
        return f"{name} EMERGENCY #{code}{place}Reply YES {code} to accept / NO {code}. {v['incident']} Link: {link}"

    steps = (_Shrink("where", 30), _Shrink("what", 20), _Drop("incident"), _Drop("what"), _Shrink("where"))
    return _fit(render, values, steps)


def _speakable(text: str) -> str:
    """An address made fit for text-to-speech: no emoji, abbreviations spelt out, capped."""
    text = " ".join(unicodedata.normalize("NFC", text).split())
    # Symbols and invisible characters (emoji, skin tones, variation selectors, ZWJ) would
    # be read out as their Unicode names or glitch the voice.
    text = "".join(
        char
        for char in text
        if unicodedata.category(char) not in {"So", "Sk", "Cc", "Cf", "Cs", "Co", "Cn", "Me"}
        and not 0xFE00 <= ord(char) <= 0xFE0F
    )
    # Indonesian address abbreviations: TTS would spell "Jl" as "J L".
    for pattern, spoken in (
        (r"\bJln?\b\.?\s*", "Jalan "),
        (r"\bGg\b\.?\s*", "Gang "),
        (r"\bKel\b\.?\s*", "Kelurahan "),
        (r"\bKec\b\.?\s*", "Kecamatan "),
    ):
        text = re.sub(pattern, spoken, text, flags=re.IGNORECASE)
    text = re.sub(r"\s+([,.;:])", r"\1", " ".join(text.split())).rstrip(" .,;:")
    if len(text) > _MAX_SPOKEN_WHERE:
        text = text[:_MAX_SPOKEN_WHERE].rsplit(" ", 1)[0].rstrip(" .,;:")
    return text


def _spelt(code: int) -> str:
    """ "1 2" rather than "12", so the voice reads the digits one by one like a code."""
    return " ".join(str(code))


def alert_voice_prompt(
    language: Language,
    *,
    service: Service,
    code: int,
    where: str,
    distance_m: float | None,
    button_owner: str | None = None,
    call_nature: str | None = None,
) -> str:
    """The text spoken in the alert call, ending with the keypad instructions.

    Not limited to GSM-7 (it is never sent as SMS) but cleaned of emoji; the code is
    spelt digit by digit; Indonesian abbreviations (Jl., Gg., Kel., Kec.) are spelt out.
    A 112 call's nature, or else the panic button's owner, is said after the code.
    """
    code = _code(code)
    spoken_where = _speakable(where)
    what = ""
    if call_nature and (nature := _speakable(call_nature)):
        what = f"{_CALL_SPOKEN[language]}: {nature}."
    elif button_owner and (owner := _speakable(button_owner)):
        what = f"{_BUTTON_SPOKEN[language]} {owner}."
    if language == "id":
        parts = [
            f"Darurat {_SERVICE_SPOKEN['id'][service]}.",
            f"Kode {_spelt(code)}.",
            *([what] if what else []),
            f"Lokasi: {spoken_where}." if spoken_where else "Lokasi belum diketahui.",
        ]
        if distance_m is not None:
            parts.append(f"Jarak {_spoken_distance('id', distance_m)}.")
        parts.append("Tekan 1 untuk menerima, 2 untuk menolak, bintang untuk mengulang.")
    else:
        parts = [
            f"{_SERVICE_SPOKEN['en'][service]} emergency.",
            f"Code {_spelt(code)}.",
            *([what] if what else []),
            f"Location: {spoken_where}." if spoken_where else "Location unknown.",
        ]
        if distance_m is not None:
            parts.append(f"Distance {_spoken_distance('en', distance_m)}.")
        parts.append("Press 1 to accept, 2 to decline, star to repeat.")
    return " ".join(parts)


def voice_twiml(language: Language, *, prompt: str, action_url: str, repeat_prompt: bool = True) -> str:
    """TwiML for the alert call: the prompt in a one-digit Gather, optionally once more.

    A Gather that times out without a key falls through to the next verb (that is what
    ``actionOnEmptyResult="false"`` means), so the second Gather is the repeat; after it
    the call says it got no input and hangs up.  The key pressed (1, 2, or ``*`` for
    "repeat") is POSTed to ``action_url`` as ``Digits``.
    """
    spoken_language, voice = VOICES[language]
    response = VoiceResponse()
    for _ in range(2 if repeat_prompt else 1):
        gather = response.gather(
            num_digits=1, action=action_url, method="POST", timeout=8, action_on_empty_result=False
        )
        gather.say(prompt, language=spoken_language, voice=voice)
    response.say(_NO_INPUT[language], language=spoken_language, voice=voice)
    response.hangup()
    return str(response.to_xml())


# ---------------------------------------------------------------------------- supervisors, residents


def supervisor_sms(
    language: Language,
    *,
    service: Service,
    code: int,
    where: str,
    incident_id: int,
    reason: str,
    link: str,
) -> str:
    """SMS to a service supervisor when an incident needs a human decision.

    ``reason`` is free text from the caller (already in ``language``).  Shortened in this
    order when too long: ``where`` to 20 septets, ``reason`` to 30, then ``where`` is left
    out (the reason then gets back the room), then ``reason`` down to nothing.  Incident
    number, code and link are never cut.
    """
    code = _code(code)
    incident_id = _incident(incident_id)
    link = _link(link)
    name = _SERVICE_SMS[language][service]
    values = {
        "where": _free_text(where) or _UNKNOWN_WHERE[language],
        "reason": _free_text(reason) or ("tanpa keterangan" if language == "id" else "no reason given"),
    }

    def render(v: Mapping[str, str]) -> str:
        if language == "id":
            return (
                f"PENGAWAS {name}: kejadian {incident_id} (#{code}) perlu tindakan. "
                f"{_sentence(v['reason'])}{_sentence(v['where'] and 'Lokasi: ' + v['where'])}Link: {link}"
            )
        return (
            f"{name} SUPERVISOR: incident {incident_id} (#{code}) needs action. "
            f"{_sentence(v['reason'])}{_sentence(v['where'] and 'At: ' + v['where'])}Link: {link}"
        )

    # The reason is what the supervisor must act on; the address is one tap away (link).
    steps = (_Shrink("where", 20), _Shrink("reason", 30), _Drop("where"), _Shrink("reason"))
    return _fit(render, values, steps)


def resident_sms(
    language: Language,
    *,
    state: ResidentState,
    unit_name: str | None,
    distance_m: float | None,
    incident_id: int,
) -> str:
    """SMS to the resident who raised the alert, at each step of the response.

    The unit is named (never a responder's phone number); the distance is shown for
    "dispatched" and "acknowledged" only.  Every message but "on_scene" reminds the
    resident of 112, because a panic button is not the only way to get help.
    """
    incident_id = _incident(incident_id)
    if state not in ("dispatched", "unanswered", "acknowledged", "on_scene", "resolved", "cancelled"):
        raise ValueError(f"unknown resident message state {state!r}")
    distance = ""
    if distance_m is not None and state in ("dispatched", "acknowledged"):
        shown = format_distance(language, distance_m)
        distance = f" (jarak {shown})" if language == "id" else f" ({shown} away)"

    def render(v: Mapping[str, str]) -> str:
        unit = v["unit"]
        if language == "id":
            who = f"Petugas {unit}" if unit else "Petugas"
            return {
                "dispatched": f"Tombol darurat Anda diterima (kejadian {incident_id}). {who}{distance} "
                "sedang dihubungi. Bila makin gawat, hubungi 112.",
                "unanswered": f"Belum ada petugas yang menjawab panggilan untuk kejadian {incident_id}. "
                "Pusat komando menanganinya sekarang. Bila bisa, hubungi 112.",
                "acknowledged": f"{who}{distance} menuju lokasi Anda (kejadian {incident_id}). "
                "Tetap di tempat aman. Bila makin gawat, hubungi 112.",
                "on_scene": f"{who} telah tiba di lokasi (kejadian {incident_id}).",
                "resolved": f"Kejadian {incident_id} telah selesai ditangani. Terima kasih. "
                "Darurat lagi? Tekan tombol atau hubungi 112.",
                "cancelled": f"Kejadian {incident_id} dibatalkan. Jika masih butuh bantuan, "
                "tekan tombol lagi atau hubungi 112.",
            }[state]
        who = f"Responder {unit}" if unit else "A responder"
        return {
            "dispatched": f"Your emergency alert was received (incident {incident_id}). {who}{distance} "
            "is being contacted. If it gets worse, call 112.",
            "unanswered": f"No responder has answered yet for incident {incident_id}. "
            "The command centre is handling it now. If you can, call 112.",
            "acknowledged": f"{who}{distance} is on the way to you (incident {incident_id}). "
            "Stay somewhere safe. If it gets worse, call 112.",
            "on_scene": f"{who} has arrived at the scene (incident {incident_id}).",
            "resolved": f"Incident {incident_id} has been resolved. Thank you. "
            "Another emergency? Press the button or call 112.",
            "cancelled": f"Incident {incident_id} was cancelled. If you still need help, "
            "press the button again or call 112.",
        }[state]

    return _fit(render, {"unit": _field(unit_name or "")}, (_Shrink("unit"),))


# ---------------------------------------------------------------------------- replies to responders


@dataclass(frozen=True)
class _ReplyEntry:
    params: tuple[str, ...]
    text: Mapping[Language, str]  # str.format templates over the prepared params
    steps: tuple[_Shrink | _Drop, ...] = ()


_REPLIES: Final[Mapping[str, _ReplyEntry]] = MappingProxyType(
    {
        "accepted": _ReplyEntry(
            ("code", "incident_id", "where"),
            {
                "id": "Terima kasih, Anda menerima #{code} (kejadian {incident_id}): {where}. "
                "Balas TIBA {code} saat tiba, SELESAI {code} bila selesai.",
                "en": "Thank you, you accepted #{code} (incident {incident_id}): {where}. "
                "Reply ARRIVED {code} on arrival, DONE {code} when finished.",
            },
            (_Shrink("where"),),
        ),
        "already_accepted": _ReplyEntry(
            ("code", "by_unit", "at_local"),
            {
                "id": "#{code} sudah diterima {by_unit} pukul {at_local}. Anda tidak perlu berangkat. Terima kasih.",
                "en": "#{code} was already accepted by {by_unit} at {at_local}. You do not need to go. Thank you.",
            },
            (_Shrink("by_unit", 10), _Shrink("at_local"), _Shrink("by_unit")),
        ),
        "declined": _ReplyEntry(
            ("code",),
            {
                "id": "Penolakan #{code} dicatat. Kami menghubungi unit lain. Terima kasih.",
                "en": "Decline of #{code} recorded. We are contacting another unit. Thank you.",
            },
        ),
        "on_scene": _ReplyEntry(
            ("code",),
            {
                "id": "Kedatangan di lokasi #{code} dicatat. Balas SELESAI {code} bila selesai.",
                "en": "Arrival at #{code} recorded. Reply DONE {code} when finished.",
            },
        ),
        "resolved": _ReplyEntry(
            ("code",),
            {
                "id": "#{code} dicatat selesai. Terima kasih atas tugas Anda.",
                "en": "#{code} recorded as resolved. Thank you for your work.",
            },
        ),
        "which_alert": _ReplyEntry(
            ("codes",),
            {
                "id": "Ada beberapa peringatan terbuka untuk Anda: {codes}. "
                "Sebutkan kodenya, mis. YA {first} atau TOLAK {first}.",
                "en": "You have several open alerts: {codes}. Include the code, e.g. YES {first} or NO {first}.",
            },
        ),
        "no_open_alert": _ReplyEntry(
            (),
            {
                "id": "Tidak ada peringatan terbuka untuk Anda saat ini.",
                "en": "You have no open alert right now.",
            },
        ),
        "unknown_code": _ReplyEntry(
            ("code",),
            {
                "id": "Kode #{code} tidak dikenal atau bukan untuk Anda. Periksa kode di SMS peringatan.",
                "en": "Code #{code} is unknown or not for you. Check the code in the alert SMS.",
            },
        ),
        "not_understood": _ReplyEntry(
            (),
            {
                "id": "Maaf, balasan tidak dimengerti. Format: YA 12 (terima), TOLAK 12, TIBA 12, "
                "SELESAI 12. 12 = kode di SMS peringatan.",
                "en": "Sorry, reply not understood. Use: YES 12 (accept), NO 12 (decline), ARRIVED 12, "
                "DONE 12. 12 = code in the alert SMS.",
            },
        ),
        "unknown_number": _ReplyEntry(
            (),
            {
                "id": "Nomor ini tidak terdaftar sebagai petugas. Dalam keadaan darurat hubungi 112.",
                "en": "This number is not registered as a responder. In an emergency call 112.",
            },
        ),
        "not_allowed": _ReplyEntry(
            (),
            {
                "id": "Maaf, perintah ini tidak dapat dilakukan dari nomor Anda. Gunakan dasbor atau "
                "hubungi ruang kendali.",
                "en": "Sorry, this number cannot do that. Use the dashboard or call the control room.",
            },
        ),
        "closed": _ReplyEntry(
            ("code", "state"),
            {
                "id": "#{code} sudah ditutup ({state}). Tidak perlu tindakan.",
                "en": "#{code} is already closed ({state}). No action needed.",
            },
            (_Shrink("state"),),
        ),
    }
)

REPLY_KEYS: Final[frozenset[str]] = frozenset(_REPLIES)

# Incident states as a responder should read them; unknown states are shown as given.
_STATE_NAMES: Final[Mapping[Language, Mapping[str, str]]] = MappingProxyType(
    {
        "id": {
            "resolved": "selesai",
            "cancelled": "dibatalkan",
            "closed": "ditutup",
            "expired": "kedaluwarsa",
            "on_scene": "petugas di lokasi",
        },
        "en": {"on_scene": "responder on scene"},
    }
)


def _prepare(language: Language, name: str, value: object) -> dict[str, str]:
    """Turn one reply parameter into the template field(s) it fills."""
    if name == "code":
        return {"code": str(_code(value))}
    if name == "incident_id":
        return {"incident_id": str(_incident(value))}
    if name == "codes":
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise TypeError(f"codes must be a list of ints, got {value!r}")
        codes = [_code(code) for code in value]
        if not codes:
            raise ValueError("which_alert needs at least one code")
        return {"codes": ", ".join(str(code) for code in codes), "first": str(codes[0])}
    if name == "at_local" and isinstance(value, datetime | time):
        return {"at_local": value.strftime("%H:%M")}
    if name == "state":
        text = str(value)
        return {"state": _field(_STATE_NAMES[language].get(text, text.replace("_", " ")))}
    return {name: _field(str(value))}


def reply_text(language: Language, key: str, **params: object) -> str:
    """The SMS answer to a responder's reply, by catalogue key, ≤ 160 septets of GSM-7.

    Keys and their parameters: accepted (code, incident_id, where), already_accepted
    (code, by_unit, at_local as "08:31" or a time/datetime already in local time),
    declined (code), on_scene (code), resolved (code), which_alert (codes: list[int]),
    no_open_alert, unknown_code (code), not_understood, unknown_number, not_allowed,
    closed (code, state).

    Raises ``KeyError`` for an unknown key and ``TypeError`` for a missing parameter or
    one of the wrong type.  Parameters a key does not use are ignored, so a caller can
    pass one dict of facts (code, incident_id, ...) whatever the key turns out to be.
    """
    entry = _REPLIES[key]
    missing = set(entry.params) - set(params)
    if missing:
        raise TypeError(f"reply {key!r} needs {sorted(entry.params)}; missing {sorted(missing)}")
    values: dict[str, str] = {}
    for name in entry.params:
        values.update(_prepare(language, name, params[name]))
    template = entry.text[language]
    if "codes" in values:
        return _fit_code_list(template, values)
    return _fit(lambda v: template.format(**v), values, entry.steps)


def _fit_code_list(template: str, values: Mapping[str, str]) -> str:
    """List as many whole codes as fit (at most 8), then "..": a cut "1000.." is a wrong code."""
    codes = values["codes"].split(", ")
    for count in range(min(len(codes), _MAX_LISTED_CODES), 0, -1):
        shown = ", ".join(codes[:count]) + (", " + ELLIPSIS if count < len(codes) else "")
        text = _tidy(template.format(**{**values, "codes": shown}))
        if gsm7_length(text) <= SMS_MAX_SEPTETS:
            return text
    raise ValueError(f"no room to list even one code: {template!r}")


# ---------------------------------------------------------------------------- provider outages


_CHANNEL_NAME: Final[Mapping[Language, Mapping[str, str]]] = MappingProxyType(
    {
        "id": MappingProxyType({"sms": "SMS", "voice": "telepon"}),
        "en": MappingProxyType({"sms": "SMS", "voice": "calls"}),
    }
)


def outage_text(language: Language, *, provider: str, channel: str, since_local: str, waiting: int) -> str:
    """What supervisors are told when a provider channel has been failing for a while.

    ``since_local`` is a wall-clock time in the command center's zone ("20:30:27");
    ``waiting`` counts the pages held back, still being retried.
    """
    what = _CHANNEL_NAME[language].get(channel, channel)
    if language == "id":
        text = (
            f"PERINGATAN: {what} {_field(provider)} gagal sejak {since_local} WIB, terus dicoba ulang. "
            f"{waiting} pesan tertunda. Pantau konsol dan hubungi unit lewat radio."
        )
    else:
        text = (
            f"WARNING: {_field(provider)} {what} failing since {since_local} WIB, still retrying. "
            f"{waiting} pages held back. Watch the console and reach units by radio."
        )
    return to_gsm7(text)


def outage_twiml(language: Language, text: str) -> str:
    """The outage warning spoken twice, no keypad: there is nothing to acknowledge."""
    spoken_language, voice = VOICES[language]
    response = VoiceResponse()
    for _ in range(2):
        response.say(text, language=spoken_language, voice=voice)
    response.hangup()
    return str(response.to_xml())


# ---------------------------------------------------------------------------- why a supervisor is paged

_SUPERVISOR_REASONS: Final[Mapping[Language, Mapping[str, str]]] = MappingProxyType(
    {
        "id": MappingProxyType({"no answer": "tidak ada unit yang menjawab", "no unit": "tidak ada unit tersedia"}),
        "en": MappingProxyType({"no answer": "no unit answered", "no unit": "no unit available"}),
    }
)
_SHORTFALL = re.compile(r"^no available (police|disaster|ambulance) unit \((.*)\)$")
_SHORTFALL_PARTS: Final[Mapping[Language, Mapping[str, str]]] = MappingProxyType(
    {
        "id": MappingProxyType(
            {
                "busy": "sibuk",
                "off duty": "tidak dinas",
                "excluded": "dikecualikan",
                "none on roster": "tidak ada di daftar",
            }
        ),
        "en": MappingProxyType(
            {"busy": "busy", "off duty": "off duty", "excluded": "excluded", "none on roster": "none on the roster"}
        ),
    }
)


def supervisor_reason(language: Language, reason: str) -> str:
    """The engine's reason for paging a supervisor (its own English words) in ``language``.

    Known reasons: "no answer", "no unit", and the matcher's shortfall ("no available police
    unit (2 busy, 1 off duty)"). Anything else is passed through as written.
    """
    known = _SUPERVISOR_REASONS[language].get(reason)
    if known is not None:
        return known
    match = _SHORTFALL.match(reason)
    if match is None:
        return reason
    service = _SERVICE_SMS[language][match.group(1)]  # type: ignore[index]
    words = _SHORTFALL_PARTS[language]
    parts = []
    for part in match.group(2).split(", "):
        count, _, label = part.partition(" ")
        parts.append(f"{count} {words[label]}" if count.isdigit() and label in words else words.get(part, part))
    if language == "id":
        return f"tidak ada unit {service} tersedia ({', '.join(parts)})"
    return f"no {service} unit available ({', '.join(parts)})"


# WhatsApp refuses a template variable with a line break, a tab or more than four spaces in a row.
_CHAT_VARIABLE_MAX = 300


def _chat_value(text: str) -> str:
    return " ".join(text.split())[:_CHAT_VARIABLE_MAX]


def chat_alert_variables(
    language: Language,
    *,
    recipient: str,
    service: Service,
    code: int,
    where: str,
    distance_m: float | None,
    link: str,
    what: str | None = None,
) -> dict[str, str]:
    """The approved WhatsApp alert template's variables (responders/whatsapp.py TEMPLATE_BODY).

    ``{"1": recipient, "2": "POLISI: what, where (1,2 km)", "3": code, "4": link}``.
    """
    distance = f" ({format_distance(language, distance_m)})" if distance_m is not None else ""
    place = ", ".join(part for part in (_free_text(what or ""), _free_text(where)) if part)
    summary = f"{_SERVICE_SMS[language][service]}: {place or _UNKNOWN_WHERE[language]}{distance}"
    return {"1": _chat_value(recipient), "2": _chat_value(summary), "3": str(code), "4": link}
