"""Movie Gen Audio's own parts (paper §7): the audio autoencoder and the per-frame video encoder.

**Audio autoencoder** (:class:`AudioAutoencoder`). The paper's is a DAC-style VAE from 48 kHz waveforms to
a 25 Hz latent of 128 channels. Ours keeps the rates and the VAE, and works on the STFT magnitude [choice:
a waveform-domain codec needs days of GPU time, and a decoder that must invent the phase of every bin from
a 25 Hz latent did not learn it here (SI-SDR below -30 dB after 300 steps); a magnitude VAE trains in
minutes on a CPU, and the phase is recovered from the decoded magnitude by fast Griffin-Lim]:

1. STFT, Hann window ``n_fft`` = 1920 (40 ms), ``hop`` = 480 (10 ms, 100 frames/s), centred;
2. the magnitude, compressed (``|X|^0.3``), read as a 1-D sequence of frames of ``bins`` channels;
3. encoder: a pointwise projection, residual dilated conv blocks, two stride-2 downsamplings
   (100 → 50 → 25 Hz), a conv to the posterior's mean and log-variance (``latent_channels`` each);
4. decoder: the mirror (two stride-2 transposed convs back to 100 Hz) to the compressed magnitude,
   decompressed; :meth:`AudioAutoencoder.waveform` finds a consistent phase by fast Griffin-Lim
   (``griffin_lim_iters`` iterations, momentum 0.99, started from each bin's centre-frequency phase
   advance) and inverts the STFT.

A waveform of N samples (padded to a multiple of 1920 = 48 kHz / 25 Hz) has exactly N / 1920 latent
frames. ``latents_mean`` / ``latents_std`` (per channel, measured by the recipe after training) normalise
the latent for the DiT (:meth:`normalize`, :meth:`denormalize`), as the TAE's scale does for video.

**Frame encoder** (:class:`FrameEncoder`). The paper conditions the audio DiT on per-frame video features
resampled to the audio latent rate. Ours is a small CNN on each frame resized to 32×32 whose heads are
trained on the world (the object's colour, shape and scene class, its position and size): the feature of
a frame is those heads' outputs (class probabilities, position, size) and its velocity,
:data:`FRAME_FEATURES` wide [choice: the paper's features come from a large video-text encoder; a trained head's readout is the
smallest feature that carries what sound depends on here — what moves, where, and when it turns].
:func:`resample_features` linearly interpolates them from the video's frame rate to the 25 Hz latent rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moviegen.config import Config, require
from moviegen.errors import MovieGenError
from moviegen.pretrained import PretrainedMixin

SAMPLE_RATE = 48_000
LATENT_RATE = 25  # latent frames per second (paper §7)
INITIAL_LOGVAR = -8.0
"""The posterior's initial log-variance: with N(0, 1) noise on the near-zero means of a fresh encoder the
decoder learns only the mean spectrum for hundreds of steps (measured); a narrow start avoids that."""


@dataclass(frozen=True)
class AudioAutoencoderConfig(Config):
    """Audio VAE hyper-parameters; the defaults are the ``tiny`` preset (module docstring)."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1920
    hop: int = 480
    compression: float = 0.3
    hidden: int = 32
    latent_channels: int = 8
    blocks: int = 1
    downsample: int = 2  # stride-2 stages: 100 Hz STFT frames → 25 Hz latents
    griffin_lim_iters: int = 32
    latents_mean: tuple[float, ...] = ()
    latents_std: tuple[float, ...] = ()

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {},
        # The shipped world model's size: ~1.1M parameters.
        "world": dict(hidden=128, latent_channels=32, blocks=2),
        # The paper's latent: 128 channels at 25 Hz; the width is our choice.
        "paper": dict(hidden=1024, latent_channels=128, blocks=4),
    }

    def validate(self) -> None:
        name = "AudioAutoencoderConfig"
        for key in ("sample_rate", "n_fft", "hop", "hidden", "latent_channels", "blocks"):
            require(isinstance(getattr(self, key), int) and getattr(self, key) > 0, name, f"{key} must be > 0")
        require(0 < self.compression <= 1, name, "compression must be in (0, 1]")
        require(self.n_fft >= self.hop and self.n_fft % 2 == 0, name, "need an even n_fft >= hop")
        require(self.downsample >= 0, name, "downsample must be >= 0")
        require(isinstance(self.griffin_lim_iters, int) and self.griffin_lim_iters >= 0, name,
                "griffin_lim_iters must be an integer >= 0")
        for key in ("latents_mean", "latents_std"):
            value = getattr(self, key)
            require(len(value) in (0, self.latent_channels), name,
                    f"{key} must be empty or have latent_channels = {self.latent_channels} values")  # fmt: skip
        require(all(s > 0 for s in self.latents_std), name, "latents_std must be > 0")

    @property
    def samples_per_latent(self) -> int:
        return self.hop * 2**self.downsample

    @property
    def latent_rate(self) -> float:
        return self.sample_rate / self.samples_per_latent

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


