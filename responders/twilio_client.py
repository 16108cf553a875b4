"""Build the real Twilio SDK client, optionally pointed at a Twilio-compatible server.

Production, the demo and the tests all go through ``twilio.rest.Client``: the only
difference is where the HTTP requests land.  The SDK hard-codes
``https://api.twilio.com`` in every resource, so the redirection happens at the one
extension point the SDK offers for transport, its ``http_client``.

Retries: the SDK's own transport retry is switched off here on purpose (``max_retries=0``
for both ``http://`` and ``https://``).  The outbox retries each notification a bounded
number of times with its own back-off and bookkeeping; a second, invisible retry layer
underneath it would multiply attempts (and, for a POST that reached Twilio, could send
the same SMS twice).  In twilio 9.x the default is already "no retry", but only by
accident of ``requests``' defaults, and ``max_retries`` is only honoured for ``https://``;
setting it explicitly keeps the behaviour the same for the sandbox's ``http://`` base.
"""

from __future__ import annotations

import logging
from typing import Literal
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

_log = logging.getLogger(__name__)

ErrorClass = Literal["permanent", "transient"]

# Twilio error codes that describe the recipient, not the request: retrying can never help.
PERMANENT_TWILIO_CODES: frozenset[int] = frozenset(
    {
        21211,  # invalid 'To' phone number
        21610,  # recipient replied STOP (unsubscribed)
        21614,  # 'To' is not a mobile number (landline / unreachable by SMS)
        63003,  # WhatsApp: the 'To' number has no WhatsApp account
        63016,  # WhatsApp: free text outside the 24-hour window (only the approved template may go)
        63024,  # WhatsApp: invalid message recipient
    }
)

# Twilio-level codes that mean "try again later" whatever HTTP status carried them.
TRANSIENT_TWILIO_CODES: frozenset[int] = frozenset({20429, 20500, 20503})

_TWILIO_HOST_SUFFIX = ".twilio.com"
_POOL_MAXSIZE = 32


