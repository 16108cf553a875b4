"""What a dispatcher sees in Chromium: the unanswered alarm until ownership, the map with real tiles."""

from __future__ import annotations

import re

from tests.browser.conftest import shot
from tests.browser.test_console_browser import Page, StartConsole, expect, login, press
from tests.browser.tile_server import tile_server
from tests.conftest import eventually
from tests.responder_helpers import notifications
from tests.test_console_board import make_unanswered


def test_an_unanswered_incident_sounds_until_a_dispatcher_takes_ownership(
    start_console: StartConsole, page: Page, broker_url: str
) -> None:
    console = start_console()
    login(page, console, "budi")
    paging = press(console, broker_url, "BTN-0011", lat=-7.7512, lon=113.2142)
    nobody = press(console, broker_url, lat=-7.7543, lon=113.2159)
    make_unanswered(console.sessions, nobody)
    row = page.locator(f"#board-rows tr[data-id='{nobody}']")
    expect(row).to_have_attribute("data-alarm", "1", timeout=5_000)
    expect(row).to_have_class(re.compile(r"\balarm\b"))
    # On top, in the "needs action" bucket, above the incident still being paged.
    expect(page.locator("#board-rows tr[data-id]").first).to_have_attribute("data-id", str(nobody))
    expect(page.locator("[data-bucket-count=attention]")).to_have_text("1")
    expect(row.locator(".c-state")).to_contain_text("tak terjawab")
    expect(page.locator(f"#board-rows tr[data-id='{paging}']")).to_have_attribute("data-bucket", "paging")
    # The alarm repeats (every 10 s) while nobody owns the incident.
    eventually(lambda: sum(a["kind"] == "unanswered" for a in page.evaluate("window.consoleAlerts")) >= 2, 25)
    expect(page.locator(f".flash.alarm[data-key='unanswered:{nobody}']")).to_contain_text("TIDAK ADA YANG MENJAWAB")
    shot(page, "board_unanswered")

    row.locator(".own-form button").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"#{nobody}")
    row = page.locator(f"#board-rows tr[data-id='{nobody}']")
    expect(row).to_have_attribute("data-alarm", "0")
    expect(row.locator(".owned")).to_contain_text("budi")
    count = sum(a["kind"] == "unanswered" for a in page.evaluate("window.consoleAlerts"))
    page.wait_for_timeout(11_000)  # one alarm period: nothing more may sound for it
    assert sum(a["kind"] == "unanswered" for a in page.evaluate("window.consoleAlerts")) == count
    shot(page, "board_owned")

    page.click(f"#board-rows tr[data-id='{nobody}'] .c-id a")
    timeline = page.locator("#timeline")
    expect(timeline.locator("tr[data-kind=ownership_taken] .sentence")).to_have_text("budi mengambil alih kejadian")
    expect(timeline.locator("tr[data-kind=notification] .sentence").first).to_contain_text("SMS ke POL-01")
    expect(page.locator("#owner")).to_contain_text("budi")
    shot(page, "incident_owned")


def test_the_map_shows_tiles_markers_and_lines(start_console: StartConsole, page: Page, broker_url: str) -> None:
    with tile_server() as tiles:
        console = start_console(console={"tile_url": tiles.url, "tile_attribution": "local test tiles"})
        paging = press(console, broker_url, lat=-7.7543, lon=113.2159)
        nobody = press(console, broker_url, "BTN-0011", lat=-7.7512, lon=113.2142)
        eventually(lambda: notifications(console.sessions, paging))
        make_unanswered(console.sessions, nobody)
        login(page, console, "budi")
        page.goto(console.url("/console/map"))
        big = page.locator("#big-map")
        expect(big).to_have_attribute("data-loaded", "2")
        expect(big).to_have_attribute("data-tiles", "loaded")
        expect(page.locator("#big-map img.leaflet-tile-loaded").first).to_be_visible()
        assert any(path.endswith(".png") for path in tiles.requests)
        expect(page.locator(".leaflet-control-attribution")).to_contain_text("local test tiles")
        expect(page.locator(".tiles-note")).to_have_count(0)
        expect(page.locator("path.incident-marker.unanswered")).to_have_count(1)
        expect(page.locator("path.incident-marker")).to_have_count(2)
        expect(page.locator("path.response-line.response-active")).to_have_count(1)  # POL-01 paged for the first
        # Labels appear on hover only, so they never pile up on each other.
        expect(page.locator(".leaflet-tooltip")).to_have_count(0)
        page.locator("path.incident-marker.unanswered").hover(force=True)
        expect(page.locator(".leaflet-tooltip.incident-label")).to_contain_text(f"#{nobody}")
        shot(page, "map_tiles")
        page.locator("path.device-marker").last.hover(force=True)  # BTN-0012, away from the incidents
        expect(page.locator(".leaflet-tooltip", has_text="BTN-0012")).to_be_visible()


def test_a_failing_tile_server_leaves_the_grid_and_says_so(start_console: StartConsole, page: Page) -> None:
    with tile_server(failing=True) as tiles:
        console = start_console(console={"tile_url": tiles.url})
        login(page, console, "budi")
        page.goto(console.url("/console/map"))
        big = page.locator("#big-map")
        expect(big).to_have_attribute("data-tiles", "failed")
        expect(big).to_have_class(re.compile(r"no-tiles"))
        host = tiles.url.split("/")[2]
        expect(page.locator(".tiles-note")).to_have_text(f"Peta dasar dari {host} tidak dapat dimuat: hanya kisi polos")
        assert tiles.requests
        shot(page, "map_tiles_failed")
