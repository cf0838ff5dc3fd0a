"""Few-step sampling by distillation (beyond the paper, which samples 50 linear-quadratic steps): ``moviegen
train distill``.

The method is **piecewise reflow of the teacher's guided trajectories** (PeRFlow-style, Yan et al. 2024;
rectified flow's reflow, Liu et al. 2023, cut into the student's step windows):

1. **trajectories**: the teacher (the shipped world model) samples training-split world captions with its own
   classifier-free guidance, on the union of its 50-step linear-quadratic grid and the student's
   ``student_steps`` grid; the states at the student's grid times ``t_0 = 0 < … < t_K = 1`` are kept;
2. **pairs**: in window ``k`` the teacher went from ``a = x(t_k)`` to ``b = x(t_{k+1})``; the straight line
   through both, with slope ``v = (b − a) / (t_{k+1} − t_k)``, is written as a flow-matching pair (its
   points at t = 0 and t = 1 are the item's ``noise`` and latent) with ``t_window = (t_k, t_{k+1})``;
3. **training** through the one Trainer (``init_from`` the teacher, no text dropout): the flow-matching loss
   with t drawn inside each item's window teaches the student the teacher's *mean* velocity over the window,
   which is exactly what one Euler step from ``t_k`` needs; guidance is distilled in, so the student samples
   with guidance 1 (one forward per step instead of two);
4. the student pipeline (fp16) with ``num_steps = student_steps``, its grid's schedule and guidance 1 in its
   ``model_index.json``, so ``moviegen generate --model world-distilled`` samples in ``student_steps``.

Why this method: its loss is the Trainer's own flow-matching regression on fixed pairs (no second network,
no adversarial or distribution-matching critic, which the 2-core CPU budget could not train), it needs only
teacher samples, and it targets the exact few-step Euler sampler the student is used with. Why windows and
not one straight path from noise to the sample (plain reflow): the teacher's path curves most near the noise,
and a student asked to follow one straight line from there drifts; per-window lines are nearly straight.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from moviegen import flow
from moviegen.config import Config, require
from moviegen.data.cache import CacheItem, text_states, write_cache
from moviegen.data.world import World, WorldConfig
from moviegen.files import write_atomic
from moviegen.models.text import TextConditioner
from moviegen.models.transformer import MovieGenTransformer
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline, schedule_times
from moviegen.train.loop import TrainConfig, loss_history, train

Progress = Callable[[str, int, int, dict], None]


@dataclass(frozen=True)
class DistillRecipe(Config):
    """Sizes and schedule of the distillation recipe; ``quick`` is for CI."""

    student_steps: int = 8
    student_schedule: str = "linear-quadratic"
    teacher_steps: int = 50
    teacher_guidance: float = 0.0  # 0: the teacher's own
    num_prompts: int = 4096  # teacher trajectories of training-split captions (0.17 s each here)
    val_prompts: int = 32
    frames: int = 16
    size: int = 64
    trajectory_batch: int = 32
    steps: int = 6000  # 0.16 s per step here
    batch_size: int = 32
    lr: float = 5e-5
    warmup_steps: int = 50
    t_location: float = -1.5  # inside a window: most draws near its start (where the sampler asks), some inside
    val_every: int = 250
    seed: int = 0

    PRESETS: ClassVar[dict] = {
        "default": {},
        "quick": dict(student_steps=2, teacher_steps=3, num_prompts=4, val_prompts=2, trajectory_batch=4,
                      steps=3, batch_size=4, val_every=2, warmup_steps=1),  # fmt: skip
    }

    def validate(self) -> None:
        name = "DistillRecipe"
        for key in ("student_steps", "teacher_steps", "num_prompts", "val_prompts", "trajectory_batch", "steps",
                    "batch_size", "val_every", "frames"):  # fmt: skip
            require(getattr(self, key) >= 1, name, f"{key} must be >= 1")
        require(self.student_steps <= self.teacher_steps, name, "the student takes fewer steps than the teacher")
        require(self.size % 16 == 0, name, "size must be a multiple of 16")
        require(self.lr > 0 and self.teacher_guidance >= 0, name, "lr must be > 0 and teacher_guidance >= 0")
        schedule_times(self.student_schedule, self.student_steps)


def teacher_grid(recipe: DistillRecipe) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's grid and the teacher's (its own schedule with the student's times merged in)."""
    student = schedule_times(recipe.student_schedule, recipe.student_steps)
    teacher = torch.unique(torch.cat([schedule_times("linear-quadratic", recipe.teacher_steps), student]))
    return student, teacher


@torch.inference_mode()
def trajectories(pipe: MovieGenPipeline, prompts: list[str], seeds: list[int], recipe: DistillRecipe,
                 progress: Callable[[int], None] | None = None) -> torch.Tensor:  # fmt: skip
    """The teacher's states at the student's grid: (N, K + 1, C, T, H, W), guided as the teacher samples."""
    student, teacher = teacher_grid(recipe)
    guidance = recipe.teacher_guidance or pipe.guidance_scale
    shape = pipe.latent_shape(recipe.frames, recipe.size, recipe.size)
    out = []
    for start in range(0, len(prompts), recipe.trajectory_batch):
        batch, batch_seeds = prompts[start : start + recipe.trajectory_batch], seeds[start : start + recipe.trajectory_batch]
        x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in batch_seeds])
        x = x.to(pipe.device)
        tokens, mask = pipe.text(batch)
        states = [x]
        for k in range(len(student) - 1):
            inside = teacher[(teacher >= student[k]) & (teacher <= student[k + 1])]
            x = flow.sample(pipe.transformer, x, tokens, mask.to(pipe.device), inside, guidance)
            states.append(x)
        out.append(torch.stack(states, dim=1).float().cpu())
        if progress:
            progress(start + len(batch))
    return torch.cat(out)