class RebasingTwilioHttpClient(TwilioHttpClient):
    """A ``TwilioHttpClient`` that sends ``https://*.twilio.com/...`` requests to another base URL.

    The path (``/2010-04-01/Accounts/AC.../Messages.json``) and query are kept, so a
    Twilio-compatible server mounted under any prefix receives exactly what Twilio would.
    URLs that are not Twilio's (none today) pass through untouched.
    """

    def __init__(self, api_base: str | None, timeout_s: float) -> None:
        super().__init__(pool_connections=True, timeout=timeout_s, max_retries=0)
        self.api_base = api_base.rstrip("/") if api_base else None
        self.retry_after_s: float | None = None
        # Passing max_retries makes the SDK mount a default adapter (pool of 10) for
        # https:// only.  Mount our own for both schemes: the sandbox's http:// then
        # behaves like production, and the pool matches the SDK's usual 32 connections.
        if self.session is not None:
            for scheme in ("https://", "http://"):
                self.session.mount(scheme, HTTPAdapter(max_retries=0, pool_maxsize=_POOL_MAXSIZE))

    def rebase(self, url: str) -> str:
        """Return ``url`` rewritten onto ``api_base`` when it targets a Twilio API host."""
        if not self.api_base:
            return url
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host != "twilio.com" and not host.endswith(_TWILIO_HOST_SUFFIX):
            return url
        rebased = self.api_base + parts.path
        if parts.query:
            rebased += "?" + parts.query
        return rebased

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send the request to the rebased URL; everything else is the SDK's own behaviour.

        The SDK's exceptions carry no headers, so the answer's ``Retry-After`` is kept here
        (reset first, so a timeout never reads the previous answer's).
        """
        self.retry_after_s = None
        response = super().request(
            method,
            self.rebase(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self.retry_after_s = _parse_retry_after(response)
        return response


def make_twilio_client(
    account_sid: str,
    auth_token: str,
    api_base: str | None,
    timeout_s: float = 10.0,
) -> Client:
    """Build a real ``twilio.rest.Client``.

    ``api_base`` (e.g. ``"http://127.0.0.1:8081/sandbox/twilio"``) redirects every API
    request to a Twilio-compatible server; ``None`` talks to Twilio itself.  ``timeout_s``
    bounds connect and read of each request (the SDK's default is no timeout at all).
    The SDK's own retry is off: callers retry, see the module docstring.
    """
    if not account_sid or not auth_token:
        # The SDK silently falls back to TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN from the
        # process environment when given empty credentials; refuse instead of guessing.
        raise ValueError("account_sid and auth_token are required")
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    http_client = RebasingTwilioHttpClient(api_base, timeout_s)
    # edge/region left unset: with TWILIO_EDGE/TWILIO_REGION in the environment the SDK
    # rewrites the host to api.<edge>.<region>.twilio.com, which rebase() still matches.
    client = Client(account_sid, auth_token, http_client=http_client)
    if api_base:
        _log.info("twilio client uses API base %s", http_client.api_base)
    return client


def _code_or_none(code: object, status: int) -> int | None:
    # Without a code in the error body the SDK copies the HTTP status into `code`;
    # report None then, so an HTTP status is never mistaken for a Twilio error code.
    if not isinstance(code, int) or code == status:
        return None
    return code


def _classify_http(status: int, code: int | None) -> ErrorClass:
    if code in PERMANENT_TWILIO_CODES:
        return "permanent"
    if code in TRANSIENT_TWILIO_CODES or status == 429 or status >= 500:
        return "transient"
    if 400 <= status < 500:
        return "permanent"
    # Anything else (a 3xx from a proxy, a status the SDK never sends) is unexpected
    # server behaviour; the outbox's bounded retry is the safer reaction.
    return "transient"


def classify_twilio_error(exc: Exception) -> tuple[ErrorClass, int | None]:
    """Classify an exception raised while calling Twilio as ``permanent`` or ``transient``.

    Returns ``(classification, twilio_error_code_or_None)``.

    * ``TwilioRestException`` / ``TwilioServiceException``: codes 21211 (invalid number),
      21610 (unsubscribed), 21614 (not a mobile number) and any other 4xx except 429 are
      permanent; 429 and 5xx are transient.
    * ``requests`` connection errors and timeouts (and their stdlib counterparts) are
      transient: the request may never have reached Twilio.
    * A plain ``TwilioException`` carrying an HTTP response (the SDK's "Unable to fetch page"
      from ``list()``) is classified by that response's status, like any error answer.
    * Anything else (bad configuration, a bug) is permanent: retrying will not fix it.
    """
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        status = int(exc.status)
        code = _code_or_none(exc.code, status)
        return _classify_http(status, code), code
    answered = _response_of(exc)
    if answered is not None:
        return _classify_http(answered, None), None
    if isinstance(
        exc,
        requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError,
    ):
        return "transient", None
    if isinstance(exc, ConnectionError | TimeoutError):
        return "transient", None
    return "permanent", None


def _response_of(exc: Exception) -> int | None:
    """The HTTP status inside a plain ``TwilioException("Unable to fetch page", response)``."""
    if not isinstance(exc, TwilioException) or len(exc.args) < 2:
        return None
    status = getattr(exc.args[1], "status_code", None)
    return status if isinstance(status, int) else None


def retry_after_s(client: Client) -> float | None:
    """Seconds the provider asked us to wait (``Retry-After``) in its answer to the last request."""
    value = getattr(client.http_client, "retry_after_s", None)
    return value if isinstance(value, float) else None


def _parse_retry_after(response: Response) -> float | None:
    # Only the delta-seconds form: Twilio sends no HTTP dates.
    headers = response.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def request_may_have_arrived(exc: Exception) -> bool:
    """True when a failed API call may still have created the message or call at Twilio.

    An error answer from Twilio means nothing was created, and a connection that was
    never opened carried no request.  Any other transport failure (a read timeout, a
    connection dropped after the request went out) leaves the outcome unknown: the
    caller must look before it sends again, or one page becomes two.
    """
    if isinstance(exc, TwilioRestException | TwilioServiceException) or _response_of(exc) is not None:
        return False
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return not isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return isinstance(exc, requests.RequestException | ConnectionError | TimeoutError)
