"""Which provider carries a page to one responder (pure).

Escalation policies name channels abstractly (``sms``, ``chat``, ``voice``); the roster may
give each unit and supervisor an ordered ``channels`` list (``sms_gateway``, ``whatsapp``,
``sms``, ``voice``); a country rule decides for everyone else. The outbox asks once, when it
first claims a row, and again only when the provider it chose is down (the next candidate then).

How a text step resolves (``sms`` or ``chat``), for ``channels: [sms_gateway, whatsapp, voice]``:

- ``sms``: the responder's own order: gateway, then WhatsApp; then the country rule (for a
  +62 number: the gateway, then Twilio SMS, send-only with the link). WhatsApp carries an
  ``sms`` step only for a responder who lists it, and only when the row can go as the
  approved template (an alert): a business may not start a WhatsApp conversation with free text.
- ``chat``: WhatsApp first (when configured and the row can go as the template), then the
  same SMS providers as ``sms``.
- ``voice``: Twilio (the only provider that places calls).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

# Provider keys, as wired in dispatch/service.py.
GATEWAY = "sms_gateway"
TWILIO = "twilio"
WHATSAPP = "whatsapp"

# A roster channel name -> the provider that carries text to it.
_TEXT_BY_ROSTER_NAME = {"sms_gateway": GATEWAY, "sms": TWILIO, "whatsapp": WHATSAPP}
# Providers that carry chat messages (templates, quick-reply buttons) rather than SMS.
_CHAT_PROVIDERS = frozenset({WHATSAPP})
TEXT_CHANNELS = frozenset({"sms", "chat"})

Medium = Literal["sms", "chat", "voice"]


def candidates(
    channel: str,
    phone: str,
    preferences: Sequence[str],
    configured: Collection[str],
    gateway_countries: Sequence[str],
    *,
    templated: bool = False,
) -> list[str]:
    """Providers able to carry ``channel`` to ``phone``, best first; never empty if any is configured.

    ``templated``: the row can be sent as the approved WhatsApp template (an alert); without
    it WhatsApp is never a candidate. See the module's docstring for the order.
    """
    if channel not in TEXT_CHANNELS:
        return [TWILIO] if TWILIO in configured else []
    usable = [key for key in configured if key not in _CHAT_PROVIDERS or templated]
    chosen: list[str] = []
    if channel == "chat":
        chosen.extend(key for key in (WHATSAPP,) if key in usable)
    for name in preferences:
        provider = _TEXT_BY_ROSTER_NAME.get(name)
        if provider is not None and provider in usable and provider not in chosen:
            chosen.append(provider)
    local = any(phone.startswith(prefix) for prefix in gateway_countries)
    for provider in (GATEWAY, TWILIO) if local else (TWILIO,):
        if provider in usable and provider not in chosen:
            chosen.append(provider)
    return chosen


def medium(provider: str | None, channel: str) -> Medium:
    """How ``provider`` carries a row of ``channel``: a call, an SMS or a chat message."""
    if channel == "voice":
        return "voice"
    return "chat" if provider in _CHAT_PROVIDERS else "sms"


def after(current: str, options: Sequence[str]) -> str | None:
    """The candidate after ``current``, or None when it was the last."""
    if current not in options:
        return options[0] if options else None
    index = options.index(current)
    return options[index + 1] if index + 1 < len(options) else None
