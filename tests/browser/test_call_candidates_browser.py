"""An address whose parts disagree, in a real browser: both places on the map, the call-taker chooses.

"Jl. Soekarno-Hatta, Kel. Kedopok": the street's points (its middle in Kec. Kademangan, one in
Kel. Jati) are none of them in Kedopok, 4.2 km south. The geocoder picks the street's middle with
a confidence below auto-dispatch; the console must show both places and dispatch only to the
one a person chose.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from dispatch.models import Incident
from tests.browser.conftest import Console, shot
from tests.browser.test_console_browser import Page, StartConsole, expect, incident_ids, login
from tests.responder_helpers import kinds

ADDRESS = "Jl. Soekarno-Hatta, Kel. Kedopok"
WARNING = "Bagian alamat tidak cocok: Jl. Soekarno-Hatta ada di Kec. Kademangan, 4,2 km dari Kel. Kedopok"
PICK = (-7.749, 113.196)  # the street's middle, the geocoder's pick
KEDOPOK = (-7.787, 113.196)


def assert_two_places_apart(map_box: Any) -> None:
    """Two numbered markers, each labelled, and no marker or label covering another."""
    markers = map_box.locator(".candidate-marker")
    labels = map_box.locator(".candidate-label")
    expect(markers).to_have_count(2)
    expect(labels.nth(0)).to_have_text("1 · Jl. Soekarno-Hatta (Kec. Kademangan)")
    expect(labels.nth(1)).to_have_text("2 · Kel. Kedopok")
    expect(markers.nth(0)).to_have_class(re.compile(r"\bpicked\b"))  # the geocoder's pick looks different
    expect(markers.nth(1)).not_to_have_class(re.compile(r"\bpicked\b"))
    frame = map_box.bounding_box()
    boxes = [box for box in (item.bounding_box() for item in (*markers.all(), *labels.all())) if box]
    assert frame is not None and len(boxes) == 4
    for box in boxes:  # all of them inside the map
        assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"], box
        assert frame["y"] <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"], box
    for a, b in itertools.combinations(boxes, 2):
        apart = (
            a["x"] + a["width"] <= b["x"]
            or b["x"] + b["width"] <= a["x"]
            or a["y"] + a["height"] <= b["y"]
            or b["y"] + b["height"] <= a["y"]
        )
        assert apart, (a, b)


def located(console: Console, incident_id: int) -> tuple[float | None, float | None, str | None, bool, bool]:
    with console.sessions() as session:
        incident = session.get_one(Incident, incident_id)
        return incident.lat, incident.lon, incident.location_source, incident.location_needed, incident.needs_review


def call_form(start_console: StartConsole, page: Page) -> Console:
    """A call-taker at the call form, police asked for, the disagreeing address typed in."""
    console = start_console()
    login(page, console, "rina")
    page.click("nav >> text=Catat 112")
    page.check("input[name=services][value=police]")
    page.fill("#address", ADDRESS)
    return console


def test_the_call_form_shows_both_places_and_logs_the_call_at_the_one_chosen(
    start_console: StartConsole, page: Page
) -> None:
    console = call_form(start_console, page)
    page.click("#geocode")
    expect(page.locator("#geocode-warning")).to_contain_text(WARNING)
    expect(page.locator("#geocode-warning")).to_contain_text("pilih lokasi di peta")
    expect(page.locator("#geocode-result")).to_have_class(re.compile(r"\bwarn\b"))  # found, but not green
    assert_two_places_apart(page.locator("#call-map"))
    buttons = page.locator("#candidate-buttons button")
    expect(buttons).to_have_text(
        ["Pilih 1: Jl. Soekarno-Hatta (Kec. Kademangan) · hasil cari alamat", "Pilih 2: Kel. Kedopok"]
    )

    page.locator("#call-map .candidate-marker").nth(1).click()  # the caller said Kedopok: a click on its marker
    assert (page.input_value("#pin-lat"), page.input_value("#pin-lon")) == ("-7.787000", "113.196000")
    assert page.input_value("#pin-source") == "operator"
    expect(buttons.nth(1)).to_have_attribute("aria-pressed", "true")
    expect(buttons.nth(0)).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#candidate-chosen")).to_contain_text("Lokasi dipilih: Kel. Kedopok")
    shot(page, "call_form_address_disagrees")

    page.click("#log-call")
    expect(page.locator("#incident-state")).to_have_attribute("data-state", "dispatched", timeout=5_000)
    incident_id = incident_ids(console)[-1]
    assert located(console, incident_id) == (*KEDOPOK, "operator", False, False)
    events = kinds(console.sessions, incident_id)
    assert "location_overridden" in events and "flagged_for_review" not in events
    expect(page.locator("#incident-choices")).to_have_count(0)  # nothing left to choose


@pytest.mark.parametrize("by", ["button", "marker"])
def test_the_incident_page_of_a_call_logged_without_choosing_offers_the_same_places(
    start_console: StartConsole, page: Page, by: str
) -> None:
    console = call_form(start_console, page)
    page.click("#log-call")  # no preview, no pin: the address alone
    expect(page.locator("#incident-state")).to_be_visible()
    incident_id = incident_ids(console)[-1]
    assert located(console, incident_id) == (None, None, None, True, True)  # "location needed"
    expect(page.locator("#geocode-warning")).to_contain_text(WARNING)
    assert_two_places_apart(page.locator("#incident-map"))
    choices = page.locator("#incident-choices button")
    expect(choices).to_have_text(
        ["Pilih 1: Jl. Soekarno-Hatta (Kec. Kademangan) · hasil cari alamat", "Pilih 2: Kel. Kedopok"]
    )
    if by == "button":
        shot(page, "incident_address_disagrees")
        choices.nth(1).click()
    else:  # a click on the place's marker is the same choice
        page.locator("#incident-map .candidate-marker").nth(1).click()
    expect(page.locator(".flash.ok")).to_be_visible()
    assert located(console, incident_id) == (*KEDOPOK, "operator", False, False)
    expect(page.locator("#incident-choices")).to_have_count(0)
    overridden = page.locator("#timeline tr[data-kind=location_overridden]")
    expect(overridden).to_contain_text("rina")
    expect(overridden).to_contain_text("dipilih karena bagian alamat tidak cocok: Kel. Kedopok")  # the note
    expect(page.locator("#incident-state")).to_have_attribute("data-state", "dispatched", timeout=5_000)
