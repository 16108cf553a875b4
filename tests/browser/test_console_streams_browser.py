"""A console tab refused an event stream (over the cap) polls instead, and says so."""

from __future__ import annotations

from tests.browser.conftest import shot
from tests.browser.test_console_browser import Page, StartConsole, expect, login, press


def test_a_tab_over_the_stream_cap_falls_back_to_polling_and_still_updates(
    start_console: StartConsole, page: Page, broker_url: str
) -> None:
    console = start_console(web={"event_streams_per_session": 1})
    login(page, console, "budi")  # this tab holds the session's one stream

    second = page.context.new_page()  # same login session, a second tab
    second.goto(console.url("/console/"))
    indicator = second.locator("#live")
    expect(indicator).to_have_class("live polling", timeout=5_000)
    expect(indicator).to_have_text("diperbarui tiap 10 dtk")
    shot(second, "board-polling")

    incident_id = press(console, broker_url, lat=-7.7543, lon=113.2159)
    # The streaming tab at once; the polling one within its 10 s period.
    expect(page.locator(f"#board-rows tr[data-id='{incident_id}']")).to_be_visible(timeout=2_000)
    expect(second.locator(f"#board-rows tr[data-id='{incident_id}']")).to_be_visible(timeout=15_000)
    expect(indicator).to_have_class("live polling")
    shot(second, "board-polling-updated")
    second.close()
