"""Reading and writing files so that a crash or an error never leaves half of one behind, and an output
path never replaces something that is not ours.

Every command writes through :func:`write_atomic` (files), :class:`moviegen.video.VideoWriter` (videos,
via :func:`publish`) or :func:`moviegen.pretrained.atomic_dir` (folders). The rule for a file path:

* a missing path or a regular file: written to a temporary sibling that is renamed into place, so readers
  never see half a file;
* a symlink: its target is written by the same rule (the link stays a link);
* a character device or a FIFO (``/dev/null``, a pipe): written in place, never replaced;
* anything else (a directory, a socket, a block device): refused with one clear error.

:func:`check_output_file` and :func:`check_output_dir` apply these rules *before* any work is done, so a
command given an impossible ``--out`` fails in a fraction of a second instead of after rendering.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
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
    except IsADirectoryError:
        raise MovieGenError(f"{label} is a directory, not a JSON file") from None
    except PermissionError:
        raise MovieGenError(f"{label} is not readable (permission denied)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MovieGenError(f"{label} is not valid JSON: {e}") from None


def read_json_object(path: str | Path, what: str = "", missing: str | None = None) -> dict:
    """:func:`read_json` for files that must hold a JSON object (configs, indexes)."""
    data = read_json(path, what, missing)
    if not isinstance(data, dict):
        label = f"{what} {path}" if what else str(path)
        raise MovieGenError(f"{label} must hold a JSON object, not a JSON {type(data).__name__}")
    return data


def _writable_dir(folder: Path, label: str) -> None:
    """``folder`` exists as a directory we can create files in, or can be created."""
    probe = folder
    while not probe.exists():
        if probe.is_symlink():  # dangling link
            raise MovieGenError(f"cannot write {label}: {probe} is a broken symlink")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise MovieGenError(f"cannot write {label}: {probe} is not a directory")
    try:  # a real write: permissions, read-only mounts and pseudo file systems all answer it
        fd, tmp = tempfile.mkstemp(prefix=".moviegen-probe-", dir=probe)
    except OSError as e:
        raise MovieGenError(f"cannot write {label}: {probe} is not writable ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(tmp)


def output_kind(path: str | Path) -> str:
    """How :func:`publish` treats ``path``: ``"replace"`` (missing or regular file) or ``"in-place"``."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except FileNotFoundError:
        if path.is_symlink():
            raise MovieGenError(f"cannot write {path}: it is a broken symlink") from None
        return "replace"
    except NotADirectoryError:
        raise MovieGenError(f"cannot write {path}: a parent of it is a file, not a directory") from None
    except OSError as e:
        raise MovieGenError(f"cannot write {path}: {e.strerror or e}") from None
    if stat.S_ISREG(mode):
        return "replace"
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "in-place"
    if stat.S_ISDIR(mode):
        raise MovieGenError(f"cannot write {path}: it is a directory (give a file name)")
    raise MovieGenError(f"cannot write {path}: it is not a regular file")


def resolve_output(path: str | Path) -> Path:
    """The path a write really goes to: a symlink's final target, else ``path`` itself."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Refuse, before any work, an output file path that cannot be written (one clear error)."""
    path = Path(path)
    label = f"{what} {path}"
    if str(path) in ("", "."):
        raise MovieGenError(f"{what}: no file name given")
    kind = output_kind(path)
    target = resolve_output(path)
    if kind == "in-place":
        if not os.access(target, os.W_OK):
            raise MovieGenError(f"cannot write {label}: permission denied")
        return path
    if target.exists() and not os.access(target, os.W_OK):
        raise MovieGenError(f"cannot write {label}: the file is read-only")
    _writable_dir(target.parent, label)
    return path


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be created or written."""
    path = Path(path)
    label = f"{what} {path}"
    if path.exists() and not path.is_dir():
        raise MovieGenError(f"cannot write {label}: it exists and is not a directory")
    try:
        path.exists()
    except OSError as e:
        raise MovieGenError(f"cannot write {label}: {e.strerror or e}") from None
    _writable_dir(path, label)
    return path


def temporary_sibling(path: str | Path, suffix: str = "") -> Path:
    """A new empty temporary file beside where ``path`` will really be written (0600, caller removes)."""
    target = resolve_output(path)
    if output_kind(path) == "in-place":
        fd, tmp = tempfile.mkstemp(prefix="moviegen-", suffix=suffix)
    else:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
        except OSError as e:
            raise MovieGenError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    return Path(tmp)


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Move a finished temporary file to ``path`` by the module's rules (rename, or copy in place)."""
    tmp, path = Path(tmp), Path(path)
    target = resolve_output(path)
    if output_kind(path) == "in-place":
        try:
            with open(tmp, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        finally:
            tmp.unlink(missing_ok=True)
        return path
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600 files
    try:
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MovieGenError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write a whole file by the module's rules: never half a file, never over a device or a folder."""
    path = check_output_file(path)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
