"""Specification of responders.messages: what responders, supervisors and residents read and hear.

The SMS rules are the point of this file: every SMS is pure GSM-7 and fits in ONE
160-septet segment whatever we are given (300-character addresses full of emoji and
typographic quotes, 60-character links), and shortening never touches what the reader
acts on: the alert code, the reply instructions and the link.
"""

from __future__ import annotations

import re
import string
import xml.etree.ElementTree as ET
from datetime import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responders.messages import (
    GSM7_BASIC,
    GSM7_EXTENDED,
    REPLY_KEYS,
    SMS_MAX_SEPTETS,
    VOICES,
    Language,
    Service,
    alert_sms,
    alert_voice_prompt,
    format_distance,
    gsm7_length,
    pin_location,
    reply_text,
    resident_sms,
    supervisor_reason,
    supervisor_sms,
    to_gsm7,
    voice_twiml,
)
from responders.replies import Reply, parse_reply

LANGUAGES: tuple[Language, ...] = ("id", "en")
SERVICES: tuple[Service, ...] = ("police", "disaster", "ambulance")
SERVICE_NAMES = {
    "id": {"police": "POLISI", "disaster": "BPBD", "ambulance": "AMBULANS"},
    "en": {"police": "POLICE", "disaster": "DISASTER", "ambulance": "AMBULANCE"},
}
LDQUO, RDQUO, EM_DASH = "\u201c", "\u201d", "\u2014"

# 300 characters of the worst an address field can hold: accents GSM-7 has (é) and has
# not (ā), an em dash, typographic quotes, emoji.
LONG_WHERE = (
    f"Jl. Raya Bromo {LDQUO}Gang Melati{RDQUO} {EM_DASH} Kel. Kebonsari Wetan, Kanigaran, dekat Masjid Agung é ā 🚑🔥 "
) * 5
LONG_WHERE = LONG_WHERE[:300]
LONG_LINK = "https://dispatch.probolinggokota.go.id/r/" + "Ab3dE6gH9jK2mN5pQ8s"  # 60 characters
LONG_UNIT = f"Ambulans PSC 119 {LDQUO}Kota Probolinggo{RDQUO} {EM_DASH} unit cadangan 🚑 " * 4


def assert_one_gsm7_segment(text: str) -> None:
    """The SMS rule: encodable in GSM-7 (gsm7_length raises otherwise) and ≤ 160 septets."""
    assert gsm7_length(text) <= SMS_MAX_SEPTETS, (gsm7_length(text), text)


def test_long_fixtures_are_as_long_as_the_specification_says() -> None:
    assert len(LONG_WHERE) == 300
    assert len(LONG_LINK) == 60
    assert not set(LONG_WHERE) <= GSM7_BASIC | GSM7_EXTENDED


# ---------------------------------------------------------------------------- GSM-7


def test_gsm7_alphabets_have_the_standard_sizes() -> None:
    assert len(GSM7_BASIC) == 127  # 128 code points minus the escape to the extension table
    assert frozenset("^{}\\[~]|€") == GSM7_EXTENDED
    assert not GSM7_BASIC & GSM7_EXTENDED
    assert set(string.ascii_letters + string.digits + " .,:;!?#'\"()-+*/%&<=>@$_\n\r") <= GSM7_BASIC
    assert set("£¥èéùìòÇØøÅåÆæßÉÄÖÑÜäöñüà¡¿§¤\u0394\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e") <= (
        GSM7_BASIC
    )


@pytest.mark.parametrize(
    ("text", "septets"),
    [
        ("", 0),
        ("YA 12", 5),
        ("é", 1),
        ("€", 2),
        ("[12]", 6),
        ("a^b{c}d\\e~f|g", 19),
        ("^{}\\[~]|€", 18),
    ],
)
def test_extension_characters_count_two_septets(text: str, septets: int) -> None:
    assert gsm7_length(text) == septets


