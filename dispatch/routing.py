"""Which provider carries a page to one responder (pure).

Escalation policies name channels abstractly (``sms``, ``voice``); the roster may give each
unit and supervisor an ordered ``channels`` list (``sms_gateway``, ``sms``, ``voice``); a
country rule decides for everyone else. The outbox asks once, when it first claims a row,
and again only when the provider it chose is down (the next candidate then).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

# Provider keys, as wired in dispatch/service.py.
GATEWAY = "sms_gateway"
TWILIO = "twilio"

# A roster channel name -> the provider that carries it, per abstract channel.
_SMS_BY_ROSTER_NAME = {"sms_gateway": GATEWAY, "sms": TWILIO}


def candidates(
    channel: str,
    phone: str,
    preferences: Sequence[str],
    configured: Collection[str],
    gateway_countries: Sequence[str],
) -> list[str]:
    """Providers able to carry ``channel`` to ``phone``, best first; never empty if any is configured.

    - ``voice`` goes through Twilio (the only provider that places calls).
    - ``sms``: the responder's own order first (``sms_gateway``, ``sms``), then the country
      rule: for numbers in ``gateway_countries`` the gateway (two-way), then Twilio (send-only
      there: its replies never reach us, the one-tap link does); elsewhere Twilio.
    """
    if channel != "sms":
        return [TWILIO] if TWILIO in configured else []
    chosen: list[str] = []
    for name in preferences:
        provider = _SMS_BY_ROSTER_NAME.get(name)
        if provider is not None and provider in configured and provider not in chosen:
            chosen.append(provider)
    local = any(phone.startswith(prefix) for prefix in gateway_countries)
    for provider in (GATEWAY, TWILIO) if local else (TWILIO,):
        if provider in configured and provider not in chosen:
            chosen.append(provider)
    return chosen


def after(current: str, options: Sequence[str]) -> str | None:
    """The candidate after ``current``, or None when it was the last."""
    if current not in options:
        return options[0] if options else None
    index = options.index(current)
    return options[index + 1] if index + 1 < len(options) else None
