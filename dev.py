#!/usr/bin/env python3
"""Set-up-free entry point: ``python3 dev.py demo`` and ``python3 dev.py test``.

Needs only Python 3.11+ (standard library). Creates ``.venv`` beside this file and
installs what the command needs on first use, or again when setup.py changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def ensure_environment(extras: str) -> None:
    """Create the virtualenv and install the project (editable) with ``extras``."""
    if sys.version_info < (3, 11):  # noqa: UP036  (dev.py runs on whatever python3 the user has)
        sys.exit(f"dispatch needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating virtual environment in {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fingerprint = hashlib.sha256((ROOT / "setup.py").read_bytes() + extras.encode()).hexdigest()[:16]
    # One stamp per kind of install ("runtime", "test"): `demo` after `test` must not make the
    # next `test` reinstall, so only this kind's older stamps are replaced.
    kind = extras or "runtime"
    stamp = VENV / f".installed-{kind}-{fingerprint}"
    if stamp.exists():
        return
    print(f"installing dependencies ({extras or 'runtime'}) ...", file=sys.stderr)
    target = f".[{extras}]" if extras else "."
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "-e", target])
    for old in VENV.glob(f".installed-{kind}-*"):
        old.unlink()
    stamp.touch()


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    """Run a command from the project root; stop with its exit code if it fails."""
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"demo", "test", "serve"}:
        sys.exit("usage: python3 dev.py demo|serve [options] | test [--no-lint] [pytest args]")
    command, rest = argv[0], argv[1:]
    if command in {"demo", "serve"}:
        ensure_environment("")
        os.execv(str(BIN / "dispatch"), [str(BIN / "dispatch"), command, *rest])
    ensure_environment("test")
    lint = "--no-lint" not in rest
    rest = [arg for arg in rest if arg != "--no-lint"]
    if lint:
        run([str(BIN / "ruff"), "check", "."])
        run([str(BIN / "ruff"), "format", "--check", "."])
        run([str(BIN / "mypy")])
    run([str(PYTHON), "-m", "pytest", *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
