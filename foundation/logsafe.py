"""Logging helpers that keep personal data out of logs."""

from __future__ import annotations

import logging
import re
import time

_PHONE = re.compile(r"\+?\d[\d\s-]{6,}\d")


def mask_phone(number: str | None) -> str:
    """Mask a phone number to its last four digits: ``+62******1234``."""
    if not number:
        return "-"
    digits = re.sub(r"\D", "", number)
    keep = digits[-4:]
    prefix = "+" + digits[:2] if number.startswith("+") and len(digits) > 6 else ""
    return f"{prefix}{'*' * max(len(digits) - len(keep) - (len(prefix) - 1 if prefix else 0), 2)}{keep}"


def mask_phones_in(text: str) -> str:
    """Mask every phone-number-looking run in free text (e.g. an exception message)."""
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def configure_logging(level: str = "INFO") -> None:
    """Plain, greppable log lines on stderr with UTC timestamps."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    logging.Formatter.converter = time.gmtime
    # Library chatter that says nothing an operator needs at INFO.
    for noisy in ("alembic", "apscheduler.executors.default", "twilio.http_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # apscheduler.scheduler stays at WARNING: "skipped: maximum number of running instances" and
    # "missed by" mean a job overran, which an operator must see (the service never pulls a
    # running job forward, so these are never routine).