@pytest.mark.parametrize("text", ["ā", "ç", "👍", "\u201c", "\u2014", "\t", "`", "\x1b"])
def test_gsm7_length_refuses_characters_outside_gsm7(text: str) -> None:
    with pytest.raises(ValueError, match="not GSM-7"):
        gsm7_length("ok " + text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Jl. Panglima Sudirman", "Jl. Panglima Sudirman"),
        (f"{LDQUO}Gang Melati{RDQUO}", "'Gang Melati'"),
        ("\u2018x\u2019", "'x'"),
        (f"Kanigaran {EM_DASH} Mayangan \u2013 Wonoasih", "Kanigaran - Mayangan - Wonoasih"),
        ("Āhmad Yāni", "Ahmad Yani"),
        ("Café Ñoño", "Café Ñoño"),  # é and Ñ are GSM-7: kept, not stripped
        ("cafe\u0301", "café"),  # combining accent joined into the GSM-7 é
        ("ça va", "ca va"),  # lower-case ç is not GSM-7, Ç is
        ("🚑 Ambulans 🔥", " Ambulans "),
        ("\uff2a\uff4c. \uff11", "Jl. 1"),  # full-width letters and digits
        ("½ km", "1/2 km"),
        ("a\u00a0b\tc", "a b c"),
        ("Łódź", "Lodz"),
        ("€5 [x]", "€5 [x]"),
        ("\u0416\u0443\u043a", ""),  # other scripts are dropped
    ],
)
def test_to_gsm7_transliterates(text: str, expected: str) -> None:
    assert to_gsm7(text) == expected


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_to_gsm7_always_produces_gsm7(text: str) -> None:
    gsm7_length(to_gsm7(text))  # raises if not GSM-7


# ---------------------------------------------------------------------------- distances


@pytest.mark.parametrize(
    ("metres", "id_text", "en_text"),
    [
        (0, "0 m", "0 m"),
        (850, "850 m", "850 m"),
        (849.5, "850 m", "850 m"),
        (999.4, "999 m", "999 m"),
        (999.6, "1,0 km", "1.0 km"),  # rounds to 1000 m, so it is shown in km
        (1000, "1,0 km", "1.0 km"),
        (1234, "1,2 km", "1.2 km"),
        (1250, "1,3 km", "1.3 km"),  # half up, not to even
        (12345.6, "12,3 km", "12.3 km"),
    ],
)
def test_distance_is_metres_below_a_km_then_km_with_one_decimal(metres: float, id_text: str, en_text: str) -> None:
    assert format_distance("id", metres) == id_text
    assert format_distance("en", metres) == en_text


@pytest.mark.parametrize("metres", [-1, float("nan"), float("inf"), 5e7])
def test_impossible_distances_are_refused(metres: float) -> None:
    with pytest.raises(ValueError):
        format_distance("id", metres)


def test_alert_shows_distance_in_the_reader_language() -> None:
    common = {"service": "police", "code": 12, "where": "Jl. Suroyo", "link": "http://x/a", "incident_id": 1}
    assert "(850 m)" in alert_sms("id", distance_m=850, **common)  # type: ignore[arg-type]
    assert "(1,2 km)" in alert_sms("id", distance_m=1200, **common)  # type: ignore[arg-type]
    assert "(1.2 km)" in alert_sms("en", distance_m=1200, **common)  # type: ignore[arg-type]
    no_distance = alert_sms("id", distance_m=None, **common)  # type: ignore[arg-type]
    assert "km" not in no_distance
    assert " m)" not in no_distance


# ---------------------------------------------------------------------------- alert SMS


def test_alert_sms_reads_like_the_example() -> None:
    text = alert_sms(
        "id",
        service="police",
        code=12,
        where="Jl. Panglima Sudirman, Mangunharjo",
        distance_m=1234,
        link="http://x/a/abc",
        incident_id=345,
    )
    assert text == (
        "DARURAT POLISI #12: Jl. Panglima Sudirman, Mangunharjo (1,2 km). "
        "Balas YA 12 terima / TOLAK 12. Kejadian 345. Link: http://x/a/abc"
    )


def test_alert_sms_in_english() -> None:
    text = alert_sms(
        "en",
        service="ambulance",
        code=7,
        where="Jl. Dr. Sutomo",
        distance_m=850,
        link="http://x/a/q",
        incident_id=9,
    )
    assert text == (
        "AMBULANCE EMERGENCY #7: Jl. Dr. Sutomo (850 m). Reply YES 7 to accept / NO 7. Incident 9. Link: http://x/a/q"
    )


