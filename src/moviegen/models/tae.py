"""The Movie Gen temporal autoencoder (TAE), paper §3.1.1.

The TAE is the Stable Diffusion image autoencoder (ResNet blocks, down/up sampling, a mid-block
self-attention, a diagonal Gaussian bottleneck) made 2.5D:

* a 1D temporal convolution follows every 2D spatial 3×3 convolution, with symmetric replicate
  padding in time; 1×1 convolutions (shortcuts, quant convs) are pointwise and get none;
* a 1D temporal self-attention follows every spatial self-attention;
* each spatial downsampling is followed by a stride-2 temporal convolution, each spatial upsampling by
  a nearest-neighbour temporal interpolation and a temporal convolution.

With the SD layout (four resolutions) this compresses 8× in T, H and W into 16 latent channels. Any
frame count encodes to ceil(T/8) latent frames (an image is a 1-frame video); decoding yields 8 frames
per latent frame and is cropped back to the requested length ("discarding spurious frames").

Group normalisation is computed per frame, so every spatial operation is exactly the image model's.
Tensors are laid out ``(B, C, T, H, W)``; pixels are in [-1, 1]. Latents are the raw posterior; the
diffusion model's normalisation is stored in the config and applied by its caller through
:meth:`TAE.normalize` / :meth:`TAE.denormalize`: per channel (``latents_mean``/``latents_std``) when set,
else the SD-style scalars (``scaling_factor``/``shift_factor``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moviegen.config import Config, require
from moviegen.errors import MovieGenError
from moviegen.pretrained import PretrainedMixin, load_safetensors


@dataclass(frozen=True)
class TAEConfig(Config):
    """TAE hyper-parameters. ``len(block_out_channels) - 1`` downsamplings set the 2^k compression."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 16
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    mid_attention: bool = True
    temporal_kernel_size: int = 3
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None

    PRESETS: ClassVar[dict] = {
        "tiny": dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1, norm_num_groups=8),
        "paper": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
    }

    def validate(self) -> None:
        name = type(self).__name__
        require(len(self.block_out_channels) >= 1, name, "block_out_channels must not be empty")
        require(all(c > 0 for c in self.block_out_channels), name, "channels must be positive")
        require(
            all(c % self.norm_num_groups == 0 for c in self.block_out_channels),
            name,
            f"every block channel count must be divisible by norm_num_groups={self.norm_num_groups}",
        )
        require(self.layers_per_block >= 1, name, "layers_per_block must be >= 1")
        require(self.latent_channels >= 1, name, "latent_channels must be >= 1")
        require(self.temporal_kernel_size % 2 == 1, name, "temporal_kernel_size must be odd")
        require(
            (self.latents_mean is None) == (self.latents_std is None),
            name,
            "latents_mean and latents_std must be given together",
        )
        if self.latents_mean is not None and self.latents_std is not None:
            for key in ("latents_mean", "latents_std"):
                require(
                    len(getattr(self, key)) == self.latent_channels,
                    name,
                    f"{key} needs one value per latent channel ({self.latent_channels})",
                )
            require(all(s > 0 for s in self.latents_std), name, "latents_std must be positive")

    @property
    def compression(self) -> int:
        """Compression factor in each of T, H and W (8 for the paper's four-resolution layout)."""
        return 2 ** (len(self.block_out_channels) - 1)


