"""Run ``dispatch serve`` as a real OS process, for crash and multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path


class ServiceProcess:
    """A ``dispatch serve`` subprocess whose log lines can be awaited."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int = 0, args: Sequence[str] = ()) -> None:
        """``args``: more options of ``dispatch serve`` (``--workers 4``)."""
        self._env = {**os.environ, **env}
        self._args = list(args)
        self._port = port
        self._log_path = log_path
        self._lines: list[str] = []
        self._process: subprocess.Popen[str] | None = None

    @property
    def port(self) -> int:
        """The web port (the console, the API, /healthz and Twilio's webhooks)."""
        return self._port

    def start(self) -> ServiceProcess:
        self._lines.clear()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "dispatch.cli", "serve", "--port", str(self._port), *self._args],
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with self._log_path.open("a") as log:
            for line in self._process.stdout:
                self._lines.append(line)
                log.write(line)

    def wait_for_line(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self._lines):
                if text in line:
                    return line
            if self._process is not None and self._process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no log line containing {text!r}; log:\n{''.join(self._lines)[-3000:]}")

    def lines(self) -> list[str]:
        return list(self._lines)

    def count_lines(self, text: str) -> int:
        return sum(text in line for line in list(self._lines))

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, exactly like a power cut of the process."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def wait(self, timeout: float) -> int:
        """The exit status, once the process has ended."""
        assert self._process is not None
        return self._process.wait(timeout=timeout)

    def stop(self, timeout: float = 15) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
