"""What request handlers may use, passed in by the service: never imported as globals."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dispatch.actions import ActionError
from dispatch.calls import CallDesk
from dispatch.metrics import Metrics
from dispatch.models import Incident
from foundation.db import transaction
from foundation.settings import Settings


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    metrics: Metrics
    mqtt_connected: Callable[[], bool]
    public_base: Callable[[], str]
    twilio_auth_token: str
    signing_key: bytes
    clock: Callable[[], datetime]
    publish: Callable[[str, bytes], object]
    wake: Callable[[], None]
    calls: CallDesk
    stopping: threading.Event  # set when the process shuts down: long-lived responses end
    # (failing, degraded): stalls that make /healthz 503; provider outages and the like that it reports
    health_details: Callable[[], tuple[dict[str, str], dict[str, str]]] = lambda: ({}, {})

    def act_on_incident(
        self,
        incident_id: int,
        run: Callable[[Session, WebContext, Incident, datetime], Sequence[tuple[str, bytes]]],
    ) -> str:
        """Run one action with the incident row locked, publish after commit; the incident's new state.

        Raises ActionError: 404 when there is no such incident, or the action's own refusal.
        """
        now = self.clock()
        with transaction(self.sessions) as session:
            incident = session.get(Incident, incident_id, with_for_update=True)
            if incident is None:
                raise ActionError("no_incident", 404, incident=incident_id)
            publications = run(session, self, incident, now)
            state = incident.state
        self.after_commit(publications)
        return state

    def after_commit(self, publications: Sequence[tuple[str, bytes]], *, wake: bool = True) -> None:
        """Publish device statuses decided in a committed transaction, then wake the engine if asked."""
        for topic, payload in publications:
            self.publish(topic, payload)
        if wake:
            self.wake()
