"""Training the audio autoencoder (paper §7: a VAE trained with reconstruction losses).

Loss (:class:`AudioAELoss`), on a batch of waveforms (B, N), in the STFT-magnitude domain the autoencoder
works in (:mod:`moviegen.models.audio`):

- **spectral**: L1 between the compressed magnitudes ``|X|^0.3`` (loud partials and quiet tails alike);
- **squared**: the same difference squared. L1 alone is met by the median of each bin, and a bin that
  holds an impact's partial a few frames in a thousand has the noise floor as its median: with L1 only the
  round trip kept 46 % of the world's impacts (F1) and the right pitch for 27 %; with this term 76 %;
- **peak** (``linear_weight``): the squared error of ``|X|^peak_power`` (1: the linear magnitude) over the
  target's mean square, which weighs the loudest partials — the impacts' fundamentals: pitch right for
  100 % instead of 19 % (1500 steps, world clips; ``docs/audio.md``);
- **log**: L1 between log magnitudes (floored at -60 dB below full scale), which weighs the decays and the
  silence between events [the paper names multi-scale mel/STFT and waveform losses for its waveform codec;
  ours decodes a magnitude, so its losses are magnitude losses at the model's own resolution, whose 10 ms
  hop and 25 Hz bins resolve both the impacts' attacks and the pitch ladder];
- **KL** to N(0, I), weighted small (a VAE whose latent stays near unit scale for the DiT).

:class:`AudioAETrainer` takes one AdamW step per batch, as the TAE's trainer does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from moviegen.config import Config, require
from moviegen.models.audio import AudioAutoencoder


@dataclass(frozen=True)
class AudioAELossConfig(Config):
    spectral_weight: float = 1.0
    log_weight: float = 0.1
    linear_weight: float = 1.0
    squared_weight: float = 10.0
    peak_power: float = 1.0
    floor_db: float = -60.0
    kl_weight: float = 1e-5

    PRESETS: ClassVar[dict] = {"default": {}}

    def validate(self) -> None:
        name = "AudioAELossConfig"
        for key in ("spectral_weight", "log_weight", "linear_weight", "squared_weight", "kl_weight"):
            require(getattr(self, key) >= 0, name, f"{key} must be >= 0")
        require(self.floor_db < 0, name, "floor_db must be < 0")
        require(0 < self.peak_power <= 2, name, "peak_power must be in (0, 2]")


class AudioAELoss:
    """The weighted sum of the module docstring's terms; returns (total, {term: value})."""

    def __init__(self, config: AudioAELossConfig | None = None):
        self.config = config or AudioAELossConfig()

    def __call__(self, model: AudioAutoencoder, audio: Tensor, sample: bool = True,
                 generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
        c = self.config
        audio = model.pad(audio)
        mean, logvar = model.posterior(audio)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator) if sample else mean
        estimate = model.decode_spectrum(z)
        target = model.spectrum(audio)
        spectral = (estimate - target).abs().mean()
        squared = (estimate - target).pow(2).mean()
        compression = model.config.compression
        floor = 10 ** (c.floor_db / 20) * model.config.n_fft / 4  # a full-scale sine's peak bin is ~n_fft / 4
        floor_c = floor**compression
        log = (estimate.clamp_min(floor_c).log() - target.clamp_min(floor_c).log()).abs().mean() / compression
        power = c.peak_power / compression
        peak_target = target**power
        linear = (estimate.clamp_min(0) ** power - peak_target).pow(2).mean() / peak_target.pow(2).mean().clamp_min(1e-12)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        total = c.spectral_weight * spectral + c.log_weight * log + c.linear_weight * linear + c.squared_weight * squared
        total = total + c.kl_weight * kl
        terms = dict(spectral=float(spectral.detach()), log=float(log.detach()), linear=float(linear.detach()), squared=float(squared.detach()),
                     kl=float(kl.detach()))
        return total, terms


class AudioAETrainer:
    """One optimisation step at a time over waveform batches (B, N)."""

    def __init__(self, model: AudioAutoencoder, loss: AudioAELoss | None = None, lr: float = 1e-3,
                 grad_clip: float = 1.0, generator: torch.Generator | None = None):  # fmt: skip
        self.model, self.loss, self.grad_clip, self.generator = model, loss or AudioAELoss(), grad_clip, generator
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
        self.step_count = 0

    def train_step(self, batch: Tensor, lr: float | None = None) -> dict[str, float]:
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.model.train()
        total, terms = self.loss(self.model, batch, generator=self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        terms["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip))
        self.optimizer.step()
        self.step_count += 1
        terms["loss"] = float(total.detach())
        return terms
