"""Measuring the spatial upsampler (paper §5) on the built-in world, where the true large video is known.

* :func:`quality` — held-out clips rendered at the large size are brought down to the small one (``clean``:
  an area resize; ``degraded``: :func:`moviegen.data.degrade.degrade` with a seed stream the recipe never
  draws); the upsampler, bicubic and bilinear upsampling are scored against the true rendering (PSNR,
  SSIM) in one run, beside the TAE round trip of the truth (the ceiling of anything decoded by the TAE).
  Clips: the world's ``test`` split (unseen renders) and every held-out colour/shape/motion triple (unseen
  compositions).
* :func:`seam_ratio` — MultiDiffusion windows: the mean frame difference across the frames where
  independent windows would meet, divided by the mean difference everywhere else. Measured on
  :func:`long_clip`, a ≥ 256-frame rendering whose object moves back and forth (so windows really slide).
* :func:`content_kept` — the world detector's colour / shape / motion before and after upsampling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen import flow
from moviegen.data.degrade import DegradationConfig, degrade, resize
from moviegen.data.world import COLORS, World, WorldConfig, held_out_triples, render_objects
from moviegen.eval.reconstruction import psnr, ssim
from moviegen.eval.world import detect_object

BASELINES = ("bicubic", "bilinear")
BENCHMARK_SALT = 1009  # degradation seeds the recipe (salt 7) never uses


@dataclass
class Pair:
    """A true large clip and its small input; ``name`` says where the clip came from."""

    truth: Tensor  # (3, T, H, W) in [-1, 1]
    low: Tensor  # (3, T, H / scale, W / scale)
    name: str


def held_out_pairs(
    count: int, size: int = 128, scale: int = 2, frames: int = 16, degraded: bool = True, seed: int = 0
) -> list[Pair]:
    """``count`` pairs: alternately a ``test``-split clip and a held-out composition (cycling)."""
    world = World(WorldConfig(size=size, frames=frames), seed=seed)
    triples = held_out_triples()
    config = DegradationConfig(scale=scale)
    pairs = []
    for i in range(count):
        if i % 2 == 0:
            clip, name = world.clip("test", i // 2), f"test/{i // 2}"
        else:
            color, shape, motion = triples[(i // 2) % len(triples)]
            rng = np.random.default_rng([seed, BENCHMARK_SALT, i])
            clip = world.object_clip(color, shape, motion, 16, rng)
            name = f"held-out/{color} {shape} {motion}"
        video = clip.video
        if degraded:
            low = degrade(video, np.random.default_rng([seed, BENCHMARK_SALT, i, 7]), config)
        else:
            frames_first = video.permute(1, 0, 2, 3)
            low = resize(frames_first, (size // scale, size // scale), "area").permute(1, 0, 2, 3)
        pairs.append(Pair(video, low.clamp(-1, 1), name))
    return pairs


def upsample_baseline(low: Tensor, scale: int, mode: str) -> Tensor:
    """``low`` (3, T, h, w) resized ``scale``× by ``mode`` (bicubic / bilinear), clamped to [-1, 1]."""
    frames = low.float().permute(1, 0, 2, 3)
    size = (low.shape[2] * scale, low.shape[3] * scale)
    up = F.interpolate(frames, size=size, mode=mode, align_corners=False)
    return up.clamp(-1, 1).permute(1, 0, 2, 3)


def quality(
    upsamplers: dict[str, Callable[[Tensor], Tensor]],
    pairs: Sequence[Pair],
    scale: int = 2,
    tae=None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """PSNR / SSIM (means over clips) of each named upsampler (small video → large) and of the baselines
    against the truth.

    ``tae`` adds the row ``tae round trip``: the truth encoded and decoded, the best a latent upsampler
    decoded by that TAE could do (before any colour fix).
    """
    methods: dict[str, Callable[[Pair], Tensor]] = {
        name: (lambda p, f=f: f(p.low)) for name, f in upsamplers.items()
    }
    methods |= {m: (lambda p, m=m: upsample_baseline(p.low, scale, m)) for m in BASELINES}
    if tae is not None:

        @torch.inference_mode()
        def roundtrip(p: Pair) -> Tensor:
            device = next(tae.parameters()).device
            z = tae.encode(p.truth[None].to(device))
            return tae.decode(z, num_frames=p.truth.shape[1])[0].float().cpu().clamp(-1, 1)

        methods["tae round trip"] = roundtrip
    scores = {m: {"psnr": [], "ssim": []} for m in methods}
    for i, pair in enumerate(pairs):
        for name, method in methods.items():
            out = method(pair)
            if out.shape != pair.truth.shape:
                raise ValueError(f"{name} returned {tuple(out.shape)} for a {tuple(pair.truth.shape)} truth")
            scores[name]["psnr"].append(psnr(out, pair.truth))
            scores[name]["ssim"].append(ssim(out.transpose(0, 1), pair.truth.transpose(0, 1)))
        if progress:
            progress(i + 1, len(pairs))
    return {m: {k: float(np.mean(v)) for k, v in s.items()} for m, s in scores.items()}


def long_clip(
    frames: int = 256, size: int = 64, color: str = "orange", shape: str = "circle", seed: int = 0
) -> Tensor:
    """A ``frames``-long world rendering at ``size`` px: one object moving back and forth along a slanted
    line (a triangle wave, period 96 frames) over a dark background, (3, frames, size, size)."""
    rng = np.random.default_rng([seed, frames, size])
    radius = 8.0 * size / 64
    lo, hi = radius * 1.6, size - radius * 1.6
    phase = np.abs(((np.arange(frames) / 48.0) % 2.0) - 1.0)  # 1 → 0 → 1 …
    x = lo + (hi - lo) * phase
    y = size / 2 + (size / 5) * (phase - 0.5)
    background = rng.uniform(0.02, 0.12, size=3)
    return render_objects(shape, COLORS[color], radius, np.stack([x, y], axis=1), background, size)


def seam_frames(num_frames: int, window: int, compression: int) -> list[int]:
    """Frames ``f`` such that (f − 1, f) straddles a boundary of independent (overlap-0) windows of
    ``window`` latent frames over a video of ``num_frames`` frames (``compression`` frames per latent)."""
    length = -(-num_frames // compression)
    return [
        s * compression for s in flow.window_starts(length, window, 0)[1:] if s * compression < num_frames
    ]


def frame_differences(video: Tensor) -> Tensor:
    """Mean absolute difference between consecutive frames of (3, T, H, W): a (T − 1,) tensor."""
    v = video.float()
    return (v[:, 1:] - v[:, :-1]).abs().mean(dim=(0, 2, 3))


def seam_ratio(video: Tensor, seams: Sequence[int], reference: Sequence[int] | None = None) -> float:
    """Mean frame difference across ``seams`` (each frame ``f`` names the pair (f − 1, f)) over the mean
    across ``reference`` frames (default: every other pair)."""
    diffs = frame_differences(video)
    at = _pairs(seams, len(diffs))
    rest = _pairs(reference, len(diffs)) if reference is not None else ~at
    if not at.any() or not rest.any() or (at & rest).any():
        raise ValueError("need disjoint, non-empty seam and reference frame pairs")
    return float(diffs[at].mean() / diffs[rest].mean().clamp_min(1e-12))


def _pairs(frames: Sequence[int], count: int) -> Tensor:
    mask = torch.zeros(count, dtype=torch.bool)
    mask[[f - 1 for f in frames if 1 <= f <= count]] = True
    return mask


def latent_boundaries(num_frames: int, compression: int, exclude: Sequence[int] = ()) -> list[int]:
    """First frames of every latent frame after the first (``f`` with ``f % compression == 0``), but
    ``exclude``: with ``exclude`` the seams, the latent-frame boundaries inside windows."""
    return [f for f in range(compression, num_frames, compression) if f not in set(exclude)]


def content_kept(before: Sequence[Tensor], after: Sequence[Tensor]) -> dict[str, float]:
    """Percent of clips whose detected colour / shape / motion is the same after upsampling as before."""
    if len(before) != len(after) or not before:
        raise ValueError("need the same non-zero number of clips before and after")
    same = {"color": 0, "shape": 0, "motion": 0, "all": 0}
    for a, b in zip(before, after, strict=True):
        da, db = detect_object(a), detect_object(b)
        hits = [getattr(da, k) == getattr(db, k) for k in ("color", "shape", "motion")]
        for key, hit in zip(("color", "shape", "motion"), hits, strict=True):
            same[key] += hit
        same["all"] += all(hits)
    return {k: 100.0 * v / len(before) for k, v in same.items()}
