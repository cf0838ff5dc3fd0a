"""Evaluating Movie Gen Edit on the built-in world: detector-based edit accuracy, preservation and PSNR
against the exact edited clip, on held-out edit compositions (paper §6; the world's Edit Bench).

:func:`score_edit` reads an output with the classical detector of :mod:`moviegen.eval.world`, one object at
a time (each object read inside its true region, the rest of the frame filled with the background):

* **edit**: the requested change is there (the new colour / shape / background photo, the added object's
  colour and shape in its corner, no object left after remove, no colour left after grayscale, the marker
  colour on black);
* **preserve**: every attribute the instruction did not name is unchanged — colour, shape, motion, the
  background and the object's place (mask IoU with the truth ≥ 0.5);
* **psnr**: PSNR against the true edited clip over the *unedited region* (pixels the edit does not touch,
  2 px away from any it does); for global edits (grayscale, segment), whose unedited region is empty, over
  the whole clip (``psnr_region`` says which).

The background is read as the nearest (mean squared error, outside the objects) of the candidates: the
world's dark flat and each background photo; objects in front of a photo are found as the pixels that
differ from that photo.

:func:`bench_cases` draws the benchmark: per task, test-split world videos whose (task, argument, colour,
shape) composition every training stage held out, instructions in the training phrasings or in the
evaluation-only :data:`~moviegen.data.edits.PARAPHRASES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen.data.edits import (
    BACKGROUNDS,
    BENCH_TASKS,
    DARK,
    GLOBAL_TASKS,
    Edit,
    Scene,
    apply_edit,
    background_name,
    instruction,
    photo_background,
    sample_edit,
    scene_of,
)
from moviegen.data.world import World, WorldConfig
from moviegen.errors import MovieGenError
from moviegen.eval.world import detect_object

IOU_MIN = 0.5
GRAY_SATURATION = 0.1  # the palette's least saturated colour (white aside) spreads 0.6
BENCH_SEED = 7  # the world seed offset of the benchmark's source clips


def _unit(video: Tensor) -> Tensor:
    return ((video.float() + 1) / 2).clamp(0, 1)


def border_colour(video: Tensor) -> Tensor:
    """Median border colour per frame (3, T) of a clip in [-1, 1], in [0, 1]."""
    x = _unit(video)
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
    return border.median(dim=2).values


def read_background(video: Tensor, away: Tensor | None = None) -> str:
    """The nearest candidate background ("dark" or a photo name) of a clip, compared on the pixels
    ``away`` (T, H, W) from the objects (all pixels when None)."""
    x = _unit(video)
    size = x.shape[-1]
    where = torch.ones(x.shape[1:], dtype=torch.bool) if away is None else away
    candidates = {"dark": torch.tensor(DARK)[:, None, None].expand(3, size, size)}
    candidates |= {p: photo_background(p, size) for p in BACKGROUNDS}
    errors = {n: float((x - c[:, None]).pow(2)[:, where].mean()) for n, c in candidates.items()}
    return min(errors, key=errors.get)


def foreground(video: Tensor, background: np.ndarray, keep: Tensor, threshold: float = 0.3) -> Tensor:
    """``video`` with every pixel close to the known ``background`` (3, T, H, W) in [0, 1], or outside
    ``keep``, set to black: what the detector reads of objects in front of a photo."""
    dist = (_unit(video) - torch.from_numpy(background).float()).norm(dim=0)
    return torch.where((keep & (dist > threshold))[None], video.float(), torch.full_like(video.float(), -1.0))


def saturation(video: Tensor, keep: Tensor) -> float:
    """Mean colour spread (max − min channel, [0, 1]) of the object's core pixels inside ``keep``."""
    x = _unit(video)
    mask = object_mask(isolate(video, keep)) & keep
    return float((x.amax(0) - x.amin(0))[mask].mean()) if bool(mask.any()) else 0.0


def region(scene: Scene, i: int, pad: int = 3) -> Tensor:
    """Where sprite ``i`` of ``scene`` is, dilated by ``pad`` px: (T, H, W) bool."""
    a = torch.from_numpy(scene.alpha(i)).float()[:, None]
    return F.max_pool2d(a, 2 * pad + 1, stride=1, padding=pad)[:, 0] > 0.02


