"""Training the audio autoencoder (paper §7: a VAE trained with reconstruction losses).

Loss (:class:`AudioAELoss`), on a batch of waveforms (B, N):

- **spectral**: L1 between the compressed complex spectra the autoencoder works in (real and imaginary
  parts, and their magnitudes), the term that teaches the phase;
- **multi-scale STFT**: at FFT sizes 256, 1024 and 4096 (hop a quarter), L1 of the log magnitudes plus the
  spectral convergence ‖|X| − |Y|‖ / ‖|X|‖ [the paper names multi-scale mel/STFT reconstruction losses; a
  log-STFT loss over three resolutions covers transients (256) and pitch (4096)];
- **waveform**: L1 of the samples;
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
    stft_weight: float = 1.0
    stft_sizes: tuple[int, ...] = (256, 1024, 4096)
    waveform_weight: float = 1.0
    kl_weight: float = 1e-5

    PRESETS: ClassVar[dict] = {"default": {}}

    def validate(self) -> None:
        name = "AudioAELossConfig"
        for key in ("spectral_weight", "stft_weight", "waveform_weight", "kl_weight"):
            require(getattr(self, key) >= 0, name, f"{key} must be >= 0")
        require(all(s >= 16 for s in self.stft_sizes), name, "stft_sizes must be >= 16")


def stft_terms(target: Tensor, estimate: Tensor, n_fft: int) -> tuple[Tensor, Tensor]:
    """(log-magnitude L1, spectral convergence) at one resolution, hop n_fft / 4."""
    window = torch.hann_window(n_fft, device=target.device)
    spec = [torch.stft(x.float(), n_fft, n_fft // 4, window=window, return_complex=True).abs() for x in (target, estimate)]
    log = (torch.log(spec[0] + 1e-5) - torch.log(spec[1] + 1e-5)).abs().mean()
    convergence = torch.linalg.norm(spec[0] - spec[1]) / torch.linalg.norm(spec[0]).clamp_min(1e-5)
    return log, convergence


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
        spec = model.decode_spectrum(z)
        target = model.spectrum(audio)
        recon = model.waveform(spec, audio.shape[-1])
        re, im = spec.chunk(2, dim=1)
        tre, tim = target.chunk(2, dim=1)
        spectral = (spec - target).abs().mean() + (torch.hypot(re, im) - torch.hypot(tre, tim)).abs().mean()
        stft = sum(sum(stft_terms(audio, recon, n)) for n in c.stft_sizes) / len(c.stft_sizes)
        waveform = (audio - recon).abs().mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        total = c.spectral_weight * spectral + c.stft_weight * stft + c.waveform_weight * waveform + c.kl_weight * kl
        terms = dict(spectral=float(spectral), stft=float(stft), waveform=float(waveform), kl=float(kl))
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
        terms["loss"] = float(total)
        return terms