def instructions(language: Language, code: int) -> str:
    if language == "id":
        return f"Balas YA {code} terima / TOLAK {code}."
    return f"Reply YES {code} to accept / NO {code}."


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("code", [7, 12, 999999])
def test_alert_sms_with_long_address_and_link_fits_one_segment_and_keeps_what_matters(
    language: Language, service: Service, code: int
) -> None:
    text = alert_sms(
        language,
        service=service,
        code=code,
        where=LONG_WHERE,
        distance_m=12345.6,
        link=LONG_LINK,
        incident_id=4242,
    )
    assert_one_gsm7_segment(text)
    assert text.endswith(f"Link: {LONG_LINK}")
    assert instructions(language, code) in text
    assert f"{SERVICE_NAMES[language][service]}" in text
    assert f"#{code}" in text
    assert ("(12,3 km)" if language == "id" else "(12.3 km)") in text
    assert f"#{code}: Jl. Ra" in text  # the start of the address survives
    assert ".." in text  # and the cut is visible


def test_alert_sms_names_the_buttons_owner_as_part_of_the_address() -> None:
    text = alert_sms(
        "id",
        service="police",
        code=1,
        where="Jl. Panglima Sudirman, Mangunharjo",
        distance_m=205,
        link="http://x/a/abc",
        incident_id=12,
        button_owner="Toko Emas Sinar",
    )
    assert text == (
        "DARURAT POLISI #1: Toko Emas Sinar, Jl. Panglima Sudirman, Mangunharjo (205 m). "
        "Balas YA 1 terima / TOLAK 1. Kejadian 12. Link: http://x/a/abc"
    )


def test_alert_sms_says_what_the_112_caller_reported_after_the_place() -> None:
    text = alert_sms(
        "en",
        service="police",
        code=3,
        where="Jl. Suroyo",
        distance_m=850,
        link="http://x/a/q",
        incident_id=9,
        call_nature="perampokan, satu korban luka",
        button_owner="ignored for a call",
    )
    assert text == (
        "POLICE EMERGENCY #3: Jl. Suroyo (850 m). 112: perampokan, satu korban luka. "
        "Reply YES 3 to accept / NO 3. Incident 9. Link: http://x/a/q"
    )


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("what", [{"button_owner": "Toko Emas " * 20}, {"call_nature": "korban " * 100}])
def test_the_owner_or_the_nature_gives_way_before_the_place_and_never_breaks_the_segment(
    language: Language, what: dict[str, str]
) -> None:
    where = "Jl. Panglima Sudirman, Mangunharjo"
    text = alert_sms(
        language, service="police", code=77, where=where, distance_m=1, link=LONG_LINK, incident_id=5, **what
    )
    assert_one_gsm7_segment(text)
    assert instructions(language, 77) in text and text.endswith(f"Link: {LONG_LINK}")
    assert "Jl. Panglima Sudirman" in text  # the place keeps at least its first 30 septets


def test_a_bare_pin_reads_coordinates_first_then_the_nearest_place() -> None:
    assert pin_location("id", "-7.74660,113.22360", "Kel. Jati") == "-7.74660,113.22360 (dekat Kel. Jati)"
    assert pin_location("en", "-7.74660,113.22360", "Kel. Jati") == "-7.74660,113.22360 (near Kel. Jati)"
    assert pin_location("en", "-7.74660,113.22360", None) == "-7.74660,113.22360"
    cut = alert_sms(
        "id", service="police", code=1, where=pin_location("id", "-7.74660,113.22360", "Kel. Jati " * 10),
        distance_m=None, link=LONG_LINK, incident_id=1, call_nature="kebakaran " * 20,
    )  # fmt: skip
    assert "#1: -7.74660,113.22360 (dekat.. 112: kebakaran.. Balas" in cut  # the name is cut, never a digit


def test_voice_prompt_says_the_owner_or_what_the_caller_reported() -> None:
    owner = alert_voice_prompt(
        "id", service="police", code=1, where="Jl. Suroyo", distance_m=None, button_owner="Toko Emas Sinar"
    )
    assert "Kode 1. Tombol darurat milik Toko Emas Sinar. Lokasi: Jalan Suroyo." in owner
    nature = alert_voice_prompt(
        "en", service="police", code=1, where="Jl. Suroyo", distance_m=None, call_nature="robbery 🔪, one hurt"
    )
    assert "Code 1. 112 call: robbery, one hurt. Location: Jalan Suroyo." in nature


