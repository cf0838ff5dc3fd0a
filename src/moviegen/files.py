"""Writing files so that a crash or an error never leaves half of one behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from moviegen.errors import MovieGenError


def read_json(path: str | Path, what: str = "", missing: str | None = None) -> Any:
    """Parse a JSON file; a missing or unparsable one is a single clear :class:`MovieGenError`.

    ``what`` names the file in messages (``"config file"``); ``missing`` replaces the not-found message.
    """
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MovieGenError(missing or f"{label} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MovieGenError(f"{label} is not valid JSON: {e}") from None


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write a file through a temporary sibling renamed into place: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