# ---------------------------------------------------------------------------------------------- layers


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame, so a video is normalised exactly as its frames would be."""

    def __init__(self, num_groups: int, channels: int, eps: float = 1e-6):
        super().__init__(num_groups, channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(0, 1)).view(x.shape)


class TemporalConv(nn.Module):
    """1D convolution over time with symmetric replicate padding, initialised as the identity."""

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.pad = kernel_size // 2
        self.conv = nn.Conv3d(channels, channels, (kernel_size, 1, 1), stride=(stride, 1, 1))
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[torch.arange(channels), torch.arange(channels), self.pad] = 1.0
            self.conv.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        y = x.transpose(1, 2)  # (B, T, C, H, W) → (B, C, T, H, W) for Conv3d
        if self.pad:
            y = F.pad(y, (0, 0, 0, 0, self.pad, self.pad), mode="replicate")
        return self.conv(y).transpose(1, 2).contiguous()


class Conv2_5d(nn.Module):
    """A 2D spatial convolution applied per frame, followed by a 1D temporal convolution."""

    def __init__(
        self,
        cin: int,
        cout: int,
        temporal_kernel: int,
        spatial_stride: int = 1,
        temporal_stride: int = 1,
        padding: int = 1,
    ):
        super().__init__()
        self.spatial = nn.Conv2d(cin, cout, 3, stride=spatial_stride, padding=padding)
        self.temporal = TemporalConv(cout, temporal_kernel, temporal_stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.temporal(per_frame(self.spatial, x))


def per_frame(layer: nn.Module, x: Tensor) -> Tensor:
    """Apply a 2D layer to every frame of ``(B, T, C, H, W)``."""
    y = layer(x.flatten(0, 1))
    return y.view(x.shape[0], x.shape[1], *y.shape[1:])


class ResnetBlock(nn.Module):
    """The SD ResNet block with 2.5D convolutions (no timestep input)."""

    def __init__(self, cin: int, cout: int, groups: int, tk: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, cin)
        self.conv1 = Conv2_5d(cin, cout, tk)
        self.norm2 = FrameGroupNorm(groups, cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv2_5d(cout, cout, tk)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.conv_shortcut is None else per_frame(self.conv_shortcut, x)) + h


class SpatialAttention(nn.Module):
    """Single-head self-attention over the H×W positions of each frame (SD mid-block attention)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = FrameGroupNorm(groups, channels)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        y = self.group_norm(x).view(b * t, c, h * w).transpose(1, 2)
        y = F.scaled_dot_product_attention(self.to_q(y), self.to_k(y), self.to_v(y))
        return x + self.to_out(y).transpose(1, 2).reshape(x.shape)


class TemporalAttention(nn.Module):
    """Single-head self-attention over the T frames at each spatial position; output zero-initialised."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        y = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, c, t)
        y = self.group_norm(y).transpose(1, 2)
        y = F.scaled_dot_product_attention(self.to_q(y), self.to_k(y), self.to_v(y))
        return x + self.to_out(y).view(b, h, w, t, c).permute(0, 3, 4, 1, 2)


class Attention2_5d(nn.Module):
    """Spatial self-attention followed by temporal self-attention (paper §3.1.1)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.spatial = SpatialAttention(channels, groups)
        self.temporal = TemporalAttention(channels, groups)

    def forward(self, x: Tensor) -> Tensor:
        return self.temporal(self.spatial(x))