class ResBlock1d(nn.Module):
    """Two dilated convolutions with a SiLU between, on a residual branch (GroupNorm first)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(self.norm(x)))))


def _stage(channels: int, blocks: int) -> list[nn.Module]:
    return [ResBlock1d(channels, 3**k) for k in range(blocks)]


class AudioAutoencoder(nn.Module, PretrainedMixin):
    """48 kHz mono waveform (B, N) ↔ latent (B, latent_channels, N / 1920) (module docstring).

    ``encode(audio, sample=False)`` returns the posterior mean (or a sample); ``posterior(audio)`` its
    (mean, logvar); ``decode(latent, length=None)`` the waveform, ``length`` samples long (default: the
    latent's whole span).
    """

    config_class = AudioAutoencoderConfig

    def __init__(self, config: AudioAutoencoderConfig):
        super().__init__()
        self.config = c = config
        enc: list[nn.Module] = [nn.Conv1d(c.bins, c.hidden, 1), *_stage(c.hidden, c.blocks)]
        dec: list[nn.Module] = []
        for _ in range(c.downsample):
            enc += [nn.Conv1d(c.hidden, c.hidden, 4, stride=2, padding=1), *_stage(c.hidden, c.blocks)]
            dec += [*_stage(c.hidden, c.blocks), nn.ConvTranspose1d(c.hidden, c.hidden, 4, stride=2, padding=1)]
        enc += [nn.GroupNorm(1, c.hidden), nn.SiLU(), nn.Conv1d(c.hidden, 2 * c.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        with torch.no_grad():  # start with a narrow posterior: unit noise would hide the small initial means
            enc[-1].bias[c.latent_channels :].fill_(INITIAL_LOGVAR)
        self.decoder = nn.Sequential(
            nn.Conv1d(c.latent_channels, c.hidden, 3, padding=1), *dec, *_stage(c.hidden, c.blocks),
            nn.GroupNorm(1, c.hidden), nn.SiLU(), nn.Conv1d(c.hidden, c.bins, 1),
        )  # fmt: skip
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)

    # -- spectra

    def pad(self, audio: Tensor) -> Tensor:
        """Zero-pad (B, N) on the right to a whole number of latent frames."""
        n = audio.shape[-1]
        return F.pad(audio, (0, -n % self.config.samples_per_latent))

    def stft(self, audio: Tensor) -> Tensor:
        """Complex STFT (B, bins, N / hop) of a padded waveform (B, N) (the centred STFT's last frame,
        which starts past the end of the signal, is dropped)."""
        c = self.config
        x = torch.stft(audio.float(), c.n_fft, c.hop, window=self.window.float(), center=True, return_complex=True)
        return x[..., : audio.shape[-1] // c.hop]

    def istft(self, spec: Tensor, length: int) -> Tensor:
        c = self.config
        return torch.istft(F.pad(spec, (0, 1)), c.n_fft, c.hop, window=self.window.float(), center=True,
                           length=length)  # fmt: skip

    def spectrum(self, audio: Tensor) -> Tensor:
        """Compressed magnitude (B, bins, N / hop) of a padded waveform (B, N)."""
        return self.stft(audio).abs().clamp_min(1e-8) ** self.config.compression

    def waveform(self, spec: Tensor, length: int, iterations: int | None = None) -> Tensor:
        """A waveform (B, length) whose STFT magnitude is the decompressed ``spec`` (B, bins, F): fast
        Griffin-Lim (Perraudin et al. 2013) from each bin's phase advance at its centre frequency."""
        c = self.config
        mag = spec.float().clamp_min(0) ** (1 / c.compression)
        bins, frames = mag.shape[-2:]
        k = torch.arange(bins, device=mag.device, dtype=torch.float32)[:, None]
        f = torch.arange(frames, device=mag.device, dtype=torch.float32)[None]
        angles = torch.polar(torch.ones_like(mag), (2 * math.pi * c.hop / c.n_fft) * k * f)
        span = frames * c.hop
        previous = None
        for _ in range(c.griffin_lim_iters if iterations is None else iterations):
            rebuilt = self.stft(self.istft(mag * angles, span))
            angles = rebuilt if previous is None else rebuilt + 0.99 * (rebuilt - previous)
            angles = angles / angles.abs().clamp_min(1e-12)
            previous = rebuilt
        out = self.istft(mag * angles, span)
        return out[..., :length] if length <= span else F.pad(out, (0, length - span))

    # -- the VAE

    def check_audio(self, audio: Tensor) -> Tensor:
        if not isinstance(audio, Tensor) or audio.ndim != 2 or audio.shape[-1] < 1:
            shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
            raise MovieGenError(f"audio must have shape (B, N) with N >= 1 samples, got {shape}")
        return audio

    def posterior(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        spec = self.spectrum(self.pad(self.check_audio(audio)))
        mean, logvar = self.encoder(spec.to(self.window.dtype)).chunk(2, dim=1)
        return mean, logvar.clamp(-30, 20)

    def encode(self, audio: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        mean, logvar = self.posterior(audio)
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (0.5 * logvar).exp() * noise

    def decode_spectrum(self, latent: Tensor) -> Tensor:
        if latent.ndim != 3 or latent.shape[1] != self.config.latent_channels:
            raise MovieGenError(
                f"audio latent must have shape (B, {self.config.latent_channels}, T), got {tuple(latent.shape)}"
            )
        return self.decoder(latent.to(self.window.dtype))

    def decode(self, latent: Tensor, length: int | None = None) -> Tensor:
        full = latent.shape[-1] * self.config.samples_per_latent
        return self.waveform(self.decode_spectrum(latent), full)[..., : length or full]

    def num_latent_frames(self, num_samples: int) -> int:
        return -(-num_samples // self.config.samples_per_latent)

    # -- normalisation for the DiT

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        c = self.config
        mean = torch.tensor(c.latents_mean or [0.0] * c.latent_channels, device=like.device, dtype=like.dtype)
        std = torch.tensor(c.latents_std or [1.0] * c.latent_channels, device=like.device, dtype=like.dtype)
        return mean.view(1, -1, 1), std.view(1, -1, 1)

    def normalize(self, latent: Tensor) -> Tensor:
        mean, std = self._stats(latent)
        return (latent - mean) / std

    def denormalize(self, latent: Tensor) -> Tensor:
        mean, std = self._stats(latent)
        return latent * std + mean


# ------------------------------------------------------------------------------------------ video features

SCENES = ("object", "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
"""Scene classes of a frame: an object clip, or a camera clip over one of the world's photos."""
NUM_COLORS, NUM_SHAPES = 8, 3
FRAME_FEATURES = NUM_COLORS + NUM_SHAPES + len(SCENES) + 3 + 2
"""Per-frame feature width: colour, shape and scene probabilities; x, y, size; and the x, y velocity."""
FEATURES = FRAME_FEATURES + 1
"""The DiT's video features at the latent rate: the per-frame ones resampled, and the contact track
(:func:`contact_track`)."""
CONTACT_MIN_SPEED = 0.12
"""Frame-units per second both sides of a turn must move at for it to count as a contact (a world object's
slowest axis moves at ≥ 0.18; the frame encoder's position noise, over two frames, at about 0.06)."""
CONTACT_WIDTH_S = 0.02
FRAME_SIZE = 32


@dataclass(frozen=True)
class FrameEncoderConfig(Config):
    """Widths of the frame CNN (three stride-2 convs on 32×32 frames, then a hidden layer)."""

    channels: tuple[int, ...] = (32, 64, 64)
    hidden: int = 128

    PRESETS: ClassVar[dict] = {"tiny": dict(channels=(8, 8, 8), hidden=16), "world": {}}

    def validate(self) -> None:
        name = "FrameEncoderConfig"
        require(len(self.channels) == 3 and all(c > 0 for c in self.channels), name, "need three channel widths")
        require(self.hidden > 0, name, "hidden must be > 0")


class FrameEncoder(nn.Module, PretrainedMixin):
    """Per-frame features of a video (module docstring): ``features(video, fps)`` → (T, FRAME_FEATURES).

    ``heads(frames)`` (N, 3, 32, 32) → (colour logits, shape logits, scene logits, (x, y, size) in [0, 1]):
    what the recipe trains (:func:`moviegen.train.audio.train_frame_encoder`).
    """

    config_class = FrameEncoderConfig

    def __init__(self, config: FrameEncoderConfig):
        super().__init__()
        self.config = c = config
        a, b, d = c.channels
        self.net = nn.Sequential(
            nn.Conv2d(3, a, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(a, b, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(b, d, 3, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(), nn.Linear(d * (FRAME_SIZE // 8) ** 2, c.hidden), nn.SiLU(),
            nn.Linear(c.hidden, NUM_COLORS + NUM_SHAPES + len(SCENES) + 3),
        )  # fmt: skip

    def heads(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        out = self.net(frames)
        colour, shape, scene, geometry = out.split([NUM_COLORS, NUM_SHAPES, len(SCENES), 3], dim=1)
        return colour, shape, scene, torch.sigmoid(geometry)

    @staticmethod
    def resize(video: Tensor) -> Tensor:
        """(3, T, H, W) in [-1, 1] → (T, 3, 32, 32) (area-averaged when larger)."""
        if video.ndim != 4 or video.shape[0] != 3 or video.shape[1] < 1:
            raise MovieGenError(f"a video must have shape (3, T, H, W) with T >= 1 frames, got {tuple(video.shape)}")
        frames = video.float().permute(1, 0, 2, 3)
        if frames.shape[-2:] != (FRAME_SIZE, FRAME_SIZE):
            frames = F.interpolate(frames, size=(FRAME_SIZE, FRAME_SIZE), mode="area" if frames.shape[-1] > FRAME_SIZE
                                   else "bilinear")  # fmt: skip
        return frames

    @torch.no_grad()
    def features(self, video: Tensor, fps: float, batch: int = 256) -> Tensor:
        """(T, FRAME_FEATURES): per-frame probabilities, geometry and velocity (geometry units per second / 10)."""
        frames = self.resize(video).to(next(self.parameters()).device)
        rows = []
        for i in range(0, frames.shape[0], batch):
            colour, shape, scene, geometry = self.heads(frames[i : i + batch])
            rows.append(torch.cat([colour.softmax(1), shape.softmax(1), scene.softmax(1), geometry], dim=1))
        out = torch.cat(rows).float()
        xy = out[:, -3:-1]
        velocity = torch.zeros_like(xy)
        if xy.shape[0] > 1:
            velocity[1:-1] = (xy[2:] - xy[:-2]) * fps / 2
            velocity[0], velocity[-1] = (xy[1] - xy[0]) * fps, (xy[-1] - xy[-2]) * fps
        return torch.cat([out, velocity / 10], dim=1).cpu()


def resample_features(features: Tensor, fps: float, num_latent_frames: int, latent_rate: float = LATENT_RATE) -> Tensor:
    """Linear interpolation of (T, F) per-frame features at ``fps`` to (F, num_latent_frames) at the latent
    rate; latent frame j stands for the time (j + 0.5) / latent_rate (held at the ends)."""
    if features.ndim != 2 or features.shape[0] < 1:
        raise MovieGenError(f"features must have shape (T, F) with T >= 1, got {tuple(features.shape)}")
    times = (torch.arange(num_latent_frames, dtype=torch.float64) + 0.5) / latent_rate
    pos = (times * fps - 0.5).clamp(0, features.shape[0] - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=features.shape[0] - 1)
    w = (pos - lo).float()[:, None]
    return (features[lo] * (1 - w) + features[hi] * w).T.contiguous()


def contact_times(features: Tensor, fps: float) -> list[float]:
    """Times (s) at which the object the per-frame ``features`` (T, FRAME_FEATURES) track turns around,
    read off its positions: wherever the motion along x or y runs at ≥ :data:`CONTACT_MIN_SPEED` one way
    over the two frame gaps before a gap and the other way, at a similar speed, over the two after it, the
    two lines through those spans meet at the turn (frames show only every 1/fps s; the lines put the
    contact inside the gap). Turns within 50 ms of each other (a corner) are one."""
    xy = features[:, -5:-3].double().numpy()
    frames = xy.shape[0]
    found: list[float] = []
    for axis in range(2):
        p = xy[:, axis]
        for k in range(2, frames - 3):
            before, after = (p[k] - p[k - 2]) * fps / 2, (p[k + 3] - p[k + 1]) * fps / 2
            if before * after >= 0 or min(abs(before), abs(after)) < CONTACT_MIN_SPEED:
                continue
            if not 0.6 <= abs(after / before) <= 1 / 0.6:  # a bounce keeps the speed; position noise does not
                continue
            t0, t1 = k / fps, (k + 1) / fps  # the lines p[k] + before·(t − t0) and p[k+1] + after·(t − t1)
            t = (p[k + 1] - p[k] + before * t0 - after * t1) / (before - after)
            if t0 - 1e-9 <= t <= t1 + 1e-9:
                found.append(float(t))
    merged: list[float] = []
    for t in sorted(found):
        if merged and t - merged[-1] < 0.05:
            merged[-1] = (merged[-1] + t) / 2
        else:
            merged.append(t)
    return merged


def contact_track(features: Tensor, fps: float, num_latent_frames: int, latent_rate: float = LATENT_RATE) -> Tensor:
    """(1, num_latent_frames): a Gaussian bump (σ = 20 ms) at every :func:`contact_times` time, sampled at
    the latent frames' centres and weighted by the frames' object probability [choice: the paper adds a
    video encoder's per-frame features; at 16 fps a frame-rate feature cannot say when inside a 62 ms gap
    an object hits a wall, and this track, read off the frame encoder's own positions, does — its values
    on neighbouring latent frames carry the offset within a 40 ms frame]."""
    times = (torch.arange(num_latent_frames, dtype=torch.float64) + 0.5) / latent_rate
    track = torch.zeros(num_latent_frames, dtype=torch.float64)
    for t in contact_times(features, fps):
        track += torch.exp(-0.5 * ((times - t) / CONTACT_WIDTH_S) ** 2)
    scene = NUM_COLORS + NUM_SHAPES + SCENES.index("object")
    objectness = resample_features(features[:, scene : scene + 1], fps, num_latent_frames, latent_rate)[0]
    return (track.float() * objectness)[None]


def video_features(encoder: FrameEncoder, video: Tensor, fps: float, num_latent_frames: int,
                   latent_rate: float = LATENT_RATE) -> Tensor:  # fmt: skip
    """(FEATURES, num_latent_frames): the frame encoder's per-frame features resampled to the latent rate,
    and the contact track."""
    feats = encoder.features(video, fps)
    return torch.cat([resample_features(feats, fps, num_latent_frames, latent_rate),
                      contact_track(feats, fps, num_latent_frames, latent_rate)])  # fmt: skip


def audio_dit_channels(latent_channels: int, features: int = FEATURES) -> int:
    """The audio DiT's input width: the noisy latent, the video features, the masked audio context and its
    mask (:func:`moviegen.audio.dit_condition`)."""
    return latent_channels + features + latent_channels + 1


def latent_frames(seconds: float, latent_rate: float = LATENT_RATE) -> int:
    return max(1, math.ceil(round(seconds * latent_rate, 6)))