def test_alert_sms_keeps_a_short_address_whole() -> None:
    text = alert_sms(
        "id",
        service="disaster",
        code=3,
        where="Jl. Ahmad Yani 5",
        distance_m=None,
        link=LONG_LINK,
        incident_id=1,
    )
    assert "Jl. Ahmad Yani 5." in text
    assert ".." not in text


def test_alert_sms_drops_the_incident_number_before_cutting_the_address_short() -> None:
    where = "Jl. Panglima Sudirman No. 17, Kelurahan Mangunharjo, Kecamatan Mayangan"
    text = alert_sms("id", service="police", code=12, where=where, distance_m=1234, link=LONG_LINK, incident_id=123456)
    assert_one_gsm7_segment(text)
    assert "Kejadian" not in text
    assert "Jl. Panglima Sudirman No. 17" in text


def test_alert_sms_counts_extension_characters_twice() -> None:
    where = "[Blok C] {RT 02|RW 05} ~ " * 12  # every bracket costs 2 septets
    text = alert_sms("en", service="police", code=12, where=where, distance_m=5, link=LONG_LINK, incident_id=1)
    assert_one_gsm7_segment(text)
    assert len(text) < gsm7_length(text)


def test_alert_sms_with_an_empty_address_says_location_unknown() -> None:
    text = alert_sms("id", service="police", code=1, where=" 🚑 ", distance_m=None, link="http://x/a", incident_id=1)
    assert "lokasi belum diketahui" in text


def test_alert_sms_refuses_a_link_that_leaves_no_room() -> None:
    with pytest.raises(ValueError, match="too long"):
        alert_sms(
            "id",
            service="police",
            code=999999,
            where="x",
            distance_m=1,
            link="http://x/" + "a" * 120,
            incident_id=1,
        )


@pytest.mark.parametrize("link", ["http://x/a b", "http://x/é🚑", "", "http://x/`"])
def test_alert_sms_refuses_a_link_it_would_have_to_change(link: str) -> None:
    with pytest.raises(ValueError, match="link"):
        alert_sms("id", service="police", code=1, where="x", distance_m=1, link=link, incident_id=1)


@pytest.mark.parametrize("code", [-1, 1_000_000])
def test_alert_codes_must_be_typeable_in_a_reply(code: int) -> None:
    with pytest.raises(ValueError, match="alert code"):
        alert_sms("id", service="police", code=code, where="x", distance_m=1, link="http://x", incident_id=1)


@pytest.mark.parametrize("language", LANGUAGES)
def test_alert_reply_instructions_are_understood_by_the_reply_parser(language: Language) -> None:
    text = alert_sms(language, service="police", code=12, where="x", distance_m=1, link="http://x", incident_id=1)
    accept, decline = re.findall(r"\b([A-Z]{2,5} 12)\b", text.split("#12", 1)[1])
    assert parse_reply(accept) == Reply("accept", 12)
    assert parse_reply(decline) == Reply("decline", 12)


URL_CHARS = string.ascii_letters + string.digits + "-._~:/?#@!$&'()*+,;=%"


@settings(max_examples=300)
@given(
    language=st.sampled_from(LANGUAGES),
    service=st.sampled_from(SERVICES),
    code=st.integers(min_value=0, max_value=999_999),
    where=st.text(max_size=400),
    distance_m=st.none() | st.floats(min_value=0, max_value=2e7),
    link=st.text(alphabet=URL_CHARS, min_size=1, max_size=60),
    incident_id=st.integers(min_value=0, max_value=10**9),
)
def test_any_alert_fits_one_segment_with_link_and_instructions_intact(
    language: Language,
    service: Service,
    code: int,
    where: str,
    distance_m: float | None,
    link: str,
    incident_id: int,
) -> None:
    text = alert_sms(
        language,
        service=service,
        code=code,
        where=where,
        distance_m=distance_m,
        link=link,
        incident_id=incident_id,
    )
    assert_one_gsm7_segment(text)
    assert text.endswith(f"Link: {link}")
    assert instructions(language, code) in text


