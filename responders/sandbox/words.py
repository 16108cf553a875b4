"""The phone simulator's words in Bahasa Indonesia and English (the page's one catalogue per language).

The simulator is part of the sandbox, which runs without the dispatch app (responders/ never
imports dispatch/), so it keeps its own small catalogue instead of the console's gettext files.
Parameters are ``{name}``; the page's script fills them the same way.
"""

from __future__ import annotations

LANGUAGES = ("id", "en")

WORDS: dict[str, dict[str, str]] = {
    "id": {
        "title": "Sandbox Twilio · ponsel",
        "twilio_number": "Nomor Twilio",
        "webhooks": "webhook aplikasi",
        "loading": "memuat…",
        "text_in": "SMS masuk dari ponsel mana pun:",
        "message": "pesan",
        "send_sms": "Kirim SMS",
        "send_whatsapp": "Kirim WhatsApp",
        "reply_whatsapp": "Balas di WhatsApp sebagai ponsel ini…",
        "tap_button": "Tekan tombol {title}",
        "empty": "Belum ada pesan atau panggilan. Muncul di sini begitu aplikasi mengirimnya.",
        "reply_as": "Balas sebagai ponsel ini…",
        "texts": "SMS dari {number}",
        "calls": "Panggilan",
        "call": "panggilan",
        "from": "dari {number}",
        "sent_by_phone": "dikirim ponsel ini → {number}",
        "pressed": "menekan {keys}",
        "no_speech": "(tanpa ucapan)",
        "twiml_later": "TwiML diambil dari aplikasi saat diangkat",
        "answer": "Angkat (dengarkan)",
        "press_key": "tekan {key}",
        "ring_out": "Biarkan berdering sampai habis",
        "hang_up": "Tutup tanpa menekan tombol",
        "error": "galat {code}",
        "valid": "berlaku {seconds} dtk",
        "app_unreachable": "aplikasi tidak terjangkau: {error}",
        "app_http": "aplikasi HTTP {status}:",
        "app_unreachable_at": "Aplikasi tidak terjangkau di {url}: {error}",
        "app_answered": "Aplikasi menjawab HTTP {status} ({url}):",
        "would_text_back": "→ Twilio akan membalas SMS: {replies}",
        "call_now": "Panggilan kini {status}.",
        "done": "selesai",
        "sandbox_http": "sandbox menjawab HTTP {status}",
        "sandbox_unreachable": "sandbox tidak terjangkau: {error}",
        "updated": "diperbarui {time}",
        # Channels (one label on every message and call)
        "via_twilio_sms": "SMS lewat Twilio",
        "via_twilio_send_only": "hanya kirim: Twilio tidak meneruskan balasan dari nomor ini (pakai tautan)",
        "via_gateway_sms": "SMS lewat SMS Gateway for Android (dua arah)",
        "via_twilio_voice": "Panggilan suara lewat Twilio",
        "gateway_messages": "SMS lewat gateway",
        "twilio_messages": "SMS lewat Twilio",
        "gateway_reply_as": "Balas lewat gateway (seperti SMS biasa)…",
        "gateway_send": "Balas lewat gateway",
        "gateway_no_hook": "belum ada webhook sms:received terdaftar",
    },
    "en": {
        "title": "Twilio sandbox · phones",
        "twilio_number": "Twilio number",
        "webhooks": "app webhooks",
        "loading": "loading…",
        "text_in": "Text in from any phone:",
        "message": "message",
        "send_sms": "Send SMS",
        "send_whatsapp": "Send WhatsApp",
        "reply_whatsapp": "Reply on WhatsApp as this phone…",
        "tap_button": "Tap the {title} button",
        "empty": "No messages or calls yet. They appear here as the app sends them.",
        "reply_as": "Reply as this phone…",
        "texts": "texts {number}",
        "calls": "Calls",
        "call": "call",
        "from": "from {number}",
        "sent_by_phone": "sent by this phone → {number}",
        "pressed": "pressed {keys}",
        "no_speech": "(no spoken text)",
        "twiml_later": "TwiML is fetched from the app when answered",
        "answer": "Answer (hear it)",
        "press_key": "press {key}",
        "ring_out": "Let it ring out",
        "hang_up": "Hang up without pressing",
        "error": "error {code}",
        "valid": "valid {seconds}s",
        "app_unreachable": "app unreachable: {error}",
        "app_http": "app HTTP {status}:",
        "app_unreachable_at": "App unreachable at {url}: {error}",
        "app_answered": "App answered HTTP {status} ({url}):",
        "would_text_back": "→ Twilio would text back: {replies}",
        "call_now": "Call is now {status}.",
        "done": "done",
        "sandbox_http": "sandbox answered HTTP {status}",
        "sandbox_unreachable": "sandbox unreachable: {error}",
        "updated": "updated {time}",
        # Channels (one label on every message and call)
        "via_twilio_sms": "SMS via Twilio",
        "via_twilio_send_only": "send-only: Twilio carries no reply from this number (use the link)",
        "via_gateway_sms": "SMS via SMS Gateway for Android (two-way)",
        "via_twilio_voice": "Voice call via Twilio",
        "gateway_messages": "SMS via the gateway",
        "twilio_messages": "SMS via Twilio",
        "gateway_reply_as": "Reply through the gateway (a plain SMS)…",
        "gateway_send": "Reply via gateway",
        "gateway_no_hook": "no sms:received webhook registered yet",
    },
}


def choose(asked: str | None, preferred: str | None) -> str:
    """The page's language: ``?lang=`` if it is one we have, else the browser's choice, else Indonesian."""
    for candidate in (asked, preferred):
        if candidate in LANGUAGES:
            return candidate
    return "id"
