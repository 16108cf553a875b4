"""Files only this user may read: the data directory, secrets, the SQLite database.

Modes are set when a file or directory is created, never by a chmod afterwards, so there is
no moment in which another user of the machine could open it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700; an existing directory is narrowed to 0700."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    # An existing data dir (or one made under a permissive umask) is narrowed too.
    with contextlib.suppress(PermissionError):
        path.chmod(PRIVATE_DIR)
    return path


def create_private_file(path: Path, text: str) -> bool:
    """Write ``text`` to a new 0600 file; False (and nothing written) when the file exists.

    O_EXCL makes creation atomic: when two processes race, one writes and the other reads
    what the first wrote.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    return True


def replace_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as 0600, replacing what is there (via a new file and rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    create_private_file(temporary, text)
    temporary.replace(path)
