"""The SMS reply grammar: what a field responder may text back to an alert.

A responder answers an alert SMS with a verb and, usually, the alert code printed in
that SMS: ``YA 12`` (accept alert 12), ``TOLAK 12``, ``TIBA 12``, ``SELESAI 12``.  Replies
are typed in a hurry on a phone keyboard, so the grammar is forgiving about spelling
noise (case, spaces, punctuation, emoji, stretched letters like ``Siaaap``) and strict
about meaning: when a reply could be read two ways it is :class:`Unparsed`, because
asking the responder again costs seconds while acting on a misread answer can send the
wrong unit, or none, to an emergency.

Grammar, after normalisation (see :func:`parse_reply`)::

    reply   = lead* verb filler* [code tail*]
    lead    = polite/report words that may open a message ("izin", "lapor", "ndan", "sudah")
    verb    = one spelling from VERB_SPELLINGS (more spellings of the same verb may follow)
    filler  = a word from HARMLESS_WORDS, or the phrase "terima kasih" / "thank you"
    code    = 1..6 digits, separated from the verb by anything or nothing ("Y12", "OK #12")
    tail    = anything; only another bare number in it makes the reply ambiguous

Decisions worth knowing:

* ``TERIMA KASIH`` ("thank you") starts with the accept verb TERIMA but is *not* an
  accept: people answer the confirmation SMS with it.  A reply opening with it is
  Unparsed, even with a code after it.  After a real verb it is a harmless filler
  ("Siap, terima kasih 12" is accept 12).
* A number followed by a unit of time or distance ("5 menit", "2 km") is a quantity,
  never a code: "TIBA 5 menit lagi" (arriving in 5 minutes) is Unparsed, not
  "on scene at alert 5".  After the code such quantities are ignored ("Y 12 otw 5 mnt").
* The code must follow the verb.  "12 YA" is Unparsed: a leading number is too often
  part of a sentence ("5 menit lagi sampai").
* Words after the code are ignored, even verbs ("YA 12 tidak ada kendala" - "no
  problems" - is accept 12); a second bare number anywhere is "several codes".
* A code glued to letters on its right ("12a", "1O" with a letter O) is Unparsed: it
  is most often a typo for a digit.
* Letters repeated in a row are squeezed before matching ("Yaaa", "Siaaap", "okee"), so
  every spelling is matched in its squeezed form.
* Besides the agreed spellings, accept also knows ``IYA`` and ``OKAY`` and decline
  ``TDK``: very common in Indonesian and English texting, and unambiguous.
* Police radio slang "86" means "understood": after an accept verb it is a word, not a
  code, so "SIAP 86" is a bare accept and "SIAP 86, 12" accepts alert 12.  Alert codes
  are never allocated as 86 (``dispatch.alerts``), so this costs nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Verb = Literal["accept", "decline", "on_scene", "resolved"]

# Only the start of a reply is read: an SMS segment is 160 characters, and a verb and
# code always come first, so longer text is chatter that cannot change the meaning.
MAX_REPLY_CHARS: Final = 160
# Alert codes are printed with at most this many digits (see responders.messages).
MAX_CODE_DIGITS: Final = 6

VERB_SPELLINGS: Final[Mapping[Verb, tuple[str, ...]]] = MappingProxyType(
    {
        "accept": ("Y", "YA", "IYA", "YES", "OK", "OKE", "OKAY", "SIAP", "TERIMA", "ACCEPT"),
        "decline": ("N", "NO", "TIDAK", "TDK", "TOLAK", "DECLINE"),
        "on_scene": ("TIBA", "SAMPAI", "ARRIVED"),
        "resolved": ("SELESAI", "BERES", "DONE"),
    }
)

# Words that may open a reply before the verb: Indonesian radio/report etiquette
# ("Izin lapor ndan, sudah tiba 12") and "sudah" (already), which naturally precedes
# TIBA / SAMPAI / SELESAI.  Kept small on purpose: each entry widens what is accepted.
LEAD_WORDS: Final[frozenset[str]] = frozenset(
    {"izin", "ijin", "lapor", "pak", "bu", "ndan", "dan", "komandan", "sudah", "udah", "sdh", "dah"}
)

# Words that may sit between the verb and the code (or follow a bare verb) without
# changing the answer: forms of address, thanks, "on the way", "at the scene",
# "can (not)", and words that announce the code.  A word outside this set after the
# verb makes the reply Unparsed ("sampai jumpa" = "see you", "tidak tahu" = "don't know").
HARMLESS_WORDS: Final[frozenset[str]] = frozenset(
    {
        # address
        "pak", "bu", "bapak", "ibu", "ndan", "dan", "komandan", "bos", "boss", "min", "admin",
        "kak", "mas", "mbak", "bang", "sir",
        # thanks / acknowledgement
        "makasih", "trims", "tq", "thx", "tks", "thanks", "thank", "you", "laksanakan",
        "noted", "copy",
        # on the way / moving
        "otw", "omw", "meluncur", "segera", "berangkat", "jalan", "menuju", "coming", "going",
        # at the scene / already / can
        "di", "ke", "lokasi", "tkp", "sudah", "udah", "sdh", "dah", "already", "sini", "here",
        "bisa",
        # words announcing the code
        "kode", "code", "nomor", "nmr", "alert",
    }
)  # fmt: skip

# A number followed by one of these is an amount of time or distance, not a code.
QUANTITY_UNITS: Final[frozenset[str]] = frozenset(
    {
        "menit", "mnt", "min", "mins", "minute", "minutes", "jam", "detik", "dtk", "sec", "secs",
        "km", "m", "meter", "meters", "metre", "metres",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Reply:
    """A recognised reply: the verb and the alert code typed with it (None if bare)."""

    verb: Verb
    code: int | None


@dataclass(frozen=True)
class Unparsed:
    """A reply we will not act on; ``reason`` is a short English explanation for logs."""

    reason: str


def _squeeze(word: str) -> str:
    """Collapse runs of one letter ("siaaap" -> "siap") so stretched spellings match."""
    return re.sub(r"(.)\1+", r"\1", word)


_VERB_BY_WORD: Final[Mapping[str, Verb]] = MappingProxyType(
    {_squeeze(spelling.casefold()): verb for verb, spellings in VERB_SPELLINGS.items() for spelling in spellings}
)
_LEAD: Final = frozenset(_squeeze(w) for w in LEAD_WORDS)
_HARMLESS: Final = frozenset(_squeeze(w) for w in HARMLESS_WORDS)
_UNITS: Final = frozenset(_squeeze(w) for w in QUANTITY_UNITS)
# "terima kasih" and "thank you" are matched as phrases: their first word alone means
# something else ("terima" = accept).
_THANKS_PHRASES: Final = (("terima", "kasih"), ("thank", "you"))

# "86": police radio slang for "understood" (SIAP 86), never an alert code.
SLANG_UNDERSTOOD: Final = "86"

# Letters (any script) or decimal digits (any script: int() reads them).  Everything else
# - spaces, punctuation, emoji, quotes - only separates tokens.
_TOKEN = re.compile(r"(?P<num>\d+)|(?P<word>[^\W\d_]+)")


@dataclass(frozen=True)
class _Token:
    text: str  # squeezed, casefolded word, or the digits as typed
    is_number: bool
    start: int
    end: int


def _normalise(text: str) -> str:
    """Compatibility-decompose, drop accents, casefold: full-width "YA", "Yá" and "ya" are one word."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _tokens(text: str) -> list[_Token]:
    result = []
    for match in _TOKEN.finditer(_normalise(text)):
        if match.group("num") is not None:
            result.append(_Token(match.group("num"), True, match.start(), match.end()))
        else:
            result.append(_Token(_squeeze(match.group("word")), False, match.start(), match.end()))
    return result