# ---------------------------------------------------------------------------- voice


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "id",
            "Darurat polisi. Kode 1 2. Lokasi: Jalan Panglima Sudirman, Kelurahan Mangunharjo. "
            "Jarak 1,2 kilometer. Tekan 1 untuk menerima, 2 untuk menolak, bintang untuk mengulang.",
        ),
        (
            "en",
            "Police emergency. Code 1 2. Location: Jalan Panglima Sudirman, Kelurahan Mangunharjo. "
            "Distance 1.2 kilometers. Press 1 to accept, 2 to decline, star to repeat.",
        ),
    ],
)
def test_voice_prompt_spells_the_code_and_ends_with_the_keypad_menu(language: Language, expected: str) -> None:
    prompt = alert_voice_prompt(
        language,
        service="police",
        code=12,
        where="Jl. Panglima Sudirman 🚑, Kel. Mangunharjo.",
        distance_m=1234,
    )
    assert prompt == expected


def test_voice_prompt_in_metres_without_distance_and_for_long_addresses() -> None:
    assert "Jarak 850 meter." in alert_voice_prompt("id", service="ambulance", code=5, where="x", distance_m=850)
    assert "850 meters." in alert_voice_prompt("en", service="ambulance", code=5, where="x", distance_m=850)
    assert "Jarak" not in alert_voice_prompt("id", service="ambulance", code=5, where="x", distance_m=None)
    assert "B P B D" in alert_voice_prompt("id", service="disaster", code=5, where="x", distance_m=None)
    assert "Code 9 0 0 1." in alert_voice_prompt("en", service="disaster", code=9001, where="x", distance_m=None)
    long_prompt = alert_voice_prompt("id", service="police", code=5, where=LONG_WHERE, distance_m=None)
    assert len(long_prompt) < 200 + 150
    assert "🚑" not in long_prompt


def parse_twiml(xml: str) -> ET.Element:
    return ET.fromstring(xml)


@pytest.mark.parametrize(
    ("language", "say_language", "voice"),
    [("id", "id-ID", "Google.id-ID-Standard-A"), ("en", "en-US", "Google.en-US-Standard-C")],
)
def test_voice_twiml_gathers_one_key_twice_then_hangs_up(language: Language, say_language: str, voice: str) -> None:
    prompt = alert_voice_prompt(language, service="police", code=12, where="Jl. Suroyo", distance_m=850)
    action = "https://dispatch.example/twilio/voice/alert?attempt=3&sig=ab"
    root = parse_twiml(voice_twiml(language, prompt=prompt, action_url=action))

    assert root.tag == "Response"
    assert [child.tag for child in root] == ["Gather", "Gather", "Say", "Hangup"]
    for gather in root.findall("Gather"):
        assert gather.attrib == {
            "numDigits": "1",
            "action": action,  # the & is escaped in the XML and comes back intact
            "method": "POST",
            "timeout": "8",
            "actionOnEmptyResult": "false",
        }
        (say,) = list(gather)
        assert say.tag == "Say"
        assert say.attrib == {"language": say_language, "voice": voice}
        assert say.text == prompt
        assert "1 2" in (say.text or "")
    assert VOICES[language] == (say_language, voice)  # what the voice webhooks reuse
    final = root.find("Say")
    assert final is not None
    assert final.attrib == {"language": say_language, "voice": voice}
    assert final.text


def test_voice_twiml_without_repeat_has_one_gather() -> None:
    root = parse_twiml(voice_twiml("id", prompt="Halo <&> 'x'", action_url="http://x/v", repeat_prompt=False))
    assert [child.tag for child in root] == ["Gather", "Say", "Hangup"]
    gather = root.find("Gather")
    assert gather is not None
    say = gather.find("Say")
    assert say is not None
    assert say.text == "Halo <&> 'x'"


# ---------------------------------------------------------------------------- supervisors and residents


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("service", SERVICES)
def test_supervisor_sms_fits_and_keeps_incident_code_and_link(language: Language, service: Service) -> None:
    text = supervisor_sms(
        language,
        service=service,
        code=999999,
        where=LONG_WHERE,
        incident_id=123456789,
        reason=LONG_WHERE,
        link=LONG_LINK,
    )
    assert_one_gsm7_segment(text)
    assert text.endswith(f"Link: {LONG_LINK}")
    assert "123456789" in text
    assert "#999999" in text
    assert SERVICE_NAMES[language][service] in text


