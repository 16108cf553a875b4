"""A tiny tile server for the map tests: answers /{z}/{x}/{y}.png with a real PNG, or fails on purpose.

The console must not reach the internet in tests, so its tile URL points here instead of
OpenStreetMap; the tile is a plain light square with a grid line, drawn with zlib (no imaging
library), which Leaflet and Chromium load exactly like a real tile.
"""

from __future__ import annotations

import re
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TILE = re.compile(r"^/(\d+)/(\d+)/(\d+)\.png$")


def png_tile(size: int = 256) -> bytes:
    """A size x size RGB PNG: a pale beige square with a darker line on its top and left edges."""
    rows = []
    for y in range(size):
        line = bytearray([0])  # filter type: none
        for x in range(size):
            line += bytes((200, 196, 186)) if x == 0 or y == 0 else bytes((242, 239, 233))
        rows.append(bytes(line))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


@dataclass
class TileServer:
    """A running tile server: its URL template and the tiles it was asked for."""

    url: str
    requests: list[str] = field(default_factory=list)


@contextmanager
def tile_server(*, failing: bool = False) -> Iterator[TileServer]:
    """Serve tiles on a free local port (``failing``: every tile answers 503)."""
    tile = png_tile()
    served = TileServer("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            if failing or not TILE.match(self.path):
                self.send_error(503 if failing else 404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
