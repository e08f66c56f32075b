"""Atomic file writes: results appear complete or not at all, with the file mode the user expects.

A result is written to a temporary file in the target folder and renamed over the target, so a
crash or a full disk never leaves half a JSON file behind. ``tempfile.mkstemp`` creates that file
readable by its owner only (0600); left alone, every result would end up private. So the file
gets the mode a plain ``open(path, "w")`` would give it: that of the file it replaces, or
``0666`` minus the process umask (usually 0644) for a new file.

:func:`check_writable` answers "can I write there?" before any work starts, by creating and
removing a probe file in the folder that would hold the result (permissions, read-only file
systems and quotas all show up as they would at the end).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_text_atomic", "write_json_atomic", "check_writable"]


def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back at once
    os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` if a file can be written there; otherwise an OSError that says why.

    Missing parent folders are fine (writing creates them) as long as the nearest existing one
    is a writable folder.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name such as {path / 'results.json'}")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write {path}: {folder} is not writable ({err.strerror or err})") from None
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _target_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically; returns the path."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")
