"""Reconstruction quality of the autoencoder: PSNR and SSIM, as reported in paper §3.1.1 (Table 4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(a: Tensor, b: Tensor, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB of two tensors with values spanning ``data_range``."""
    mse = F.mse_loss(a.float(), b.float()).item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(data_range**2 / mse)).item()


def ssim(a: Tensor, b: Tensor, data_range: float = 2.0, window: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004, Gaussian window) over frames and channels.

    Inputs are ``(..., H, W)`` tensors; every leading index is one 2D image.
    """
    x = a.float().reshape(-1, 1, *a.shape[-2:])
    y = b.float().reshape(-1, 1, *b.shape[-2:])
    window = min(window, x.shape[-1], x.shape[-2])
    coords = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device)
    kernel = (g[:, None] * g[None, :]).view(1, 1, window, window)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(z, kernel)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean().item()


class ReconstructionScore:
    """PSNR and SSIM accumulated over a video decoded chunk by chunk (frame-weighted)."""

    def __init__(self, data_range: float = 2.0):
        self.data_range = data_range
        self.squared_error = 0.0
        self.values = 0
        self.ssim_sum = 0.0
        self.frames = 0

    def update(self, recon: Tensor, target: Tensor) -> None:
        """Add ``(C, T, H, W)`` chunks; frames are along dim 1."""
        self.squared_error += F.mse_loss(recon.float(), target.float(), reduction="sum").item()
        self.values += target.numel()
        self.ssim_sum += ssim(recon, target, self.data_range) * target.shape[1]
        self.frames += target.shape[1]

    @property
    def psnr(self) -> float:
        mse = self.squared_error / max(self.values, 1)
        return float("inf") if mse == 0 else 10.0 * math.log10(self.data_range**2 / mse)

    @property
    def ssim(self) -> float:
        return self.ssim_sum / max(self.frames, 1)
