"""Request bodies: a size limit, and validation errors that never repeat what was sent.

A body larger than ``web.max_content_length`` is refused with 413 before anything reads it
(JSON under /api, plain text elsewhere, e.g. for Twilio). A 422 names the field and the
problem but never carries the submitted value back, and the log line for it names only the
fields: bodies hold callers' numbers and addresses.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

log = logging.getLogger(__name__)


def install(app: Flask, max_content_length: int) -> None:
    """Limit request bodies of every route of ``app`` to ``max_content_length`` bytes."""
    # Werkzeug refuses a declared or streamed body beyond this when anything reads it ...
    app.config["MAX_CONTENT_LENGTH"] = max_content_length

    @app.before_request
    def _refuse_large_bodies() -> None:
        # ... and this refuses a declared one before any view or validator runs.
        if request.content_length is not None and request.content_length > max_content_length:
            raise RequestEntityTooLarge()

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_error: RequestEntityTooLarge) -> Response:
        if request.path.startswith("/api/"):
            response = jsonify(
                error="payload_too_large",
                detail=f"the request body is larger than {max_content_length} bytes",
                max_bytes=max_content_length,
            )
        else:
            response = Response(f"request body larger than {max_content_length} bytes\n", mimetype="text/plain")
        response.status_code = 413
        return response


def safe_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic errors without the submitted values (``input``, and ``ctx`` values derived from it)."""
    return [{key: error[key] for key in ("loc", "msg", "type") if key in error} for error in errors]


def before_validation(req: Any, resp: Any, error: Exception | None, _instance: Any, adapter: Any) -> None:
    """spectree's before-hook: strip submitted values from the 422 and log only where and what."""
    if error is None or resp is None:
        return
    errors = safe_errors(adapter.validation_errors(error))
    resp.set_data(json.dumps(errors))
    log.info("422 on %s %s: %s", req.method, req.path, _fields(errors))


def after_validation(req: Any, _resp: Any, error: Exception | None, _instance: Any, adapter: Any) -> None:
    """spectree's after-hook: a response that breaks its own schema is logged by field, not by value."""
    if error is None:
        return
    errors = safe_errors(adapter.validation_errors(error))
    log.error("response of %s %s does not match its schema: %s", req.method, req.path, _fields(errors))


def _fields(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in e.get('loc', ()))} {e.get('type')}" for e in errors)
