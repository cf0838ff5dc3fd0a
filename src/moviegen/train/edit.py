"""Movie Gen Edit's world recipe (paper §6, scaled down): ``moviegen train edit``.

No stage sees a true video-edit pair (the world can render them, but the paper has none at scale: they are
for evaluation, and for the validation loss that is only logged). Every stage runs through the one Trainer,
with the instruction as the text and the source latent as ``cond``; text-to-video batches (world clips,
their captions, an all-zero source, task 0) keep the generation skill. Held-out edit compositions
(:func:`moviegen.data.edits.edit_is_held_out`) are left out of every stage.

0. **the Edit TAE** (ours, not the paper's): the world TAE reproduces only the world's own pictures (objects
   on its dark grey, photos); edits make others (an object in front of a photo, two objects, grey levels).
   The TAE (encoder and decoder) is fine-tuned for ``tae_steps`` on edit renderings of training
   compositions, mostly one-frame (a video batch every fourth step), and world clips, with the world
   recipe's loss; every latent after it is this TAE's and the Edit pipeline names it as its own. Measured
   on the benchmark's true edits (TAE round trip, 8 per task): add 37.5 → 87.5 % edit-and-preserve,
   recolor PSNR 31.8 → 33.8 dB, world validation clips 26.5 → 27.6 dB;
1. **image editing as one-frame video editing**: still world images and their edited re-renders, the six
   Edit Bench tasks; edit : text-to-video batches = 5 : 1, one task per batch; the one-frame pairs take a
   random temporal position (``random_image_frames``). ``init_from`` the text-to-video model with the
   source channels and the task rows added, zero-initialised (``from_base``);
2. **animated frame editing + segmentation**: image-edit pairs moved by one random affine motion
   (:func:`moviegen.data.edits.animate`), and world videos with their segmentation map ("mark the circle
   in yellow"); text-to-video : segmentation : animated = 1 : 1 : 3;
3. **backtranslation**: world videos edited by the stage-2 model (recolor, reshape, background, add),
   the reverse instruction written by :func:`moviegen.data.edits.reverse_edit` (the paper's LLM step: the
   world knows the inverse of each edit), and the model trained to turn the *generated* edit back into
   the real clip (clean target); generated edits the detector does not read as the requested edit are
   dropped (a failed "add" kept would teach that "remove the X" leaves the video as it is); mixed with
   the stage-2 data, backtranslation : animated : segmentation : text-to-video = 4 : 2 : 1 : 1 (our
   choice: the paper does not give stage 3's mix);
4. **guidance**: the instruction-guidance scale is chosen among ``guidance_scales`` on edits of
   training compositions of validation clips (never the held-out ones) and stored in each stage's folder.

``OUT/stage1``, ``OUT/stage2``, ``OUT/stage3`` are :class:`~moviegen.edit.EditPipeline` folders (fp16, the
shipped form; the stage ablation compares them), ``OUT/pipeline`` is the last stage run, and
``OUT/training_log.json`` holds the timings and losses.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from moviegen import flow
from moviegen.config import Config, require
from moviegen.data.cache import CacheItem, MemoryCache, text_states
from moviegen.data.edits import (
    BENCH_TASKS,
    animate,
    apply_edit,
    edit_is_held_out,
    instruction,
    reverse_edit,
    sample_edit,
    scene_of,
    source_scene,
)
from moviegen.data.world import World, WorldConfig
from moviegen.edit import NUM_TASKS, TASK_EDIT, TASK_GENERATE, EditPipeline
from moviegen.errors import MovieGenError
from moviegen.files import write_atomic
from moviegen.models.text import TextConditioner
from moviegen.models.transformer import MovieGenTransformer
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline, read_index, schedule_times
from moviegen.train.loop import TrainConfig, train

Progress = Callable[[str, int, int, dict], None]
BACKTRANSLATION_TASKS = ("recolor", "reshape", "background", "add")


@dataclass(frozen=True)
class EditRecipe(Config):
    """Sizes and schedules of the Edit recipe; ``quick`` is for CI."""

    size: int = 64
    frames: int = 16
    t2v_clips: int = 400
    image_pairs: int = 3000
    animated_pairs: int = 1200
    segment_clips: int = 400
    backtranslated: int = 500
    val_pairs: int = 48
    tae_steps: int = 600
    tae_batch: int = 16  # one-frame images per step; every fourth step is a batch of 2 videos
    tae_lr: float = 2e-4
    stage1_steps: int = 2500
    stage2_steps: int = 2500
    stage3_steps: int = 1200
    batch_size: int = 32
    stage1_lr: float = 3e-4
    stage2_lr: float = 2e-4
    stage3_lr: float = 1e-4
    warmup_steps: int = 50
    text_dropout: float = 0.1
    backtranslation_steps: int = 20  # Euler steps of the stage-2 model's edits
    num_steps: int = 50  # the pipeline's default sampling steps
    guidance_scales: tuple[float, ...] = (1.0, 2.0, 3.0)
    calibration_clips: int = 24
    val_every: int = 500
    seed: int = 0

    PRESETS: ClassVar[dict] = {
        "default": {},
        "quick": dict(t2v_clips=4, image_pairs=8, animated_pairs=4, segment_clips=2, backtranslated=4,
                      val_pairs=2, tae_steps=4, tae_batch=2, stage1_steps=3, stage2_steps=3, stage3_steps=3, batch_size=2,
                      warmup_steps=1, backtranslation_steps=2, num_steps=2, guidance_scales=(1.0, 2.0),
                      calibration_clips=2, val_every=3),
    }  # fmt: skip

    def validate(self) -> None:
        name = "EditRecipe"
        for key in ("t2v_clips", "image_pairs", "animated_pairs", "segment_clips", "backtranslated",
                    "val_pairs", "stage1_steps", "stage2_steps", "stage3_steps", "batch_size",
                    "backtranslation_steps", "num_steps", "calibration_clips", "val_every", "frames"):  # fmt: skip
            require(getattr(self, key) >= 1, name, f"{key} must be >= 1")
        require(self.size >= 16 and self.size % 16 == 0, name, "size must be a multiple of 16")
        require(min(self.stage1_lr, self.stage2_lr, self.stage3_lr) > 0, name, "learning rates must be > 0")
        require(len(self.guidance_scales) >= 1 and all(g >= 1 for g in self.guidance_scales), name,
                "guidance_scales must be values >= 1")  # fmt: skip


def parse_stages(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` → (1, 2, 3): consecutive stages from 1 to 3 (a later start needs an Edit model base)."""
    try:
        stages = tuple(int(s) for s in str(text).split(","))
    except ValueError:
        raise MovieGenError(f"--stages must be stage numbers like 1,2,3 (got {text!r})") from None
    if (
        not stages
        or any(s not in (1, 2, 3) for s in stages)
        or list(stages) != list(range(stages[0], stages[0] + len(stages)))
    ):
        raise MovieGenError(f"--stages must be consecutive stages among 1, 2, 3 (got {text!r})")
    return stages


