"""WhatsApp through Twilio: the same SDK and account, ``whatsapp:+62...`` addresses.

A business may only start a WhatsApp conversation with a template WhatsApp approved (the
Content API's ``content_sid`` with ``content_variables``); free text is allowed only inside
the 24 hours after the responder's own last message. So alerts go out as the template, with
quick-reply buttons whose payloads say ``accept:<code>`` / ``decline:<code>``; answers to a
responder's message go back in the webhook's TwiML answer (inside that window).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from twilio.rest import Client

from foundation.logsafe import mask_phone
from responders.channels import ChatMessage, TwilioAccount, unsupported

log = logging.getLogger(__name__)

PREFIX = "whatsapp:"

# The alert template to submit for approval (README "Responders in Indonesia"), per language:
# its body ({{1}} name, {{2}} what and where, {{3}} alert code, {{4}} one-tap link) and its
# quick-reply buttons (title, payload). WhatsApp refuses a body that starts or ends with a
# variable or puts two side by side. The sandbox renders these to stand in for Twilio.
TEMPLATE_BODY = {
    "id": "Panggilan darurat untuk {{1}}: {{2}}. Kode {{3}}: tekan Terima atau Tolak, "
    "atau balas YA / TOLAK dengan kode itu. Detail: {{4}} (jangan dibagikan).",
    "en": "Emergency call for {{1}}: {{2}}. Code {{3}}: tap Accept or Decline, "
    "or reply YES / NO with that code. Details: {{4}} (do not share).",
}
TEMPLATE_BUTTONS = {
    "id": (("Terima", "accept:{{3}}"), ("Tolak", "decline:{{3}}")),
    "en": (("Accept", "accept:{{3}}"), ("Decline", "decline:{{3}}")),
}


# What `dispatch demo` uses with the built-in Twilio sandbox (no account): Twilio's public
# WhatsApp sandbox sender and made-up Content SIDs the sandbox renders from the text above.
SANDBOX_SENDER = "+14155238886"
SANDBOX_TEMPLATES = {"id": "HX" + "0" * 31 + "1", "en": "HX" + "0" * 31 + "2"}


def address(phone: str) -> str:
    """``+6281...`` -> ``whatsapp:+6281...``."""
    return phone if phone.startswith(PREFIX) else PREFIX + phone


def phone_of(wa_address: str) -> str:
    """``whatsapp:+6281...`` -> ``+6281...`` (alert codes are per phone)."""
    return wa_address.removeprefix(PREFIX)


def render(template: str, variables: Mapping[str, str]) -> str:
    """A template's text with its ``{{n}}`` filled in, as WhatsApp shows it."""
    for name, value in variables.items():
        template = template.replace("{{" + name + "}}", value)
    return template


def sandbox_templates(content_sids: Mapping[str, str]) -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    """Content SID -> (body, buttons) of the alert template, for the sandbox to render as Twilio would."""
    return {sid: (TEMPLATE_BODY[language], TEMPLATE_BUTTONS[language]) for language, sid in content_sids.items()}


class TwilioWhatsApp(TwilioAccount):
    """Chat messages over WhatsApp through one Twilio account (a sender approved for WhatsApp)."""

    name = "WhatsApp"
    supports = frozenset({"chat"})

    def __init__(
        self,
        make_client: Callable[[], Client],
        from_number: str,
        templates: Mapping[str, str],
        public_base: Callable[[], str],
    ) -> None:
        super().__init__(make_client, public_base)
        self._from = address(from_number)
        self._templates = dict(templates)  # language -> approved content SID

    def send_chat(self, to: str, message: ChatMessage, *, validity_s: int, key: str = "") -> str:
        """Send the template (with variables) or free text; returns the message SID.

        Twilio takes no client id (``key``): a lost answer is settled by ``find_chat``.
        """
        callback = f"{self._public_base()}/twilio/whatsapp/status"
        with self._translated():
            if message.variables is not None:
                created = self._client.messages.create(
                    to=address(to),
                    from_=self._from,
                    content_sid=self._template(message.language),
                    content_variables=json.dumps(dict(message.variables), ensure_ascii=False),
                    status_callback=callback,
                    validity_period=max(1, validity_s),
                )
            else:
                created = self._client.messages.create(
                    to=address(to),
                    from_=self._from,
                    body=message.text,
                    status_callback=callback,
                    validity_period=max(1, validity_s),
                )
        log.info("whatsapp %s queued to %s", created.sid, mask_phone(to))
        return str(created.sid)

    def _template(self, language: str) -> str:
        return self._templates.get(language) or self._templates["id"]

    def find_chat(self, to: str, message: ChatMessage, *, since: datetime, key: str = "") -> str | None:
        """The SID of a WhatsApp message we already created for this notification, or None.

        A template's body is WhatsApp's rendering of the approved text, not ours: it is known
        by its ``marker`` (the alert's one-tap link, signed with the notification's own id);
        free text by equality.
        """
        marker = message.marker

        def matches(body: str) -> bool:
            return marker in body if marker else body == message.text

        return self._find_message(address(to), self._from, since, matches)

    def send_sms(self, to: str, body: str, *, validity_s: int, key: str = "") -> str:
        raise unsupported(self.name, "SMS")

    def find_sms(self, to: str, body: str, *, since: datetime, key: str = "") -> str | None:
        raise unsupported(self.name, "SMS")

    def place_call(self, to: str, twiml: str) -> str:
        raise unsupported(self.name, "calls")

    def end_call(self, sid: str, *, answered: bool) -> None:
        raise unsupported(self.name, "calls")

    def find_call(self, to: str, *, since: datetime, exclude: Collection[str]) -> str | None:
        raise unsupported(self.name, "calls")
