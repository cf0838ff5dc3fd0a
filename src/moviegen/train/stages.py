"""The staged pre-training recipe of Movie Gen Video as named :class:`~moviegen.train.loop.TrainConfig` s.

Paper §3.2 / Table 3 (30B model); [paper] stated, [sum] from summaries, [choice] ours:

=========  ============================  =====  =============  ==============  =========  ==============
stage      data                          TP/CP  global batch   LR              steps      positions
=========  ============================  =====  =============  ==============  =========  ==============
t2i-256    images, 256 px                1/1    9216           1e-4            210k       1 × 16 × 16
t2iv-256   images : videos = 1 : 10      4/1    1536 [a]       6e-5            185k       32 × 32 × 32
t2iv-768   same, stricter filters        4/2    1536 [b]       6e-5 → 1e-5     74.5k      32 × 96 × 96
sft        curated videos                4/2    256 [choice]   1e-5 cosine     10k        (unchanged)
=========  ============================  =====  =============  ==============  =========  ==============

- Each stage starts from the previous stage's export (``init_from``: ``RUN_ROOT/<previous>/export``).
- Positional tables (patches; 256 px square = 16×16 patches): the T2I stage trains square 256 px images
  with one temporal row. Entering the video stages the spatial tables are expanded 2× (to cover the
  aspect-ratio buckets) and the temporal table grown to 32 latent frames (256 frames at 16 fps) [paper];
  at 768 px the spatial tables grow 3× again, to 96 patches (1536 px), which covers the 1024×576
  buckets (64 patches) [choice: the paper says "2× then 3×" without the base].
- [a] the paper doubles the batch to 3072 after 123k steps when going from 3072 to 6144 GPUs; [b] it
  lowers the batch in sub-stages down to 512 and halves the LR when the validation loss plateaus
  (6e-5 → 1e-5): ``schedule = plateau`` does the halving automatically; a batch change is a new run
  with ``init_from`` (the sampler position does not carry over to another batch size).
- SFT uses a cosine schedule [paper]; its batch, LR and length are not published [choice]. The final
  model averages several SFT runs: :func:`moviegen.train.checkpoint.average_checkpoints`.
- Optimizer (not published) [choice]: AdamW, betas (0.9, 0.95), weight decay 0.1, warmup, clip 1.0;
  activation checkpointing on, bf16 mixed precision.

``tiny-*`` stages mirror the chain with the ``tiny`` backbone and a few steps, for CPU tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moviegen.errors import MovieGenError

_PAPER_COMMON: dict[str, Any] = dict(
    model="30b",
    activation_checkpointing=True,
    mixed_precision=True,
    betas=[0.9, 0.95],
    weight_decay=0.1,
    grad_clip=1.0,
    val_every=1000,
    ckpt_every=1000,
    log_every=10,
    plateau_patience=3,
    plateau_threshold=0.001,
    async_checkpoint=True,
)

_TINY_COMMON: dict[str, Any] = dict(
    model="tiny",
    global_batch=4,
    val_batch=4,
    lr=1e-3,
    warmup_steps=2,
    steps=6,
    val_every=3,
    ckpt_every=3,
    log_every=1,
    plateau_patience=1,
)

STAGES: dict[str, dict[str, Any]] = {
    "t2i-256": {
        **_PAPER_COMMON,
        "model_overrides": {"max_latent_frames": 1, "max_height_patches": 16, "max_width_patches": 16},
        "tp": 1,
        "cp": 1,
        "global_batch": 9216,
        "lr": 1e-4,
        "warmup_steps": 2000,
        "steps": 210_000,
        "schedule": "plateau",
        "image_video_ratio": [1, 0],
    },
    "t2iv-256": {
        **_PAPER_COMMON,
        "expand_positions": [32, 32, 32],
        "tp": 4,
        "cp": 1,
        "global_batch": 1536,
        "lr": 6e-5,
        "warmup_steps": 1000,
        "steps": 185_000,
        "schedule": "plateau",
        "image_video_ratio": [1, 10],
    },
    "t2iv-768": {
        **_PAPER_COMMON,
        "expand_positions": [32, 96, 96],
        "tp": 4,
        "cp": 2,
        "global_batch": 1536,
        "lr": 6e-5,
        "min_lr": 1e-5,
        "warmup_steps": 1000,
        "steps": 74_500,
        "schedule": "plateau",
        "image_video_ratio": [1, 10],
    },
    "sft": {
        **_PAPER_COMMON,
        "tp": 4,
        "cp": 2,
        "global_batch": 256,
        "lr": 1e-5,
        "warmup_steps": 500,
        "steps": 10_000,
        "schedule": "cosine",
        "cosine_final_ratio": 0.0,
        "image_video_ratio": [0, 1],
        "val_every": 500,
        "ckpt_every": 500,
    },
    "tiny-t2i-256": {
        **_TINY_COMMON,
        "model_overrides": {"max_latent_frames": 1, "max_height_patches": 4, "max_width_patches": 4},
        "schedule": "plateau",
        "image_video_ratio": [1, 0],
    },
    "tiny-t2iv-256": {
        **_TINY_COMMON,
        "expand_positions": [4, 8, 8],
        "schedule": "plateau",
        "image_video_ratio": [1, 2],
    },
    "tiny-t2iv-768": {
        **_TINY_COMMON,
        "expand_positions": [4, 24, 24],
        "schedule": "plateau",
        "image_video_ratio": [1, 2],
    },
    "tiny-sft": {
        **_TINY_COMMON,
        "lr": 5e-4,
        "schedule": "cosine",
        "image_video_ratio": [0, 1],
    },
}

PREVIOUS: dict[str, str] = {
    "t2iv-256": "t2i-256",
    "t2iv-768": "t2iv-256",
    "sft": "t2iv-768",
    "tiny-t2iv-256": "tiny-t2i-256",
    "tiny-t2iv-768": "tiny-t2iv-256",
    "tiny-sft": "tiny-t2iv-768",
}

ORDER = ("t2i-256", "t2iv-256", "t2iv-768", "sft")


def stage_config(name: str, overrides: dict[str, Any] | None = None):
    """The :class:`TrainConfig` of stage ``name`` with ``overrides`` (e.g. cache paths) applied.

    ``overrides["run_dir"]`` (default ``runs``) is the root of the whole recipe: the stage runs in
    ``ROOT/NAME`` and, unless ``init_from`` is given, starts from ``ROOT/PREVIOUS/export``.
    ``model_overrides`` are merged with the stage's.
    """
    from moviegen.train.loop import TrainConfig

    if name not in STAGES:
        raise MovieGenError(f"unknown training stage {name!r} (known: {', '.join(STAGES)})")
    overrides = dict(overrides or {})
    overrides.pop("stage", None)
    root = Path(overrides.pop("run_dir", "runs"))
    base = dict(STAGES[name])
    model_overrides = {**base.get("model_overrides", {}), **overrides.pop("model_overrides", {})}
    data = {
        **base,
        **overrides,
        "model_overrides": model_overrides,
        "stage": name,
        "run_dir": str(root / name),
    }
    if name in PREVIOUS and not overrides.get("init_from"):
        data["init_from"] = str(root / PREVIOUS[name] / "export")
    return TrainConfig.from_dict(data)


__all__ = ["ORDER", "PREVIOUS", "STAGES", "stage_config"]
