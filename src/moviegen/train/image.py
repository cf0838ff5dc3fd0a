"""Movie Gen Image's world recipe (paper §9 / the seed's text-to-image section, scaled down):
``moviegen train image``.

An image is a one-frame video; the image model is the text-to-video backbone post-trained on images:

1. **images**: world images (still objects and photos) rendered at ``size`` px, captioned without any
   ``FPS-n`` prefix (the one rule for images, :func:`moviegen.models.text.compose_clip_prompt`). The
   colour × shape pairs of :data:`HELD_OUT_PAIRS` are left out, so the benchmark can ask for compositions
   the post-training never showed;
2. **fine-tuning** at ``size`` px through the one Trainer, ``init_from`` the base pipeline with its spatial
   positional tables grown to the new size;
3. **quality tuning**: a few hundred steps at a lower rate on the ``quality_fraction`` of images that the
   curation pipeline's own quality score (:func:`moviegen.curate.visual.classical_scores`: sharpness,
   exposure, colourfulness) ranks highest [choice: the classical score; the CLIP aesthetic scorer needs
   weights this recipe does not assume];
4. **image decoder**: the TAE's decoder fine-tuned on one-frame images at ``size`` px with the encoder
   frozen (the backbone's latents do not change) — the world TAE, trained at 64 px, shifts flat colours at
   128 px. The image pipeline's ``tae`` is this autoencoder (each pipeline names its own); the benchmark
   compares it with the base TAE;
5. ``OUT/pipeline`` (fp16, the shipped form) and ``OUT/training_log.json``.
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
from moviegen.curate.visual import classical_scores
from moviegen.data.cache import CacheItem, text_states, write_cache
from moviegen.data.world import COLORS, MOTIONS, SHAPES, World, WorldConfig, is_held_out
from moviegen.files import write_atomic
from moviegen.models.tae import TAE
from moviegen.models.text import TextConditioner
from moviegen.models.transformer import MovieGenTransformer
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline
from moviegen.train.loop import TrainConfig, loss_history, train
from moviegen.video import to_uint8

Progress = Callable[[str, int, int, dict], None]

HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (c, s)
    for i, c in enumerate(COLORS)
    for j, s in enumerate(SHAPES)
    if is_held_out(i, j, MOTIONS.index("still"))
)
"""Colour × shape pairs the image recipe never trains on: those whose still clip the world holds out."""


@dataclass(frozen=True)
class ImageRecipe(Config):
    """Sizes and schedule of the image recipe; ``quick`` is for CI."""

    size: int = 128
    num_images: int = 1600
    val_images: int = 48
    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-4
    warmup_steps: int = 50
    quality_fraction: float = 0.2
    quality_steps: int = 300
    quality_lr: float = 5e-5
    decoder_steps: int = 200
    decoder_batch: int = 8
    decoder_lr: float = 1e-4
    text_dropout: float = 0.1
    val_every: int = 500
    seed: int = 0

    PRESETS: ClassVar[dict] = {
        "default": {},
        "quick": dict(
            num_images=12,
            val_images=2,
            steps=3,
            batch_size=2,
            warmup_steps=1,
            quality_steps=2,
            decoder_steps=1,
            decoder_batch=1,
            val_every=3,
        ),  # fmt: skip
    }

    def validate(self) -> None:
        name = "ImageRecipe"
        for key in ("num_images", "val_images", "steps", "batch_size", "quality_steps", "decoder_batch",
                    "val_every"):  # fmt: skip
            require(getattr(self, key) >= 1, name, f"{key} must be >= 1")
        require(self.decoder_steps >= 0, name, "decoder_steps must be >= 0")
        require(self.size >= 16 and self.size % 16 == 0, name, "size must be a multiple of 16")
        require(0 < self.quality_fraction <= 1, name, "quality_fraction must be in (0, 1]")
        require(min(self.lr, self.quality_lr, self.decoder_lr) > 0, name, "learning rates must be > 0")


def world_images(recipe: ImageRecipe, split: str, count: int) -> list:
    """``count`` world images of ``split`` at ``recipe.size`` px, none of a held-out pair."""
    world = World(WorldConfig(size=recipe.size, frames=1), seed=recipe.seed)
    images, index = [], 0
    while len(images) < count:
        clip = world.image(split, index)
        index += 1
        if clip.kind == "object" and (clip.attributes["color"], clip.attributes["shape"]) in HELD_OUT_PAIRS:
            continue
        images.append(clip)
    return images


def quality_scores(images: list) -> list[float]:
    """The curation pipeline's classical quality score of each image."""
    return [classical_scores([to_uint8(clip.video)[0]])["quality"] for clip in images]


@torch.inference_mode()
def encode_images(base: MovieGenPipeline, images: list) -> list[CacheItem]:
    items = []
    for i, clip in enumerate(images):
        latent = base.tae.normalize(base.tae.encode(clip.video[None]).float())[0]
        items.append(CacheItem(latent, text_states(base.text, clip.caption), clip.caption, "image", i))
    return items


