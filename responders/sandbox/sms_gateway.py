"""A local stand-in for SMS Gateway for Android: its REST API and its signed webhooks.

What the app on a phone does, minus the radio: ``POST /messages`` queues an SMS (under the
client's id when it gives one), ``GET /messages/<id>`` reports its state, ``GET /health``
says whether the phone can send, ``/webhooks`` registers where events go. A queued SMS is
"sent" and "delivered" after a short delay, each announced by a signed webhook
(``sms:sent``, ``sms:delivered``); ``POST /phones/sms`` plays a responder typing a reply
(``sms:received``). The demo mounts it so a newcomer sees a two-way SMS acknowledgement
with no account anywhere; the tests drive it through the real ``android-sms-gateway`` client.

Fault knobs on :class:`GatewayStore`: ``offline`` (health "fail", nothing sent), ``down``
(every API request answered 503) and ``answer_delay_s`` (the SMS is queued at once, the answer
comes that much later: requests in flight when a test kills the sender).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from flask import Blueprint, Response, jsonify, request

from foundation.private_files import replace_private_file

log = logging.getLogger(__name__)


@dataclass
class GatewaySms:
    id: str
    to: str
    text: str
    state: str  # Pending | Sent | Delivered | Failed
    created_at: datetime
    direction: str = "outbound"  # outbound | inbound


@dataclass
class GatewayStore:
    """Everything the stand-in saw, thread-safe; the knobs tests turn.

    With a ``path`` (the demo: ``data_dir/sandbox-sms-gateway.json``, 0600) its SMS outlive the
    process, like the phone's own message log: after a restart the simulator still shows them,
    and a page in doubt is found by its id instead of being sent again.
    """

    messages: list[GatewaySms] = field(default_factory=list)
    webhooks: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {url, event}
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # webhook deliveries made
    offline: bool = False
    down: bool = False
    answer_delay_s: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock)
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            self.messages = [
                GatewaySms(**{**m, "created_at": datetime.fromisoformat(m["created_at"])}) for m in saved["messages"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("sms gateway sandbox: cannot read %s (%s); the phone starts empty", self.path, exc)

    def save(self) -> None:
        """Write the message log (call with the lock held, after each change)."""
        if self.path is None:
            return
        messages = [{**asdict(m), "created_at": m.created_at.isoformat()} for m in self.messages]
        replace_private_file(self.path, json.dumps({"messages": messages}))

    def outbound_to(self, phone: str) -> list[GatewaySms]:
        with self.lock:
            return [m for m in self.messages if m.to == phone and m.direction == "outbound"]

    def find(self, message_id: str) -> GatewaySms | None:
        with self.lock:
            return next((m for m in self.messages if m.id == message_id and m.direction == "outbound"), None)


def sign(key: str, body: bytes, timestamp: str) -> str:
    """The app's webhook signature: hex HMAC-SHA256 of the raw body followed by the timestamp."""
    return hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()