class Downsample(nn.Module):
    """Stride-2 spatial conv (SD's asymmetric zero pad) then stride-2 temporal conv."""

    def __init__(self, channels: int, tk: int):
        super().__init__()
        self.conv = Conv2_5d(channels, channels, tk, spatial_stride=2, temporal_stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour ×2 in space then conv; nearest-neighbour ×2 in time then temporal conv."""

    def __init__(self, channels: int, tk: int):
        super().__init__()
        self.conv = Conv2_5d(channels, channels, tk)

    def forward(self, x: Tensor) -> Tensor:
        x = per_frame(lambda f: self.conv.spatial(F.interpolate(f, scale_factor=2.0, mode="nearest")), x)
        if x.shape[1] == 1:  # a single frame stays constant in time: its copies would be identical
            return self.conv.temporal(x)
        return self.conv.temporal(torch.repeat_interleave(x, 2, dim=1))


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int, tk: int, attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups, tk) for _ in range(2)])
        self.attentions = nn.ModuleList([Attention2_5d(channels, groups)] if attention else [])

    def forward(self, x: Tensor) -> Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class Stage(nn.Module):
    """One resolution of the encoder or decoder: ResNet blocks and an optional resampler."""

    def __init__(self, resnets: list[ResnetBlock], sampler: nn.Module | None, sampler_name: str):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        setattr(self, sampler_name, nn.ModuleList([sampler] if sampler is not None else []))
        self.sampler_name = sampler_name

    def forward(self, x: Tensor) -> Tensor:
        for block in self.resnets:
            x = block(x)
        for sampler in getattr(self, self.sampler_name):
            x = sampler(x)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: TAEConfig):
        super().__init__()
        g, tk, ch = cfg.norm_num_groups, cfg.temporal_kernel_size, cfg.block_out_channels
        self.conv_in = Conv2_5d(cfg.in_channels, ch[0], tk)
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            resnets = [ResnetBlock(cin if j == 0 else cout, cout, g, tk) for j in range(cfg.layers_per_block)]
            down = Downsample(cout, tk) if i < len(ch) - 1 else None
            blocks.append(Stage(resnets, down, "downsamplers"))
            cin = cout
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(ch[-1], g, tk, cfg.mid_attention)
        self.conv_norm_out = FrameGroupNorm(g, ch[-1])
        self.conv_out = Conv2_5d(ch[-1], 2 * cfg.latent_channels, tk)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, C, H, W)`` frames → ``(B, T', 2·latent, H', W')`` posterior moments."""
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: TAEConfig):
        super().__init__()
        g, tk = cfg.norm_num_groups, cfg.temporal_kernel_size
        ch = tuple(reversed(cfg.block_out_channels))
        self.conv_in = Conv2_5d(cfg.latent_channels, ch[0], tk)
        self.mid_block = MidBlock(ch[0], g, tk, cfg.mid_attention)
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            n = cfg.layers_per_block + 1
            resnets = [ResnetBlock(cin if j == 0 else cout, cout, g, tk) for j in range(n)]
            up = Upsample(cout, tk) if i < len(ch) - 1 else None
            blocks.append(Stage(resnets, up, "upsamplers"))
            cin = cout
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = FrameGroupNorm(g, ch[-1])
        self.conv_out = Conv2_5d(ch[-1], cfg.out_channels, tk)

    def forward(self, z: Tensor) -> Tensor:
        """``(B, T, latent, H, W)`` → ``(B, 8T, C, 8H, 8W)`` frames."""
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class DiagonalGaussian:
    """The KL bottleneck's posterior N(mean, exp(logvar)) per latent element."""

    def __init__(self, moments: Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)), summed over latent elements, averaged over the batch."""
        kl = 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)
        return kl.flatten(1).sum(1).mean()


# ------------------------------------------------------------------------------------------------ TAE


class TAE(nn.Module, PretrainedMixin):
    """Movie Gen's TAE: video ``(B, 3, T, H, W)`` in [-1, 1] ↔ latent ``(B, C, T/8, H/8, W/8)``."""

    config_class = TAEConfig

    def __init__(self, config: TAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)

    @property
    def compression(self) -> int:
        return self.config.compression

    def latent_frames(self, num_frames: int) -> int:
        return math.ceil(num_frames / self.compression)

    # -- the diffusion model's latent scale

    def _normalisation(self, z: Tensor) -> tuple[Tensor | float, Tensor | float]:
        """(shift, multiplier) such that the backbone's latent is ``(z − shift) · multiplier``."""
        cfg = self.config
        if cfg.latents_mean is None or cfg.latents_std is None:
            return cfg.shift_factor, cfg.scaling_factor
        view = (1, -1) + (1,) * (z.ndim - 2)
        mean = torch.tensor(cfg.latents_mean, dtype=z.dtype, device=z.device).view(view)
        std = torch.tensor(cfg.latents_std, dtype=z.dtype, device=z.device).view(view)
        return mean, 1.0 / std

    def normalize(self, z: Tensor) -> Tensor:
        """Raw latent (B, C, ...) → the unit-scale latent the backbone is trained on."""
        shift, multiplier = self._normalisation(z)
        return (z - shift) * multiplier

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`: a backbone sample → a raw latent for :meth:`decode`."""
        shift, multiplier = self._normalisation(x)
        return x / multiplier + shift

    # -- encoding

    def encode_dist(self, video: Tensor) -> DiagonalGaussian:
        """The posterior for a whole video (untiled); used for training."""
        self._check_video(video)
        moments = per_frame(self.quant_conv, self.encoder(video.transpose(1, 2)))
        return DiagonalGaussian(moments.transpose(1, 2))

    def encode(
        self,
        video: Tensor,
        tile_frames: int | None = 32,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Encode a video to latents; the posterior mean unless ``sample``.

        Temporal tiling (paper §3.1.1): the video is cut into independent tiles of ``tile_frames``
        frames (no overlap) whose latents are concatenated. ``None`` encodes the whole video at once.
        """
        self._check_video(video)
        c = self.compression
        if tile_frames is not None and (tile_frames <= 0 or tile_frames % c):
            raise MovieGenError(f"tile_frames must be a positive multiple of {c}, got {tile_frames}")
        t = video.shape[2]
        if tile_frames is None or t <= tile_frames:
            tiles = [video]
        else:
            tiles = [video[:, :, s : s + tile_frames] for s in range(0, t, tile_frames)]
        out = []
        for tile in tiles:
            post = self.encode_dist(tile)
            out.append(post.sample(generator) if sample else post.mode())
        return out[0] if len(out) == 1 else torch.cat(out, dim=2)

    # -- decoding

    def decode(
        self,
        latent: Tensor,
        num_frames: int | None = None,
        tile_latents: int | None = 4,
        overlap_latents: int = 2,
    ) -> Tensor:
        """Decode latents to a video of ``num_frames`` frames (default ``8 × latent frames``).

        Temporal tiling (paper §3.1.1): windows of ``tile_latents`` latent frames overlapping by
        ``overlap_latents`` are decoded one at a time and blended with linear weights across each
        overlap (see :meth:`decode_chunks`). ``tile_latents=None`` decodes everything at once.
        """
        out = None
        pos = 0
        for chunk in self.decode_chunks(latent, num_frames, tile_latents, overlap_latents):
            if out is None:
                total = num_frames or self.compression * latent.shape[2]
                out = chunk.new_empty(*chunk.shape[:2], total, *chunk.shape[3:])
            out[:, :, pos : pos + chunk.shape[2]] = chunk
            pos += chunk.shape[2]
        assert out is not None
        return out

    def decode_chunks(
        self,
        latent: Tensor,
        num_frames: int | None = None,
        tile_latents: int | None = 4,
        overlap_latents: int = 2,
    ) -> Iterator[Tensor]:
        """Decode window by window, yielding finished frames in order as soon as no later window
        touches them; peak memory is one window plus one overlap, whatever the video length."""
        self._check_latent(latent)
        c, t_lat = self.compression, latent.shape[2]
        num_frames = c * t_lat if num_frames is None else num_frames
        if not 1 <= num_frames <= c * t_lat:
            raise MovieGenError(
                f"num_frames must be in [1, {c * t_lat}] for {t_lat} latent frames, got {num_frames}"
            )
        if tile_latents is not None:
            if tile_latents <= 0:
                raise MovieGenError(f"tile_latents must be positive, got {tile_latents}")
            if not 0 <= overlap_latents < tile_latents:
                raise MovieGenError(f"overlap_latents must be in [0, tile_latents), got {overlap_latents}")
        if tile_latents is None or t_lat <= tile_latents:
            yield self._decode_window(latent)[:, :, :num_frames]
            return

        starts = list(range(0, t_lat - tile_latents, tile_latents - overlap_latents)) + [t_lat - tile_latents]
        acc, acc_w = None, None  # blended frames of the previous windows that this window overlaps
        for i, s in enumerate(starts):
            e = s + tile_latents
            ramp_in = (starts[i - 1] + tile_latents - s) * c if i > 0 else 0
            ramp_out = (e - starts[i + 1]) * c if i + 1 < len(starts) else 0
            weight = _blend_weights(tile_latents * c, ramp_in, ramp_out, latent)
            frames = self._decode_window(latent[:, :, s:e]) * weight.view(1, 1, -1, 1, 1)
            if acc is not None and acc_w is not None:  # the leftover starts exactly at this window
                frames[:, :, : acc.shape[2]] += acc
                weight[: acc_w.shape[0]] += acc_w
            n = (starts[i + 1] - s if i + 1 < len(starts) else tile_latents) * c  # frames now final
            final = frames[:, :, :n] / weight[:n].view(1, 1, -1, 1, 1)
            yield final[:, :, : num_frames - s * c]
            if (s * c) + n >= num_frames:
                return
            acc, acc_w = frames[:, :, n:], weight[n:]

    def _decode_window(self, latent: Tensor) -> Tensor:
        """Decode ``(B, C, t, h, w)`` to ``(B, 3, 8t, 8h, 8w)``.

        One latent frame decodes to eight identical frames (replicate padding and nearest-neighbour
        upsampling keep a constant sequence constant), so it is decoded once and repeated.
        """
        frames = self.decoder(per_frame(self.post_quant_conv, latent.transpose(1, 2))).transpose(1, 2)
        if latent.shape[2] == 1:
            frames = frames.expand(-1, -1, self.compression, -1, -1)
        return frames

    def forward(
        self, video: Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[Tensor, DiagonalGaussian]:
        """Untiled round trip for training: returns (reconstruction cropped to T frames, posterior)."""
        post = self.encode_dist(video)
        z = post.sample(generator) if sample else post.mode()
        return self._decode_window(z)[:, :, : video.shape[2]], post

    # -- input checks

    def _check_video(self, video: Tensor) -> None:
        cfg, c = self.config, self.compression
        if not isinstance(video, Tensor) or video.dim() != 5 or video.shape[1] != cfg.in_channels:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise MovieGenError(f"TAE expects a video tensor (B, {cfg.in_channels}, T, H, W); got {shape}")
        if video.shape[2] < 1 or video.shape[3] % c or video.shape[4] % c:
            raise MovieGenError(f"TAE needs T >= 1 and H, W divisible by {c}; got {tuple(video.shape)}")

    def _check_latent(self, latent: Tensor) -> None:
        cfg = self.config
        if not isinstance(latent, Tensor) or latent.dim() != 5 or latent.shape[1] != cfg.latent_channels:
            shape = tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__
            raise MovieGenError(
                f"TAE expects a latent tensor (B, {cfg.latent_channels}, T, H, W); got {shape}"
            )

    # -- initialisation from an image autoencoder

    @classmethod
    def from_image_autoencoder(cls, path: str | Path, latent_channels: int | None = None, **overrides) -> TAE:
        """Inflate a diffusers-format ``AutoencoderKL`` folder into a TAE (paper §3.1.1).

        The spatial weights are copied; temporal convolutions start as the identity (they pass the
        centre frame) and temporal attention outputs start at zero, so the inflated TAE reconstructs an
        image, and every frame of a static video, exactly as the image autoencoder does. The folder is
        read with json + safetensors only (no diffusers import). ``overrides`` change TAE-only options
        such as ``temporal_kernel_size``.

        * **Without quant convs** (``use_quant_conv`` / ``use_post_quant_conv`` false: the 16-channel
          SD3- and FLUX-style autoencoders): the TAE's 1×1 quant convs are set to the identity, which is
          exactly what the source computes, and keeps one TAE layout for every source (the convs can then
          be fine-tuned like any other weight). Their ``scaling_factor`` / ``shift_factor`` carry over
          into the TAE's latent normalisation.
        * **More latent channels** (``latent_channels``, e.g. 4 → 16, the paper's TAE width): the new
          channels start as the prior. The encoder's extra mean and log-variance outputs are zero (so
          each new channel is N(0, 1), KL 0), the quant convs act as the identity on them, and the
          decoder's input weights for them are zero, so at initialisation the TAE reproduces the source
          autoencoder exactly and training can start from there.
        """
        from moviegen.files import read_json_object

        folder = Path(path)
        if (folder / "vae" / "config.json").is_file():  # a whole diffusers pipeline folder
            folder = folder / "vae"
        cfg_file = folder / "config.json"
        if not cfg_file.is_file():
            raise MovieGenError(f"not an image autoencoder folder (no config.json): {folder}")
        ae = read_json_object(cfg_file)
        if ae.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
            raise MovieGenError(f"{folder} holds a {ae['_class_name']!r}, expected an AutoencoderKL")
        blocks = ae.get("down_block_types", []), ae.get("up_block_types", [])
        if not all(isinstance(b, list) for b in blocks):
            raise MovieGenError(f"{cfg_file}: down_block_types and up_block_types must be lists")
        for block in blocks[0] + blocks[1]:
            if block not in ("DownEncoderBlock2D", "UpDecoderBlock2D"):
                raise MovieGenError(f"unsupported AutoencoderKL block type {block!r}")
        source_channels = ae.get("latent_channels", 4)
        if isinstance(source_channels, bool) or not isinstance(source_channels, int) or source_channels < 1:
            raise MovieGenError(f"{cfg_file}: latent_channels must be a positive integer")
        channels = source_channels if latent_channels is None else latent_channels
        if (
            isinstance(channels, bool)
            or not isinstance(channels, int)
            or not source_channels <= channels <= 1024
        ):
            raise MovieGenError(
                f"latent channels must be an integer from the source's {source_channels} to 1024, "
                f"got {channels!r}"
            )
        config = TAEConfig.from_dict(
            dict(
                in_channels=ae.get("in_channels", 3),
                out_channels=ae.get("out_channels", 3),
                latent_channels=channels,
                block_out_channels=tuple(ae.get("block_out_channels", (64,))),
                layers_per_block=ae.get("layers_per_block", 1),
                norm_num_groups=ae.get("norm_num_groups", 32),
                mid_attention=ae.get("mid_block_add_attention", True),
                scaling_factor=ae.get("scaling_factor", 0.18215),
                shift_factor=ae.get("shift_factor") or 0.0,
                **overrides,
            )
        )
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise MovieGenError(f"no *.safetensors weights in {folder}")
        image_state: dict[str, Tensor] = {}
        for f in files:
            image_state.update(load_safetensors(f))
        if not ae.get("use_quant_conv", True):
            image_state |= _identity_conv("quant_conv", 2 * source_channels)
        if not ae.get("use_post_quant_conv", True):
            image_state |= _identity_conv("post_quant_conv", source_channels)
        if channels > source_channels:
            image_state = _widen_latents(image_state, source_channels, channels, str(folder))
        model = cls(config)
        model.load_state_dict(_inflate_state(image_state, model.state_dict(), str(folder)))
        return model


def _identity_conv(name: str, channels: int) -> dict[str, Tensor]:
    """The weights of a 1×1 convolution that passes its input through unchanged."""
    return {f"{name}.weight": torch.eye(channels)[:, :, None, None], f"{name}.bias": torch.zeros(channels)}


def _widen_latents(state: dict[str, Tensor], old: int, new: int, where: str) -> dict[str, Tensor]:
    """An image AE's weights with ``new - old`` extra latent channels that start as the prior (see
    :meth:`TAE.from_image_autoencoder`). Moments are laid out ``[mean (C), log-variance (C)]``."""
    state = dict(state)
    keys = ("encoder.conv_out.weight", "encoder.conv_out.bias", "quant_conv.weight", "quant_conv.bias",
            "post_quant_conv.weight", "post_quant_conv.bias", "decoder.conv_in.weight")  # fmt: skip
    if missing := [k for k in keys if k not in state]:
        raise MovieGenError(f"{where}: AutoencoderKL is missing {missing[0]}")
    moments = torch.cat([torch.arange(old), new + torch.arange(old)])  # where the old moments go
    w, b = state["encoder.conv_out.weight"], state["encoder.conv_out.bias"]
    if w.shape[0] != 2 * old:
        raise MovieGenError(f"{where}: encoder.conv_out has {w.shape[0]} outputs, expected {2 * old}")
    state["encoder.conv_out.weight"] = w.new_zeros(2 * new, *w.shape[1:]).index_copy(0, moments, w)
    state["encoder.conv_out.bias"] = b.new_zeros(2 * new).index_copy(0, moments, b)
    for name, size, index in (("quant_conv", 2 * new, moments), ("post_quant_conv", new, torch.arange(old))):
        w, b = state[f"{name}.weight"][:, :, 0, 0], state[f"{name}.bias"]
        wide = torch.eye(size, dtype=w.dtype)
        wide[index[:, None], index[None, :]] = w
        state[f"{name}.weight"] = wide[:, :, None, None]
        state[f"{name}.bias"] = b.new_zeros(size).index_copy(0, index, b)
    w = state["decoder.conv_in.weight"]
    state["decoder.conv_in.weight"] = torch.cat([w, w.new_zeros(w.shape[0], new - old, *w.shape[2:])], dim=1)
    return state


def _blend_weights(length: int, ramp_in: int, ramp_out: int, like: Tensor) -> Tensor:
    """Per-frame weights of one decode window: linear ramps over its overlaps with its neighbours."""
    w = like.new_ones(length)
    if ramp_in:
        w[:ramp_in] = (torch.arange(ramp_in, dtype=like.dtype, device=like.device) + 0.5) / ramp_in
    if ramp_out:
        w[length - ramp_out :] = torch.minimum(
            w[length - ramp_out :],
            1.0 - (torch.arange(ramp_out, dtype=like.dtype, device=like.device) + 0.5) / ramp_out,
        )
    return w


_OLD_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out"}
_SPATIAL_CONVS = ("conv_in", "conv1", "conv2", "conv", "conv_out")


def _tae_key(key: str) -> str:
    """Map a diffusers AutoencoderKL parameter name to the TAE's name for the same spatial weight."""
    parts = key.replace(".to_out.0.", ".to_out.").split(".")
    if "attentions" in parts:
        i = parts.index("attentions") + 2
        parts = parts[:i] + ["spatial"] + [_OLD_ATTENTION_NAMES.get(p, p) for p in parts[i:]]
    elif len(parts) >= 2 and parts[-2] in _SPATIAL_CONVS:
        parts = parts[:-1] + ["spatial", parts[-1]]
    return ".".join(parts)


def _inflate_state(
    image_state: dict[str, Tensor], tae_state: dict[str, Tensor], where: str
) -> dict[str, Tensor]:
    """Copy every image-AE weight into the TAE state; temporal weights keep their identity init."""
    state, untouched = dict(tae_state), set(tae_state)
    for key, value in image_state.items():
        target = _tae_key(key)
        if target not in state:
            raise MovieGenError(f"{where}: unexpected AutoencoderKL weight {key!r}")
        want = state[target].shape
        if value.dim() == 4 and len(want) == 2:  # attention projections stored as 1×1 convs
            value = value[:, :, 0, 0]
        if value.shape != want:
            raise MovieGenError(f"{where}: {key} has shape {tuple(value.shape)}, expected {tuple(want)}")
        state[target] = value.to(state[target].dtype)
        untouched.discard(target)
    leftover = sorted(k for k in untouched if ".temporal." not in k)
    if leftover:
        raise MovieGenError(f"{where}: AutoencoderKL is missing weights for {leftover[:3]}")
    return state


# ------------------------------------------------------------------------------------------- losses


def outlier_penalty_loss(z: Tensor, r: float = 3.0) -> Tensor:
    """Outlier Penalty Loss (paper §3.1.1): penalise latent "spots" far from the per-channel mean.

    ``L = 1/(HW) Σ_ij max(‖z_ij − mean(z)‖ − r·‖std(z)‖, 0)``, where z_ij is the C-vector at a spatial
    position, mean/std are per channel over H×W, and norms are L2 over channels. Video latents
    ``(B, C, T, H, W)`` fold T into the batch (our choice); the result is averaged over frames.
    """
    if z.dim() == 5:
        z = z.transpose(1, 2).flatten(0, 1)
    if z.dim() != 4:
        raise MovieGenError(
            f"outlier_penalty_loss expects (B, C, H, W) or (B, C, T, H, W); got {tuple(z.shape)}"
        )
    flat = z.flatten(2)  # (N, C, HW)
    mean = flat.mean(dim=2, keepdim=True)
    std = flat.std(dim=2, unbiased=False)
    dist = (flat - mean).norm(dim=1)  # (N, HW)
    return F.relu(dist - r * std.norm(dim=1, keepdim=True)).mean()
