"""The Movie Gen Video backbone: a LLaMA-3-style transformer on TAE latents (paper §3.1.2, Table 1).

Pipeline, top to bottom:

1. patchify: a 3D conv with kernel = stride = 1×2×2 turns the latent (B, C, T, H, W) into
   T·(H/2)·(W/2) tokens of width ``dim``;
2. factorized learnable positions φ_t + φ_h + φ_w, added at the input of *every* layer (the paper found
   this reduces morphing in time); there is no RoPE;
3. ``num_layers`` blocks: RMSNorm → bidirectional multi-head self-attention → cross-attention to the text
   tokens → RMSNorm → SwiGLU FFN, with DiT-style adaLN timestep modulation (shift/scale/gate) around the
   self-attention and the FFN;
4. a final adaLN (shift/scale) + linear head that unpatchifies back to (B, out_channels, T, H, W): the
   predicted flow-matching velocity.

Timestep conditioning uses the "adaLN-single" form (our choice; the paper only says "adaLN as in DiT"): one
shared ``Linear(dim, 6·dim)`` on the timestep embedding for the whole network plus a learned per-block
(6, dim) table. A per-block ``Linear(dim, 6·dim)`` would add 48·6·d² ≈ 11B parameters to the 30B model.
Everything on a residual branch starts at zero (adaLN gates, cross-attention output projection, head), so
each block starts as the identity and a fresh model outputs exactly zero.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from moviegen.config import Config, require
from moviegen.errors import MovieGenError
from moviegen.pretrained import PretrainedMixin

TIMESTEP_FREQ_DIM = 256
TIMESTEP_SCALE = 1000.0


@dataclass(frozen=True)
class TransformerConfig(Config):
    """Backbone hyper-parameters; the defaults are the ``tiny`` preset.

    ``in_channels`` is what the patchify conv reads and ``out_channels`` what the head writes: variants that
    concatenate a conditioning latent (spatial upsampler, Edit) have ``in_channels > out_channels``.
    ``max_latent_frames`` / ``max_height_patches`` / ``max_width_patches`` size the positional tables, in
    patches. ``num_tasks > 0`` adds a learned task embedding to the timestep embedding (Edit variants).
    """

    in_channels: int = 16
    out_channels: int = 16
    patch_size: tuple[int, ...] = (1, 2, 2)
    dim: int = 64
    ffn_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_latent_frames: int = 8
    max_height_patches: int = 8
    max_width_patches: int = 8
    num_tasks: int = 0
    qk_norm: bool = False
    norm_eps: float = 1e-5
    gradient_checkpointing: bool = False

    PRESETS: ClassVar[dict[str, dict]] = {
        # A toy size for tests and smoke runs: 64×64 px → 8×8 latent → 4×4 patches fits with room to spare.
        "tiny": dict(dim=64, ffn_dim=128, num_layers=2, num_heads=4, max_latent_frames=8,
                     max_height_patches=8, max_width_patches=8),
        # The paper's 5B ablation model does not publish its dimensions: these are our choice.
        # Tables: 32 latent frames (16 s at 16 fps) and 64×64 patches (1024 px on either side).
        "5b": dict(dim=3072, ffn_dim=8192, num_layers=32, num_heads=24, max_latent_frames=32,
                   max_height_patches=64, max_width_patches=64),
        # Paper Table 1: 48 layers, dim 6144, FFN 16384, 48 heads (head dim 128). Tables as for 5b,
        # covering 576×1008 and 1008×576 (36×63 patches) with margin.
        "30b": dict(dim=6144, ffn_dim=16384, num_layers=48, num_heads=48, max_latent_frames=32,
                    max_height_patches=64, max_width_patches=64),
        # The spatial upsampler (paper §5: 7B, same architecture, the upsampled video's latent concatenated
        # on the channels). Dimensions are our choice (7.13B parameters): LLaMA-7B-like width 4096, FFN
        # 11008, 32 heads, 26 layers. Tables: one 14-latent-frame MultiDiffusion window, and 68×120
        # patches = 1088×1920 px (1080p padded to a multiple of 16).
        "upsampler-7b": dict(in_channels=32, dim=4096, ffn_dim=11008, num_layers=26, num_heads=32,
                             max_latent_frames=14, max_height_patches=68, max_width_patches=120),
        # Movie Gen Audio's DiT (paper §7) on 25 Hz audio latents laid out as (C, T, 1, 1), one token per
        # latent frame; input: noisy latent + video features + masked audio context + its mask
        # (models/audio.py). 13B dimensions are our choice: width 4608, FFN 12288, 36 heads, 38
        # layers (13.07B); 128 latent channels as the paper; 750 positions = a 30 s window.
        "audio-13b": dict(in_channels=280, out_channels=128, patch_size=(1, 1, 1), dim=4608, ffn_dim=12288,
                          num_layers=38, num_heads=36, max_latent_frames=750, max_height_patches=1,
                          max_width_patches=1),
        # The shipped world audio model: 32 latent channels, 23 video features, a 4 s window.
        "audio-world": dict(in_channels=88, out_channels=32, patch_size=(1, 1, 1), dim=128, ffn_dim=384,
                            num_layers=6, num_heads=4, max_latent_frames=100, max_height_patches=1,
                            max_width_patches=1),
        "audio-tiny": dict(in_channels=40, out_channels=8, patch_size=(1, 1, 1), dim=64, ffn_dim=128,
                           num_layers=2, num_heads=4, max_latent_frames=32, max_height_patches=1,
                           max_width_patches=1),
        "upsampler-tiny": dict(in_channels=32, dim=64, ffn_dim=128, num_layers=2, num_heads=4,
                               max_latent_frames=8, max_height_patches=16, max_width_patches=16),
    }  # fmt: skip

    def validate(self) -> None:
        name = type(self).__name__
        for key in ("in_channels", "out_channels", "dim", "ffn_dim", "num_layers", "num_heads",
                    "max_latent_frames", "max_height_patches", "max_width_patches"):  # fmt: skip
            value = getattr(self, key)
            require(isinstance(value, int) and value > 0, name, f"{key} must be an int > 0, got {value!r}")
        require(
            len(self.patch_size) == 3 and all(isinstance(p, int) and p > 0 for p in self.patch_size),
            name,
            f"patch_size must be three positive integers (t, h, w), got {self.patch_size!r}",
        )
        require(
            self.dim % self.num_heads == 0,
            name,
            f"dim {self.dim} not divisible by num_heads {self.num_heads}",
        )
        require(self.num_tasks >= 0, name, f"num_tasks must be >= 0, got {self.num_tasks}")
        require(self.norm_eps > 0, name, f"norm_eps must be > 0, got {self.norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


def timestep_embedding(
    t: torch.Tensor, dim: int = TIMESTEP_FREQ_DIM, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal features of t ∈ [0, 1] (scaled by 1000 as in DiT), shape (B, dim), float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * TIMESTEP_SCALE * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention (no GQA) via ``F.scaled_dot_product_attention``; self- or cross-attention.

    ``mask`` is a boolean (B, 1, 1, L) "may attend" mask over the keys. Bidirectional: never causal.
    """

    def __init__(self, config: TransformerConfig, cross: bool):
        super().__init__()
        d = config.dim
        self.num_heads = config.num_heads
        self.cross = cross
        if cross:
            self.q = nn.Linear(d, d, bias=False)
            self.kv = nn.Linear(d, 2 * d, bias=False)
        else:
            self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.q_norm = nn.RMSNorm(config.head_dim, eps=config.norm_eps) if config.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(config.head_dim, eps=config.norm_eps) if config.qk_norm else nn.Identity()

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys (normalised) and values of ``context`` (B, L, dim), as (B, heads, L, head_dim):
        the same at every sampling step, so :class:`TextCache` computes them once."""
        k, v = (rearrange(a, "b n (h d) -> b h n d", h=self.num_heads) for a in self.kv(context).chunk(2, dim=-1))
        return self.k_norm(k), v

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if self.cross:
            q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.num_heads)
            k, v = self.context_kv(context) if kv is None else kv
        else:
            q, k, v = (rearrange(a, "b n (h d) -> b h n d", h=self.num_heads) for a in self.qkv(x).chunk(3, dim=-1))
            k = self.k_norm(k)
        y = F.scaled_dot_product_attention(self.q_norm(q), k, v, attn_mask=mask)
        return self.out(rearrange(y, "b h n d -> b n (h d)"))


class SwiGLU(nn.Module):
    """LLaMA feed-forward: w2(silu(w1 x) · w3 x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """One layer: positions in, adaLN self-attention, cross-attention to text, adaLN SwiGLU FFN.

    The adaLN-modulated norms have no affine weight of their own (the modulation provides it); the
    cross-attention has a plain RMSNorm and no gate: its zero-initialised output projection makes it start
    at zero instead.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        d, eps = config.dim, config.norm_eps
        self.modulation = nn.Parameter(torch.empty(6, d))
        self.norm1 = nn.RMSNorm(d, eps=eps, elementwise_affine=False)
        self.attn = Attention(config, cross=False)
        self.norm2 = nn.RMSNorm(d, eps=eps)
        self.cross_attn = Attention(config, cross=True)
        self.norm3 = nn.RMSNorm(d, eps=eps, elementwise_affine=False)
        self.ffn = SwiGLU(d, config.ffn_dim)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        mod: torch.Tensor,
        text: torch.Tensor,
        text_attn_mask: torch.Tensor | None,
        has_text: torch.Tensor | None,
        text_kv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = x + pos
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (self.modulation[None] + mod).unbind(1)
        x = x + gate_sa[:, None] * self.attn(modulate(self.norm1(x), shift_sa, scale_sa))
        if text_kv is not None:  # cached keys/values of the rows that have text; the others add exactly 0
            rows, k, v = text_kv
            if rows.numel() == x.shape[0]:
                x = x + self.cross_attn(self.norm2(x), mask=text_attn_mask, kv=(k, v))
            elif rows.numel() > 0:
                y = self.cross_attn(self.norm2(x[rows]), mask=text_attn_mask, kv=(k, v))
                x = x.index_add(0, rows, y.to(x.dtype))
        elif text.shape[1] > 0:
            y = self.cross_attn(self.norm2(x), text, text_attn_mask)
            x = x + (y if has_text is None else y * has_text)
        return x + gate_ff[:, None] * self.ffn(modulate(self.norm3(x), shift_ff, scale_ff))


@dataclass
class TextCache:
    """Every block's cross-attention keys and values of one batch of context tokens (:meth:`MovieGenTransformer.
    text_cache`), computed once per sampling run instead of once per step. Only the rows that attend to any
    token are kept: a row with none (the null text of classifier-free guidance's unconditional branch) gets
    exactly zero from cross-attention, so it is skipped, not computed and multiplied by zero."""

    rows: torch.Tensor  # (R,) batch rows with text
    mask: torch.Tensor | None  # (R, 1, 1, L) attention mask of those rows
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block: (R, heads, L, head_dim) keys, values
    batch: int
    length: int


class MovieGenTransformer(nn.Module, PretrainedMixin):
    """Movie Gen Video: predicts the flow-matching velocity of a latent video given text and a timestep.

    ``forward(x, t, text, text_mask=None, task=None)``:

    - ``x`` (B, in_channels, T, H, W) noisy latent; H, W (and T) divisible by ``patch_size``;
    - ``t`` (B,) float in [0, 1] (t = 0 is pure noise, t = 1 is data);
    - ``text`` (B, L, dim) text tokens already projected to the model width;
    - ``text_mask`` (B, L) bool, True = real token. Rows with no real token (null text for classifier-free
      guidance, text dropout) get exactly zero from every cross-attention;
    - ``task`` (B,) long, only when ``num_tasks > 0``; None adds no task embedding.

    Returns the velocity (B, out_channels, T, H, W).
    """

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.patch_embed = nn.Conv3d(
            config.in_channels, d, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.pos_t = nn.Parameter(torch.empty(config.max_latent_frames, d))
        self.pos_h = nn.Parameter(torch.empty(config.max_height_patches, d))
        self.pos_w = nn.Parameter(torch.empty(config.max_width_patches, d))
        self.time_mlp = nn.Sequential(nn.Linear(TIMESTEP_FREQ_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.task_embed = nn.Embedding(config.num_tasks, d) if config.num_tasks > 0 else None
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_modulation = nn.Parameter(torch.empty(2, d))
        self.final_norm = nn.RMSNorm(d, eps=config.norm_eps, elementwise_affine=False)
        self.head = nn.Linear(d, config.out_channels * math.prod(config.patch_size))
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re)initialise every parameter; also usable after ``to_empty`` on a meta-constructed model.

        Linear/conv weights Xavier-uniform, positional tables N(0, 0.02²). Zero: the shared adaLN linear,
        the per-block and final modulation tables, the cross-attention output projections, the head and the
        task embedding (so adding tasks to a trained model starts as a no-op).
        """
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.RMSNorm) and m.weight is not None:
                nn.init.ones_(m.weight)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for table in (self.pos_t, self.pos_h, self.pos_w):
            nn.init.normal_(table, std=0.02)
        for layer in self.time_mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
        zeros = [*self.adaln[1].parameters(), *self.head.parameters(), self.final_modulation]
        zeros += [p for b in self.blocks for p in (b.modulation, b.cross_attn.out.weight)]
        if self.task_embed is not None:
            zeros.append(self.task_embed.weight)
        for p in zeros:
            nn.init.zeros_(p)

    def positions(self, t: int, h: int, w: int, frame_offset: torch.Tensor | None = None) -> torch.Tensor:
        """Factorized positional embedding φ_t + φ_h + φ_w for a t×h×w patch grid, shape (1, t·h·w, dim).

        ``frame_offset`` (B,) starts each sample's temporal positions at that row instead of row 0
        (shape (B, t·h·w, dim)): Edit's one-frame pairs take a random temporal position (paper §6)."""
        spatial = self.pos_h[None, :h, None] + self.pos_w[None, None, :w]
        if frame_offset is None:
            return (self.pos_t[:t, None, None] + spatial).reshape(1, t * h * w, -1)
        rows = frame_offset.to(self.pos_t.device).long()[:, None] + torch.arange(t, device=self.pos_t.device)
        pos = self.pos_t[rows][:, :, None, None] + spatial[None]
        return pos.reshape(rows.shape[0], t * h * w, -1)

    def _check_inputs(self, x, t, text, text_mask, task, frame_offset=None) -> tuple[int, int, int]:
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise MovieGenError(f"latent must have shape (B, {c.in_channels}, T, H, W), got {tuple(x.shape)}")
        sizes = x.shape[2:]
        if any(s % p for s, p in zip(sizes, c.patch_size, strict=True)):
            raise MovieGenError(
                f"latent size T×H×W = {'×'.join(map(str, sizes))} is not divisible by the patch size "
                f"{'×'.join(map(str, c.patch_size))}"
            )
        grid = tuple(s // p for s, p in zip(sizes, c.patch_size, strict=True))
        limits = (c.max_latent_frames, c.max_height_patches, c.max_width_patches)
        if any(g > m for g, m in zip(grid, limits, strict=True)):
            raise MovieGenError(
                f"latent of {'×'.join(map(str, grid))} patches (T×H×W) does not fit the positional tables "
                f"({'×'.join(map(str, limits))}); use expand_positions() or a smaller video"
            )
        b = x.shape[0]
        if t.shape != (b,):
            raise MovieGenError(f"t must have shape ({b},), got {tuple(t.shape)}")
        if text.ndim != 3 or text.shape[0] != b or text.shape[2] != c.dim:
            raise MovieGenError(f"text must have shape ({b}, L, {c.dim}), got {tuple(text.shape)}")
        if text_mask is not None and (text_mask.shape != text.shape[:2] or text_mask.dtype != torch.bool):
            raise MovieGenError(
                f"text_mask must be a bool tensor of shape {tuple(text.shape[:2])}, "
                f"got {text_mask.dtype} {tuple(text_mask.shape)}"
            )
        if task is not None:
            if self.task_embed is None:
                raise MovieGenError("this model has no task embedding (num_tasks = 0) but a task was given")
            if task.shape != (b,):
                raise MovieGenError(f"task must have shape ({b},), got {tuple(task.shape)}")
        if frame_offset is not None:
            if frame_offset.shape != (b,):
                raise MovieGenError(f"frame_offset must have shape ({b},), got {tuple(frame_offset.shape)}")
            if bool((frame_offset < 0).any()) or int(frame_offset.max()) + grid[0] > c.max_latent_frames:
                raise MovieGenError(
                    f"frame_offset + {grid[0]} latent frames must fit the {c.max_latent_frames} temporal "
                    f"positions, got offsets {frame_offset.tolist()}"
                )
        return grid  # type: ignore[return-value]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        task: torch.Tensor | None = None,
        frame_offset: torch.Tensor | None = None,
        text_cache: TextCache | None = None,
    ) -> torch.Tensor:
        """The velocity (B, C, T, H, W). ``text_cache`` (:meth:`text_cache` of these ``text`` and ``text_mask``)
        replaces the per-block cross-attention keys and values computed from ``text``: same result, less work
        when the text is the same at every step (sampling)."""
        gt, gh, gw = self._check_inputs(x, t, text, text_mask, task, frame_offset)
        if text_cache is not None and (text_cache.batch, text_cache.length) != tuple(text.shape[:2]):
            raise MovieGenError(f"text_cache is of text {text_cache.batch}×{text_cache.length}, "
                                f"not {text.shape[0]}×{text.shape[1]}")  # fmt: skip
        emb = self.time_mlp(timestep_embedding(t).to(self.time_mlp[0].weight.dtype))
        if task is not None:
            emb = emb + self.task_embed(task)
        mod = self.adaln(emb).unflatten(1, (6, self.config.dim))
        mask, has_text = self._text_mask(text, text_mask) if text_cache is None else (text_cache.mask, None)

        h = rearrange(self.patch_embed(x), "b d t h w -> b (t h w) d")
        pos = self.positions(gt, gh, gw, frame_offset).to(h.dtype)
        for k, block in enumerate(self.blocks):
            args = (h, pos, mod, text, mask, has_text)  # the six inputs parallelize()'s block hooks lay out
            if text_cache is not None:
                args += ((text_cache.rows, *(text_cache.kv[k] if text_cache.kv else (None, None))),)
            if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, *args, use_reentrant=False)
            else:
                h = block(*args)

        shift, scale = (self.final_modulation[None] + emb[:, None]).unbind(1)
        out = self.head(modulate(self.final_norm(h), shift, scale))
        pt, ph, pw = self.config.patch_size
        return rearrange(
            out, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=gt, h=gh, w=gw, pt=pt, ph=ph, pw=pw
        )

    @staticmethod
    def _text_mask(text: torch.Tensor, text_mask: torch.Tensor | None):
        """The cross-attention mask (B, 1, 1, L) and which rows have any text (B, 1, 1). Fully masked rows would
        make softmax NaN: they attend everywhere, then their output is zeroed."""
        if text_mask is None:
            return None, None
        any_text = text_mask.any(dim=1)
        return (text_mask | ~any_text[:, None])[:, None, None, :], any_text[:, None, None].to(text.dtype)

    def text_cache(self, text: torch.Tensor, text_mask: torch.Tensor | None = None) -> TextCache:
        """Every block's cross-attention keys and values of ``text`` (B, L, dim), for the rows with any unmasked
        token (all rows without a mask): compute once, pass to every :meth:`forward` of a sampling run."""
        b, length = text.shape[:2]
        if length == 0:  # no tokens: cross-attention adds nothing to any row
            rows = torch.zeros(0, dtype=torch.long, device=text.device)
        elif text_mask is None:
            rows = torch.arange(b, device=text.device)
        else:
            rows = text_mask.any(dim=1).nonzero()[:, 0]
        context, mask = text[rows], None if text_mask is None else text_mask[rows][:, None, None, :]
        kv = [block.cross_attn.context_kv(context) for block in self.blocks] if length > 0 else []
        return TextCache(rows, mask, kv, b, length)

    @classmethod
    def from_base(
        cls,
        base: MovieGenTransformer | str | Path,
        in_channels: int | None = None,
        num_tasks: int | None = None,
    ) -> MovieGenTransformer:
        """A post-training variant of a trained text-to-video backbone (paper §5 upsampler, §6 Edit).

        ``base`` is a model, a transformer folder or a pipeline folder (its ``transformer/``). The variant has
        the base's architecture and weights, with the patch embedding widened to ``in_channels`` (the new
        input channels, e.g. a conditioning latent concatenated after the noisy one, get zero weights) and
        a task embedding of ``num_tasks`` rows (new rows zero). Both additions start as exact no-ops, so
        the variant's first forward equals the base model's for any conditioning. Nothing can shrink.
        """
        if not isinstance(base, MovieGenTransformer):
            folder = Path(base)
            if (folder / "transformer" / "config.json").is_file():
                folder = folder / "transformer"
            base = cls.from_pretrained(folder)
        c = base.config
        in_channels = c.in_channels if in_channels is None else in_channels
        num_tasks = c.num_tasks if num_tasks is None else num_tasks
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < c.in_channels:
            raise MovieGenError(f"from_base: in_channels must be an int >= the base's {c.in_channels}, "
                                f"got {in_channels!r}")  # fmt: skip
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < c.num_tasks:
            raise MovieGenError(f"from_base: num_tasks must be an int >= the base's {c.num_tasks}, "
                                f"got {num_tasks!r}")  # fmt: skip
        ref = next(base.parameters())
        with torch.device("meta" if ref.is_meta else "cpu"):
            variant = cls(dataclasses.replace(c, in_channels=in_channels, num_tasks=num_tasks))
        state = {k: v.detach().clone() for k, v in base.state_dict().items()}
        weight = state["patch_embed.weight"]
        extra = weight.new_zeros(weight.shape[0], in_channels - c.in_channels, *weight.shape[2:])
        state["patch_embed.weight"] = torch.cat([weight, extra], dim=1)
        if num_tasks > 0:
            rows = state.get("task_embed.weight", weight.new_zeros(0, c.dim))
            state["task_embed.weight"] = torch.cat([rows, rows.new_zeros(num_tasks - rows.shape[0], c.dim)])
        variant.load_state_dict(state, assign=ref.is_meta)
        return variant.to(ref.device, ref.dtype)

    @torch.no_grad()
    def expand_positions(
        self,
        max_latent_frames: int | None = None,
        max_height_patches: int | None = None,
        max_width_patches: int | None = None,
    ) -> None:
        """Grow the positional tables in place for the next stage of the staged recipe (paper §3.1.2).

        Spatial tables are linearly resampled to the new size (half-pixel centres, ``align_corners=False``:
        row j of the new table sits at the same relative image position as before, so the same picture at a
        finer grid sees similar positions). The temporal table keeps its existing rows unchanged (a latent
        frame index is an absolute time at a fixed frame rate, so clips that already fit behave exactly as
        before); new rows start as copies of the last existing row, which for a text-to-image model (one row)
        copies that row to every frame. ``self.config`` is updated so ``save_pretrained`` round-trips.
        """
        c = self.config
        new = {
            "max_latent_frames": c.max_latent_frames if max_latent_frames is None else max_latent_frames,
            "max_height_patches": c.max_height_patches if max_height_patches is None else max_height_patches,
            "max_width_patches": c.max_width_patches if max_width_patches is None else max_width_patches,
        }
        for key, value in new.items():
            if value < getattr(c, key):
                raise MovieGenError(f"expand_positions: {key} can only grow ({getattr(c, key)} -> {value})")
        if new["max_latent_frames"] > c.max_latent_frames:
            old = self.pos_t.data
            extra = old[-1:].expand(new["max_latent_frames"] - old.shape[0], -1)
            self.pos_t = nn.Parameter(torch.cat([old, extra]).contiguous())
        for name, key in (("pos_h", "max_height_patches"), ("pos_w", "max_width_patches")):
            old = getattr(self, name).data
            if new[key] > old.shape[0]:
                grown = F.interpolate(old.T[None].float(), size=new[key], mode="linear", align_corners=False)
                setattr(self, name, nn.Parameter(grown[0].T.to(old.dtype).contiguous()))
        self.config = dataclasses.replace(c, **new)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (works on meta-device models)."""
    return sum(p.numel() for p in model.parameters())


def latent_shape(
    num_frames: int, height: int, width: int, latent_channels: int = 16, temporal: int = 8, spatial: int = 8
) -> tuple[int, int, int, int]:
    """TAE latent shape (C, T, H, W) of a num_frames×height×width video: 8× down in T, H and W (paper §3.1.1).

    An image is a one-frame video; T = ceil(num_frames / 8).
    """
    if num_frames < 1 or height < 1 or width < 1:
        raise MovieGenError(f"video size must be positive, got {num_frames} frames of {height}×{width}")
    if height % spatial or width % spatial:
        raise MovieGenError(f"height and width must be multiples of {spatial}, got {height}×{width}")
    return latent_channels, math.ceil(num_frames / temporal), height // spatial, width // spatial


def num_tokens(config: TransformerConfig, latent_shape: tuple[int, ...]) -> int:
    """Transformer sequence length for a latent of shape (C, T, H, W) or (T, H, W)."""
    sizes = tuple(latent_shape[-3:])
    if any(s % p for s, p in zip(sizes, config.patch_size, strict=True)):
        raise MovieGenError(f"latent size {sizes} is not divisible by the patch size {config.patch_size}")
    return math.prod(s // p for s, p in zip(sizes, config.patch_size, strict=True))