def test_supervisor_sms_shows_a_short_reason_and_address_whole() -> None:
    text = supervisor_sms(
        "id",
        service="ambulance",
        code=12,
        where="Jl. Suroyo 3",
        incident_id=345,
        reason="tidak ada unit yang menjawab.",
        link="http://x/s/345",
    )
    assert text == (
        "PENGAWAS AMBULANS: kejadian 345 (#12) perlu tindakan. tidak ada unit yang menjawab. "
        "Lokasi: Jl. Suroyo 3. Link: http://x/s/345"
    )


def test_supervisor_sms_prefers_the_reason_to_the_address_when_space_is_short() -> None:
    text = supervisor_sms(
        "en",
        service="police",
        code=12,
        where=LONG_WHERE,
        incident_id=345,
        reason="No unit answered after 3 rounds.",
        link=LONG_LINK,
    )
    assert_one_gsm7_segment(text)
    assert "No unit answered after 3 rounds." in text


RESIDENT_STATES = ("dispatched", "unanswered", "acknowledged", "on_scene", "resolved", "cancelled")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("state", RESIDENT_STATES)
@pytest.mark.parametrize("unit_name", [None, "AMB-02", LONG_UNIT])
def test_resident_sms_fits_and_names_the_incident(language: Language, state: str, unit_name: str | None) -> None:
    text = resident_sms(language, state=state, unit_name=unit_name, distance_m=1234, incident_id=98765)  # type: ignore[arg-type]
    assert_one_gsm7_segment(text)
    assert "98765" in text
    if state != "on_scene":
        assert "112" in text
    shows_distance = state in ("dispatched", "acknowledged")
    assert (("1,2 km" if language == "id" else "1.2 km") in text) == shows_distance
    if unit_name == "AMB-02" and state in ("dispatched", "acknowledged", "on_scene"):
        assert "AMB-02" in text


def test_resident_sms_examples() -> None:
    assert resident_sms("id", state="acknowledged", unit_name="AMB-02", distance_m=850, incident_id=345) == (
        "Petugas AMB-02 (jarak 850 m) menuju lokasi Anda (kejadian 345). Tetap di tempat aman. "
        "Bila makin gawat, hubungi 112."
    )
    assert resident_sms("en", state="on_scene", unit_name=None, distance_m=None, incident_id=345) == (
        "A responder has arrived at the scene (incident 345)."
    )
    # Nobody accepted: the resident is not told help is on the way, and is pointed to 112.
    assert resident_sms("id", state="unanswered", unit_name="AMB-02", distance_m=850, incident_id=345) == (
        "Belum ada petugas yang menjawab panggilan untuk kejadian 345. Pusat komando menanganinya sekarang. "
        "Bila bisa, hubungi 112."
    )


# ---------------------------------------------------------------------------- replies to responders

LONG_PARAMS: dict[str, object] = {
    "code": 999999,
    "incident_id": 123456789,
    "where": LONG_WHERE,
    "by_unit": LONG_UNIT,
    "at_local": "08:31",
    "codes": list(range(100000, 100020)),
    "state": LONG_UNIT,
}
PARAMS_BY_KEY: dict[str, tuple[str, ...]] = {
    "accepted": ("code", "incident_id", "where"),
    "already_accepted": ("code", "by_unit", "at_local"),
    "declined": ("code",),
    "on_scene": ("code",),
    "resolved": ("code",),
    "which_alert": ("codes",),
    "no_open_alert": (),
    "unknown_code": ("code",),
    "not_understood": (),
    "unknown_number": (),
    "not_allowed": (),
    "closed": ("code", "state"),
}


def test_catalogue_has_exactly_the_specified_keys() -> None:
    assert set(PARAMS_BY_KEY) == REPLY_KEYS


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("key", sorted(PARAMS_BY_KEY))
def test_every_reply_fits_one_segment_even_with_long_params(language: Language, key: str) -> None:
    params = {name: LONG_PARAMS[name] for name in PARAMS_BY_KEY[key]}
    text = reply_text(language, key, **params)
    assert_one_gsm7_segment(text)
    if "code" in params:
        assert "999999" in text


