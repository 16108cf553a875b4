"""SMS through an Android phone with a local SIM: the "SMS Gateway for Android" app's REST API.

Twilio carries no SMS *replies* from Indonesian (+62) numbers; a phone on the command
center's LAN running SMS Gateway for Android (local-server mode) sends our alerts from a
local SIM and hands us the replies as signed webhooks (dispatch/web/sms_gateway_hooks.py).

Sending goes through the project's own client library (``android_sms_gateway.APIClient``).
Each message carries *our* id (the outbox row's key), so an answer lost to a timeout is
settled by asking for that id (``find_sms``) instead of guessing from text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import requests
from android_sms_gateway import APIClient, HealthStatus, Message, TextMessage, Webhook, WebhookEvent
from android_sms_gateway.errors import APIError, NotFoundError
from android_sms_gateway.http import RequestsHttpClient

from foundation.logsafe import mask_phone, mask_phones_in
from responders.channels import ChatMessage, SendFailed, unsupported

log = logging.getLogger(__name__)

# How long a health answer is trusted: the phone's state changes slowly, a page must not wait.
_HEALTH_TTL_S = 15.0


class _TimeoutSession(requests.Session):
    """The library passes no timeout; every request of ours has one."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout_s)
        return super().request(*args, **kwargs)


class AndroidSmsGateway:
    """SMS (only) through SMS Gateway for Android; the outbox's retry and lookup rules apply unchanged."""

    name = "SMS Gateway"
    supports = frozenset({"sms"})

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._timeout_s = timeout_s
        self._clock = clock
        self._local = threading.local()
        self._health_lock = threading.Lock()
        self._health: tuple[float, str] | None = None  # (checked at, "pass" | "warn" | "fail" | error)

    @property
    def _client(self) -> APIClient:
        # One client (and requests.Session) per sending thread, like the Twilio adapter.
        client: APIClient | None = getattr(self._local, "client", None)
        if client is None:
            http = RequestsHttpClient(_TimeoutSession(self._timeout_s))
            client = self._local.client = APIClient(self._username, self._password, base_url=self._base_url, http=http)
        return client

    @contextmanager
    def _translated(self, *, arrived_if_unanswered: bool) -> Iterator[None]:
        try:
            yield
        except SendFailed:
            raise
        except APIError as exc:
            status = exc.status_code or 0
            # 429 and 5xx: the gateway (or the phone behind it) is busy or down; 4xx: our request.
            transient = status == 429 or status >= 500
            detail = f"HTTP {status}: {exc}"[:500]
            raise SendFailed("transient" if transient else "permanent", detail, code=status or None) from exc
        except requests.ConnectionError as exc:
            refused = "NewConnectionError" in repr(exc) or "ConnectTimeout" in repr(exc)
            raise SendFailed(
                "transient",
                mask_phones_in(f"{type(exc).__name__}: {exc}")[:500],
                may_have_arrived=arrived_if_unanswered and not refused,
            ) from exc
        except requests.RequestException as exc:
            raise SendFailed(
                "transient",
                mask_phones_in(f"{type(exc).__name__}: {exc}")[:500],
                may_have_arrived=arrived_if_unanswered and not isinstance(exc, requests.ConnectTimeout),
            ) from exc

    def health(self) -> str:
        """The gateway's own health ("pass", "warn", "fail"), cached for a few seconds.

        "fail" means the phone cannot send now (offline, no signal, app stopped): the outbox
        then uses the recipient's next channel instead of waiting.
        """
        now = self._clock()
        with self._health_lock:
            if self._health is not None and now - self._health[0] < _HEALTH_TTL_S:
                return self._health[1]
        try:
            status = self._client.health_check().status
            answer = status.value if isinstance(status, HealthStatus) else str(status)
        except (APIError, requests.RequestException, ValueError, KeyError) as exc:
            answer = f"unreachable: {type(exc).__name__}"
        with self._health_lock:
            self._health = (now, answer)
        return answer

    def send_sms(self, to: str, body: str, *, validity_s: int, key: str = "") -> str:
        """Queue one SMS on the phone under our id ``key``; returns that id.

        Delivery reports come through the webhooks registered once (sms:sent, sms:delivered,
        sms:failed), see :meth:`register_webhooks`.
        """
        health = self.health()
        if health == "fail" or health.startswith("unreachable"):
            raise SendFailed("transient", f"gateway phone not ready (health: {health})")
        message = Message(
            phone_numbers=[to],
            text_message=TextMessage(text=body),
            with_delivery_report=True,
            ttl=max(1, validity_s),
            id=key or None,
        )
        with self._translated(arrived_if_unanswered=True):
            try:
                state = self._client.send(message)
            except APIError as exc:
                if exc.status_code == 409 and key:
                    return key  # a message with our id exists: an earlier attempt got through
                raise
        log.info("sms %s queued on the gateway to %s", state.id, mask_phone(to))
        return str(state.id)

    def find_sms(self, to: str, body: str, *, since: datetime, key: str = "") -> str | None:
        """Did a send with our id ``key`` reach the gateway? Its id, or None (asked by id, not by text)."""
        if not key:
            return None
        with self._translated(arrived_if_unanswered=False):
            try:
                state = self._client.get_state(key)
            except NotFoundError:
                return None
        return str(state.id)

    def register_webhooks(self, url: str, events: Collection[str]) -> None:
        """Point the gateway's events at ``url`` (ids are ours, so registering again replaces, never adds)."""
        with self._translated(arrived_if_unanswered=False):
            for event in events:
                hook_id = "dispatch-" + event.replace(":", "-")
                self._client.create_webhook(Webhook(id=hook_id, url=url, event=WebhookEvent(event)))
        log.info("sms gateway webhooks registered for %s", ", ".join(events))

    def place_call(self, to: str, twiml: str) -> str:
        raise SendFailed("permanent", "the SMS gateway places no calls")

    def send_chat(self, to: str, message: ChatMessage, *, validity_s: int, key: str = "") -> str:
        raise unsupported(self.name, "chat messages")

    def find_chat(self, to: str, message: ChatMessage, *, since: datetime, key: str = "") -> str | None:
        raise unsupported(self.name, "chat messages")

    def end_call(self, sid: str, *, answered: bool) -> None:
        raise SendFailed("permanent", "the SMS gateway places no calls")

    def find_call(self, to: str, *, since: datetime, exclude: Collection[str]) -> str | None:
        return None
