"""Random training clips and frames from decoded videos (used to train the TAE on real files)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen.errors import MovieGenError
from moviegen.video import read_video


def resize_short_side(video: Tensor, size: int) -> Tensor:
    """Resize ``(3, T, H, W)`` so its shorter side equals ``size`` (antialiased bilinear)."""
    h, w = video.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    if new == (h, w):
        return video
    frames = F.interpolate(
        video.transpose(0, 1), size=new, mode="bilinear", antialias=True, align_corners=False
    )
    return frames.transpose(0, 1).clamp(-1, 1)


class ClipSampler:
    """Samples random ``frames × size × size`` crops from a list of videos, kept in memory as uint8."""

    def __init__(self, videos: Sequence[Tensor], size: int, seed: int = 0):
        if not videos:
            raise MovieGenError("no training videos given")
        self.videos = [((resize_short_side(v, size) + 1) * 127.5).round().to(torch.uint8) for v in videos]
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_files(cls, paths: Sequence[Path], size: int, multiple: int = 8, seed: int = 0) -> ClipSampler:
        if size <= 0 or size % multiple:
            raise MovieGenError(f"crop size must be a positive multiple of {multiple}, got {size}")
        return cls([read_video(p)[0] for p in paths], size, seed)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def clip(self, frames: int) -> Tensor:
        """One random crop ``(3, frames, size, size)`` in [-1, 1]."""
        candidates = [v for v in self.videos if v.shape[1] >= frames]
        if not candidates:
            longest = max(v.shape[1] for v in self.videos)
            raise MovieGenError(f"no video has {frames} frames (longest has {longest}); lower --frames")
        v = candidates[self._randint(len(candidates))]
        t0 = self._randint(v.shape[1] - frames + 1)
        y0 = self._randint(v.shape[2] - self.size + 1)
        x0 = self._randint(v.shape[3] - self.size + 1)
        crop = v[:, t0 : t0 + frames, y0 : y0 + self.size, x0 : x0 + self.size]
        return crop.float() / 127.5 - 1.0

    def batches(self, batch_size: int, frames: int) -> Iterator[Tensor]:
        """An endless stream of ``(batch_size, 3, frames, size, size)`` batches (frames=1: images)."""
        while True:
            yield torch.stack([self.clip(frames) for _ in range(batch_size)])
