"""Will it fit? Memory estimates made from a config *before* anything is allocated.

A config read from disk can ask for anything (``dim=600000`` is a 1.4 TB transformer); allocating it
first means minutes of swapping and an out-of-memory kill with no word. Every place that builds a
model from a file or trains at a user-given size checks here first and refuses with one line that
says what is needed and what the machine has.

* weights: the module is built on the ``meta`` device (no memory) and its parameters and buffers are
  counted, so the estimate is exact for the weights;
* TAE training activations: measured on the ``tiny`` TAE (16 frames at 64 / 128 / 256 px: 0.53 /
  1.69 / 6.54 GB peak RSS growth per step), they grow with pixels × frames at about 200 bytes per
  pixel-frame per channel of the first block, times ``(layers_per_block + 1) / 2``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from moviegen.errors import MovieGenError

GB = 1024**3
TAE_BYTES_PER_PIXEL_CHANNEL = 200


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Memory free for new tensors: CUDA's free memory, else the kernel's MemAvailable."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def module_bytes(build: Callable[[], nn.Module]) -> int:
    """Bytes of the parameters and buffers of the module ``build()`` makes, counted on ``meta``."""
    with torch.device("meta"):
        module = build()
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def check_fits(need: int, what: str, device: torch.device | str = "cpu", fix: str = "") -> None:
    """Refuse, with one clear line, when ``need`` bytes exceed what ``device`` has free."""
    have = available_bytes(device)
    if need > have:
        hint = f"; {fix}" if fix else ""
        raise MovieGenError(
            f"{what} needs {need / GB:,.1f} GB but {torch.device(device).type} "
            f"has {have / GB:,.1f} GB free{hint}"
        )


def tae_training_bytes(config, batch: int, frames: int, size: int) -> int:
    """Estimated peak activation memory of one TAE training step on ``batch`` clips of frames × size²."""
    per_pixel = TAE_BYTES_PER_PIXEL_CHANNEL * config.block_out_channels[0] * (config.layers_per_block + 1) / 2
    return int(per_pixel * batch * frames * size * size)


def largest_tae_size(config, batch: int, frames: int, budget: int, multiple: int = 8) -> int:
    """The largest square crop (a multiple of ``multiple``) whose TAE training step fits in ``budget``."""
    size = multiple
    while tae_training_bytes(config, batch, frames, size + multiple) <= budget:
        size += multiple
    return size
