"""Shared test helpers: synthetic clips and running the CLI in-process."""

from __future__ import annotations

import sys

import pytest
import torch


def moving_clip(frames: int = 16, height: int = 32, width: int = 32) -> torch.Tensor:
    """A smooth test clip ``(3, T, H, W)`` in [-1, 1]: a blob drifting right over colour gradients."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    out = []
    for t in range(frames):
        blob = torch.exp(-((xx + 0.5 - 0.06 * t) ** 2 + yy**2) / 0.25)
        out.append(torch.stack([blob * 1.6 - 0.8, 0.5 * xx, 0.5 * yy - 0.3 * blob]))
    return torch.stack(out, 1)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``moviegen ARGS`` through its real entry point; return (exit code, stdout, stderr)."""
    from moviegen.cli import main

    argv = sys.argv
    sys.argv = ["moviegen", *map(str, args)]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


__all__ = ["moving_clip", "run_cli", "pytest"]