def create_sms_gateway_blueprint(
    store: GatewayStore,
    *,
    username: str,
    password: str,
    signing_key: str,
    device_id: str = "sandbox-phone-1",
    delivery_delay_s: float = 0.2,
    stop_event: threading.Event | None = None,
) -> Blueprint:
    """The stand-in's HTTP API (mount it under any prefix; point ``sms_gateway.url`` at that prefix)."""
    bp = Blueprint("sms_gateway_sandbox", __name__)
    stopping = stop_event or threading.Event()

    def authorized() -> bool:
        auth = request.authorization
        return (
            auth is not None
            and hmac.compare_digest((auth.username or "").encode(), username.encode())
            and hmac.compare_digest((auth.password or "").encode(), password.encode())
        )

    @bp.before_request
    def gate() -> Response | None:
        if request.path.endswith(("/phones/sms", "/phones.json")):
            return None  # the simulated phones (keyboard and screen), not the API
        if store.down:
            return _error(503, "service unavailable")
        if not authorized():
            return _error(401, "unauthorized")
        return None

    def state_json(sms: GatewaySms) -> dict[str, Any]:
        return {
            "id": sms.id,
            "deviceId": device_id,
            "state": sms.state,
            "isHashed": False,
            "isEncrypted": False,
            "recipients": [{"phoneNumber": sms.to, "state": sms.state}],
            "createdAt": sms.created_at.isoformat(),
        }

    def deliver(event: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """Post one signed event to every webhook registered for it (with a few retries, like the app).

        Returns the last answer of each webhook (what the phone simulator shows under a reply).
        """
        with store.lock:
            targets = [(hook_id, hook["url"]) for hook_id, hook in store.webhooks.items() if hook["event"] == event]
        event_id = uuid.uuid4().hex
        answers: list[dict[str, Any]] = []
        for hook_id, url in targets:
            body = json.dumps(
                {"deviceId": device_id, "event": event, "id": event_id, "payload": payload, "webhookId": hook_id}
            ).encode()
            for attempt in range(3):
                stamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    "X-Timestamp": stamp,
                    "X-Signature": sign(signing_key, body, stamp),
                }
                seen: dict[str, Any] = {"url": url, "status_code": None, "body": "", "error": None}
                try:
                    answer = requests.post(url, data=body, headers=headers, timeout=5)
                    status = answer.status_code
                    seen.update(status_code=status, body=answer.text[:2000])
                except requests.RequestException as exc:
                    status = 0
                    seen["error"] = type(exc).__name__
                    log.warning("sms gateway sandbox: webhook %s failed: %s", event, exc)
                with store.lock:
                    store.deliveries.append({"event": event, "id": event_id, "status": status, "payload": payload})
                if 200 <= status < 300 or 400 <= status < 500 or stopping.wait(0.5 * 2**attempt):
                    break
            answers.append(seen)
        return answers

    def progress(message_id: str) -> None:
        for state, event in (("Sent", "sms:sent"), ("Delivered", "sms:delivered")):
            if stopping.wait(delivery_delay_s):
                return
            while store.offline and not stopping.wait(0.2):
                pass  # a phone without signal holds the message
            with store.lock:
                sms = store.find(message_id)
                if sms is None:
                    return
                sms.state = state
                to = sms.to
                store.save()
            stamp_key = "sentAt" if state == "Sent" else "deliveredAt"
            deliver(event, {"messageId": message_id, "phoneNumber": to, stamp_key: _now_iso()})

    @bp.post("/messages")
    def send() -> tuple[Response, int] | Response:
        body = request.get_json(silent=True) or {}
        numbers = body.get("phoneNumbers") or []
        text = (body.get("textMessage") or {}).get("text")
        if not numbers or not text:
            return _error(400, "phoneNumbers and textMessage.text are required")
        message_id = str(body.get("id") or uuid.uuid4().hex)
        with store.lock:
            if store.find(message_id) is not None:
                return _error(409, f"message {message_id} already exists")
            sms = GatewaySms(message_id, str(numbers[0]), str(text), "Pending", datetime.now(UTC))
            store.messages.append(sms)
            store.save()
        threading.Thread(target=progress, args=(message_id,), name=f"gw-{message_id[-6:]}", daemon=True).start()
        if store.answer_delay_s:
            stopping.wait(store.answer_delay_s)
        return jsonify(state_json(sms)), 202

    @bp.get("/messages/<message_id>")
    def state(message_id: str) -> tuple[Response, int] | Response:
        sms = store.find(message_id)
        if sms is None:
            return _error(404, "message not found")
        return jsonify(state_json(sms))

    @bp.get("/health")
    def health() -> Response:
        status = "fail" if store.offline else "pass"
        return jsonify({"status": status, "version": "sandbox", "checks": {"connection:status": {"status": status}}})

    @bp.get("/webhooks")
    def list_webhooks() -> Response:
        with store.lock:
            return jsonify([{"id": k, "url": v["url"], "event": v["event"]} for k, v in store.webhooks.items()])

    @bp.post("/webhooks")
    def register_webhook() -> tuple[Response, int] | Response:
        body = request.get_json(silent=True) or {}
        if not body.get("url") or not body.get("event"):
            return _error(400, "url and event are required")
        hook_id = str(body.get("id") or uuid.uuid4().hex)
        with store.lock:
            store.webhooks[hook_id] = {"url": str(body["url"]), "event": str(body["event"])}
        return jsonify({"id": hook_id, "url": body["url"], "event": body["event"]}), 201

    @bp.delete("/webhooks/<hook_id>")
    def delete_webhook(hook_id: str) -> tuple[str, int]:
        with store.lock:
            store.webhooks.pop(hook_id, None)
        return "", 204

    @bp.post("/phones/sms")
    def phone_sends() -> tuple[Response, int]:
        """A responder types an SMS to the gateway's number: the app reports it as sms:received."""
        phone, text = request.form.get("from", "").strip(), request.form.get("text", "")
        if not _E164.fullmatch(phone) or not text.strip():
            return jsonify({"ok": False, "error": "from (E.164) and text are required"}), 400
        # The app's message id is derived from the content (it is not unique across repeats).
        message_id = hashlib.sha256(f"{phone}|{text}|{time.time_ns()}".encode()).hexdigest()[:16]
        with store.lock:
            store.messages.append(GatewaySms(message_id, phone, text, "Received", datetime.now(UTC), "inbound"))
            store.save()
        answers = deliver(
            "sms:received",
            {"messageId": message_id, "message": text, "phoneNumber": phone, "simNumber": 1, "receivedAt": _now_iso()},
        )
        delivered = any(a["status_code"] is not None and 200 <= a["status_code"] < 300 for a in answers)
        result: dict[str, Any] = {
            "ok": delivered,
            "messageId": message_id,
            "response": answers[-1] if answers else None,
        }
        if not answers:
            result["error"] = "no sms:received webhook registered"
        return jsonify(result), 200

    @bp.get("/phones.json")
    def phones_json() -> Response:
        """What the phone simulator shows of the gateway: every SMS it carried, by responder phone."""
        with store.lock:
            messages = [
                {
                    "id": m.id,
                    "direction": m.direction,
                    "phone": m.to,
                    "text": m.text,
                    "state": m.state,
                    "created_at": m.created_at.isoformat(),
                }
                for m in store.messages
            ]
        return jsonify({"device_id": device_id, "offline": store.offline, "messages": messages})

    return bp


_E164 = re.compile(r"\+[1-9]\d{6,14}")


def _error(status: int, message: str) -> Response:
    response = jsonify({"message": message})
    response.status_code = status
    return response


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def run_standalone(
    store: GatewayStore, username: str, password: str, signing_key: str
) -> tuple[str, Callable[[], None]]:
    """Serve the stand-in on a free local port (tests); returns its base URL and a stop function."""
    from flask import Flask
    from werkzeug.serving import make_server

    stop_event = threading.Event()
    app = Flask(__name__)
    app.register_blueprint(
        create_sms_gateway_blueprint(
            store, username=username, password=password, signing_key=signing_key, stop_event=stop_event
        ),
        url_prefix="/sms-gateway",
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()

    def stop() -> None:
        stop_event.set()
        server.shutdown()
        server.server_close()
        thread.join(5)

    return f"http://127.0.0.1:{server.server_port}/sms-gateway", stop
