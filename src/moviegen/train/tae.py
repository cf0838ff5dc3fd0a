"""Training the TAE (paper §3.1.1): reconstruction + KL + Outlier Penalty Loss, images and videos 1:3.

The paper trains with reconstruction, perceptual and adversarial losses plus OPL, jointly on images
and videos with one image batch per three video batches. Perceptual and adversarial terms are
optional here (off by default, and off on CPU in our recipes): a perceptual network is supplied by
the caller as any module mapping frames to a list of feature maps (e.g. a locally stored LPIPS/VGG),
and the adversarial term uses the small 3D patch discriminator below with a hinge loss.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moviegen.config import Config, require
from moviegen.models.tae import TAE, outlier_penalty_loss


@dataclass(frozen=True)
class TAELossConfig(Config):
    """Loss weights. OPL weight 1e5 and r = 3 follow the paper; the KL weight is our choice (SD-VAE's).

    ``l2_weight`` adds an MSE term (off by default, not in the paper): on frames that are mostly flat
    background, L1 alone leaves small objects' colours wrong for a long time; MSE weighs their large errors
    more (measured on the built-in world, see ``WorldRecipe.tae_l2_weight``).
    """

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    kl_weight: float = 1e-6
    opl_weight: float = 1e5
    opl_r: float = 3.0
    perceptual_weight: float = 0.0
    adversarial_weight: float = 0.0

    PRESETS: ClassVar[dict] = {"default": {}}

    def validate(self) -> None:
        for name in (
            "l1_weight",
            "l2_weight",
            "kl_weight",
            "opl_weight",
            "perceptual_weight",
            "adversarial_weight",
        ):
            require(getattr(self, name) >= 0, "TAELossConfig", f"{name} must be >= 0")
        require(self.opl_r > 0, "TAELossConfig", "opl_r must be > 0")


class PatchDiscriminator(nn.Module):
    """A small 3D PatchGAN judging real vs reconstructed clips patch by patch."""

    def __init__(self, channels: int = 3, width: int = 32, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = []
        cin = channels
        for i in range(layers):
            cout = width * 2**i
            mods += [nn.Conv3d(cin, cout, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        mods.append(nn.Conv3d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, video: Tensor) -> Tensor:
        return self.net(video)


def _frames(video: Tensor) -> Tensor:
    return video.transpose(1, 2).flatten(0, 1)  # (B, C, T, H, W) → (B·T, C, H, W)


class TAELoss(nn.Module):
    """Generator-side TAE loss; returns the total and its named terms."""

    def __init__(
        self,
        config: TAELossConfig | None = None,
        perceptual: nn.Module | None = None,
        discriminator: nn.Module | None = None,
    ):
        super().__init__()
        self.config = config or TAELossConfig()
        self.perceptual = perceptual
        self.discriminator = discriminator
        if perceptual is not None:
            perceptual.requires_grad_(False).eval()

    def forward(
        self, video: Tensor, recon: Tensor, latent: Tensor, kl: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        terms = {
            "l1": F.l1_loss(recon, video),
            "kl": kl,
            "opl": outlier_penalty_loss(latent, cfg.opl_r),
        }
        total = cfg.l1_weight * terms["l1"] + cfg.kl_weight * kl + cfg.opl_weight * terms["opl"]
        if cfg.l2_weight > 0:
            terms["mse"] = F.mse_loss(recon, video)
            total = total + cfg.l2_weight * terms["mse"]
        if self.perceptual is not None and cfg.perceptual_weight > 0:
            feats = zip(self.perceptual(_frames(recon)), self.perceptual(_frames(video)), strict=True)
            terms["perceptual"] = sum(F.l1_loss(a, b) for a, b in feats)
            total = total + cfg.perceptual_weight * terms["perceptual"]
        if self.discriminator is not None and cfg.adversarial_weight > 0:
            terms["adversarial"] = -self.discriminator(recon).mean()
            total = total + cfg.adversarial_weight * terms["adversarial"]
        return total, {k: float(v.detach()) for k, v in terms.items()}


def mix_images_and_videos(
    images: Iterable[Tensor], videos: Iterable[Tensor], images_per_cycle: int = 1, videos_per_cycle: int = 3
) -> Iterator[Tensor]:
    """Interleave image batches (1-frame videos) and video batches, 1:3 by default as in the paper."""
    image_it, video_it = iter(images), iter(videos)
    pattern = ["image"] * images_per_cycle + ["video"] * videos_per_cycle
    for kind in itertools.cycle(pattern):
        try:
            yield next(image_it) if kind == "image" else next(video_it)
        except StopIteration:
            return


class TAETrainer:
    """One optimisation step at a time over batches ``(B, 3, T, H, W)`` (images have T = 1)."""

    def __init__(
        self,
        model: TAE,
        loss: TAELoss | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        sample_posterior: bool = True,
        generator: torch.Generator | None = None,
    ):
        self.model, self.loss = model, loss or TAELoss()
        self.sample_posterior = sample_posterior
        self.grad_clip, self.generator = grad_clip, generator
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        disc = self.loss.discriminator
        self.disc_optimizer = torch.optim.AdamW(disc.parameters(), lr=lr) if disc is not None else None
        self.step_count = 0

    def train_step(self, batch: Tensor) -> dict[str, float]:
        self.model.train()
        recon, post = self.model(batch, sample=self.sample_posterior, generator=self.generator)
        if self.loss.discriminator is not None:
            self.loss.discriminator.requires_grad_(False)
        total, terms = self.loss(batch, recon, post.mean, post.kl())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        terms["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip))
        self.optimizer.step()
        if self.disc_optimizer is not None and self.loss.config.adversarial_weight > 0:
            terms["discriminator"] = self._discriminator_step(batch, recon.detach())
        self.step_count += 1
        terms["loss"] = total.item()
        return terms

    def _discriminator_step(self, real: Tensor, fake: Tensor) -> float:
        disc = self.loss.discriminator
        assert disc is not None and self.disc_optimizer is not None
        disc.requires_grad_(True)
        loss = F.relu(1.0 - disc(real)).mean() + F.relu(1.0 + disc(fake)).mean()  # hinge
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_optimizer.step()
        return loss.item()