def window_pairs(states: torch.Tensor, grid: torch.Tensor, sigma_min: float = flow.SIGMA_MIN) -> list[dict]:
    """Per window k of one trajectory (K + 1, C, T, H, W): the flow-matching pair (``noise`` x0, latent x1) whose
    path :func:`flow.interpolate` passes through the teacher's states at ``t_k`` and ``t_{k+1}``."""
    pairs = []
    for k in range(len(grid) - 1):
        lo, hi = float(grid[k]), float(grid[k + 1])
        a, b = states[k], states[k + 1]
        v = (b - a) / (hi - lo)
        x0 = a - lo * v  # interpolate(x0, x1, t) = x0 + t·(x1 − (1 − σ)·x0) = a + (t − lo)·v
        x1 = v + (1 - sigma_min) * x0
        pairs.append({"latent": x1, "noise": x0, "t_window": torch.tensor([lo, hi])})
    return pairs


def training_prompts(split: str, count: int, recipe: DistillRecipe) -> list[str]:
    """Captions of the world's ``split`` clips (training compositions only, any FPS prefix they carry)."""
    world = World(WorldConfig(size=recipe.size, frames=recipe.frames), seed=recipe.seed)
    return [world.clip(split, i).caption for i in range(count)]


def make_items(pipe: MovieGenPipeline, split: str, count: int, recipe: DistillRecipe,
               progress: Progress | None = None) -> list[CacheItem]:  # fmt: skip
    prompts = training_prompts(split, count, recipe)
    seeds = [recipe.seed * 1_000_003 + (0 if split == "train" else 500_000) + i for i in range(count)]
    report = None if progress is None else (lambda n: progress(f"teacher trajectories ({split})", n, count, {}))
    states = trajectories(pipe, prompts, seeds, recipe, report)
    student, _ = teacher_grid(recipe)
    texts = {p: text_states(pipe.text, p) for p in sorted(set(prompts))}
    items = []
    for i, prompt in enumerate(prompts):
        for k, pair in enumerate(window_pairs(states[i], student)):
            tensors = {"noise": pair["noise"], "t_window": pair["t_window"]}
            text = [(h.clone(), m.clone()) for h, m in texts[prompt]]  # the cache stores each item's own
            items.append(CacheItem(pair["latent"], text, prompt, "video", len(items), tensors))
    return items


def distill(recipe: DistillRecipe, out: str | Path, base: str | Path | None = None, progress: Progress | None = None,
            device: str = "cpu") -> MovieGenPipeline:  # fmt: skip
    """Run the recipe from the teacher ``base`` (default: the shipped world model); writes ``OUT/pipeline``."""
    out = Path(out)
    base_dir = Path(base) if base is not None else DEFAULT_MODEL
    pipe = MovieGenPipeline.from_pretrained(base_dir).to(device)
    start = time.perf_counter()
    timings = {}
    configs = dict(text_config=pipe.text.config.to_dict(), tae_config=pipe.tae.config.to_dict())
    write_cache(make_items(pipe, "train", recipe.num_prompts, recipe, progress), out / "cache", **configs)
    write_cache(make_items(pipe, "val", recipe.val_prompts, recipe, progress), out / "val_cache", **configs)
    timings["trajectories_s"] = time.perf_counter() - start
    config = TrainConfig(
        stage="distill", init_from=str(base_dir), cache=str(out / "cache"), val_cache=str(out / "val_cache"),
        global_batch=recipe.batch_size, text_dropout=0.0, t_location=recipe.t_location, lr=recipe.lr,
        betas=(0.9, 0.99), weight_decay=0.0, warmup_steps=recipe.warmup_steps, schedule="cosine",
        cosine_final_ratio=0.1, steps=recipe.steps, val_every=recipe.val_every, log_every=0, keep_checkpoints=1,
        seed=recipe.seed, run_dir=str(out / "run"), device=device,
    )  # fmt: skip
    history: dict[str, list] = {"train/loss": [], "val/loss": []}
    on_step = loss_history(history, "train/loss", "val/loss", progress, "student", recipe.steps)
    t0 = time.perf_counter()
    result = train(config, log=lambda message: None, on_step=on_step)
    timings["train_s"] = time.perf_counter() - t0
    export = result.export_dir
    student = MovieGenPipeline(TextConditioner.from_pretrained(export / "text"),
                               MovieGenTransformer.from_pretrained(export / "transformer"),
                               pipe.tae.to("cpu"), guidance_scale=1.0, caption_style=pipe.caption_style,
                               num_steps=recipe.student_steps, schedule=recipe.student_schedule)  # fmt: skip
    student.save_pretrained(out / "pipeline", dtype=torch.float16)  # as shipped
    timings["total_s"] = time.perf_counter() - start
    record = {"recipe": recipe.to_dict(), "base": str(base_dir), "timings": timings, "history": history}
    write_atomic(out / "training_log.json", json.dumps(record))
    return student
