"""Which provider carries a page, how a delivery report moves a row, how inbound requests read (pure)."""

from __future__ import annotations

from dispatch import routing
from dispatch.delivery import StatusChange, map_status
from dispatch.web.sms_gateway_hooks import parse_received
from dispatch.web.twilio_hooks import parse_sms, parse_whatsapp
from responders.replies import Reply, Unparsed, parse_button

ALL = ("twilio", "sms_gateway", "whatsapp")
LOCAL = "+628110000101"


def test_a_responder_who_lists_whatsapp_first_gets_alerts_there_then_the_rest_of_the_list() -> None:
    order = routing.candidates("sms", LOCAL, ["whatsapp", "sms_gateway", "voice"], ALL, ["+62"], templated=True)
    assert order == ["whatsapp", "sms_gateway", "twilio"]


def test_the_gateway_listed_before_whatsapp_comes_first() -> None:
    order = routing.candidates("sms", LOCAL, ["sms_gateway", "whatsapp", "voice"], ALL, ["+62"], templated=True)
    assert order == ["sms_gateway", "whatsapp", "twilio"]


def test_whatsapp_never_carries_a_text_that_cannot_go_as_the_template() -> None:
    # A stand-down or a resident update would be free text: WhatsApp refuses it outside a session.
    order = routing.candidates("sms", LOCAL, ["whatsapp", "sms"], ALL, ["+62"], templated=False)
    assert order == ["twilio", "sms_gateway"]


def test_a_chat_step_prefers_whatsapp_then_falls_back_to_the_sms_providers() -> None:
    assert routing.candidates("chat", LOCAL, [], ALL, ["+62"], templated=True) == ["whatsapp", "sms_gateway", "twilio"]
    assert routing.candidates("chat", LOCAL, [], ("twilio",), ["+62"], templated=True) == ["twilio"]


def test_a_sms_step_uses_whatsapp_only_for_a_responder_who_lists_it() -> None:
    assert routing.candidates("sms", LOCAL, [], ALL, ["+62"], templated=True) == ["sms_gateway", "twilio"]


def test_calls_go_through_twilio_and_each_provider_has_its_medium() -> None:
    assert routing.candidates("voice", LOCAL, ["whatsapp"], ALL, ["+62"], templated=True) == ["twilio"]
    assert routing.medium("whatsapp", "sms") == "chat"
    assert routing.medium("sms_gateway", "chat") == "sms"
    assert routing.medium("twilio", "voice") == "voice"
    assert routing.after("whatsapp", ["whatsapp", "twilio"]) == "twilio"


def test_read_is_a_receipt_that_moves_nothing_else() -> None:
    change = map_status("chat", "delivered", "read", permanent=False)
    assert change == StatusChange("delivered", "read", "chat_read", None)
    assert map_status("chat", "read", "delivered", permanent=False) is None  # never backwards


def test_a_text_refused_for_good_brings_the_next_step_forward_whatever_carried_it() -> None:
    assert map_status("chat", "sent", "undelivered", permanent=True) == StatusChange(
        "sent", "undelivered", "chat_undelivered", "permanent_sms_failure"
    )
    assert map_status("sms", "sent", "failed", permanent=False).bring_forward is None  # type: ignore[union-attr]
    assert map_status("voice", "ringing", "no-answer", permanent=False).bring_forward == "no-answer"  # type: ignore[union-attr]


def test_a_whatsapp_button_tap_reads_as_its_payload_for_the_phone_after_the_prefix() -> None:
    form = {
        "MessageSid": "SM" + "a" * 32,
        "From": "whatsapp:+628110000101",
        "Body": "Terima",
        "ButtonText": "Terima",
        "ButtonPayload": "accept:12",
    }
    inbound = parse_whatsapp(form)
    assert inbound is not None
    assert (inbound.phone, inbound.text, inbound.button_payload, inbound.channel) == (
        "+628110000101",
        "Terima",
        "accept:12",
        "chat",
    )
    assert parse_button(inbound.button_payload) == Reply("accept", 12)
    assert parse_button("decline:3") == Reply("decline", 3)
    assert isinstance(parse_button("accept:"), Unparsed)


def test_inbound_requests_that_are_not_replies_are_refused() -> None:
    assert parse_whatsapp({"MessageSid": "SM1", "From": "+628110000101"}) is None  # not a WhatsApp address
    assert parse_sms({"MessageSid": "", "From": "+628110000101"}) is None
    gateway = parse_received({"phoneNumber": "+628110000101", "message": "YA 3", "messageId": "m1"})
    assert (gateway.phone, gateway.text, gateway.message_id) == ("+628110000101", "YA 3", "sms_gateway:m1")