@pytest.mark.parametrize(
    ("language", "key", "params", "expected"),
    [
        (
            "id",
            "accepted",
            {"code": 12, "incident_id": 345, "where": "Jl. Suroyo 3"},
            "Terima kasih, Anda menerima #12 (kejadian 345): Jl. Suroyo 3. "
            "Balas TIBA 12 saat tiba, SELESAI 12 bila selesai.",
        ),
        (
            "en",
            "already_accepted",
            {"code": 12, "by_unit": "AMB-02", "at_local": time(8, 31)},
            "#12 was already accepted by AMB-02 at 08:31. You do not need to go. Thank you.",
        ),
        (
            "id",
            "which_alert",
            {"codes": [12, 15]},
            "Ada beberapa peringatan terbuka untuk Anda: 12, 15. Sebutkan kodenya, mis. YA 12 atau TOLAK 12.",
        ),
        (
            "id",
            "closed",
            {"code": 12, "state": "cancelled"},
            "#12 sudah ditutup (dibatalkan). Tidak perlu tindakan.",
        ),
        (
            "en",
            "closed",
            {"code": 12, "state": "resolved"},
            "#12 is already closed (resolved). No action needed.",
        ),
        (
            "en",
            "unknown_code",
            {"code": 99},
            "Code #99 is unknown or not for you. Check the code in the alert SMS.",
        ),
    ],
)
def test_reply_examples(language: Language, key: str, params: dict[str, object], expected: str) -> None:
    assert reply_text(language, key, **params) == expected


def test_which_alert_lists_at_most_eight_codes() -> None:
    text = reply_text("en", "which_alert", codes=list(range(1, 21)))
    assert "1, 2, 3, 4, 5, 6, 7, 8, .." in text
    assert "9," not in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_not_understood_shows_a_grammar_the_parser_understands(language: Language) -> None:
    text = reply_text(language, "not_understood")
    examples = re.findall(r"\b([A-Z]{2,} 12)\b", text)
    assert {parse_reply(example) for example in examples} == {
        Reply("accept", 12),
        Reply("decline", 12),
        Reply("on_scene", 12),
        Reply("resolved", 12),
    }


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("key", ["accepted", "on_scene"])
def test_follow_up_instructions_are_understood_by_the_parser(language: Language, key: str) -> None:
    params = {name: LONG_PARAMS[name] for name in PARAMS_BY_KEY[key]} | {"code": 12}
    text = reply_text(language, key, **params)
    for example in re.findall(r"\b([A-Z]{2,} 12)\b", text):
        assert isinstance(parse_reply(example), Reply)


def test_unknown_key_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        reply_text("id", "acepted", code=1, incident_id=1, where="x")


def test_params_a_key_does_not_use_are_ignored() -> None:
    # Callers pass one dict of facts, e.g. {"code", "incident_id"} for every key.
    assert reply_text("en", "declined", code=1, incident_id=2) == reply_text("en", "declined", code=1)
    assert reply_text("en", "no_open_alert", code=1) == "You have no open alert right now."


def test_missing_or_mistyped_params_are_type_errors() -> None:
    with pytest.raises(TypeError, match="missing"):
        reply_text("id", "declined")
    with pytest.raises(TypeError, match="missing"):
        reply_text("id", "accepted", code=1, incidentid=2, where="x")
    with pytest.raises(TypeError):
        reply_text("id", "declined", code="12")
    with pytest.raises(ValueError):
        reply_text("id", "which_alert", codes=[])


@pytest.mark.parametrize(
    ("reason", "indonesian", "english"),
    [
        ("no answer", "tidak ada unit yang menjawab", "no unit answered"),
        ("no unit", "tidak ada unit tersedia", "no unit available"),
        (
            "no available police unit (2 busy, 1 off duty, 1 excluded)",
            "tidak ada unit POLISI tersedia (2 sibuk, 1 tidak dinas, 1 dikecualikan)",
            "no POLICE unit available (2 busy, 1 off duty, 1 excluded)",
        ),
        (
            "no available ambulance unit (none on roster)",
            "tidak ada unit AMBULANS tersedia (tidak ada di daftar)",
            None,
        ),
    ],
)
def test_a_supervisor_reads_why_in_the_language_of_the_rest_of_the_sms(
    reason: str, indonesian: str, english: str
) -> None:
    assert supervisor_reason("id", reason) == indonesian
    if english:
        assert supervisor_reason("en", reason) == english
    text = supervisor_sms(
        "id",
        service="police",
        code=3,
        where="Jl. Mastrip",
        incident_id=7,
        reason=supervisor_reason("id", reason),
        link="https://x.example/a/t",
    )
    assert "no answer" not in text and "busy" not in text
