"""A TCP proxy that can cut a service off: the database "goes away" for a while, for real.

Every connection through the proxy is closed at once when an outage starts, and new ones
are accepted and closed at once until it ends: what a client sees when PostgreSQL restarts
or the network drops, without stopping the server other tests (and other developers) use.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class TcpFaultProxy:
    """Forwards 127.0.0.1:<port> to ``target``; :meth:`outage` cuts it off for a while."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._down_until = 0.0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    def outage(self, seconds: float) -> None:
        """Drop every connection now and refuse service for ``seconds``."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            doomed, self._open = self._open, set()
        for sock in doomed:
            _close(sock)

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def stop(self) -> None:
        self._stopped.set()
        _close(self._listener)
        self.outage(0)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with self._lock:
                    self._open.discard(sock)
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
