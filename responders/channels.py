"""The provider interface, and SMS and voice over Twilio (a thin adapter around the real SDK).

Grafana OnCall calls this a phone provider: send an SMS, place a call, send a chat message,
end a call, and look for what an unanswered request created. Retries and state live in the
dispatch outbox, not here; this module only says what a failure *means* (:class:`SendFailed`),
so the outbox never needs to know the provider's exceptions. Inbound messages and delivery
reports come back through each provider's signed webhook (dispatch/web/), parsed by a pure
function per provider into one neutral shape (dispatch/sms_replies.py, dispatch/delivery.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from twilio.rest import Client

from foundation.logsafe import mask_phone, mask_phones_in
from responders.twilio_client import classify_twilio_error, request_may_have_arrived, retry_after_s

log = logging.getLogger(__name__)

# Twilio's clock and ours may disagree; look this far before the moment we wrote the row.
_CLOCK_SKEW = timedelta(minutes=2)
# Lists come newest first; a lookup pages back until it passes the attempt's time. A unit paged
# hundreds of times in a burst has that many messages newer than the one in doubt.
_LOOKUP_PAGE = 200
_LOOKUP_MAX = 5000


class SendFailed(Exception):
    """A provider request failed; what the outbox needs to decide what happens next.

    ``kind``: ``permanent`` (retrying cannot help: invalid number, landline, unsubscribed,
    authentication) or ``transient`` (429, 5xx, timeouts, refused connections).
    ``may_have_arrived``: the request may have created the message or call anyway (a read
    timeout, a connection dropped mid-answer); look before sending again.
    """

    def __init__(
        self,
        kind: Literal["permanent", "transient"],
        detail: str,
        *,
        code: int | None = None,
        may_have_arrived: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.code = code
        self.may_have_arrived = may_have_arrived
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ChatMessage:
    """A chat message (WhatsApp): the approved template with its variables, or free text.

    ``variables`` None: free text (``text``), only allowed inside the 24-hour window a
    responder's own message opened. ``marker``: a piece of text only this message contains
    (an alert's signed one-tap link), how a lookup recognises it whatever the template says.
    """

    text: str
    language: str
    variables: Mapping[str, str] | None = None
    marker: str = ""


class Channels(Protocol):
    """What the outbox needs from a phone provider (Twilio, the SMS gateway, WhatsApp ...).

    A provider implements the methods of what it ``supports`` and raises a permanent
    :class:`SendFailed` for the others (the router never sends it those: dispatch/routing.py).
    Each provider knows where its own delivery reports come back to; ``key`` is the outbox
    row's stable id, which a provider that accepts client ids (the SMS gateway) uses so a
    lost answer can be settled by asking for it.
    """

    name: str  # shown to operators: "Twilio unreachable since 20:30:27"
    supports: frozenset[str]  # "sms", "voice", "chat"

    def send_sms(self, to: str, body: str, *, validity_s: int, key: str) -> str: ...

    def send_chat(self, to: str, message: ChatMessage, *, validity_s: int, key: str) -> str: ...

    def place_call(self, to: str, twiml: str) -> str: ...

    def end_call(self, sid: str, *, answered: bool) -> None: ...

    def find_sms(self, to: str, body: str, *, since: datetime, key: str) -> str | None: ...

    def find_chat(self, to: str, message: ChatMessage, *, since: datetime, key: str) -> str | None: ...

    def find_call(self, to: str, *, since: datetime, exclude: Collection[str]) -> str | None: ...


def unsupported(provider: str, what: str) -> SendFailed:
    """What a provider raises for a request it cannot carry (a routing mistake: never retried)."""
    return SendFailed("permanent", f"{provider} does not carry {what}")


class TwilioAccount:
    """One Twilio (or Twilio-compatible) account: a client per thread, errors as :class:`SendFailed`."""

    def __init__(self, make_client: Callable[[], Client], public_base: Callable[[], str]) -> None:
        self._make_client = make_client
        self._public_base = public_base  # Twilio's status callbacks come back to our /twilio/... webhooks
        self._local = threading.local()
        self._local.client = make_client()  # a configuration error shows at start, not at the first page

    @property
    def _client(self) -> Client:
        # One SDK client (and requests.Session) per sending thread: a Session is not
        # documented as thread-safe, and the SDK keeps the last request on its client.
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make_client()
        return client

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn whatever the SDK or the network raised into a :class:`SendFailed`."""
        try:
            yield
        except Exception as exc:
            kind, code = classify_twilio_error(exc)
            raise SendFailed(
                kind,
                mask_phones_in(f"{type(exc).__name__}: {exc}")[:500],
                code=code,
                may_have_arrived=request_may_have_arrived(exc),
                retry_after_s=retry_after_s(self._client),
            ) from exc

    def _find_message(self, to: str, from_: str, since: datetime, matches: Callable[[str], bool]) -> str | None:
        """The SID of a message sent from ``from_`` to ``to`` since ``since`` whose body ``matches``."""
        earliest = since - _CLOCK_SKEW
        with self._translated():
            listed = self._client.messages.stream(to=to, from_=from_, limit=_LOOKUP_MAX, page_size=_LOOKUP_PAGE)
            for message in listed:
                created = message.date_created
                if created is not None and created < earliest:
                    break  # older than the attempt: it is not there
                if matches(message.body or ""):
                    return str(message.sid)
        return None


class TwilioChannels(TwilioAccount):
    """SMS and voice through one Twilio (or Twilio-compatible) account."""

    name = "Twilio"
    supports = frozenset({"sms", "voice"})

    def __init__(self, make_client: Callable[[], Client], from_number: str, public_base: Callable[[], str]) -> None:
        super().__init__(make_client, public_base)
        self._from = from_number

    def send_sms(self, to: str, body: str, *, validity_s: int, key: str = "") -> str:
        """Send one SMS; returns Twilio's message SID (raises :class:`SendFailed`).

        Twilio takes no client id (``key``): a lost answer is settled by text (``find_sms``).
        """
        with self._translated():
            message = self._client.messages.create(
                to=to,
                from_=self._from,
                body=body,
                status_callback=f"{self._public_base()}/twilio/sms/status",
                # A page that could not be delivered within this window is useless: drop it.
                validity_period=max(1, validity_s),
            )
        log.info("sms %s queued to %s", message.sid, mask_phone(to))
        return str(message.sid)

    def place_call(self, to: str, twiml: str) -> str:
        """Place one call with inline TwiML; returns the call SID."""
        with self._translated():
            call = self._client.calls.create(
                to=to,
                from_=self._from,
                twiml=twiml,
                status_callback=f"{self._public_base()}/twilio/voice/status",
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                timeout=25,
            )
        log.info("call %s placed to %s", call.sid, mask_phone(to))
        return str(call.sid)

    def send_chat(self, to: str, message: ChatMessage, *, validity_s: int, key: str = "") -> str:
        raise unsupported(self.name, "chat messages")

    def find_chat(self, to: str, message: ChatMessage, *, since: datetime, key: str = "") -> str | None:
        raise unsupported(self.name, "chat messages")

    def end_call(self, sid: str, *, answered: bool) -> None:
        """Hang up a call nobody needs any more: ``canceled`` while it rings, ``completed`` once answered."""
        with self._translated():
            self._client.calls(sid).update(status="completed" if answered else "canceled")
        log.info("call %s ended", sid)

    def find_sms(self, to: str, body: str, *, since: datetime, key: str = "") -> str | None:
        """The SID of an SMS we already created with this exact text, or None.

        Used after a send whose answer never came back. Each alert's text carries a
        per-recipient code and a signed link, so the body identifies the notification.
        """
        return self._find_message(to, self._from, since, lambda text: text == body)

    def find_call(self, to: str, *, since: datetime, exclude: Collection[str]) -> str | None:
        """The SID of a call placed to ``to`` since ``since`` that no other notification owns, or None.

        Twilio does not return a call's TwiML, so a call is known by number and time;
        ``exclude`` holds the SIDs already recorded for other notifications.
        """
        earliest = since - _CLOCK_SKEW
        with self._translated():
            listed = self._client.calls.stream(to=to, from_=self._from, limit=_LOOKUP_MAX, page_size=_LOOKUP_PAGE)
            for call in listed:
                created = call.date_created
                if created is not None and created < earliest:
                    break
                if call.sid not in exclude:
                    return str(call.sid)
        return None
