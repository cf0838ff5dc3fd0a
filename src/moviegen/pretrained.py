"""``save_pretrained`` / ``from_pretrained`` folders: ``config.json`` + ``model.safetensors``.

The layout follows diffusers (one folder per component). Weights are read with safetensors only:
nothing is ever unpickled. Folders are written to a temporary sibling and renamed into place, so an
interrupted save never leaves a half-written model behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from moviegen.config import Config
from moviegen.errors import MovieGenError
from moviegen.files import check_output_dir, resolve_output

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

M = TypeVar("M", bound="PretrainedMixin")


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only when the block finishes without error.

    A symlink to a folder has its target replaced; a path that exists and is not a folder is refused.
    """
    path = Path(path)
    check_output_dir(path)
    path = resolve_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp creates 0700 folders
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise MovieGenError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise MovieGenError(f"cannot read weights {path}: {e}") from None


def save_module(
    module: torch.nn.Module, config: Config, folder: Path, dtype: torch.dtype | None = None
) -> None:
    """Write ``config.json`` and ``model.safetensors`` into an existing folder.

    ``dtype`` (e.g. ``torch.float16``) stores floating-point weights smaller; loading casts them back to
    the model's dtype.
    """
    (folder / CONFIG_NAME).write_text(config.to_json() + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})


class PretrainedMixin:
    """Adds diffusers-style folder saving/loading to an ``nn.Module`` built from ``config_class``."""

    config_class: ClassVar[type[Config]]
    config: Config

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        with atomic_dir(path) as tmp:
            save_module(self, self.config, tmp, dtype)  # type: ignore[arg-type]
        return Path(path)

    @classmethod
    def from_pretrained(cls: type[M], path: str | Path, **kwargs: Any) -> M:
        path = Path(path)
        if not path.is_dir():
            raise MovieGenError(f"model folder not found: {path}")
        from moviegen.memory import check_fits, module_bytes

        config = cls.config_class.from_json(path / CONFIG_NAME)
        check_fits(module_bytes(lambda: cls(config, **kwargs)), f"the model in {path}")  # type: ignore[call-arg]
        model = cls(config, **kwargs)  # type: ignore[call-arg]
        state = load_safetensors(path / WEIGHTS_NAME)
        load_state_strict(model, state, str(path))  # type: ignore[arg-type]
        return model


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load a state dict, turning missing/unexpected keys and shape mismatches into one clear error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise MovieGenError(
            f"{where}: weights do not match the config "
            f"(missing {len(missing)}: {missing[:3]}, unexpected {len(unexpected)}: {unexpected[:3]})"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise MovieGenError(
                f"{where}: {k} has shape {tuple(v.shape)}, config expects {tuple(own[k].shape)}"
            )
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
