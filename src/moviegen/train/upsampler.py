"""The spatial upsampler's world recipe (paper §5, scaled down): ``moviegen train upsampler``.

1. **pairs**: world clips rendered at ``size`` px (the world renders the same scene at any size); each is
   degraded to ``size / scale`` px by :func:`moviegen.data.degrade.degrade` (second-order pipeline, or a
   TAE round trip with the base's TAE), bilinearly upsampled back to ``size`` and encoded: that latent is
   the item's ``cond``, the clean clip's latent its target. Both normalised with the base TAE's statistics;
   written with :func:`moviegen.data.cache.write_cache` (train and held-out validation caches);
2. **training** through the one Trainer (:mod:`moviegen.train.loop`), ``init_from`` the base text-to-video
   pipeline with ``in_channels`` doubled (zero-initialised: training starts exactly at the base model) and
   the spatial positional tables grown ``scale``×;
3. an :class:`~moviegen.upsampler.UpsamplerPipeline` folder at ``OUT/pipeline`` (fp16 weights, the shipped
   form), with the colour fix on (σ = 1 px: the world TAE shifts flat colours at 128 px, a size it was
   not trained at; σ chosen on the cascade's content check, see ``docs/upsampler.md``).

Text: every pair carries the null text (our choice: the paper keeps text conditioning but the video already
says what is in it, and the upsampler's default prompt is the null text), so classifier-free guidance is
off (scale 1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from moviegen.config import Config, require
from moviegen.data.cache import CacheItem, write_cache
from moviegen.data.degrade import DegradationConfig, degrade
from moviegen.data.world import World, WorldConfig
from moviegen.files import write_atomic
from moviegen.models.text import TextConditioner
from moviegen.models.transformer import MovieGenTransformer
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline
from moviegen.train.loop import TrainConfig, loss_history, train
from moviegen.upsampler import UpsamplerPipeline, conditioning_latent, default_window

Progress = Callable[[str, int, int, dict], None]


@dataclass(frozen=True)
class UpsamplerRecipe(Config):
    """Sizes and schedule of the upsampler recipe; ``quick`` is for CI."""

    size: int = 128
    scale: int = 2
    frames: int = 16
    num_clips: int = 600  # 0.7 s per pair at 128 px on 2 cores: 7 min
    val_clips: int = 24
    steps: int = 3000  # 0.3 s per step: 15 min
    batch_size: int = 16
    lr: float = 3e-4
    warmup_steps: int = 100
    val_every: int = 250
    num_steps: int = 20  # the pipeline's default Euler steps (the paper's)
    color_fix: float = 1.0  # the pipeline's default colour fix (see moviegen.upsampler.fix_colors)
    seed: int = 0

    PRESETS: ClassVar[dict] = {
        "default": {},
        "quick": dict(
            num_clips=6, val_clips=2, steps=4, batch_size=2, val_every=2, warmup_steps=1, num_steps=2
        ),
    }

    def validate(self) -> None:
        name = "UpsamplerRecipe"
        for key in ("num_clips", "val_clips", "steps", "batch_size", "val_every", "num_steps", "frames"):
            require(getattr(self, key) >= 1, name, f"{key} must be >= 1")
        require(self.scale >= 1 and self.size % (16 * self.scale) == 0, name,
                "size must be a multiple of 16 × scale")  # fmt: skip
        require(self.lr > 0, name, "lr must be > 0")
        require(0 <= self.color_fix <= 64, name, "color_fix must be a blur sigma in [0, 64] px")


@torch.inference_mode()
def make_pairs(
    base: MovieGenPipeline, recipe: UpsamplerRecipe, split: str, count: int, progress: Progress | None = None
) -> list[CacheItem]:
    """``count`` (target latent, cond latent) items of world clips, with the null text (see the docstring)."""
    world = World(WorldConfig(size=recipe.size, frames=recipe.frames), seed=recipe.seed)
    tae = base.tae
    (hidden, mask), *_ = base.text.encode_raw([""])
    null = [(hidden[0, :1].float(), torch.zeros(1, dtype=torch.bool))]
    config = DegradationConfig(scale=recipe.scale)
    items = []
    for i in range(count):
        clip = world.clip(split, i)
        rng = np.random.default_rng([recipe.seed, World.SPLITS.index(split), i, 7])
        low = degrade(clip.video, rng, config, tae=tae)
        target = tae.normalize(tae.encode(clip.video[None]).float())[0]
        cond = conditioning_latent(tae, low, (recipe.size, recipe.size))[0]
        items.append(CacheItem(target, null, clip.caption, "video", i, {"cond": cond}))
        if progress:
            progress(f"pairs ({split})", i + 1, count, {})
    return items


def train_upsampler(
    recipe: UpsamplerRecipe,
    out: str | Path,
    base: str | Path | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
) -> UpsamplerPipeline:
    """Run the recipe from the text-to-video pipeline ``base`` (default: the shipped world model)."""
    out = Path(out)
    base_dir = Path(base) if base is not None else DEFAULT_MODEL
    pipe = MovieGenPipeline.from_pretrained(base_dir)
    start = time.perf_counter()
    timings = {}
    text_config = pipe.text.config.to_dict()
    write_cache(make_pairs(pipe, recipe, "train", recipe.num_clips, progress), out / "cache",
                text_config=text_config, tae_config=pipe.tae.config.to_dict())  # fmt: skip
    write_cache(make_pairs(pipe, recipe, "val", recipe.val_clips, progress), out / "val_cache",
                text_config=text_config, tae_config=pipe.tae.config.to_dict())  # fmt: skip
    timings["pairs_s"] = time.perf_counter() - start
    c = pipe.transformer.config
    config = TrainConfig(
        stage="upsampler", init_from=str(base_dir), model_overrides={"in_channels": 2 * c.out_channels},
        expand_positions=(c.max_latent_frames, recipe.scale * c.max_height_patches,
                          recipe.scale * c.max_width_patches),
        cache=str(out / "cache"), val_cache=str(out / "val_cache"), global_batch=recipe.batch_size,
        text_dropout=0.0, lr=recipe.lr, betas=(0.9, 0.99), weight_decay=0.01,
        warmup_steps=recipe.warmup_steps, schedule="cosine", cosine_final_ratio=0.1, steps=recipe.steps,
        val_every=recipe.val_every, log_every=0, keep_checkpoints=1, seed=recipe.seed,
        run_dir=str(out / "run"), device=device,
    )  # fmt: skip
    history: dict[str, list] = {"train/loss": [], "val/loss": []}
    on_step = loss_history(history, "train/loss", "val/loss", progress, "upsampler", recipe.steps)
    t0 = time.perf_counter()
    result = train(config, log=lambda message: None, on_step=on_step)
    timings["train_s"] = time.perf_counter() - t0
    export = result.export_dir
    window, overlap = default_window(c.max_latent_frames)
    upsampler = UpsamplerPipeline(
        TextConditioner.from_pretrained(export / "text"),
        MovieGenTransformer.from_pretrained(export / "transformer"),
        pipe.tae, scale=recipe.scale, num_steps=recipe.num_steps, window=window, overlap=overlap,
        color_fix=recipe.color_fix,
    )  # fmt: skip
    upsampler.save_pretrained(out / "pipeline", dtype=torch.float16)  # as shipped (fp16, 8.2 MB)
    timings["total_s"] = time.perf_counter() - start
    record = {"recipe": recipe.to_dict(), "base": str(base_dir), "timings": timings, "history": history}
    write_atomic(out / "training_log.json", json.dumps(record))
    return upsampler
