"""What a paged responder reads and hears: whose button, what the 112 caller said, where a bare pin is.

Through the real broker, database and twilio SDK against the built-in sandbox.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import requests
from sqlalchemy.orm import Session, sessionmaker

from dispatch.models import Incident
from dispatch.service import DispatchService
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, api_token, calls_to, fast_escalation, sandbox, texts_to
from tests.test_responder_loop import press

Start = Callable[..., DispatchService]
POLICY = [
    {"after_s": 0, "action": "notify_unit", "channels": ["sms", "voice"]},
    {"after_s": 300, "action": "supervisor", "channels": ["sms"]},
]


def link_page(sms: str) -> str:
    page = requests.get(sms[sms.index("http") :].split()[0], timeout=20)
    assert page.status_code == 200
    return html.unescape(page.text)


def field(page: str, label: str) -> str:
    match = re.search(rf"<dt>{re.escape(label)}</dt><dd>([^<]*)</dd>", page)
    assert match, f"no {label!r} on the link page"
    return match.group(1)


def test_a_button_alert_names_its_owner_in_the_sms_the_call_and_the_link(
    start_service: Start, roster: None, broker_url: str
) -> None:
    service = start_service(escalation=fast_escalation(POLICY))
    store = sandbox(service)
    press(broker_url, "BTN-0001")
    [sms] = eventually(lambda: texts_to(store, UNIT_PHONES["POL-01"]))
    [call] = eventually(lambda: calls_to(store, UNIT_PHONES["POL-01"]))
    code = re.search(r"#(\d+):", sms)
    assert code and "Toko Emas Sinar, Jl. Panglima Sudirman" in sms
    assert call.twiml and "Tombol darurat milik Toko Emas Sinar." in call.twiml
    page = link_page(sms)
    assert field(page, "Kode") == code.group(1)  # the same code as the SMS
    assert field(page, "Tombol milik") == "Toko Emas Sinar"
    assert field(page, "Layanan") == "Polisi"
    assert field(page, "Lokasi") == "Jl. Panglima Sudirman, Mangunharjo"


def test_a_112_call_with_only_a_pin_says_what_happened_and_the_nearest_place(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    token = api_token(sessions, "rina", "call_taker")
    service = start_service(escalation=fast_escalation(POLICY))
    store = sandbox(service)
    call = {
        "call_id": "C-PIN",
        "services": ["police"],
        "priority": 1,
        "lat": -7.7466,
        "lon": 113.2236,
        "description": "perampokan, satu korban luka",
    }
    answer = requests.post(
        f"http://127.0.0.1:{service.web_port}/api/calls",
        json=call,
        headers={"Authorization": f"Bearer {token}"},
        timeout=20,
    )
    assert answer.status_code == 201
    [sms] = eventually(lambda: texts_to(store, UNIT_PHONES["POL-02"]))  # the nearest police unit
    assert "-7.74660,113.22360 (dekat Kel. Jati)" in sms
    assert "112: perampokan.. Balas YA" in sms  # the place comes first; the nature gets what room is left
    [voice] = eventually(lambda: calls_to(store, UNIT_PHONES["POL-02"]))
    assert voice.twiml and "Panggilan 112: perampokan, satu korban luka." in voice.twiml
    page = link_page(sms)
    assert field(page, "Laporan 112") == "perampokan, satu korban luka"
    assert field(page, "Prioritas") == "1"
    assert field(page, "Lokasi") == "-7.74660,113.22360 (dekat Kel. Jati)"
    assert "Tombol milik" not in page  # only fields with a value
    with sessions() as session:
        incident = session.get_one(Incident, 1)
        assert (incident.geocode["near"], incident.geocode["near_of"]) == ("Kel. Jati", [-7.7466, 113.2236])
