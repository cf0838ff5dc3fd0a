"""Movie Gen's spatial upsampler: a low-resolution video → the same video at ``scale``× the size (paper §5).

A variant of the text-to-video backbone (:meth:`MovieGenTransformer.from_base`): the low-resolution video
is bilinearly upsampled to the target size, encoded by the TAE and normalised, and that latent is
concatenated after the noisy latent on the channels (``in_channels = 2 × latent channels``). Sampling is
the one sampler, :func:`moviegen.flow.sample`, with ``cond`` and MultiDiffusion windows over latent
frames (the paper: 14 latent frames overlapping by 4, 20 Euler steps). Text conditioning is kept; the
default prompt is the null text (an all-False mask), since the video already says what is in it.

Not in the paper: an optional colour fix (:func:`fix_colors`, ``color_fix`` = a blur sigma in output
pixels; 0 = off) takes the output's lowest frequencies from the upsampled input, because a TAE decoding at
a size it was not trained at shifts flat colours. The shipped world upsampler uses σ = 1.

Folder layout as :class:`~moviegen.pipeline.MovieGenPipeline` (``text/``, ``transformer/``, ``tae/``) with a
``model_index.json`` whose ``_class_name`` is ``UpsamplerPipeline`` and which records the model's own
``scale``, ``num_steps``, ``window``, ``overlap``, ``guidance_scale`` and ``color_fix`` defaults and the
weights' SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen import flow
from moviegen.data.degrade import gaussian_blur
from moviegen.devices import autocast
from moviegen.errors import MovieGenError
from moviegen.models.tae import TAE
from moviegen.models.text import TextConditioner
from moviegen.models.transformer import MovieGenTransformer
from moviegen.pipeline import (
    MemberPipeline,
    MovieGenPipeline,
    check_guidance_scale,
)

DEFAULT_UPSAMPLER = Path(__file__).parent / "weights" / "upsampler"  # shipped by ``moviegen train upsampler``
PAPER_STEPS, PAPER_WINDOW, PAPER_OVERLAP = 20, 14, 4


def default_window(max_latent_frames: int) -> tuple[int, int]:
    """The MultiDiffusion window and overlap of an upsampler whose temporal table has ``max_latent_frames``
    rows: the paper's 14 / 4, shortened to the table (overlap at most half the window)."""
    window = min(PAPER_WINDOW, max_latent_frames)
    return window, min(PAPER_OVERLAP, window // 2)


def conditioning_latent(tae: TAE, video: Tensor, size: tuple[int, int], tile_frames: int = 32) -> Tensor:
    """The conditioning latent (1, C, t, h, w) of ``video`` (3, T, h₀, w₀): bilinearly upsampled to ``size``,
    encoded by ``tae`` and normalised — for training pairs and sampling alike.

    Upsampled and encoded ``tile_frames`` frames at a time (the TAE's own independent temporal tiles, so
    the latent is the same as encoding all at once), so only one tile ever exists at the large size."""
    device = next(tae.parameters()).device
    latents = []
    for start in range(0, video.shape[1], tile_frames):
        frames = video[:, start : start + tile_frames].float().permute(1, 0, 2, 3)
        up = F.interpolate(frames, size=size, mode="bilinear", align_corners=False).clamp_(-1, 1)
        latents.append(tae.encode(up.permute(1, 0, 2, 3)[None].to(device), tile_frames=None))
    return tae.normalize(torch.cat(latents, dim=2).float())


def fix_colors(video: Tensor, reference: Tensor, sigma: float) -> Tensor:
    """``video`` (3, T, H, W) with its Gaussian low-pass band (``sigma`` px) replaced by ``reference``'s.

    Not in the paper (our addition, as SR pipelines built on latent diffusion do): a TAE decoding at a
    size it was not trained at shifts flat colours (the world TAE, trained at 64 px, turns orange towards
    yellow at 128 px); the upsampled input knows the colours, the model the detail."""

    def low(x: Tensor) -> Tensor:
        return gaussian_blur(x.float().permute(1, 0, 2, 3), sigma).permute(1, 0, 2, 3)

    return video.float() - low(video) + low(reference)


def _check_color_fix(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not 0 <= sigma <= 64:
        raise MovieGenError(f"color_fix must be a blur sigma in [0, 64] px (0 = off), got {sigma!r}")
    return float(sigma)


class UpsamplerPipeline(MemberPipeline):
    """Text encoders + projector, the conditioned backbone and the TAE; ``__call__`` upsamples one video."""

    SETTINGS = ("scale", "num_steps", "window", "overlap", "guidance_scale", "color_fix")
    FOLDER = "upsampler"

    def __init__(
        self,
        text: TextConditioner,
        transformer: MovieGenTransformer,
        tae: TAE,
        scale: int = 2,
        num_steps: int = PAPER_STEPS,
        window: int = PAPER_WINDOW,
        overlap: int = PAPER_OVERLAP,
        guidance_scale: float = 1.0,
        color_fix: float = 0.0,
    ):
        c = transformer.config
        latent = tae.config.latent_channels
        if c.in_channels != 2 * latent or c.out_channels != latent:
            raise MovieGenError(
                f"an upsampler backbone reads 2 × {latent} channels (noisy + conditioning latent) and writes "
                f"{latent}; this one reads {c.in_channels} and writes {c.out_channels} (a text-to-video "
                "model? make one with UpsamplerPipeline.from_base)"
            )
        if text.model_dim != c.dim:
            raise MovieGenError(f"text projector width {text.model_dim} != transformer dim {c.dim}")
        for name, value in (("scale", scale), ("num_steps", num_steps), ("window", window)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MovieGenError(f"{name} must be a positive integer, got {value!r}")
        self.text, self.transformer, self.tae = text, transformer, tae
        self._check_window(window, overlap)
        self.scale, self.num_steps, self.window, self.overlap = scale, num_steps, window, overlap
        self.guidance_scale = check_guidance_scale(guidance_scale)
        self.color_fix = _check_color_fix(color_fix)
        for module in (text, transformer, tae):
            module.eval()

    @classmethod
    def from_base(cls, base: MovieGenPipeline | str | Path, scale: int = 2, **defaults) -> UpsamplerPipeline:
        """An untrained upsampler from a text-to-video pipeline: the backbone widened by ``from_base``
        (so it starts as the base model) with its spatial positional tables grown ``scale``×. The window
        defaults to the paper's 14 latent frames (overlap 4), or to the base's temporal table when that is
        shorter (the world backbone knows 2 latent frames: window 2, overlap 1)."""
        if not isinstance(base, MovieGenPipeline):
            base = MovieGenPipeline.from_pretrained(base)
        c = base.transformer.config
        variant = MovieGenTransformer.from_base(base.transformer, in_channels=2 * c.out_channels)
        variant.expand_positions(max_height_patches=scale * c.max_height_patches,
                                 max_width_patches=scale * c.max_width_patches)  # fmt: skip
        window, overlap = default_window(variant.config.max_latent_frames)
        defaults = {"window": window, "overlap": overlap} | defaults
        return cls(base.text, variant, base.tae, scale=scale, **defaults)

    def _check_window(self, window: int, overlap: int) -> None:
        flow.window_starts(window, window, overlap)  # checks both numbers
        tables = self.transformer.config.max_latent_frames
        if window > tables:
            raise MovieGenError(
                f"window {window} latent frames is longer than the model's {tables} positions"
            )

    # -- upsampling

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The output size of a ``height × width`` input, checked against the model's tables."""
        multiple = 16
        out_h, out_w = height * self.scale, width * self.scale
        if height < 1 or width < 1 or out_h % multiple or out_w % multiple:
            raise MovieGenError(
                f"input {height}x{width}: upsampled {self.scale}x it must have sides that are multiples of "
                f"{multiple} (inputs whose sides are multiples of {multiple // self.scale} work)"
            )
        limit = self.max_size
        if out_h > limit[0] or out_w > limit[1]:
            raise MovieGenError(
                f"this upsampler writes at most {limit[0]}x{limit[1]} px "
                f"(asked {height}x{width} -> {out_h}x{out_w})"
            )
        return out_h, out_w

    def condition(self, video: Tensor, size: tuple[int, int]) -> Tensor:
        """The conditioning latent of ``video`` at ``size`` (:func:`conditioning_latent`)."""
        return conditioning_latent(self.tae, video, size)

    @torch.inference_mode()
    def __call__(
        self,
        video: Tensor,
        prompt: str = "",
        seed: int = 0,
        num_steps: int | None = None,
        window: int | None = None,
        overlap: int | None = None,
        guidance_scale: float | None = None,
        color_fix: float | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Upsample ``video`` (3, T, h, w) in [-1, 1]; returns (3, T, scale·h, scale·w) in [-1, 1].

        Defaults are the model's own (``num_steps``, ``window``, ``overlap``, ``guidance_scale``); an empty
        prompt is the null text. Euler steps on the linear schedule, deterministic for a seed.
        """
        if video.ndim != 4 or video.shape[0] != 3 or video.shape[1] < 1:
            raise MovieGenError(f"expected a video of shape (3, T, H, W), got {tuple(video.shape)}")
        if not bool(torch.isfinite(video).all()):
            raise MovieGenError("the input video holds non-finite values")
        size = self.output_size(video.shape[2], video.shape[3])
        steps = self.num_steps if num_steps is None else num_steps
        window = self.window if window is None else window
        overlap = self.overlap if overlap is None else overlap
        guidance = self.guidance_scale if guidance_scale is None else check_guidance_scale(guidance_scale)
        sigma = self.color_fix if color_fix is None else _check_color_fix(color_fix)
        self._check_window(window, overlap)
        times = flow.linear(steps)
        device = self.device
        with autocast(device):
            cond = self.condition(video, size)
            generator = torch.Generator().manual_seed(seed)
            noise = torch.randn(cond.shape[0], self.tae.config.latent_channels, *cond.shape[2:],
                                generator=generator).to(device)  # fmt: skip
            tokens, mask = self.text([prompt])
            mask = mask.to(device) & bool(prompt.strip())
            x1 = flow.sample(self.transformer, noise, tokens, mask, times, guidance, callback=callback,
                             cond=cond, window=window, overlap=overlap)  # fmt: skip
            out = torch.empty(3, video.shape[1], *size)
            pos = 0
            for chunk in self.tae.decode_chunks(self.tae.denormalize(x1.float()), num_frames=video.shape[1]):
                chunk = chunk[0].float().cpu()
                if not bool(torch.isfinite(chunk).all()):
                    raise MovieGenError(
                        "the upsampled video came out non-finite (NaN/inf); nothing was written"
                    )
                if sigma > 0:
                    reference = video[:, pos : pos + chunk.shape[1]].float().permute(1, 0, 2, 3)
                    reference = F.interpolate(reference, size=size, mode="bilinear", align_corners=False)
                    chunk = fix_colors(chunk, reference.permute(1, 0, 2, 3), sigma)
                out[:, pos : pos + chunk.shape[1]] = chunk.clamp_(-1, 1)
                pos += chunk.shape[1]
        return out