def finetune_tae(tae, recipe: EditRecipe, progress: Progress | None = None):
    """Stage 0 (module docstring): the TAE fine-tuned on edit renderings of training compositions."""
    from moviegen.data.edits import TASKS
    from moviegen.train.tae import TAELoss, TAELossConfig, TAETrainer

    world = World(WorldConfig(size=recipe.size, frames=recipe.frames), seed=recipe.seed + 4)

    def clip(i: int, image: bool) -> torch.Tensor:
        rng = np.random.default_rng([recipe.seed, i, 61])
        if rng.random() < 0.15:
            video = world.clip("train", i).video
            return video[:, :1] if image else video
        scene, rng = source_scene(world, "train", i, frames=1 if image else None, still=image, salt=67)
        edit = sample_edit(scene, rng, TASKS, held_out=False)
        return apply_edit(scene, edit).render() if rng.random() < 0.8 else scene.render()

    trainer = TAETrainer(tae, TAELoss(TAELossConfig(opl_weight=10.0, l2_weight=20.0)), lr=recipe.tae_lr,
                         grad_clip=10.0, generator=torch.Generator().manual_seed(recipe.seed))  # fmt: skip
    for step in range(recipe.tae_steps):
        video = step % 4 == 3
        n = 2 if video else recipe.tae_batch
        terms = trainer.train_step(
            torch.stack([clip(step * recipe.tae_batch + k, not video) for k in range(n)])
        )
        if progress:
            progress("edit TAE", step + 1, recipe.tae_steps, {"loss": terms["loss"]})
    return tae.eval()


