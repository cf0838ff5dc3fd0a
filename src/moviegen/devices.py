"""Choosing the device a command runs on: ``--device auto|cpu|cuda`` (``cuda:N`` too).

The model code never picks a device; commands resolve one here and move their modules with ``.to``.
``auto`` is CUDA when it is available, else the CPU. On CUDA the same code runs under bf16 autocast
(:func:`autocast`), the paper's training and inference precision (§3.5); on the CPU it runs in fp32.
"""

from __future__ import annotations

import contextlib

import torch

from moviegen.errors import MovieGenError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEVICE_HELP = "Device: auto (CUDA when available) | cpu | cuda[:N]."


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` for a ``--device`` value; a CUDA request without CUDA is one clear error."""
    if isinstance(name, torch.device):
        name = str(name)
    key = "auto" if name is None else str(name).strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "cuda" or (key.startswith("cuda:") and key[5:].isdigit()):
        if not torch.cuda.is_available():
            raise MovieGenError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
        index = int(key[5:]) if ":" in key else 0
        if index >= torch.cuda.device_count():
            raise MovieGenError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    raise MovieGenError(f"unknown device {name!r} (choose from auto, cpu, cuda, cuda:N)")


def autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing on the CPU: the one precision switch for every command."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
