"""What the service leaves on disk is readable by its own user only, whatever the umask.

Issue 12, item 10: the data dir must be 0700, the SQLite files 0600, and the secret key file
0600 from the moment it exists.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from dispatch.service import DispatchService
from foundation.db import make_engine
from foundation.settings import load_settings

Start = Callable[..., DispatchService]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The worst case: a umask that would make every new file world-readable and writable."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_the_data_dir_the_database_and_the_secrets_are_private(
    start_service: Start, tmp_path: Path, open_umask: None
) -> None:
    data_dir = tmp_path / "var"
    database = data_dir / "dispatch.sqlite3"
    service = start_service(data_dir=str(data_dir), database={"url": f"sqlite:///{database}"})
    with service.engine.begin() as connection:  # a write: the -wal and -shm files exist now
        connection.execute(text("CREATE TABLE IF NOT EXISTS scratch (x INTEGER)"))
    assert mode(data_dir) == 0o700
    for name in ("dispatch.sqlite3", "dispatch.sqlite3-wal", "dispatch.sqlite3-shm", "secret_key"):
        assert mode(data_dir / name) == 0o600, name


def test_an_existing_database_and_data_dir_are_narrowed(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    database = data_dir / "old.sqlite3"
    database.touch(mode=0o644)
    database.chmod(0o644)
    make_engine(f"sqlite:///{database}").dispose()
    assert mode(database) == 0o600


def test_the_secret_key_is_created_private_and_kept(tmp_path: Path, open_umask: None) -> None:
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "var")})
    key = settings.signing_key()
    assert mode(tmp_path / "var") == 0o700
    assert mode(tmp_path / "var" / "secret_key") == 0o600
    assert settings.signing_key() == key and len(key) == 64
