"""Training degradations of the spatial upsampler (paper §5: Real-ESRGAN second-order degradation, randomly
replaced by TAE round-trip artefacts).

A high-resolution clip ``(3, T, H, W)`` in [-1, 1] becomes the low-resolution input the upsampler learns to
undo, ``(3, T, H/scale, W/scale)``:

- **second order** (Wang et al. 2021, Real-ESRGAN): two rounds of blur (Gaussian, random σ), resize (random
  factor and interpolation), additive Gaussian noise (random σ, fresh per frame) and JPEG compression
  (random quality, per frame), each round in a random order of the four, then a final resize to the target
  size with a random interpolation. The paper names the pipeline, not its ranges; ours are Real-ESRGAN's
  scaled down for small frames (say so: a 64-px frame cannot take a 4× intermediate downscale);
- **TAE artefacts**: with probability ``tae_prob`` the clip is instead resized to the target size and sent
  through a TAE round trip, the artefacts a cascade's first stage actually produces.

Every parameter of a clip (and its noise) comes from the ``numpy`` generator passed in: the same seed gives
the same degraded clip. Frames share the clip's blur, resize and JPEG quality (a video's degradation is
stable in time); noise differs per frame.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from moviegen.config import Config, require
from moviegen.errors import MovieGenError

RESIZE_MODES = ("bilinear", "bicubic", "area")


@dataclass(frozen=True)
class DegradationConfig(Config):
    """Ranges of the second-order pipeline (two rounds), and how often TAE artefacts replace it."""

    scale: int = 2
    blur_sigma: tuple[float, ...] = (0.2, 1.5, 0.2, 1.0)  # (lo, hi) of round 1, then of round 2
    resize_factor: tuple[float, ...] = (0.75, 1.25, 0.85, 1.15)
    noise_sigma: tuple[float, ...] = (0.0, 0.05, 0.0, 0.03)  # std on the [-1, 1] scale
    jpeg_quality: tuple[int, ...] = (40, 95, 50, 95)
    op_prob: float = 0.8  # each operation of a round is applied with this probability
    tae_prob: float = 0.25

    PRESETS: ClassVar[dict] = {"default": {}, "clean": dict(op_prob=0.0, tae_prob=0.0)}

    def validate(self) -> None:
        name = "DegradationConfig"
        require(isinstance(self.scale, int) and self.scale >= 1, name, "scale must be an int >= 1")
        for key in ("blur_sigma", "resize_factor", "noise_sigma", "jpeg_quality"):
            v = getattr(self, key)
            require(len(v) == 4 and v[0] <= v[1] and v[2] <= v[3] and min(v) >= 0, name,
                    f"{key} must be [lo1, hi1, lo2, hi2] with lo <= hi, all >= 0")  # fmt: skip
        require(min(self.resize_factor) > 0, name, "resize_factor must be > 0")
        require(
            min(self.jpeg_quality) >= 1 and max(self.jpeg_quality) <= 100, name, "jpeg quality in [1, 100]"
        )
        require(0 <= self.op_prob <= 1 and 0 <= self.tae_prob <= 1, name, "probabilities must be in [0, 1]")


def gaussian_blur(frames: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) frames, reflect padding, radius ⌈3σ⌉."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=frames.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = frames.shape[1]
    out = F.pad(frames, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def resize(frames: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    if mode == "area":
        return F.interpolate(frames, size=size, mode="area")
    return F.interpolate(frames, size=size, mode=mode, align_corners=False, antialias=True)


def jpeg(frames: Tensor, quality: int) -> Tensor:
    """JPEG-compress every (C, H, W) frame in [-1, 1] at ``quality`` (Pillow) and decode it back."""
    out = []
    for frame in frames:
        array = ((frame.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded.copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(out)


def degrade(
    video: Tensor, rng: np.random.Generator, config: DegradationConfig | None = None, tae: Any = None
) -> Tensor:
    """A degraded low-resolution copy ``(3, T, H/scale, W/scale)`` of ``video`` (see the module docstring).

    ``tae`` (a :class:`~moviegen.models.tae.TAE`) enables the TAE-artefact branch; without it the
    second-order pipeline is always used.
    """
    c = config or DegradationConfig()
    if video.ndim != 4 or video.shape[0] != 3:
        raise MovieGenError(f"degrade expects a (3, T, H, W) video, got {tuple(video.shape)}")
    _, _, h, w = video.shape
    if h % c.scale or w % c.scale:
        raise MovieGenError(f"video size {h}x{w} is not divisible by the scale {c.scale}")
    target = (h // c.scale, w // c.scale)
    frames = video.float().permute(1, 0, 2, 3)  # (T, 3, H, W)
    if tae is not None and rng.random() < c.tae_prob:
        small = resize(frames, target, "area").permute(1, 0, 2, 3)[None]
        device = next(tae.parameters()).device
        with torch.inference_mode():
            out = tae.decode(tae.encode(small.to(device)), num_frames=small.shape[2]).float().cpu()
        return out[0].clamp(-1, 1)
    noise_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    for r in range(2):
        lo = 2 * r
        for op in rng.permutation(4):
            if rng.random() >= c.op_prob:
                continue
            if op == 0:
                frames = gaussian_blur(frames, float(rng.uniform(*c.blur_sigma[lo : lo + 2])) + 1e-3)
            elif op == 1:
                f = float(rng.uniform(*c.resize_factor[lo : lo + 2]))
                size = (max(8, round(frames.shape[2] * f)), max(8, round(frames.shape[3] * f)))
                frames = resize(frames, size, RESIZE_MODES[rng.integers(len(RESIZE_MODES))])
            elif op == 2:
                sigma = float(rng.uniform(*c.noise_sigma[lo : lo + 2]))
                frames = frames + sigma * torch.randn(frames.shape, generator=noise_gen)
            else:
                frames = jpeg(frames, int(rng.integers(c.jpeg_quality[lo], c.jpeg_quality[lo + 1] + 1)))
    frames = resize(frames, target, RESIZE_MODES[rng.integers(len(RESIZE_MODES))])
    return frames.clamp(-1, 1).permute(1, 0, 2, 3).contiguous()
