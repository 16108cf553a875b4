"""A local Twilio-compatible server for the demo and the tests.

The real ``twilio`` SDK talks to it (see ``responders.twilio_client.make_twilio_client``
with ``api_base``), it calls the application back with webhooks signed exactly like
Twilio's, and ``/phones`` lets a person play the responders' phones.
"""

from responders.sandbox.app import DEFAULT_TWILIO_NUMBER, create_sandbox_blueprint
from responders.sandbox.server import (
    DEFAULT_URL_PREFIX,
    run_sandbox_server,
    sandbox_api_base,
    stop_sandbox_server,
)
from responders.sandbox.store import (
    RawRequest,
    SandboxCall,
    SandboxMessage,
    SandboxStore,
    WebhookDelivery,
)

__all__ = [
    "DEFAULT_TWILIO_NUMBER",
    "DEFAULT_URL_PREFIX",
    "RawRequest",
    "SandboxCall",
    "SandboxMessage",
    "SandboxStore",
    "WebhookDelivery",
    "create_sandbox_blueprint",
    "run_sandbox_server",
    "sandbox_api_base",
    "stop_sandbox_server",
]