def finetune_image_decoder(
    tae: TAE, images: list, recipe: ImageRecipe, progress: Progress | None = None
) -> TAE:
    """Fine-tune the decoder (and post-quant conv) on one-frame images, encoder frozen: L1 + 20·MSE, as the
    world recipe's own decoder stage."""
    params = list(tae.decoder.parameters()) + list(tae.post_quant_conv.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.decoder_lr, weight_decay=0.0)
    rng = np.random.default_rng([recipe.seed, 11])
    tae.train()
    for step in range(recipe.decoder_steps):
        x = torch.stack([images[k].video for k in rng.integers(0, len(images), recipe.decoder_batch)])
        with torch.no_grad():
            z = tae.encode(x)
        out = tae.decode(z, num_frames=1, tile_latents=None)
        loss = (out - x).abs().mean() + 20 * (out - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress:
            progress("image decoder", step + 1, recipe.decoder_steps, {"loss": loss.item()})
    return tae.eval()


def _stage_config(
    recipe: ImageRecipe, out: Path, name: str, init_from: Path, cache: str, **kw
) -> TrainConfig:
    return TrainConfig(
        stage=f"image {name}", init_from=str(init_from), cache=cache, val_cache=str(out / "val_cache"),
        global_batch=recipe.batch_size, text_dropout=recipe.text_dropout, betas=(0.9, 0.99),
        weight_decay=0.01, schedule="cosine", cosine_final_ratio=0.1, val_every=recipe.val_every,
        log_every=0, keep_checkpoints=1, seed=recipe.seed, run_dir=str(out / f"run_{name}"), **kw,
    )  # fmt: skip


def train_image(
    recipe: ImageRecipe,
    out: str | Path,
    base: str | Path | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
) -> MovieGenPipeline:
    """Run the recipe from the text-to-video pipeline ``base`` (default: the shipped world model)."""
    out = Path(out)
    base_dir = Path(base) if base is not None else DEFAULT_MODEL
    pipe = MovieGenPipeline.from_pretrained(base_dir)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    train_images = world_images(recipe, "train", recipe.num_images)
    val_images = world_images(recipe, "val", recipe.val_images)
    configs = dict(text_config=pipe.text.config.to_dict(), tae_config=pipe.tae.config.to_dict())
    items = encode_images(pipe, train_images)
    write_cache(items, out / "cache", **configs)
    write_cache(encode_images(pipe, val_images), out / "val_cache", **configs)
    scores = quality_scores(train_images)
    keep = max(recipe.batch_size, round(recipe.quality_fraction * len(train_images)))
    best = sorted(range(len(train_images)), key=lambda i: -scores[i])[:keep]
    write_cache([items[i] for i in best], out / "quality_cache", **configs)
    timings["data_s"] = time.perf_counter() - start

    c = pipe.transformer.config
    down = pipe.tae.compression
    grown = (
        c.max_latent_frames,
        recipe.size // (down * c.patch_size[1]),
        recipe.size // (down * c.patch_size[2]),
    )
    history: dict[str, list] = {}

    def on_step(stage: str, total: int) -> Callable[[dict], None]:
        return loss_history(history, f"{stage}/loss", f"{stage}/val_loss", progress, f"image {stage}", total)

    t0 = time.perf_counter()
    tune = _stage_config(recipe, out, "finetune", base_dir, str(out / "cache"), lr=recipe.lr,
                         warmup_steps=recipe.warmup_steps, steps=recipe.steps,
                         expand_positions=grown, device=device)  # fmt: skip
    first = train(tune, log=lambda m: None, on_step=on_step("finetune", recipe.steps)).export_dir
    timings["finetune_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    quality = _stage_config(recipe, out, "quality", first, str(out / "quality_cache"), lr=recipe.quality_lr,
                            warmup_steps=0, steps=recipe.quality_steps, device=device)  # fmt: skip
    export = train(quality, log=lambda m: None, on_step=on_step("quality", recipe.quality_steps)).export_dir
    timings["quality_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tae = finetune_image_decoder(pipe.tae, train_images, recipe, progress)  # pipe encodes nothing more
    timings["decoder_s"] = time.perf_counter() - t0
    text = TextConditioner.from_pretrained(export / "text")
    transformer = MovieGenTransformer.from_pretrained(export / "transformer")
    image = MovieGenPipeline(text, transformer, tae, pipe.guidance_scale, pipe.caption_style)
    image.save_pretrained(out / "pipeline", dtype=torch.float16)
    timings["total_s"] = time.perf_counter() - start
    log = {"recipe": recipe.to_dict(), "base": str(base_dir), "timings": timings, "history": history,
           "held_out_pairs": [list(p) for p in HELD_OUT_PAIRS], "quality_images": len(best)}  # fmt: skip
    write_atomic(out / "training_log.json", json.dumps(log))
    return image
