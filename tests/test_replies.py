"""Specification of responders.replies: how a responder's SMS reply is read.

The table below is the contract: real-looking replies as responders in Kota Probolinggo
type them (Indonesian and English, hurried, on a phone keyboard) and what the backend must
understand from each.  When in doubt the answer is Unparsed: the responder is asked again,
which costs seconds; a misread accept sends the wrong unit, or none.
"""

from __future__ import annotations

import random
import unicodedata
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responders.replies import (
    HARMLESS_WORDS,
    LEAD_WORDS,
    MAX_REPLY_CHARS,
    QUANTITY_UNITS,
    VERB_SPELLINGS,
    Reply,
    Unparsed,
    Verb,
    parse_reply,
)

ACCEPT: Final = "accept"
DECLINE: Final = "decline"
ON_SCENE: Final = "on_scene"
RESOLVED: Final = "resolved"

# (reply as typed, expected verb and code); None means "must be Unparsed".
REPLIES: list[tuple[str, tuple[Verb, int | None] | None]] = [
    # --- the plain forms the alert SMS asks for
    ("YA 12", (ACCEPT, 12)),
    ("TOLAK 12", (DECLINE, 12)),
    ("TIBA 12", (ON_SCENE, 12)),
    ("SELESAI 12", (RESOLVED, 12)),
    ("YES 12", (ACCEPT, 12)),
    ("NO 12", (DECLINE, 12)),
    ("ARRIVED 12", (ON_SCENE, 12)),
    ("DONE 12", (RESOLVED, 12)),
    # --- case, spacing and punctuation do not matter
    ("y 12", (ACCEPT, 12)),
    ("Y12", (ACCEPT, 12)),
    (" ya, 12 ", (ACCEPT, 12)),
    ("OK #12", (ACCEPT, 12)),
    ("ok#12", (ACCEPT, 12)),
    ("terima 12.", (ACCEPT, 12)),
    ("Siap: 7!", (ACCEPT, 7)),
    ("oke  ,  305", (ACCEPT, 305)),
    ("Accept 999999", (ACCEPT, 999999)),
    ("n 4", (DECLINE, 4)),
    ("Tidak 4", (DECLINE, 4)),
    ("decline #4.", (DECLINE, 4)),
    ("Sampai 12", (ON_SCENE, 12)),
    ("beres 12!!", (RESOLVED, 12)),
    ("YA 012", (ACCEPT, 12)),
    # --- emoji, quotes and stretched letters around a real answer
    ("👍 Y 12", (ACCEPT, 12)),
    ("\u201cOK 12\u201d", (ACCEPT, 12)),
    ("'ya 12' 🙏🙏", (ACCEPT, 12)),
    ("Siaaap 12", (ACCEPT, 12)),
    ("yaaa 12", (ACCEPT, 12)),
    ("okee 9", (ACCEPT, 9)),
    ("Iya 12", (ACCEPT, 12)),
    ("tdk 12", (DECLINE, 12)),
    ("\uff39\uff21 \uff11\uff12", (ACCEPT, 12)),  # full-width "YA 12" from some keyboards
    # --- a bare verb: the caller decides which alert (the only open one, or asks)
    ("Y", (ACCEPT, None)),
    ("ya", (ACCEPT, None)),
    ("Siap ndan!", (ACCEPT, None)),
    ("Siap, laksanakan", (ACCEPT, None)),
    ("ok otw", (ACCEPT, None)),
    ("Tidak bisa", (DECLINE, None)),
    ("sudah tiba", (ON_SCENE, None)),
    ("Selesai pak", (RESOLVED, None)),
    # --- harmless words between verb and code, chatter after the code
    ("Y 12 otw", (ACCEPT, 12)),
    ("YA 3 meluncur", (ACCEPT, 3)),
    ("Siap ndan 14, meluncur ke TKP", (ACCEPT, 14)),
    ("ok kode 12", (ACCEPT, 12)),
    ("Izin lapor ndan, sudah tiba di TKP 12", (ON_SCENE, 12)),
    ("Siap, terima kasih. 12", (ACCEPT, 12)),
    ("Y 12 otw 5 menit", (ACCEPT, 12)),
    ("OK 12 sampai 10mnt lagi", (ACCEPT, 12)),
    ("YA 12 tidak ada kendala", (ACCEPT, 12)),
    ("Done 12, pasien sudah dibawa ke RSUD", (RESOLVED, 12)),
    ("selesai 8 thank you", (RESOLVED, 8)),
    # Police slang "86" ("understood") is a word after an accept verb, never a code.
    ("Siap 86", (ACCEPT, None)),
    ("SIAP 86 ndan, meluncur", (ACCEPT, None)),
    ("Siap 86, 12", (ACCEPT, 12)),
    ("TIBA 86", (ON_SCENE, 86)),  # only after accept: elsewhere it is a number like any other
    # --- must NOT be read as an answer
    ("", None),
    ("   ", None),
    ("👍", None),
    ("hallo", None),
    ("Terima kasih", None),  # "thank you", not "accept"
    ("TERIMA KASIH 12", None),
    ("thank you", None),
    ("Sampai jumpa", None),  # "see you"
    ("Tidak tahu", None),  # "don't know"
    ("No way", None),
    ("12", None),
    ("12 ya", None),  # code before verb
    ("5 menit lagi sampai", None),
    ("tiba 5 menit lagi", None),  # arriving in 5 minutes is not on scene at alert 5
    ("Y 12 13", None),
    ("Y 12, 13", None),
    ("ok 12 dan 15", None),
    ("Ya tidak", None),
    ("OK tolak 12", None),
    ("Y 1O", None),  # letter O typed for a zero
    ("Y 12a", None),
    ("Y 1234567", None),
    ("Y 081234567890", None),  # a phone number is not a code
    ("Yuk 12", None),
    ("Oke deh, nanti saya cek", None),
]


