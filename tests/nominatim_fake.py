"""A tiny local stand-in for a self-hosted Nominatim, for tests.

It speaks the part of Nominatim's JSON API that geopy's ``Nominatim.geocode``
uses -- ``GET /search?q=...&format=json&limit=N[&addressdetails=1]`` -- and
answers from a dict of known queries given at construction, so tests can run
geopy's real client over real HTTP without leaving the machine::

    with FakeNominatim({"jl suroyo": FakePlace(-7.7505, 113.2150, "Jl. Suroyo")}) as fake:
        Nominatim(domain=fake.domain, scheme="http", user_agent="t").geocode("Jl. Suroyo")

Unknown queries get ``[]`` like the real server. ``fail_next`` and
``stall_next`` script failures, and ``requests`` records what was asked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


@dataclass(frozen=True)
class FakePlace:
    """One search result; rendered the way Nominatim does (lat/lon as strings)."""

    lat: float
    lon: float
    display_name: str
    importance: float | None = 0.5
    cls: str = "highway"
    type: str = "residential"
    address: Mapping[str, str] = field(default_factory=dict)
    half_size_deg: float = 0.001


@dataclass(frozen=True)
class RecordedRequest:
    """What one request to the fake looked like."""

    method: str
    path: str
    params: dict[str, str]
    user_agent: str | None


def _normalise(query: str) -> str:
    return " ".join(query.casefold().split())


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Keep per-request access lines out of test output."""


class FakeNominatim:
    """A threaded HTTP server on 127.0.0.1 answering like Nominatim's /search.

    ``known`` maps a query (compared case- and whitespace-insensitively) to one
    place or a list of places, best first.
    """

    def __init__(self, known: Mapping[str, FakePlace | Sequence[FakePlace]]) -> None:
        self._known: dict[str, tuple[FakePlace, ...]] = {
            _normalise(q): (p,) if isinstance(p, FakePlace) else tuple(p) for q, p in known.items()
        }
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._stalls: list[float] = []
        self._requests: list[RecordedRequest] = []
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeNominatim:
        """Listen on a free port and serve from a background thread."""
        if self._server is not None:
            raise RuntimeError("FakeNominatim is already running")
        server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        # A short poll interval keeps stop() (and so each test's teardown) fast.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-nominatim", daemon=True
        )
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeNominatim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("FakeNominatim is not running")
        return int(self._server.server_port)

    @property
    def domain(self) -> str:
        """``host:port``, as geopy's ``Nominatim(domain=...)`` wants it."""
        return f"127.0.0.1:{self.port}"

    # -- scripting and inspection ------------------------------------------

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with HTTP ``status`` instead of results."""
        with self._lock:
            self._failures.extend([status] * count)

    def stall_next(self, count: int, seconds: float) -> None:
        """Delay the next ``count`` answers by ``seconds`` (to trigger client timeouts)."""
        with self._lock:
            self._stalls.extend([seconds] * count)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def add(self, query: str, places: FakePlace | Iterable[FakePlace]) -> None:
        """Teach the fake another query."""
        with self._lock:
            self._known[_normalise(query)] = (places,) if isinstance(places, FakePlace) else tuple(places)

    # -- HTTP --------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        params = dict(request.args.items())
        with self._lock:
            self._requests.append(
                RecordedRequest(request.method, request.path, params, request.headers.get("User-Agent"))
            )
            status = self._failures.pop(0) if self._failures else None
            stall = self._stalls.pop(0) if self._stalls else 0.0
            known = self._known.get(_normalise(params.get("q", "")), ())
        if stall:
            time.sleep(stall)
        response = self._respond(request, params, status, known)
        return response(environ, start_response)

    @staticmethod
    def _respond(
        request: Request, params: Mapping[str, str], status: int | None, known: Sequence[FakePlace]
    ) -> Response:
        if status is not None:
            return Response(f"scripted failure {status}", status=status, content_type="text/plain")
        if request.method != "GET" or request.path != "/search":
            return Response("not found", status=404, content_type="text/plain")
        if params.get("format", "json") not in ("json", "jsonv2"):
            return Response('{"error": "unsupported format"}', status=400, content_type="application/json")
        try:
            limit = int(params.get("limit", "10"))
        except ValueError:
            return Response('{"error": "bad limit"}', status=400, content_type="application/json")
        with_address = params.get("addressdetails") in ("1", "true")
        body = [_render(place, i, with_address) for i, place in enumerate(known[: max(limit, 0)])]
        return Response(json.dumps(body), status=200, content_type="application/json; charset=utf-8")


def _render(place: FakePlace, index: int, with_address: bool) -> dict[str, Any]:
    d = place.half_size_deg
    result: dict[str, Any] = {
        "place_id": 100000 + index,
        "licence": "Data (c) OpenStreetMap contributors, ODbL 1.0. https://osm.org/copyright",
        "osm_type": "way",
        "osm_id": 200000 + index,
        "lat": f"{place.lat:.7f}",
        "lon": f"{place.lon:.7f}",
        "display_name": place.display_name,
        "class": place.cls,
        "type": place.type,
        "boundingbox": [
            f"{place.lat - d:.7f}",
            f"{place.lat + d:.7f}",
            f"{place.lon - d:.7f}",
            f"{place.lon + d:.7f}",
        ],
    }
    if place.importance is not None:
        result["importance"] = place.importance
    if with_address:
        result["address"] = dict(place.address)
    return result