def isolate(video: Tensor, keep: Tensor) -> Tensor:
    """``video`` with everything outside ``keep`` (T, H, W) replaced by each frame's border colour."""
    fill = border_colour(video) * 2 - 1  # (3, T)
    return torch.where(keep[None], video.float(), fill[:, :, None, None].expand_as(video))


def object_mask(video: Tensor) -> Tensor:
    """The detector's object mask (T, H, W) of a clip (pixels far from the border colour)."""
    x = _unit(video)
    dist = (x - border_colour(video)[:, :, None, None]).norm(dim=0)
    peak = dist.flatten(1).max(dim=1).values
    return dist > torch.clamp(peak * 0.5, min=0.15)[:, None, None]


def mask_iou(video: Tensor, scene: Scene, i: int) -> float:
    truth = torch.from_numpy(scene.alpha(i)) > 0.5
    found = object_mask(video)
    union = (truth | found).sum()
    return float((truth & found).sum() / union) if union else 0.0


def psnr(a: Tensor, b: Tensor, where: Tensor | None = None) -> float:
    """PSNR (dB) of two clips in [-1, 1] on the [0, 1] scale, over ``where`` (T, H, W) when given."""
    err = (_unit(a) - _unit(b)).pow(2)
    mse = err.mean() if where is None else err[:, where].mean()
    return float(10 * math.log10(1.0 / max(float(mse), 1e-10)))


def unedited_region(source: Tensor, truth: Tensor, pad: int = 2) -> Tensor:
    """Pixels (T, H, W) the edit does not change, ``pad`` px away from any it does."""
    changed = ((truth.float() - source.float()).abs().amax(dim=0) > 1e-3).float()[:, None]
    return F.max_pool2d(changed, 2 * pad + 1, stride=1, padding=pad)[:, 0] == 0


def _same(det, sprite, attrs: Sequence[str]) -> bool:
    return det.found and all(getattr(det, a) == getattr(sprite, a) for a in attrs)


def score_edit(scene: Scene, edit: Edit, output: Tensor) -> dict:
    """Edit accuracy, preservation and PSNR of ``output`` (3, T, H, W), an edit of ``scene`` (module doc)."""
    truth_scene = apply_edit(scene, edit)
    source, truth = scene.render(), truth_scene.render()
    if output.shape != truth.shape:
        raise MovieGenError(
            f"edited clip {tuple(output.shape)} does not match the source {tuple(truth.shape)}"
        )
    first, task = scene.sprites[0], edit.task
    bg = background_name(scene)
    motion = ("motion",)
    objects = torch.zeros(truth.shape[1:], dtype=torch.bool)
    for i in range(len(scene.sprites)):
        objects |= region(scene, i)
    for i in range(len(truth_scene.sprites)):
        objects |= region(truth_scene, i)
    away = ~objects
    if task == "remove":
        left = [i for i, s in enumerate(truth_scene.sprites)]
        if left:
            keep = torch.zeros(truth.shape[1:], dtype=torch.bool)
            for i in left:
                keep |= region(truth_scene, i)
            gone = not detect_object(isolate(output, ~keep)).found
        else:
            gone = not detect_object(output).found
        done, kept = gone, read_background(output, away) == bg
    elif task == "add":
        added = detect_object(isolate(output, region(truth_scene, len(truth_scene.sprites) - 1)))
        done = added.found and (added.color, added.shape) == (edit.color, edit.shape)
        own = isolate(output, region(truth_scene, 0))
        det = detect_object(own)
        kept = (_same(det, first, ("color", "shape", *motion)) and read_background(output, away) == bg
                and mask_iou(own, truth_scene, 0) >= IOU_MIN)  # fmt: skip
    else:
        keep = region(truth_scene, 0) | region(scene, 0)
        if truth_scene.photo:
            own = foreground(output, truth_scene.background_video(), keep)
        else:
            own = isolate(output, keep)
        det = detect_object(own)
        iou = mask_iou(own, truth_scene, 0) >= IOU_MIN
        if task == "recolor":
            done = det.found and det.color == edit.color
            kept = _same(det, first, ("shape", *motion)) and read_background(output, away) == bg and iou
        elif task == "reshape":
            done = det.found and det.shape == edit.shape
            kept = _same(det, first, ("color", *motion)) and read_background(output, away) == bg and iou
        elif task == "background":
            done = read_background(output, away) == edit.background
            kept = _same(det, first, ("color", "shape", *motion)) and iou
        elif task == "grayscale":
            done = det.found and saturation(output, keep) < GRAY_SATURATION
            kept = (_same(det, first, ("shape", *motion)) and iou
                    and read_background(output, away) == bg)  # fmt: skip
        elif task == "segment":
            black = float(border_colour(output).amax(dim=0).median()) < 0.05
            done = black and det.found and det.color == edit.color
            kept = _same(det, first, ("shape", *motion)) and iou
        else:
            raise MovieGenError(f"unknown edit task {task!r}")
    where = unedited_region(source, truth)
    whole = task in GLOBAL_TASKS or float(where.float().mean()) < 0.05
    value = psnr(output, truth, None if whole else where)
    return {"edit": bool(done), "preserve": bool(kept), "psnr": value,
            "psnr_region": "whole" if whole else "unedited"}  # fmt: skip


