"""Real-browser tests of the console: Debian's Chromium driven by pytest-playwright.

``.ci/run`` installs Chromium when it is missing. Playwright's own browser download is never
used (``playwright install`` needs a CDN this project must not depend on): the tests launch
/usr/bin/chromium and skip, saying why, on a machine without it.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from dispatch.auth import hash_password
from dispatch.console.live import ChangeWatch
from dispatch.models import User
from dispatch.service import DispatchService
from foundation.db import transaction
from tests.browser.tile_server import TileServer, tile_server
from tests.conftest import ROOT
from tests.responder_helpers import fast_escalation

CHROMIUM = Path(os.environ.get("DISPATCH_TEST_CHROMIUM", "/usr/bin/chromium"))  # Debian's package
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "rahasia-123"
HAVE_PLAYWRIGHT = importlib.util.find_spec("pytest_playwright") is not None
SKIP_REASON = (
    f"no {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if not CHROMIUM.exists()
    else "pytest-playwright is not installed (pip install -e '.[test]')"
)
SLOW = fast_escalation([{"after_s": 0, "action": "notify_unit"}, {"after_s": 120, "action": "supervisor"}])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this folder's tests ``browser`` and skip them without a browser to drive."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            if not (CHROMIUM.exists() and HAVE_PLAYWRIGHT):
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, quiet: no sandbox (root in a container), no network of its own."""
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--autoplay-policy=no-user-gesture-required",  # lets the board's alert beep be heard in tests
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """The command center's screens: 1366x768, Indonesian locale, WIB."""
    return {
        **browser_context_args,
        "viewport": {"width": 1366, "height": 768},
        "locale": "id-ID",
        "timezone_id": "Asia/Jakarta",
    }


@dataclass
class Console:
    """A running service with the example roster and one user per role."""

    service: DispatchService
    sessions: sessionmaker[Session]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.service.web_port}"

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def console_users(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        for username, name, role in [
            ("rina", "Rina (112)", "call_taker"),
            ("budi", "Budi (dispatch)", "dispatcher"),
            ("admin", "Admin", "admin"),
        ]:
            session.add(User(username=username, name=name, role=role, password_hash=hash_password(PASSWORD)))


@pytest.fixture(scope="session")
def local_tiles() -> Iterator[TileServer]:
    """Map tiles served on this machine: the console's default (OpenStreetMap) is not for tests."""
    with tile_server() as served:
        yield served


@pytest.fixture
def start_console(
    start_service: Callable[..., DispatchService],
    roster: None,
    console_users: None,
    sessions: sessionmaker[Session],
    local_tiles: TileServer,
) -> Iterator[Callable[..., Console]]:
    """Start the service (slow escalation, local tiles unless told otherwise) and wrap it for the tests."""
    started: list[Console] = []

    def start(**sections: Any) -> Console:
        sections.setdefault("escalation", SLOW)
        sections.setdefault("console", {"tile_url": local_tiles.url, "tile_attribution": "local test tiles"})
        console = Console(start_service(**sections), sessions)
        started.append(console)
        return console

    yield start
    for console in started:
        # Let the browser's event streams end before the server stops (see the report on
        # DispatchService.stop: waitress task threads outlive web_server.close()).
        watches = [w for w in ChangeWatch.instances if w.sessions is console.service.sessions]
        deadline = time.monotonic() + 5
        while any(w.listeners for w in watches) and time.monotonic() < deadline:
            time.sleep(0.1)


def shot(page: Any, name: str) -> Path:
    """Save a screenshot of the page as a test artifact (test-artifacts/screenshots/NAME.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
