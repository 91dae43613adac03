"""Small JSON files in the state directory, written so a crash never leaves half of one.

The default directory is the user's cache directory (`$XDG_CACHE_HOME/cin`, else
`~/.cache/cin`); `CIN_STATE_DIR` or the client's `state_dir` moves it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def default_state_dir() -> Path:
    explicit = os.environ.get("CIN_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "cin"


def write_json_atomically(path: Path, value: Any) -> None:
    """Write `value` to `path` as a whole or not at all: a temporary file in the same
    directory, fsync'd, then renamed over it (a rename within a filesystem is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(value, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None if there is none, or it is not one (a file from
    another version, or damaged by hand: it only costs a fresh start)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
