"""Movie Gen Audio: a video and an audio prompt (+ an optional music prompt) → 48 kHz audio (paper §7).

The pipeline only orchestrates four components, each a ``save_pretrained`` folder of its own:

* ``frames/``: the per-frame video encoder (:class:`~moviegen.models.audio.FrameEncoder`), whose features
  are resampled to the 25 Hz audio latent rate;
* ``text/``: the text encoder and projector for the audio caption and music prompt, one text
  (:func:`~moviegen.data.sound.compose_audio_prompt`), read by cross-attention;
* ``transformer/``: the flow-matching DiT — the video backbone's :class:`MovieGenTransformer` with
  patch 1×1×1 over the audio latent laid out as (C, T, 1, 1), one token per latent frame; its input is the
  noisy latent with the video features, a masked audio context and the mask concatenated on the channels
  (:func:`dit_condition`);
* ``autoencoder/``: the audio VAE (:class:`~moviegen.models.audio.AudioAutoencoder`).

Sampling is the video model's: Euler steps from t = 0 (noise) to 1 (data) on the linear-quadratic schedule,
classifier-free guidance on the text, and with ``video_guidance`` (a model trained with feature dropout)
on the video features too: the unconditional branch then sees neither text nor video features (the
audio context rides along both branches).

**Audio extension** (paper §7): a video longer than the DiT's window (``transformer.config.max_latent_frames``
latent frames) gets its audio by one of

* ``triangular`` (default): MultiDiffusion, overlapping windows (``overlap`` latent frames) denoised
  together, each frame's velocity the triangular-weighted mean of its windows' (:func:`moviegen.flow.sample`);
* ``uniform``: the same with a plain mean (the fusion ablation); ``independent``: windows side by side, no
  overlap (no fusion at all);
* ``context``: window after window, each conditioned on the last ``overlap`` latent frames already generated
  (the masked audio context), which it keeps.

Folder: the four components and a ``model_index.json`` whose ``_class_name`` is ``AudioPipeline``, with
``num_steps``, ``schedule``, ``guidance_scale``, ``overlap``, ``extension`` and ``video_guidance`` and
every weight's SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from moviegen import flow
from moviegen.data.sound import compose_audio_prompt
from moviegen.devices import autocast
from moviegen.errors import MovieGenError
from moviegen.models.audio import (
    FEATURES,
    AudioAutoencoder,
    AudioAutoencoderConfig,
    FrameEncoder,
    FrameEncoderConfig,
    audio_dit_channels,
    video_features,
)
from moviegen.models.text import TextConditioner, default_text_conditioner
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig
from moviegen.pipeline import SCHEDULES, MemberPipeline, check_guidance_scale, schedule_times

DEFAULT_AUDIO_MODEL = Path(__file__).parent / "weights" / "audio"  # ``moviegen train audio``
EXTENSIONS = ("triangular", "uniform", "independent", "context")
MAX_SECONDS = 3600.0
MAX_PROMPT_CHARS = 2000


def dit_condition(features: Tensor, context: Tensor, mask: Tensor) -> Tensor:
    """The DiT's conditioning channels (B, F + C + 1, T, 1, 1): video features (B, F, T), the audio context
    latent (B, C, T) zeroed where ``mask`` (B, T) is False (all False: no context), and the mask itself."""
    m = mask.to(features.dtype)[:, None]
    return torch.cat([features, context.to(features.dtype) * m, m], dim=1)[..., None, None]


class AudioPipeline(MemberPipeline):
    """Frame encoder, text conditioner, audio DiT and audio VAE; ``__call__`` makes a waveform."""

    COMPONENTS = {"text": TextConditioner, "transformer": MovieGenTransformer, "autoencoder": AudioAutoencoder,
                  "frames": FrameEncoder}  # fmt: skip
    SETTINGS = ("num_steps", "schedule", "guidance_scale", "overlap", "extension", "video_guidance")
    FOLDER = "audio model"

    def __init__(
        self,
        text: TextConditioner,
        transformer: MovieGenTransformer,
        autoencoder: AudioAutoencoder,
        frames: FrameEncoder,
        num_steps: int = 50,
        schedule: str = "linear-quadratic",
        guidance_scale: float = 3.0,
        overlap: int | None = None,
        extension: str = "triangular",
        video_guidance: bool = False,
    ):
        c, latent = transformer.config, autoencoder.config.latent_channels
        if c.out_channels != latent or c.in_channels != audio_dit_channels(latent):
            raise MovieGenError(
                f"an audio DiT for a {latent}-channel latent reads {audio_dit_channels(latent)} channels and "
                f"writes {latent}; this one reads {c.in_channels} and writes {c.out_channels}"
            )
        if tuple(c.patch_size) != (1, 1, 1) or c.max_height_patches != 1 or c.max_width_patches != 1:
            raise MovieGenError("an audio DiT has patch size 1x1x1 and 1x1 spatial positions (an audio preset)")
        if text.model_dim != c.dim:
            raise MovieGenError(f"text projector width {text.model_dim} != transformer dim {c.dim}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise MovieGenError(f"num_steps must be a positive integer, got {num_steps!r}")
        if schedule not in SCHEDULES:
            raise MovieGenError(f"unknown schedule {schedule!r} (choose from {', '.join(SCHEDULES)})")
        overlap = c.max_latent_frames // 2 if overlap is None else overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 < overlap < c.max_latent_frames:
            raise MovieGenError(f"overlap must be in (0, {c.max_latent_frames}) latent frames, got {overlap!r}")
        self.check_extension(extension)
        if not isinstance(video_guidance, bool):
            raise MovieGenError(f"video_guidance must be true or false, got {video_guidance!r}")
        self.video_guidance = video_guidance
        self.text, self.transformer, self.autoencoder, self.frames = text, transformer, autoencoder, frames
        self.num_steps, self.schedule, self.overlap, self.extension = num_steps, schedule, overlap, extension
        self.guidance_scale = check_guidance_scale(guidance_scale)
        for module in (text, transformer, autoencoder, frames):
            module.eval()

    @classmethod
    def from_presets(cls, transformer: str = "audio-tiny", autoencoder: str = "tiny", frames: str = "tiny",
                     seed: int = 0, **settings) -> AudioPipeline:  # fmt: skip
        """Randomly initialised components from presets, with the offline MiniLM text encoder."""
        torch.manual_seed(seed)
        dit = MovieGenTransformer(TransformerConfig.preset(transformer))
        return cls(default_text_conditioner(dit.config.dim), dit, AudioAutoencoder(AudioAutoencoderConfig.preset(
            autoencoder)), FrameEncoder(FrameEncoderConfig.preset(frames)), **settings)  # fmt: skip

    @staticmethod
    def check_extension(extension: str) -> str:
        if extension not in EXTENSIONS:
            raise MovieGenError(f"unknown audio extension {extension!r} (choose from {', '.join(EXTENSIONS)})")
        return extension

    @property
    def window(self) -> int:
        """Latent frames the DiT sees at once."""
        return self.transformer.config.max_latent_frames

    @property
    def sample_rate(self) -> int:
        return self.autoencoder.config.sample_rate

    # -- conditioning

    def video_features(self, video: Tensor, fps: float, num_latent_frames: int) -> Tensor:
        """(FEATURES, T_latent): the frame encoder's features at the latent rate (:func:`video_features`)."""
        return video_features(self.frames, video, fps, num_latent_frames, self.autoencoder.config.latent_rate)

    def check_request(self, video: Tensor, prompt: str, fps: float, seconds: float | None) -> float:
        """The errors before any work; returns the audio duration (s)."""
        if not isinstance(video, Tensor) or video.ndim != 4 or video.shape[0] != 3 or video.shape[1] < 1:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise MovieGenError(f"the video must have shape (3, T, H, W) with at least one frame, got {shape}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise MovieGenError("the audio prompt is empty: say what the video sounds like (--prompt)")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise MovieGenError(f"the audio prompt is {len(prompt)} characters long (at most {MAX_PROMPT_CHARS})")
        if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= 1000:
            raise MovieGenError(f"fps must be in (0, 1000], got {fps!r}")
        seconds = video.shape[1] / fps if seconds is None else seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= MAX_SECONDS:
            raise MovieGenError(f"audio duration must be in (0, {MAX_SECONDS:g}] s, got {seconds!r}")
        return float(seconds)

    # -- sampling

    def _null(self, cond: Tensor) -> Tensor | None:
        """The unconditional branch's conditioning: the video features zeroed when the model guides on them
        (trained with feature dropout), the audio context kept; else None (the same as ``cond``)."""
        if not self.video_guidance:
            return None
        null = cond.clone()
        null[:, :FEATURES] = 0
        return null

    def _sample(self, noise: Tensor, tokens: Tensor, mask: Tensor, cond: Tensor, times: Tensor, guidance: float,
                extension: str, callback: Callable[[int, int], None] | None) -> Tensor:  # fmt: skip
        frames = noise.shape[2]
        if frames <= self.window or extension in ("triangular", "uniform", "independent"):
            window = None if frames <= self.window else self.window
            overlap = 0 if extension == "independent" else self.overlap
            weights = "triangular" if extension == "triangular" else "uniform"
            return flow.sample(self.transformer, noise, tokens, mask, times, guidance, callback=callback,
                               cond=cond, window=window, overlap=overlap, window_weights=weights,
                               null_cond=self._null(cond))  # fmt: skip
        # masked audio context: each window keeps the frames already made and continues them
        out = torch.zeros_like(noise)
        features = cond[:, :FEATURES]
        starts = flow.window_starts(frames, self.window, self.overlap)
        done = 0
        for k, s in enumerate(starts):
            span = slice(s, s + self.window)
            known = torch.zeros(noise.shape[0], self.window, dtype=torch.bool, device=noise.device)
            known[:, : max(done - s, 0)] = True
            part = dit_condition(features[:, :, span, 0, 0], out[:, :, span, 0, 0], known)
            step = None if callback is None else (lambda i, n, k=k: callback(k * n + i, n * len(starts)))
            x = flow.sample(self.transformer, noise[:, :, span], tokens, mask, times, guidance, callback=step,
                            cond=part, null_cond=self._null(part))  # fmt: skip
            new = slice(max(done - s, 0), self.window)
            out[:, :, s + new.start : s + self.window] = x[:, :, new]
            done = s + self.window
        return out

    @torch.inference_mode()
    def __call__(
        self,
        video: Tensor,
        prompt: str,
        music: str | None = None,
        fps: float = 16,
        seconds: float | None = None,
        num_steps: int | None = None,
        schedule: str | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        extension: str | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """The audio (N,) in [-1, 1] at :attr:`sample_rate` of ``video`` (3, T, H, W) in [-1, 1] at ``fps``:
        ``seconds`` long (default: the video's T / fps). Defaults are the model's own; deterministic for a
        seed (noise from a seeded CPU generator)."""
        seconds = self.check_request(video, prompt, fps, seconds)
        steps = self.num_steps if num_steps is None else num_steps
        schedule = self.schedule if schedule is None else schedule
        guidance = self.guidance_scale if guidance_scale is None else check_guidance_scale(guidance_scale)
        extension = self.check_extension(self.extension if extension is None else extension)
        times = schedule_times(schedule, steps)
        text = compose_audio_prompt(prompt, music)
        n = round(seconds * self.sample_rate)
        frames = self.autoencoder.num_latent_frames(n)
        device = self.device
        latent = self.autoencoder.config.latent_channels
        noise = torch.randn((1, latent, frames, 1, 1), generator=torch.Generator().manual_seed(seed)).to(device)
        with autocast(device):
            features = self.video_features(video, fps, frames)[None].to(device)
            none = torch.zeros(1, latent, frames, device=device)
            cond = dit_condition(features, none, torch.zeros(1, frames, dtype=torch.bool, device=device))
            tokens, mask = self.text([text])
            x1 = self._sample(noise, tokens, mask.to(device), cond, times, guidance, extension, callback)
            audio = self.autoencoder.decode(self.autoencoder.denormalize(x1[..., 0, 0].float()), n)
        audio = audio[0].float().cpu()
        if not bool(torch.isfinite(audio).all()):
            raise MovieGenError("the audio came out non-finite (NaN/inf); nothing was written")
        return audio.clamp(-1, 1)