# ------------------------------------------------------------------------------------------ benchmark


@dataclass
class EditCase:
    """One benchmark sample: a world source clip, the edit and its instruction, and both captions."""

    id: str
    task: str
    video: Tensor
    scene: Scene
    edit: Edit
    instruction: str
    source_caption: str
    target_caption: str


def bench_cases(
    per_task: int = 24,
    phrasing: str = "train",
    tasks: Sequence[str] = BENCH_TASKS,
    size: int = 64,
    frames: int = 16,
    seed: int = 0,
) -> list[EditCase]:
    """``per_task`` held-out-composition edits of test-split world videos for each task."""
    world = World(WorldConfig(size=size, frames=frames, object_fraction=1.0), seed=seed + BENCH_SEED)
    cases: list[EditCase] = []
    for task in tasks:
        index, found = 0, 0
        while found < per_task:
            clip = world.clip("test", index)
            index += 1
            if index > 200 * per_task + 1000:
                raise MovieGenError(f"not enough held-out {task} compositions in the world's test split")
            scene = scene_of(clip)
            rng = np.random.default_rng([seed, index, BENCH_TASKS.index(task) if task in BENCH_TASKS else 9])
            try:
                edit = sample_edit(scene, rng, (task,), held_out=True)
            except MovieGenError:
                continue
            text = instruction(edit, scene, rng, phrasing)
            cases.append(EditCase(f"{task}-{found:03d}", task, clip.video, scene, edit, text, scene.caption(),
                                  apply_edit(scene, edit).caption()))  # fmt: skip
            found += 1
    return cases


def summarise(cases: Sequence[EditCase], scores: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Per task and overall: edit accuracy %, preservation %, both %, mean PSNR (dB) and ``n``."""
    groups: dict[str, list[dict]] = {}
    for case, s in zip(cases, scores, strict=True):
        groups.setdefault(case.task, []).append(s)
    groups["all"] = list(scores)
    return {
        name: {"n": float(len(g)), "edit": 100 * float(np.mean([s["edit"] for s in g])),
               "preserve": 100 * float(np.mean([s["preserve"] for s in g])),
               "both": 100 * float(np.mean([s["edit"] and s["preserve"] for s in g])),
               "psnr": float(np.mean([s["psnr"] for s in g]))}
        for name, g in groups.items()
    }  # fmt: skip


def evaluate_edits(
    edit: Callable[[EditCase], Tensor],
    cases: Sequence[EditCase],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict, list[dict]]:
    """Score ``edit(case)`` on every case: (:func:`summarise` table, per-case scores)."""
    scores = []
    for i, case in enumerate(cases):
        scores.append(score_edit(case.scene, case.edit, edit(case)) | {"id": case.id})
        if progress is not None:
            progress(i + 1, len(cases))
    return summarise(cases, scores), scores


def copy_baseline(case: EditCase) -> Tensor:
    """The no-edit baseline: the source clip unchanged."""
    return case.video


def tae_ceiling(tae) -> Callable[[EditCase], Tensor]:
    """The TAE round trip of the true edited clip: what a perfect latent editor could reach."""

    @torch.inference_mode()
    def run(case: EditCase) -> Tensor:
        truth = apply_edit(case.scene, case.edit).render()[None]
        return tae.decode(tae.encode(truth), num_frames=truth.shape[2])[0].float().clamp(-1, 1)

    return run
