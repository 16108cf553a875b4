"""Run the Twilio sandbox as a standalone HTTP server in a background thread.

Used by tests and by anyone who needs a Twilio-compatible endpoint on a local port::

    store = SandboxStore()
    thread, server = run_sandbox_server("127.0.0.1", 0, store, "AC...", "token", "http://127.0.0.1:8080")
    client = make_twilio_client("AC...", "token", sandbox_api_base(server))
    ...
    stop_sandbox_server(thread, server)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from responders.sandbox.app import DEFAULT_TWILIO_NUMBER, create_sandbox_blueprint
from responders.sandbox.store import SandboxStore

DEFAULT_URL_PREFIX = "/sandbox/twilio"
_STOP_EVENT_KEY = "twilio_sandbox.stop_event"


def run_sandbox_server(
    host: str,
    port: int,
    store: SandboxStore,
    account_sid: str,
    auth_token: str,
    webhook_base: Callable[[], str] | str,
    *,
    url_prefix: str = DEFAULT_URL_PREFIX,
    twilio_number: str = DEFAULT_TWILIO_NUMBER,
    callback_delay_s: float = 0.2,
    retry_backoff_s: float = 0.5,
    content_templates: Mapping[str, tuple[str, Sequence[tuple[str, str]]]] | None = None,
) -> tuple[threading.Thread, BaseWSGIServer]:
    """Serve the sandbox blueprint under ``url_prefix`` on ``host:port`` from a daemon thread.

    ``port=0`` binds a free port; read it back from ``server.server_port`` (or use
    :func:`sandbox_api_base`).  The socket is bound before this returns, so clients can
    connect immediately.  Stop with :func:`stop_sandbox_server`; a bare
    ``server.shutdown()`` stops the HTTP side but leaves ringing calls and pending
    status callbacks to run out on their own.
    """
    stop_event = threading.Event()
    app = Flask(__name__)
    app.register_blueprint(
        create_sandbox_blueprint(
            store,
            account_sid=account_sid,
            auth_token=auth_token,
            webhook_base=webhook_base,
            twilio_number=twilio_number,
            callback_delay_s=callback_delay_s,
            retry_backoff_s=retry_backoff_s,
            stop_event=stop_event,
            content_templates=content_templates,
        ),
        url_prefix=url_prefix,
    )
    app.extensions[_STOP_EVENT_KEY] = stop_event
    app.config["TWILIO_SANDBOX_URL_PREFIX"] = url_prefix
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"twilio-sandbox-{server.server_port}",
        daemon=True,
    )
    thread.start()
    return thread, server


def sandbox_api_base(server: BaseWSGIServer, url_prefix: str | None = None) -> str:
    """The ``api_base`` to give ``make_twilio_client`` for a server from :func:`run_sandbox_server`."""
    prefix = url_prefix
    if prefix is None:
        app = server.app
        prefix = app.config.get("TWILIO_SANDBOX_URL_PREFIX", "") if isinstance(app, Flask) else ""
    bound = server.server_address[0]
    host = bound.decode() if isinstance(bound, bytes) else str(bound)
    if host in {"0.0.0.0", "::"}:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{server.server_port}{prefix}"


def stop_sandbox_server(thread: threading.Thread, server: BaseWSGIServer, timeout_s: float = 5.0) -> None:
    """Stop background deliveries, stop serving, close the socket and join the thread."""
    app = server.app
    if isinstance(app, Flask):
        stop_event = app.extensions.get(_STOP_EVENT_KEY)
        if isinstance(stop_event, threading.Event):
            stop_event.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout_s)