@pytest.mark.parametrize(("text", "expected"), REPLIES, ids=[repr(text) for text, _ in REPLIES])
def test_reply_table(text: str, expected: tuple[Verb, int | None] | None) -> None:
    result = parse_reply(text)
    if expected is None:
        assert isinstance(result, Unparsed), result
        assert result.reason
    else:
        assert result == Reply(*expected)


def test_table_is_large_enough_to_be_a_specification() -> None:
    assert len(REPLIES) >= 40
    assert len({text for text, _ in REPLIES}) == len(REPLIES), "duplicate rows"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("hallo", "no verb recognised in 'hallo'"),
        ("", "empty reply"),
        ("Y 12 13", "several codes"),
        ("Terima kasih", "'terima kasih' (thank you) is not an answer"),
        ("Ya tidak", "conflicting verbs accept and decline"),
        ("Sampai jumpa", "unexpected word 'jumpa' after on_scene"),
        ("12 ya", "code before verb in '12 ya'"),
        ("tiba 5 menit", "'5 menit' is a quantity, not a code"),
        ("Y 1234567", "code 1234567 longer than 6 digits"),
    ],
)
def test_reasons_are_short_english_for_logs(text: str, reason: str) -> None:
    assert parse_reply(text) == Unparsed(reason)


def test_reason_quotes_at_most_40_characters_of_the_reply() -> None:
    result = parse_reply("halo " * 30)
    assert isinstance(result, Unparsed)
    assert len(result.reason) < 70


