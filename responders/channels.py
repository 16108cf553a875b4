"""Notification channels over Twilio: a thin adapter around the real SDK.

Grafana OnCall calls this a phone provider: send an SMS, place a call, nothing
else. Retries and state live in the dispatch outbox, not here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Protocol

from twilio.rest import Client

from foundation.logsafe import mask_phone

log = logging.getLogger(__name__)

# Twilio's clock and ours may disagree; look this far before the moment we wrote the row.
_CLOCK_SKEW = timedelta(minutes=2)
_LOOKUP_LIMIT = 50


class Channels(Protocol):
    """What the outbox needs from a phone provider."""

    def send_sms(self, to: str, body: str, *, status_callback: str) -> str: ...

    def place_call(self, to: str, twiml: str, *, status_callback: str) -> str: ...

    def find_sms(self, to: str, body: str, *, since: datetime) -> str | None: ...

    def find_call(self, to: str, *, since: datetime, exclude: Collection[str]) -> str | None: ...


class TwilioChannels:
    """SMS and voice through one Twilio (or Twilio-compatible) account."""

    def __init__(self, make_client: Callable[[], Client], from_number: str, *, sms_validity_s: int) -> None:
        self._make_client = make_client
        self._local = threading.local()
        self._local.client = make_client()  # a configuration error shows at start, not at the first page
        self._from = from_number
        self._validity_s = sms_validity_s

    @property
    def _client(self) -> Client:
        # One SDK client (and requests.Session) per sending thread: a Session is not
        # documented as thread-safe, and the SDK keeps the last request on its client.
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make_client()
        return client

    def send_sms(self, to: str, body: str, *, status_callback: str) -> str:
        """Send one SMS; returns Twilio's message SID (raises the SDK's exceptions)."""
        message = self._client.messages.create(
            to=to,
            from_=self._from,
            body=body,
            status_callback=status_callback,
            # A page that could not be delivered within this window is useless: drop it.
            validity_period=self._validity_s,
        )
        log.info("sms %s queued to %s", message.sid, mask_phone(to))
        return str(message.sid)

    def place_call(self, to: str, twiml: str, *, status_callback: str) -> str:
        """Place one call with inline TwiML; returns the call SID."""
        call = self._client.calls.create(
            to=to,
            from_=self._from,
            twiml=twiml,
            status_callback=status_callback,
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            timeout=25,
        )
        log.info("call %s placed to %s", call.sid, mask_phone(to))
        return str(call.sid)

    def find_sms(self, to: str, body: str, *, since: datetime) -> str | None:
        """The SID of an SMS we already created with this exact text, or None.

        Used after a send whose answer never came back. Each alert's text carries a
        per-recipient code and a signed link, so the body identifies the notification.
        """
        earliest = since - _CLOCK_SKEW
        for message in self._client.messages.list(to=to, from_=self._from, limit=_LOOKUP_LIMIT):
            created = message.date_created
            if message.body == body and (created is None or created >= earliest):
                return str(message.sid)
        return None

    def find_call(self, to: str, *, since: datetime, exclude: Collection[str]) -> str | None:
        """The SID of a call placed to ``to`` since ``since`` that no other notification owns, or None.

        Twilio does not return a call's TwiML, so a call is known by number and time;
        ``exclude`` holds the SIDs already recorded for other notifications.
        """
        earliest = since - _CLOCK_SKEW
        for call in self._client.calls.list(to=to, from_=self._from, limit=_LOOKUP_LIMIT):
            created = call.date_created
            if call.sid not in exclude and (created is None or created >= earliest):
                return str(call.sid)
        return None
