"""/healthz tells a load balancer whether the database and the broker are usable."""

from __future__ import annotations

from collections.abc import Callable

import requests

from dispatch.service import DispatchService
from tests.conftest import eventually


def test_healthz_is_200_with_database_and_broker_then_503_when_the_broker_is_lost(
    start_service: Callable[..., DispatchService],
) -> None:
    service = start_service()
    url = f"http://127.0.0.1:{service.web_port}/healthz"
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "mqtt": "connected"}

    service.gateway.stop()
    # requests.Response is falsy for 5xx, so poll on the decoded body instead.
    body = eventually(lambda: (r := requests.get(url, timeout=5)).status_code == 503 and r.json())
    assert body == {"status": "failing", "database": "ok", "mqtt": "disconnected"}


def test_metrics_need_a_token_and_count_messages(
    start_service: Callable[..., DispatchService], sessions: object
) -> None:
    from dispatch.auth import issue_token
    from dispatch.models import User
    from foundation.clock import utcnow
    from foundation.db import transaction

    service = start_service()
    url = f"http://127.0.0.1:{service.web_port}/metrics"
    assert requests.get(url, timeout=5).status_code == 401
    with transaction(service.sessions) as session:
        user = User(username="prometheus", name="scraper", role="metrics")
        session.add(user)
        session.flush()
        token = issue_token(session, user, "scrape", utcnow())
    body = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).text
    assert "dispatch_receive_to_commit_seconds" in body