def test_only_the_first_160_characters_are_considered() -> None:
    padding = "Y 12" + " otw" * ((MAX_REPLY_CHARS - 4) // 4)
    assert len(padding) <= MAX_REPLY_CHARS
    beyond = padding.ljust(MAX_REPLY_CHARS) + " 13"  # a second code past the limit is not read
    assert parse_reply(beyond) == Reply("accept", 12)
    assert parse_reply(" " * MAX_REPLY_CHARS + "Y 12") == Unparsed("empty reply")


def test_word_lists_do_not_overlap_with_verbs() -> None:
    spellings = {s.casefold() for spellings in VERB_SPELLINGS.values() for s in spellings}
    assert not spellings & LEAD_WORDS
    assert not spellings & HARMLESS_WORDS
    assert not spellings & QUANTITY_UNITS


def test_squeezed_spellings_do_not_collide_between_verbs() -> None:
    # Squeezing "accept" to "acept" must not make it equal to another verb's spelling.
    seen: dict[str, str] = {}
    for verb, spellings in VERB_SPELLINGS.items():
        for spelling in spellings:
            result = parse_reply(spelling)
            assert result == Reply(verb, None), spelling
            seen[spelling] = verb
    assert len(seen) == sum(len(s) for s in VERB_SPELLINGS.values())


# ---------------------------------------------------------------------------- properties


def _not_alphanumeric(char: str) -> bool:
    # "Ⓐ" or "℃" decompose to letters and would legitimately change the reply.
    return not any(c.isalnum() for c in unicodedata.normalize("NFKD", char))


NOISE = st.text(
    alphabet=st.characters(categories=("P", "S", "Zs")).filter(_not_alphanumeric),
    max_size=12,
)
SEPARATORS = st.sampled_from(["", " ", "  ", "#", " #", ": ", ", ", ". ", "-", " \u2014 "])


# Every code an alert can carry (86 is never allocated: it is slang for "understood").
CODES = st.integers(min_value=0, max_value=999_999).filter(lambda c: c != 86)


@st.composite
def any_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(word, flips, strict=True))


@settings(max_examples=400)
@given(data=st.data(), code=CODES)
def test_every_spelling_with_a_code_round_trips(data: st.DataObject, code: int) -> None:
    verb = data.draw(st.sampled_from(list(VERB_SPELLINGS)))
    spelling = data.draw(any_case(data.draw(st.sampled_from(VERB_SPELLINGS[verb]))))
    before, after = data.draw(NOISE), data.draw(NOISE)
    separator = data.draw(SEPARATORS)
    assert parse_reply(f"{before}{spelling}{separator}{code}{after}") == Reply(verb, code)


@settings(max_examples=200)
@given(verb=st.sampled_from(list(VERB_SPELLINGS)), code=CODES)
def test_plain_verb_space_code_round_trips_for_every_spelling(verb: Verb, code: int) -> None:
    for spelling in VERB_SPELLINGS[verb]:
        for text in (spelling, spelling.lower(), spelling.title()):
            assert parse_reply(f"{text} {code}") == Reply(verb, code)


@settings(max_examples=500)
@given(text=st.text(max_size=300))
def test_never_raises_on_arbitrary_text(text: str) -> None:
    result = parse_reply(text)
    assert isinstance(result, Reply | Unparsed)
    if isinstance(result, Reply) and result.code is not None:
        assert 0 <= result.code <= 999_999


@settings(max_examples=300)
@given(
    words=st.lists(
        st.sampled_from(
            [w for s in VERB_SPELLINGS.values() for w in s]
            + sorted(HARMLESS_WORDS)
            + ["kasih", "12", "7", "13", "5", "menit", "jumpa", "#", ",", "👍"]
        ),
        max_size=8,
    )
)
def test_never_raises_on_grammar_like_word_salad(words: list[str]) -> None:
    text = " ".join(words)
    result = parse_reply(text)
    assert isinstance(result, Reply | Unparsed)
    # Whatever it is, a reply is never read with a code the text does not contain.
    if isinstance(result, Reply) and result.code is not None:
        assert str(result.code) in text


def test_random_shuffles_of_an_accept_and_a_decline_are_never_a_reply() -> None:
    rng = random.Random(112)
    for _ in range(200):
        words = ["ya", "tolak", "pak", "otw"]
        rng.shuffle(words)
        # With both verbs before any code, there is no single answer.
        assert isinstance(parse_reply(" ".join(words) + " 12"), Unparsed)