class _Encoder:
    """TAE latents and raw text states of the base pipeline, the text states memoised per string."""

    def __init__(self, pipe: MovieGenPipeline | EditPipeline):
        self.pipe, self.texts = pipe, {}

    @torch.inference_mode()
    def latent(self, video: torch.Tensor) -> torch.Tensor:
        tae = self.pipe.tae
        return tae.normalize(tae.encode(video[None].float()).float())[0]

    def text(self, text: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if text not in self.texts:
            self.texts[text] = text_states(self.pipe.text, text)
        return self.texts[text]

    def pair(self, source: torch.Tensor, target: torch.Tensor, text: str, bucket: str, i: int) -> CacheItem:
        return self.pair_latents(self.latent(source), self.latent(target), text, bucket, i)

    def pair_latents(self, cond, target, text: str, bucket: str, i: int) -> CacheItem:
        task = torch.tensor(float(TASK_EDIT))
        return CacheItem(target, self.text(text), text, bucket, i, {"cond": cond, "task": task})


def t2v_items(enc: _Encoder, recipe: EditRecipe) -> list[CacheItem]:
    """World clips with their captions, an all-zero source latent and the text-to-video task."""
    world = World(WorldConfig(size=recipe.size, frames=recipe.frames), seed=recipe.seed)
    items = []
    for i in range(recipe.t2v_clips):
        clip = world.clip("train", i)
        latent = enc.latent(clip.video)
        extra = {"cond": torch.zeros_like(latent), "task": torch.tensor(float(TASK_GENERATE))}
        items.append(CacheItem(latent, enc.text(clip.caption), clip.caption, "t2v/video", i, extra))
    return items


def image_pairs(
    enc: _Encoder, recipe: EditRecipe, count: int, animated: bool, progress: Progress | None = None
) -> list[CacheItem]:
    """Stage 1's one-frame edit pairs, or (``animated``) stage 2's animated frame-editing pairs."""
    world = World(WorldConfig(size=recipe.size, frames=recipe.frames), seed=recipe.seed)
    items = []
    for i in range(count):
        scene, rng = source_scene(world, "train", i, frames=1, still=True, salt=41 if animated else 31)
        edit = sample_edit(scene, rng, BENCH_TASKS, held_out=False)
        text = instruction(edit, scene, rng)
        source, target = scene.render(), apply_edit(scene, edit).render()
        if animated:
            source, target = animate([source, target], rng, recipe.frames)
        bucket = "animated/video" if animated else "edit/image"
        items.append(enc.pair(source, target, text, bucket, i))
        if progress:
            progress("animated pairs" if animated else "image pairs", i + 1, count, {})
    return items


def world_object_clips(recipe: EditRecipe, split: str, count: int, salt: int) -> list:
    """``count`` object clips of the world's ``split`` (its own training distribution), in index order."""
    world = World(
        WorldConfig(size=recipe.size, frames=recipe.frames, object_fraction=1.0), seed=recipe.seed + salt
    )
    return [world.clip(split, i) for i in range(count)]


def segment_items(enc: _Encoder, recipe: EditRecipe, progress: Progress | None = None) -> list[CacheItem]:
    """World videos and their segmentation maps ("mark the circle in yellow"), training compositions."""
    items = []
    for i, clip in enumerate(world_object_clips(recipe, "train", recipe.segment_clips, salt=1)):
        scene = scene_of(clip)
        rng = np.random.default_rng([recipe.seed, i, 53])
        edit = sample_edit(scene, rng, ("segment",), held_out=False)
        items.append(enc.pair(clip.video, apply_edit(scene, edit).render(), instruction(edit, scene, rng),
                              "segment/video", i))  # fmt: skip
        if progress:
            progress("segmentation pairs", i + 1, recipe.segment_clips, {})
    return items


def video_edit_cases(
    recipe: EditRecipe, split: str, count: int, tasks: Sequence[str], salt: int, held_out: bool = False
) -> list[tuple]:
    """(clip, scene, edit, instruction) of true video edits: validation loss and guidance calibration."""
    cases = []
    for i, clip in enumerate(world_object_clips(recipe, split, count, salt)):
        scene = scene_of(clip)
        rng = np.random.default_rng([recipe.seed, salt, i])
        edit = sample_edit(scene, rng, tuple(tasks), held_out=held_out)
        cases.append((clip, scene, edit, instruction(edit, scene, rng)))
    return cases


@torch.inference_mode()
def edit_batch(
    pipe: EditPipeline, videos: list[torch.Tensor], texts: list[str], steps: int, guidance: float, seed: int
) -> torch.Tensor:
    """Edit several same-size videos in one batched sampling (``(N, 3, T, H, W)`` out)."""
    cond = torch.cat([pipe.source_latent(v) for v in videos])
    noise = torch.randn(cond.shape, generator=torch.Generator().manual_seed(seed))
    tokens, mask = pipe.text(list(texts))
    task = torch.full((len(videos),), TASK_EDIT, dtype=torch.long)
    x1 = flow.sample(pipe.transformer, noise, tokens, mask, schedule_times("linear-quadratic", steps),
                     guidance, cond=cond, task=task)  # fmt: skip
    return (
        pipe.tae.decode(pipe.tae.denormalize(x1.float()), num_frames=videos[0].shape[1]).float().clamp(-1, 1)
    )


def backtranslated_items(
    enc: _Encoder, stage2: EditPipeline, recipe: EditRecipe, progress: Progress | None = None
) -> tuple[list[CacheItem], dict[str, int]]:
    """Stage 3's pairs: (the stage-2 model's edit of a world video, the reverse instruction) → the video.

    Generated edits the detector does not read as the requested edit are dropped (the world's analogue of
    filtering generated data): a failed "add" kept as a source would teach that "remove the X" leaves the
    video as it is. Returns the pairs and the counts generated / kept."""
    from moviegen.eval.edit import score_edit

    cases = []
    for i, clip in enumerate(world_object_clips(recipe, "train", 4 * recipe.backtranslated, salt=2)):
        if len(cases) == recipe.backtranslated:
            break
        scene = scene_of(clip)
        rng = np.random.default_rng([recipe.seed, i, 59])
        edit = sample_edit(scene, rng, BACKTRANSLATION_TASKS, held_out=False)
        edited = apply_edit(scene, edit)
        back = reverse_edit(scene, edit)
        if back is None or edit_is_held_out(back, edited):
            continue
        cases.append((clip, scene, edit, instruction(edit, scene, rng), instruction(back, edited, rng)))
    items, batch = [], 25
    for start in range(0, len(cases), batch):
        chunk = cases[start : start + batch]
        outs = edit_batch(stage2, [c[0].video for c in chunk], [c[3] for c in chunk],
                          recipe.backtranslation_steps, stage2.guidance_scale, recipe.seed + start)  # fmt: skip
        for k, ((clip, scene, edit, _, back_text), out) in enumerate(zip(chunk, outs, strict=True)):
            if score_edit(scene, edit, out)["edit"]:
                items.append(enc.pair(out, clip.video, back_text, "backtrans/video", start + k))
        if progress:
            progress("backtranslation", min(start + batch, len(cases)), len(cases), {})
    return items, {"generated": len(cases), "kept": len(items)}


def calibrate_edit_guidance(
    pipe: EditPipeline, recipe: EditRecipe, progress: Progress | None = None
) -> tuple[float, dict[str, dict]]:
    """The guidance scale with the best mean of edit accuracy and preservation on training compositions
    of validation clips (ties: the earlier scale)."""
    from moviegen.eval.edit import score_edit

    cases = video_edit_cases(recipe, "val", recipe.calibration_clips, BENCH_TASKS, salt=5)
    table = {}
    for n, scale in enumerate(recipe.guidance_scales):
        outs = edit_batch(pipe, [c[0].video for c in cases], [c[3] for c in cases], recipe.backtranslation_steps,
                          scale, recipe.seed + 1000)  # fmt: skip
        scores = [score_edit(scene, edit, out) for (_, scene, edit, _), out in zip(cases, outs, strict=True)]
        edit = 100 * float(np.mean([s["edit"] for s in scores]))
        keep = 100 * float(np.mean([s["preserve"] for s in scores]))
        table[str(float(scale))] = {"edit": edit, "preserve": keep, "mean": (edit + keep) / 2}
        if progress:
            progress("guidance", n + 1, len(recipe.guidance_scales), {})
    best = max(table, key=lambda k: table[k]["mean"])
    return float(best), table


def train_edit(
    recipe: EditRecipe,
    out: str | Path,
    base: str | Path | None = None,
    stages: Sequence[int] = (1, 2, 3),
    progress: Progress | None = None,
    device: str = "cpu",
) -> EditPipeline:
    """Run ``stages`` of the recipe. Stage 1 starts from the text-to-video pipeline ``base`` (default: the
    shipped world model); a run starting at stage 2 or 3 needs ``base`` = an Edit model (the stage before)."""
    out = Path(out)
    stages = tuple(stages)
    if stages != tuple(range(stages[0], stages[0] + len(stages))) or not set(stages) <= {1, 2, 3}:
        raise MovieGenError(f"stages must be consecutive among 1, 2, 3 (got {stages})")
    base_dir = Path(base) if base is not None else DEFAULT_MODEL
    if stages[0] == 1:
        read_index(base_dir, "MovieGenPipeline")
        pipe = MovieGenPipeline.from_pretrained(base_dir)
    else:
        read_index(base_dir, "EditPipeline")
        pipe = EditPipeline.from_pretrained(base_dir)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    if stages[0] == 1:
        pipe.tae = finetune_tae(pipe.tae, recipe, progress)
        timings["tae_s"] = time.perf_counter() - start
    tae = pipe.tae
    enc = _Encoder(pipe)
    history: dict[str, list] = {}
    val = [enc.pair(clip.video, apply_edit(scene, edit).render(), text, "val/video", i)
           for i, (clip, scene, edit, text) in enumerate(
               video_edit_cases(recipe, "val", recipe.val_pairs, BENCH_TASKS, salt=3))]  # fmt: skip
    t2v = t2v_items(enc, recipe)
    timings["t2v_s"] = time.perf_counter() - start
    manifest = {"text": {"config": pipe.text.config.to_dict()}}
    init = base_dir
    result: EditPipeline | None = None
    guidance: dict[str, dict] = {}
    segment: list[CacheItem] = []
    animated: list[CacheItem] = []
    backtranslation: dict[str, int] = {}
    for stage in stages:
        t0 = time.perf_counter()
        if stage == 1:
            items = image_pairs(enc, recipe, recipe.image_pairs, animated=False, progress=progress) + t2v
            ratio, steps, lr = {"edit": 5, "t2v": 1}, recipe.stage1_steps, recipe.stage1_lr
        else:
            if not animated:
                animated = image_pairs(enc, recipe, recipe.animated_pairs, animated=True, progress=progress)
                segment = segment_items(enc, recipe, progress)
            if stage == 2:
                items = t2v + segment + animated
                ratio, steps, lr = (
                    {"t2v": 1, "segment": 1, "animated": 3},
                    recipe.stage2_steps,
                    recipe.stage2_lr,
                )
            else:
                previous = result if result is not None else pipe
                back, counts = backtranslated_items(enc, previous, recipe, progress)
                backtranslation = counts
                items = t2v + segment + animated + back
                ratio = {"t2v": 1, "segment": 1, "animated": 2, "backtrans": 4}
                if not back:  # no generated edit passed the filter (an untrained stage-2 model)
                    del ratio["backtrans"]
                steps, lr = recipe.stage3_steps, recipe.stage3_lr
        timings[f"stage{stage}_data_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        c = pipe.transformer.config
        overrides = {"in_channels": 2 * c.out_channels, "num_tasks": NUM_TASKS} if stage == 1 else {}
        config = TrainConfig(
            stage=f"edit stage {stage}", init_from=str(init), model_overrides=overrides,
            global_batch=recipe.batch_size, group_ratio=ratio, random_image_frames=True,
            text_dropout=recipe.text_dropout, lr=lr, betas=(0.9, 0.99), weight_decay=0.01,
            warmup_steps=recipe.warmup_steps, schedule="cosine", cosine_final_ratio=0.1, steps=steps,
            val_every=recipe.val_every, log_every=0, keep_checkpoints=1, seed=recipe.seed + stage,
            run_dir=str(out / f"run_stage{stage}"), device=device,
        )  # fmt: skip

        def on_step(r: dict, stage=stage, steps=steps) -> None:
            history.setdefault(f"stage{stage}/loss", []).append((r["step"], r["loss"], r["kind"]))
            if "val_loss" in r:
                history.setdefault(f"stage{stage}/val_loss", []).append((r["step"], r["val_loss"]))
            if progress:
                progress(f"edit stage {stage}", r["step"], steps, {"loss": r["loss"]})

        trained = train(config, log=lambda m: None, cache=MemoryCache(items, manifest),
                        val_cache=MemoryCache(val, manifest), on_step=on_step)  # fmt: skip
        timings[f"stage{stage}_train_s"] = time.perf_counter() - t0
        export = trained.export_dir
        result = EditPipeline(TextConditioner.from_pretrained(export / "text"),
                              MovieGenTransformer.from_pretrained(export / "transformer"), tae,
                              num_steps=recipe.num_steps)  # fmt: skip
        t0 = time.perf_counter()
        scale, table = calibrate_edit_guidance(result, recipe, progress)
        result.guidance_scale = scale
        guidance[f"stage{stage}"] = {"chosen": scale, "table": table}
        timings[f"stage{stage}_guidance_s"] = time.perf_counter() - t0
        result.save_pretrained(out / f"stage{stage}", dtype=torch.float16)
        init = export  # the next stage starts from full-precision weights
    assert result is not None
    final = out / "pipeline"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(out / f"stage{stages[-1]}", final)
    timings["total_s"] = time.perf_counter() - start
    log = {"recipe": recipe.to_dict(), "base": str(base_dir), "stages": list(stages), "timings": timings,
           "guidance": guidance, "backtranslation": backtranslation, "history": history}  # fmt: skip
    write_atomic(out / "training_log.json", json.dumps(log))
    return result
