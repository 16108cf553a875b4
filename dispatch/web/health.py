"""Liveness and readiness: is the database reachable, is the broker connected."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dispatch.auth import require_role
from dispatch.models import METRICS_ROLE

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    """Is this process doing its job?

    - 200 ``ok``: database reachable, broker connected, every job and the MQTT handler moving.
    - 200 ``degraded``: working, but something needs a person (a phone provider failing and
      being retried, a lost MQTT session, results waiting for the database); listed in
      ``degraded``. Taking the process out of rotation would not help, so it stays 200.
    - 503 ``failing``: the database or the broker is unreachable, or something stands still
      (``stalled``: a job, or received messages with nothing committed).

    Unauthenticated on purpose (load balancers and monitors call it) and so it reveals no
    data: states only.
    """
    context = current_app.extensions["dispatch"]
    database = "ok"
    try:
        # A bare DBAPI connection: a SQLAlchemy transaction would take SQLite's write lock
        # (BEGIN IMMEDIATE, foundation.db) and wait behind a busy writer instead of answering.
        connection = context.engine.raw_connection()
        try:
            connection.cursor().execute("SELECT 1")
        finally:
            connection.close()
    except Exception as exc:
        database = f"error: {type(exc).__name__}"
    mqtt = "connected" if context.mqtt_connected() else "disconnected"
    stalled, degraded = context.health_details()
    failing = database != "ok" or mqtt != "connected" or bool(stalled)
    status = "failing" if failing else "degraded" if degraded else "ok"
    body: dict[str, Any] = {"status": status, "database": database, "mqtt": mqtt}
    if stalled:
        body["stalled"] = stalled
    if degraded:
        body["degraded"] = degraded
    return body, 503 if failing else 200


@bp.get("/metrics")
@require_role(METRICS_ROLE)
def metrics() -> Response:
    """Prometheus exposition of this process's counters and latency histograms.

    Needs a token of the metrics role (or an admin's): the scraper's token reads nothing else.
    """
    registry = current_app.extensions["dispatch"].metrics.registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
