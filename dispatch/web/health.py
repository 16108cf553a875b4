"""Liveness and readiness: is the database reachable, is the broker connected."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from dispatch.auth import require_role
from dispatch.models import METRICS_ROLE

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    """200 when both the database and the MQTT broker are usable, else 503 with details.

    Unauthenticated on purpose (load balancers and monitors call it) and so it
    reveals no data: states only.
    """
    context = current_app.extensions["dispatch"]
    database = "ok"
    try:
        with context.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        database = f"error: {type(exc).__name__}"
    mqtt = "connected" if context.mqtt_connected() else "disconnected"
    healthy = database == "ok" and mqtt == "connected"
    body = {"status": "ok" if healthy else "degraded", "database": database, "mqtt": mqtt}
    return body, 200 if healthy else 503


@bp.get("/metrics")
@require_role(METRICS_ROLE)
def metrics() -> Response:
    """Prometheus exposition of this process's counters and latency histograms.

    Needs a token of the metrics role (or an admin's): the scraper's token reads nothing else.
    """
    registry = current_app.extensions["dispatch"].metrics.registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