def _shown(text: str) -> str:
    """The reply as quoted in a reason: trimmed so log lines stay short."""
    text = text.strip()
    return text if len(text) <= 40 else text[:37] + "..."


def _is_quantity(tokens: list[_Token], i: int) -> bool:
    return i + 1 < len(tokens) and not tokens[i + 1].is_number and tokens[i + 1].text in _UNITS


def _thanks_at(tokens: list[_Token], i: int) -> bool:
    for phrase in _THANKS_PHRASES:
        window = tokens[i : i + len(phrase)]
        if len(window) == len(phrase) and all(
            not t.is_number and t.text == w for t, w in zip(window, phrase, strict=True)
        ):
            return True
    return False


def parse_reply(text: str) -> Reply | Unparsed:
    """Read a responder's SMS reply as a verb and an optional alert code.

    Only the first ``MAX_REPLY_CHARS`` characters are considered.  Never raises: any
    text that is not clearly one answer comes back as :class:`Unparsed` with a reason.

    >>> parse_reply(" ya, 12 ")
    Reply(verb='accept', code=12)
    >>> parse_reply("Terima kasih")
    Unparsed(reason="'terima kasih' (thank you) is not an answer")
    """
    text = text[:MAX_REPLY_CHARS]
    tokens = _tokens(text)
    if not tokens:
        # Only spaces, punctuation or emoji: a thumbs-up is not an answer to act on.
        return Unparsed("empty reply" if not text.strip() else f"no words or numbers in {_shown(text)!r}")

    i = 0
    while i < len(tokens) and not tokens[i].is_number and tokens[i].text in _LEAD:
        # Lead words and verb spellings are disjoint (tested), so this never skips a verb.
        i += 1
    if i == len(tokens):
        return Unparsed(f"no verb recognised in {_shown(text)!r}")
    first = tokens[i]
    if first.is_number:
        return Unparsed(f"code before verb in {_shown(text)!r}")
    if _thanks_at(tokens, i):
        return Unparsed("'terima kasih' (thank you) is not an answer")
    verb = _VERB_BY_WORD.get(first.text)
    if verb is None:
        return Unparsed(f"no verb recognised in {_shown(text)!r}")
    i += 1

    # Between the verb and the code: only repeats of the same verb and harmless words.
    code_index: int | None = None
    while i < len(tokens):
        token = tokens[i]
        if token.is_number and token.text == SLANG_UNDERSTOOD and verb == "accept":
            i += 1
            continue
        if token.is_number:
            if _is_quantity(tokens, i):
                return Unparsed(f"'{token.text} {tokens[i + 1].text}' is a quantity, not a code")
            code_index = i
            break
        if _thanks_at(tokens, i):
            i += 2
            continue
        other = _VERB_BY_WORD.get(token.text)
        if other is not None and other != verb:
            return Unparsed(f"conflicting verbs {verb} and {other}")
        if other is None and token.text not in _HARMLESS:
            return Unparsed(f"unexpected word {token.text!r} after {verb}")
        i += 1

    if code_index is None:
        return Reply(verb, None)

    code = tokens[code_index]
    if len(code.text) > MAX_CODE_DIGITS:
        return Unparsed(f"code {code.text} longer than {MAX_CODE_DIGITS} digits")
    after = tokens[code_index + 1] if code_index + 1 < len(tokens) else None
    if after is not None and not after.is_number and after.start == code.end:
        # "12a", "1O2": digits glued to letters are most often a mistyped code.
        return Unparsed(f"code {code.text}{after.text} mixes digits and letters")

    # The tail is free text ("otw", "meluncur"), except that another bare number means
    # the responder named several alerts and we cannot guess which.
    for j in range(code_index + 1, len(tokens)):
        if tokens[j].is_number and not _is_quantity(tokens, j):
            return Unparsed("several codes")
    return Reply(verb, int(code.text))


_BUTTON = re.compile(r"^(accept|decline):([0-9]{1,6})$")  # ASCII digits: our own payloads


def parse_button(payload: str) -> Reply | Unparsed:
    """A quick-reply button's payload (``accept:12``, ``decline:12``: the alert template's buttons)."""
    match = _BUTTON.match(payload.strip())
    if match is None:
        return Unparsed("not one of our buttons")
    verb: Verb = "accept" if match.group(1) == "accept" else "decline"
    return Reply(verb, int(match.group(2)))
