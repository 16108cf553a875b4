"""dev.py, the set-up-free entry point: alternating `demo` and `test` installs once each.

pip itself is not run here (minutes per install): ``dev.run`` is replaced by a recorder, and
the question is only whether dev.py decides to install.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, list[list[str]]]:
    spec = importlib.util.spec_from_file_location("dev_under_test", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()  # an existing environment
    monkeypatch.setattr(module, "VENV", venv)
    monkeypatch.setattr(module, "PYTHON", venv / "bin" / "python")
    installs: list[list[str]] = []
    monkeypatch.setattr(module, "run", lambda command, env=None: installs.append(command))
    monkeypatch.setattr(sys, "version_info", (3, 11, 0))
    return module, installs


def test_alternating_demo_and_test_installs_each_only_once(dev: tuple[ModuleType, list[list[str]]]) -> None:
    module, installs = dev
    for extras in ("test", "", "test", "", "test"):
        module.ensure_environment(extras)
    targets = [command[-1] for command in installs if "-e" in command]
    assert targets == [".[test]", "."]
