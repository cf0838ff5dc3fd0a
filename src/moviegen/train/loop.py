"""The distributed training loop of the Movie Gen Video backbone (paper §3.1.5–§3.1.6, §3.2, §3.4).

One process per device, single-process or under ``torchrun``; CPU (gloo) or CUDA (NCCL). Per step:

1. pick the data kind: with ``image_video_ratio = (a, b)`` steps ``s % (a+b) < a`` draw an image batch,
   the others a video batch (the paper mixes its 256 px image data 1:10 into the T2I/V stages); each kind
   has its own :class:`~moviegen.data.buckets.BucketBatchSampler` over the latent cache, so every global
   batch is one bucket (one latent shape) and each data-parallel rank loads its contiguous slice;
2. :meth:`LatentCache.collate` → the trainable text projector (cached frozen-encoder states → tokens);
3. per sample: logit-normal t, text dropout (:func:`~moviegen.flow.drop_text`) and Gaussian noise, all drawn
   from a generator seeded by ``(seed, step, position in the global batch)`` [choice]: the draws depend
   neither on the number of ranks nor on earlier steps, so a resumed run needs no generator state to
   continue exactly, and 1 and N ranks train on identical samples, noise and t;
4. :func:`~moviegen.flow.flow_matching_loss` (each rank's mean over its equal slice; FSDP averages the
   gradients over data-parallel ranks, so this is the global mean; the logged loss is all-reduced);
5. backward, gradient clipping (global norm over every sharded parameter), AdamW step.

LR: linear warmup, then ``plateau`` (the paper: "halve the LR whenever the validation loss plateaus":
after ``plateau_patience`` validations without a relative improvement of ``plateau_threshold`` the LR is
multiplied by ``plateau_factor``) or ``cosine`` (SFT) or ``constant``. The validation loss is the
flow-matching loss on the validation cache with per-item fixed noise and t (the paper logs it because it
tracks human judgement). Optimizer [choice, not stated by the paper]: AdamW, weight decay 0.1 on matrices
(ndim ≥ 2) only, gradient clipping 1.0.

Parallelism: :func:`~moviegen.train.parallel.parallelize` (FSDP2 + TP/SP + CP) on the transformer; the text
projector is FSDP-sharded over the same data-parallel mesh (so its gradients are averaged exactly like the
backbone's). A single process initialises a one-rank process group, so the code path is the same.

Logging (rank 0): TensorBoard scalars under ``RUN/logs`` (loss, lr, grad norm, validation loss, tokens/s,
achieved TFLOP/s per device from :func:`moviegen.train.planner.forward_flops`, and MFU when the device's
peak is known) and ``RUN/metrics.jsonl`` (one JSON object per step). Checkpoints
(:mod:`moviegen.train.checkpoint`) every ``ckpt_every`` steps and at the end; ``--resume`` continues from
the newest complete one and reproduces the uninterrupted run's losses exactly. At the end the weights are
exported with :func:`~moviegen.train.checkpoint.export_pretrained` to ``RUN/export`` (a full pipeline folder
when the TAE and text encoders are known), which the next stage's ``init_from`` reads.

Limits: the full model is built on every rank before sharding (no meta-device init), fine up to a few
billion parameters; data is read synchronously on the training thread.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch
import torch.distributed as dist
import typer
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from moviegen import flow
from moviegen.config import Config, require
from moviegen.errors import MovieGenError
from moviegen.files import read_json
from moviegen.memory import check_fits, module_bytes
from moviegen.models.text import TextProjector
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig, num_tokens
from moviegen.pretrained import CONFIG_NAME, WEIGHTS_NAME, load_safetensors, load_state_strict
from moviegen.train import checkpoint as ckpt
from moviegen.train.parallel import (
    ParallelPlan,
    build_mesh,
    data_parallel_mesh,
    data_parallel_rank_and_size,
    fsdp_mesh,
    mixed_precision_policy,
    parallelize,
)

SCHEDULES = ("plateau", "cosine", "constant")
VAL_SEED_OFFSET = 7_919  # validation noise/t come from seed + this, never from the training draws


# --------------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class TrainConfig(Config):
    """One training run (one stage of the recipe). Load with :func:`load_train_config` or ``from_json``.

    Model: ``model`` is a :class:`TransformerConfig` preset with ``model_overrides``; with ``init_from`` the
    architecture comes from that source instead (overrides of the positional table sizes are ignored there:
    use ``expand_positions``). ``init_from``: a pipeline/export folder (``transformer/`` [+ ``text/``,
    ``tae/``]), a transformer folder, a checkpoint folder (``step-N`` with ``COMPLETE``) or a run folder
    (its newest complete checkpoint); it only sets weights (optimizer and step start fresh).
    ``expand_positions``: ``(max_latent_frames, max_height_patches, max_width_patches)`` to grow the
    positional tables to (stage transitions, :meth:`MovieGenTransformer.expand_positions`); ``[]`` = none.
    ``tae`` / ``text_encoders``: folders used only to export a complete pipeline (default: from
    ``init_from``, then the cache's manifest).

    Parallel plan: ``dp_replicate``, ``dp_shard`` (-1: the rest of the world), ``cp``, ``tp``,
    ``activation_checkpointing``, ``compile``, ``mixed_precision`` (see :class:`ParallelPlan`).

    Data: ``cache`` (a :class:`~moviegen.data.cache.LatentCache` folder), ``val_cache`` (optional),
    ``global_batch`` samples per step (divisible by the data-parallel size), ``val_batch`` per validation
    forward, ``image_video_ratio`` (a, b) image:video batches, ``text_dropout`` (classifier-free guidance),
    ``t_location`` (logit-normal location of training times; the paper's is 0) and ``frame_diff_weight``
    (the frame-to-frame error term), both as in :func:`~moviegen.flow.flow_matching_loss`. A cache whose
    items hold a ``cond`` tensor trains a conditioned variant: ``cond`` is concatenated after the noisy
    latent on the channels; items holding a ``task`` number pass it to the task embedding. ``group_ratio``
    ({group: batches}) replaces ``image_video_ratio`` by a cycle over bucket groups (a bucket's name up to
    its first ``/``), one group per batch, in the given order (Edit's task ratios, paper §6: their sequence
    lengths differ). ``random_image_frames``: one-latent-frame batches take a random temporal position
    (``frame_offset``; Edit stage 1, paper §6: the first frame's position made video edits collapse).
    Items holding ``noise`` (like the latent) train on that fixed x0 instead of a drawn one, and items
    holding ``t_window`` (lo, hi) draw t inside that window (:mod:`moviegen.train.distill`'s piecewise
    straight paths).

    Personalization (paper §5): ``reference_encoder`` is a :class:`~moviegen.models.vision.ReferenceEncoder`
    folder, or a transformers CLIP vision folder (a fresh, zero-initialised projector on it); default: the
    ``reference/`` folder of ``init_from`` when it has one. With an encoder, items hold a ``reference``
    image (3, S, S) in [-1, 1]; its tokens are appended to the (text-dropped) text tokens for
    cross-attention, never dropped (guidance is on the text, the reference rides along both branches as in
    :func:`~moviegen.flow.sample`). The projector always trains; the vision tower only with
    ``train_vision_tower`` (the paper's stage 3). The export gains ``reference/``.

    Variants (paper §5, §6): with ``init_from``, ``model_overrides`` of ``in_channels`` / ``num_tasks``
    widen the loaded backbone by :meth:`MovieGenTransformer.from_base` (zero-initialised new input channels
    and task rows), so training starts exactly at the base model.

    Optimisation: AdamW ``lr``, ``betas``, ``eps``, ``weight_decay``; ``warmup_steps``; ``grad_clip``
    (global norm, 0 = off); ``schedule`` plateau | cosine | constant with ``plateau_patience``,
    ``plateau_threshold`` (relative improvement that counts), ``plateau_factor``, ``min_lr`` and
    ``cosine_final_ratio`` (final LR / lr).

    Loop: ``steps`` (total, counting from 0 of this run), ``val_every`` / ``ckpt_every`` / ``log_every``
    (0 = never; a checkpoint is always written at the end), ``keep_checkpoints`` (0 = all),
    ``async_checkpoint``, ``checkpoint_checksums`` (SHA-256 of every file in the marker), ``seed``,
    ``run_dir``, ``export_dir`` (default ``RUN/export``; ``"none"`` skips the export), ``device``
    (auto | cpu | cuda), ``peak_flops`` per device for MFU (0: known GPUs only).
    """

    stage: str = ""
    model: str = "tiny"
    model_overrides: dict = field(default_factory=dict)
    init_from: str = ""
    expand_positions: tuple[int, ...] = ()
    tae: str = ""
    text_encoders: str = ""
    reference_encoder: str = ""
    train_vision_tower: bool = False
    # parallel plan
    dp_replicate: int = 1
    dp_shard: int = -1
    cp: int = 1
    tp: int = 1
    activation_checkpointing: bool = False
    compile: bool = False
    mixed_precision: bool = True
    # data
    cache: str = ""
    val_cache: str = ""
    global_batch: int = 4
    val_batch: int = 8
    image_video_ratio: tuple[int, ...] = (1, 10)
    group_ratio: dict = field(default_factory=dict)
    random_image_frames: bool = False
    text_dropout: float = flow.TEXT_DROPOUT
    t_location: float = 0.0
    frame_diff_weight: float = 0.0
    # optimisation
    lr: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_steps: int = 0
    grad_clip: float = 1.0
    schedule: str = "plateau"
    plateau_patience: int = 3
    plateau_threshold: float = 0.0
    plateau_factor: float = 0.5
    min_lr: float = 0.0
    cosine_final_ratio: float = 0.0
    # loop
    steps: int = 100
    val_every: int = 0
    ckpt_every: int = 0
    log_every: int = 1
    keep_checkpoints: int = 3
    async_checkpoint: bool = False
    checkpoint_checksums: bool = False
    seed: int = 0
    run_dir: str = "runs/train"
    export_dir: str = ""
    device: str = "auto"
    peak_flops: float = 0.0

    PRESETS: ClassVar[dict] = {}

    def validate(self) -> None:
        name = "TrainConfig"
        require(isinstance(self.model_overrides, dict), name, "model_overrides must be a JSON object")
        require(self.model in TransformerConfig.PRESETS, name, f"unknown model preset {self.model!r}")
        require(
            len(self.expand_positions) in (0, 3) and all(v >= 1 for v in self.expand_positions),
            name,
            "expand_positions must be [] or [frames, height_patches, width_patches], each >= 1",
        )
        ParallelPlan.from_dict(self.plan_dict())  # validates the degrees
        for key in ("global_batch", "val_batch", "steps"):
            require(getattr(self, key) >= 1, name, f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("val_every", "ckpt_every", "log_every", "keep_checkpoints", "warmup_steps",
                    "plateau_patience"):  # fmt: skip
            require(getattr(self, key) >= 0, name, f"{key} must be >= 0, got {getattr(self, key)}")
        require(
            len(self.image_video_ratio) == 2
            and all(v >= 0 for v in self.image_video_ratio)
            and sum(self.image_video_ratio) > 0,
            name,
            "image_video_ratio must be two numbers of batches [images, videos], not both 0",
        )
        require(
            isinstance(self.group_ratio, dict)
            and all(isinstance(k, str) and k and "/" not in k for k in self.group_ratio)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in self.group_ratio.values())
            and (not self.group_ratio or sum(self.group_ratio.values()) > 0),
            name,
            "group_ratio must map bucket groups (no '/') to batch counts >= 0, not all 0",
        )
        require(0.0 <= self.text_dropout <= 1.0, name, "text_dropout must be in [0, 1]")
        require(self.lr > 0, name, f"lr must be > 0, got {self.lr}")
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            name,
            "betas must be two values in [0, 1)",
        )
        require(
            self.eps > 0 and self.weight_decay >= 0 and self.grad_clip >= 0,
            name,
            "eps > 0, weight_decay >= 0 and grad_clip >= 0 needed",
        )
        require(self.schedule in SCHEDULES, name, f"schedule must be one of {', '.join(SCHEDULES)}")
        require(0 < self.plateau_factor < 1, name, "plateau_factor must be in (0, 1)")
        require(
            self.plateau_threshold >= 0 and self.min_lr >= 0,
            name,
            "plateau_threshold and min_lr must be >= 0",
        )
        require(0 <= self.cosine_final_ratio <= 1, name, "cosine_final_ratio must be in [0, 1]")
        require(bool(self.run_dir), name, "run_dir must be set")
        require(self.device in ("auto", "cpu", "cuda"), name, "device must be auto, cpu or cuda")
        require(self.peak_flops >= 0, name, "peak_flops must be >= 0")

    def plan_dict(self) -> dict[str, Any]:
        keys = (
            "dp_replicate",
            "dp_shard",
            "cp",
            "tp",
            "activation_checkpointing",
            "compile",
            "mixed_precision",
        )
        return {k: getattr(self, k) for k in keys}

    @property
    def plan(self) -> ParallelPlan:
        return ParallelPlan.from_dict(self.plan_dict())


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path, "config file", missing=f"config file not found: {path}")
    if not isinstance(data, dict):
        raise MovieGenError(f"config file {path} must hold a JSON object")
    data.pop("_class_name", None)
    return data


def load_train_config(
    path: str | Path | None = None, stage: str | None = None, **overrides: Any
) -> TrainConfig:
    """A :class:`TrainConfig` from a JSON file, optionally as one stage of the staged recipe.

    Without a stage the file's keys are the config. With ``stage`` (or a ``"stage"`` key in the file) the
    stage's settings (:data:`moviegen.train.stages.STAGES`) come first, then the file's keys override them,
    then the file's ``"stages": {NAME: {...}}`` entry for this stage. The file's ``run_dir`` is then the
    root of all stages: this stage runs in ``run_dir/NAME`` and, unless ``init_from`` is set, starts from
    the previous stage's export ``run_dir/PREVIOUS/export``. ``overrides`` are applied last.
    """
    from moviegen.train import stages

    data = _read_json(Path(path)) if path is not None else {}
    per_stage = data.pop("stages", {})
    if not isinstance(per_stage, dict):
        raise MovieGenError("config: 'stages' must map stage names to objects")
    name = stage or data.get("stage") or ""
    if not name:
        return TrainConfig.from_dict({**data, **overrides})
    return stages.stage_config(name, {**data, **per_stage.get(name, {}), **overrides})


# --------------------------------------------------------------------------------------------------------
# learning rate


class LRSchedule:
    """Warmup + plateau halving / cosine / constant; :meth:`lr` is a pure function of the step and the
    state, which :meth:`state_dict` captures (for exact resume)."""

    def __init__(self, config: TrainConfig):
        self.c = config
        self.scale = 1.0
        self.best = math.inf
        self.bad = 0
        self.halvings: list[int] = []

    def lr(self, step: int) -> float:
        c = self.c
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        if c.schedule == "cosine":
            span = max(1, c.steps - c.warmup_steps)
            progress = min(1.0, max(0.0, (step - c.warmup_steps) / span))
            ratio = c.cosine_final_ratio + (1 - c.cosine_final_ratio) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
            return c.lr * ratio * warm
        if c.schedule == "plateau":
            return max(c.lr * self.scale, min(c.min_lr, c.lr)) * warm
        return c.lr * warm

    def observe(self, val_loss: float, step: int) -> bool:
        """Record a validation loss; for ``plateau`` returns True when it halved the LR."""
        if self.c.schedule != "plateau" or not math.isfinite(val_loss):
            return False
        if val_loss < self.best * (1 - self.c.plateau_threshold):
            self.best, self.bad = val_loss, 0
            return False
        self.bad += 1
        if self.bad >= max(1, self.c.plateau_patience) and self.c.lr * self.scale > self.c.min_lr:
            self.scale *= self.c.plateau_factor
            self.bad = 0
            self.halvings.append(step)
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        best = None if math.isinf(self.best) else self.best
        return {"scale": self.scale, "best": best, "bad": self.bad, "halvings": list(self.halvings)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.bad = int(state["bad"])
        self.halvings = [int(s) for s in state["halvings"]]


# --------------------------------------------------------------------------------------------------------
# helpers


class TrainModules(nn.Module):
    """Everything trained, as one module (for the optimizer, state dicts and checkpoints)."""

    def __init__(
        self, transformer: MovieGenTransformer, projector: TextProjector, reference: nn.Module | None = None
    ):
        super().__init__()
        self.transformer = transformer
        self.projector = projector
        if reference is not None:
            self.reference = reference


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): independent streams per (seed, step, sample)."""
    mask = (1 << 64) - 1
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & mask)) & mask
        x = (x + 0x9E3779B97F4A7C15) & mask
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        x = z ^ (z >> 31)
    return x & ((1 << 63) - 1)


def sample_draws(
    shape: tuple[int, ...],
    positions: list[int],
    seed: int,
    step: int,
    device: torch.device,
    text_mask: torch.Tensor | None = None,
    text_dropout: float = 0.0,
    t_location: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-sample t (logit-normal), noise and text-dropped mask, each sample from its own generator seeded
    by ``(seed, step, position)``: identical whatever the world size, batch split or history."""
    ts, noises, masks = [], [], []
    for j, pos in enumerate(positions):
        g = torch.Generator(device=device).manual_seed(_mix(seed, step, pos))
        ts.append(flow.sample_timesteps(1, generator=g, device=device, location=t_location))
        if text_mask is not None:
            masks.append(flow.drop_text(text_mask[j : j + 1], text_dropout, generator=g))
        noises.append(torch.randn((1, *shape), generator=g, device=device))
    mask = torch.cat(masks) if masks else None
    return torch.cat(ts), torch.cat(noises), mask


def _mesh_key(p: torch.Tensor) -> Any:
    if isinstance(p, DTensor):
        mesh = p.device_mesh
        return (tuple(mesh.mesh_dim_names or ()), tuple(mesh.mesh.flatten().tolist()))
    return None


def clip_grad_norm_(parameters: list[nn.Parameter], max_norm: float) -> float:
    """Clip the global L2 norm of the gradients of (possibly DTensor-sharded) parameters; returns the norm.

    Every rank sums the squares of its local gradient shards, each divided by how many ranks hold an
    identical copy (ranks outside the tensor's mesh, e.g. the tp ranks of an FSDP-only parameter, and
    mesh dims where it is replicated); one all-reduce over all ranks then gives the exact global sum. This
    needs no per-mesh DTensor collectives, so parameters on different meshes mix freely.
    """
    world = dist.get_world_size() if dist.is_initialized() else 1
    by_copies: dict[float, list[torch.Tensor]] = {}
    device = None
    for p in parameters:
        g = p.grad
        if g is None:
            continue
        if isinstance(g, DTensor):
            mesh = g.device_mesh
            copies = world / mesh.size()
            for size, placement in zip(mesh.shape, g.placements, strict=True):
                if placement.is_replicate():
                    copies *= size
            local = g.to_local()
        else:
            copies, local = float(world), g
        by_copies.setdefault(copies, []).append(local)
        device = local.device
    if device is None:
        return 0.0
    total_sq = torch.zeros((), dtype=torch.float64, device=device)
    for copies, grads in by_copies.items():
        norms = torch._foreach_norm([g for g in grads if g.numel()]) if any(g.numel() for g in grads) else []
        if norms:
            total_sq += torch.stack(norms).double().pow(2).sum() / copies
    if world > 1:
        dist.all_reduce(total_sq)
    total = float(total_sq.sqrt())
    if max_norm > 0 and total > max_norm:
        coef = max_norm / (total + 1e-6)
        for grads in by_copies.values():
            torch._foreach_mul_(grads, coef)
    return total


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay for matrices (ndim ≥ 2), none for vectors; one group per device mesh so
    foreach kernels never mix meshes."""
    groups: dict[tuple[bool, Any], list[nn.Parameter]] = {}
    for p in module.parameters():
        if p.requires_grad:
            groups.setdefault((p.ndim >= 2, _mesh_key(p)), []).append(p)
    ordered = sorted(groups.items(), key=lambda kv: (not kv[0][0], str(kv[0][1])))
    return [{"params": ps, "weight_decay": weight_decay if decay else 0.0} for (decay, _), ps in ordered]


def init_distributed(device_type: str) -> bool:
    """Initialise the default process group if needed; returns True when it made a private one.

    Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) the group joins the launcher's rendezvous and is kept
    for the life of the process (a second env:// initialisation in the same process would not rendezvous
    again); it is destroyed at exit. Otherwise a one-rank group on an in-memory store is created, which
    :meth:`Trainer.close` destroys (returns True).
    """
    if dist.is_initialized():
        return False
    cuda = device_type == "cuda"
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        atexit.register(_destroy_at_exit)
        return False
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return True


def _destroy_at_exit() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def known_peak_flops(device: torch.device) -> float:
    """The dense bf16 peak FLOP/s of a known GPU (H200, H100, A100: the planner's :data:`GPUS`); 0 otherwise."""
    if device.type != "cuda":
        return 0.0
    from moviegen.train.planner import GPUS

    name = torch.cuda.get_device_name(device).upper()
    for key, spec in (("H200", GPUS["h200"]), ("H100", GPUS["h100-80gb"]), ("A100", GPUS["a100-80gb"])):
        if key in name:
            return spec.peak_flops
    return 0.0


# --------------------------------------------------------------------------------------------------------
# initial weights


@dataclass
class InitSource:
    """What ``init_from`` resolved to."""

    transformer_config: TransformerConfig | None = None
    transformer_state: dict[str, torch.Tensor] | None = None
    projector_state: dict[str, torch.Tensor] | None = None
    tae_dir: Path | None = None
    text_dir: Path | None = None
    what: str = ""
    reference_dir: Path | None = None
    reference_state: dict[str, torch.Tensor] | None = None


def resolve_init(path: str | Path) -> InitSource:
    """Read the weights an ``init_from`` path points at (see :class:`TrainConfig`)."""
    path = Path(path)
    if not path.is_dir():
        raise MovieGenError(f"init_from folder not found: {path}")
    if (path / ckpt.CHECKPOINTS).is_dir() and not (path / "transformer").is_dir():
        found = ckpt.latest(path)
        if found is None:
            raise MovieGenError(f"init_from: run folder {path} has no complete checkpoint")
        path = found
    if (path / ckpt.MARKER).is_file() or ckpt._parse_step(path.name) is not None:
        marker = ckpt.read_marker(path)
        state = ckpt.load_checkpoint_weights(path, "model")
        if "transformer_config" not in marker:
            raise MovieGenError(f"init_from: checkpoint {path} does not record its transformer config")
        tr = {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}
        pr = {k.removeprefix("projector."): v for k, v in state.items() if k.startswith("projector.")}
        ref = {k.removeprefix("reference."): v for k, v in state.items() if k.startswith("reference.")}
        return InitSource(
            TransformerConfig.from_dict(marker["transformer_config"]),
            tr,
            pr or None,
            Path(marker["tae"]) if marker.get("tae") else None,
            Path(marker["text_encoders"]) if marker.get("text_encoders") else None,
            f"checkpoint {path}",
            Path(marker["reference_encoder"]) if ref and marker.get("reference_encoder") else None,
            ref or None,
        )
    if (path / "transformer" / CONFIG_NAME).is_file():
        tdir = path / "transformer"
        source = InitSource(what=f"folder {path}")
        source.transformer_config = TransformerConfig.from_json(tdir / CONFIG_NAME)
        source.transformer_state = load_safetensors(tdir / WEIGHTS_NAME)
        if (path / "text" / WEIGHTS_NAME).is_file():
            state = load_safetensors(path / "text" / WEIGHTS_NAME)
            source.projector_state = {k.removeprefix("projector."): v for k, v in state.items()}
            source.text_dir = path / "text"
        elif (path / "text_projector" / WEIGHTS_NAME).is_file():
            source.projector_state = load_safetensors(path / "text_projector" / WEIGHTS_NAME)
        if (path / "tae" / CONFIG_NAME).is_file():
            source.tae_dir = path / "tae"
        if (path / "reference" / CONFIG_NAME).is_file():
            source.reference_dir = path / "reference"
        return source
    if (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        return InitSource(
            TransformerConfig.from_json(path / CONFIG_NAME),
            load_safetensors(path / WEIGHTS_NAME),
            what=f"transformer folder {path}",
        )
    raise MovieGenError(
        f"init_from {path}: not a pipeline/export folder, transformer folder, checkpoint or run folder"
    )


# --------------------------------------------------------------------------------------------------------
# data


def open_cache(path: str | Path):
    """Open a latent cache folder (a seam for tests)."""
    from moviegen.data.cache import LatentCache

    return LatentCache(path)


def _bucket_is_image(cache: Any, name: str, first_index: int) -> bool:
    """An image bucket has one latent frame: from the manifest's bucket table, else from its first item."""
    buckets = getattr(cache, "manifest", {}).get("buckets")
    shape = buckets.get(name, {}).get("latent_shape") if isinstance(buckets, dict) else None
    if shape is None:
        shape = list(cache.get(first_index).latent.shape)
    return int(shape[1]) == 1


class DataStream:
    """Batches of one cache for this data-parallel rank, cycling over kinds (see the module docstring).

    The kinds are ``image`` / ``video`` (by latent frames, ``image_video_ratio``), or the bucket groups of
    ``group_ratio`` (a bucket's name up to its first ``/``)."""

    def __init__(self, cache: Any, config: TrainConfig, dp_rank: int, dp_size: int):
        from moviegen.data.buckets import BucketBatchSampler

        self.cache = cache
        names = cache.buckets()
        if config.group_ratio:
            groups = [n.split("/", 1)[0] for n in names]
            unknown = sorted(set(groups) - set(config.group_ratio))
            if unknown:
                raise MovieGenError(f"cache {config.cache or '<memory>'} has bucket groups {unknown} that "
                                    f"group_ratio {config.group_ratio} does not name")  # fmt: skip
            self.indices: dict[str, list[int]] = {g: [] for g in config.group_ratio}
            for i, g in enumerate(groups):
                self.indices[g].append(i)
            self.cycle = [(g, n) for g, n in config.group_ratio.items() if n > 0 and self.indices[g]]
        else:
            first: dict[str, int] = {}
            for i, name in enumerate(names):
                first.setdefault(name, i)
            image_buckets = {n for n, i in first.items() if _bucket_is_image(cache, n, i)}
            self.indices = {"image": [], "video": []}
            for i, name in enumerate(names):
                self.indices["image" if name in image_buckets else "video"].append(i)
            a, b = config.image_video_ratio
            self.cycle = [(k, n) for k, n in (("image", a), ("video", b)) if n > 0 and self.indices[k]]
            if not self.cycle:  # a ratio of 0 for the only kind there is: use it anyway
                self.cycle = [(k, 1) for k in ("image", "video") if self.indices[k]]
        self.samplers: dict[str, Any] = {}
        self.iterators: dict[str, Iterator[list[int]]] = {}
        for k, (kind, idx) in enumerate(self.indices.items()):
            if idx:
                self.samplers[kind] = BucketBatchSampler(
                    [names[i] for i in idx], config.global_batch, config.seed + k, dp_rank, dp_size
                )
        if not self.samplers or not self.cycle:
            raise MovieGenError(f"latent cache {config.cache} holds no items to train on")
        self.period = sum(n for _, n in self.cycle)

    def kind(self, step: int) -> str:
        r = step % self.period
        for kind, n in self.cycle:
            if r < n:
                return kind
            r -= n
        raise AssertionError("unreachable")

    def next(self, step: int) -> tuple[str, list[int]]:
        kind = self.kind(step)
        if kind not in self.iterators:
            self.iterators[kind] = iter(self.samplers[kind])
        local = next(self.iterators[kind])
        return kind, [self.indices[kind][i] for i in local]

    def state_dict(self) -> dict[str, Any]:
        return {kind: s.state_dict() for kind, s in self.samplers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if sorted(state) != sorted(self.samplers):
            raise MovieGenError(
                f"checkpoint data state has kinds {sorted(state)} but the cache now has "
                f"{sorted(self.samplers)}"
            )
        for kind, s in self.samplers.items():
            s.load_state_dict(state[kind])
        self.iterators = {}


# --------------------------------------------------------------------------------------------------------
# the trainer


@dataclass
class TrainResult:
    steps: int
    final_loss: float | None
    val_loss: float | None
    export_dir: Path | None
    checkpoint: Path | None
    resumed_from: Path | None


Log = Callable[[str], None]


class Trainer:
    """Builds everything for a :class:`TrainConfig` and runs it (see the module docstring).

    ``resume``: continue from the newest complete checkpoint in ``run_dir`` (refusing a corrupt one; a
    fresh start when there is none). Without it, a ``run_dir`` that already has checkpoints is refused.
    """

    def __init__(
        self,
        config: TrainConfig,
        resume: bool = False,
        log: Log | None = None,
        cache: Any = None,
        val_cache: Any = None,
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.config = c = config
        self.on_step = on_step
        if cache is None and not c.cache:
            raise MovieGenError("TrainConfig.cache is not set: point it at a latent cache folder")
        want_cuda = c.device == "cuda" or (c.device == "auto" and torch.cuda.is_available())
        if c.device == "cuda" and not torch.cuda.is_available():
            raise MovieGenError("device 'cuda' requested but CUDA is not available")
        device_type = "cuda" if want_cuda else "cpu"
        self.checkpointer: ckpt.Checkpointer | None = None
        self.writer = None
        self.owns_group = init_distributed(device_type)
        try:
            self._build(want_cuda, device_type, resume, log, cache, val_cache)
        except BaseException:
            self.close(error=True)
            raise

    def _build(
        self, want_cuda: bool, device_type: str, resume: bool, log: Log | None, cache: Any, val_cache: Any
    ) -> None:
        c = self.config
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = torch.device("cuda", torch.cuda.current_device()) if want_cuda else torch.device("cpu")
        self._log = log if log is not None else (lambda m: print(m, flush=True))
        # DTensor warns about multi-dim redistributions (gathering full weights for export, unstriding
        # fused q/k/v shards for checkpoints); they are expected and infrequent here.
        logging.getLogger("torch.distributed.tensor._redistribute").setLevel(logging.ERROR)
        self.plan = c.plan.resolve(self.world)
        self.mesh = build_mesh(self.plan, device_type)
        self.dp_rank, self.dp_size = data_parallel_rank_and_size(self.mesh)
        self.dp_group = data_parallel_mesh(self.mesh).get_group()
        if c.global_batch % self.dp_size:
            raise MovieGenError(
                f"global_batch {c.global_batch} is not divisible by the {self.dp_size} data-parallel ranks"
            )
        self.local_batch = c.global_batch // self.dp_size
        self.run_dir = Path(c.run_dir)

        # data
        self.cache = cache if cache is not None else open_cache(c.cache)
        self.data = DataStream(self.cache, c, self.dp_rank, self.dp_size)
        self.val_cache = val_cache
        if val_cache is None and c.val_cache:
            self.val_cache = open_cache(c.val_cache)
        sample = self.cache.get(0)
        self.text_dims = tuple(int(h.shape[-1]) for h, _ in sample.text)

        # model
        init = resolve_init(c.init_from) if c.init_from else InitSource()
        self.init_source = init
        tcfg, variant = self._transformer_config(init)
        weights = module_bytes(lambda: MovieGenTransformer(tcfg))
        what = "the transformer's weights" + ("" if want_cuda else ", gradients and AdamW state")
        check_fits(weights if want_cuda else 4 * weights, what, "cpu", "lower dim / num_layers in the config")
        torch.manual_seed(c.seed)  # identical initial weights on every rank
        transformer = MovieGenTransformer(tcfg)
        projector = TextProjector(self.text_dims, tcfg.dim)
        if init.transformer_state is not None:
            load_state_strict(transformer, init.transformer_state, f"init_from {c.init_from}")
        if variant:
            transformer = MovieGenTransformer.from_base(transformer, **variant)
        if init.projector_state is not None:
            load_state_strict(projector, init.projector_state, f"init_from {c.init_from} (text projector)")
        if c.expand_positions:
            transformer.expand_positions(*c.expand_positions)
        self.transformer_config = transformer.config
        transformer.to(self.device)
        projector.to(self.device)
        self.model = parallelize(transformer, self.mesh, self.plan)
        fully_shard(
            projector, mesh=fsdp_mesh(self.mesh), mp_policy=mixed_precision_policy(self.plan, device_type)
        )
        self.projector = projector
        self.reference, self.reference_dir = self._reference_encoder(init, tcfg.dim, device_type)
        self.modules = TrainModules(self.model, projector, self.reference)
        self.params = [p for p in self.modules.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.modules, c.weight_decay),
            lr=c.lr,
            betas=tuple(c.betas),
            eps=c.eps,
            foreach=True,
        )
        self.schedule = LRSchedule(c)
        self.step = 0
        self.tokens_seen = 0
        self.tae_dir = Path(c.tae) if c.tae else init.tae_dir
        self.text_dir = Path(c.text_encoders) if c.text_encoders else init.text_dir
        meta = {
            "transformer_config": self.transformer_config.to_dict(),
            "text_dims": list(self.text_dims),
            "train_config": c.to_dict(),
            "tae": str(self.tae_dir) if self.tae_dir else None,
            "text_encoders": str(self.text_dir) if self.text_dir else None,
            "reference_encoder": str(self.reference_dir) if self.reference_dir else None,
        }
        self.checkpointer = ckpt.Checkpointer(
            self.run_dir,
            self.modules,
            self.optimizer,
            plan=self.plan.to_dict(),
            keep=c.keep_checkpoints,
            async_save=c.async_checkpoint,
            checksums=c.checkpoint_checksums,
            meta=meta,
        )
        self.peak_flops = c.peak_flops or known_peak_flops(self.device)
        self.resumed_from: Path | None = None
        self.last_checkpoint: Path | None = None
        if resume:
            self._resume()
        elif ckpt.list_checkpoints(self.run_dir):
            raise MovieGenError(
                f"{self.run_dir} already has checkpoints: pass --resume to continue it, or use another "
                "run_dir"
            )
        self._open_logs()
        if c.schedule == "plateau" and not (c.val_cache and c.val_every):
            self.info("note: schedule 'plateau' without val_cache/val_every: the LR will never be halved")
        self.info(
            f"{c.stage or 'training'}: {sum(p.numel() for p in self.params) / 1e6:.2f}M trainable "
            "parameters, "
            f"world {self.world} (dp {self.dp_size}, cp {self.plan.cp}, tp {self.plan.tp}), "
            f"global batch {c.global_batch}, step {self.step}/{c.steps}"
            + (f", init from {init.what}" if init.what else "")
        )

    # -- setup helpers

    def _transformer_config(self, init: InitSource) -> tuple[TransformerConfig, dict[str, int]]:
        """The config to build (and load ``init_from`` into), and the ``from_base`` widening after it."""
        c = self.config
        overrides = dict(c.model_overrides)
        if init.transformer_config is None:
            return TransformerConfig.preset(c.model, **overrides), {}
        tables = ("max_latent_frames", "max_height_patches", "max_width_patches")
        overrides = {k: v for k, v in overrides.items() if k not in tables}
        base = init.transformer_config
        variant = {k: overrides.pop(k) for k in ("in_channels", "num_tasks")
                   if k in overrides and overrides[k] != getattr(base, k)}  # fmt: skip
        return TransformerConfig.from_dict({**base.to_dict(), **overrides}), variant

    def _reference_encoder(self, init: InitSource, dim: int, device_type: str) -> tuple[nn.Module | None, Path | None]:
        """The personalization reference encoder (see :class:`TrainConfig`), sharded like the projector."""
        from moviegen.models.vision import ReferenceEncoder

        c = self.config
        source = Path(c.reference_encoder) if c.reference_encoder else init.reference_dir
        if source is None:
            return None, None
        if not source.is_dir():
            raise MovieGenError(f"reference_encoder folder not found: {source}")
        if (source / "vision").is_dir():
            encoder = ReferenceEncoder.from_pretrained(source)
        else:
            encoder = ReferenceEncoder.from_vision_folder(source, dim)
        if init.reference_state is not None and not c.reference_encoder:
            load_state_strict(encoder, init.reference_state, f"init_from {c.init_from} (reference encoder)")
        if encoder.model_dim != dim:
            raise MovieGenError(f"reference encoder {source} projects to {encoder.model_dim}, not the model's {dim}")
        encoder.tower.requires_grad_(c.train_vision_tower)
        encoder.to(self.device)
        fully_shard(encoder, mesh=fsdp_mesh(self.mesh), mp_policy=mixed_precision_policy(self.plan, device_type))
        return encoder, source

    def _context(
        self, tokens: torch.Tensor, mask: torch.Tensor, extra: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text tokens and mask, with the reference image's tokens appended when the batch has one."""
        images = extra.pop("reference", None)
        if images is None:
            return tokens, mask
        if self.reference is None:
            raise MovieGenError("the cache's items hold reference images but no reference_encoder is set")
        ref = self.reference(images).to(tokens.dtype)
        ones = torch.ones(ref.shape[:2], dtype=mask.dtype, device=mask.device)
        return torch.cat([tokens, ref], dim=1), torch.cat([mask, ones], dim=1)

    def info(self, message: str) -> None:
        if self.rank == 0:
            self._log(message)

    def _resume(self) -> None:
        newest = ckpt.list_checkpoints(self.run_dir)
        path = ckpt.latest(self.run_dir)
        if newest and (path is None or newest[-1][1] != path):
            bad = newest[-1][1]
            ckpt.read_marker(bad)  # raises the "incomplete" error naming it
        if path is None:
            self.info(f"--resume: no checkpoint in {self.run_dir}; starting from step 0")
            return
        step, train_state, rank_state = self.checkpointer.load(path)
        self.step = step
        self.schedule.load_state_dict(train_state["schedule"])
        self.tokens_seen = int(train_state.get("tokens_seen", 0))
        self.data.load_state_dict(rank_state["data"])
        self.resumed_from = path
        self.last_checkpoint = path
        self.info(f"resumed from {path} at step {step}")

    def _open_logs(self) -> None:
        self.writer = None
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(self.config.to_json() + "\n")
        kept = []
        if self.metrics_path.is_file() and self.step > 0:
            for line in self.metrics_path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= self.step:
                        kept.append(line)
                except json.JSONDecodeError:
                    break
        self.metrics_path.write_text("".join(line + "\n" for line in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(self.run_dir / "logs"), purge_step=self.step + 1 if self.step else None
            )
        except ImportError:  # tensorboard is a dependency, but keep training without it
            self.writer = None

    # -- one step

    def _batch(
        self, indices: list[int], cache: Any
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
        """Latents, raw text states and the model's extra inputs: ``cond`` (the conditioning latent) and
        ``task`` (task numbers) when the items hold them."""
        from moviegen.data.cache import collate_tensors

        items = [cache.get(i) for i in indices]
        latents, text = cache.collate(items)
        latents = latents.to(self.device, non_blocking=True)
        text = [(h.to(self.device, non_blocking=True), m.to(self.device, non_blocking=True)) for h, m in text]
        named = collate_tensors(items)
        extra = {}
        if "cond" in named:
            extra["cond"] = named["cond"].to(self.device, non_blocking=True)
        if "task" in named:
            extra["task"] = named["task"].reshape(-1).round().long().to(self.device)
        if "reference" in named:
            extra["reference"] = named["reference"].to(self.device, non_blocking=True)
        for name in ("noise", "t_window"):  # distillation pairs (train.distill): fixed x0, t inside a window
            if name in named:
                extra[name] = named[name].float().to(self.device, non_blocking=True)
        return latents, text, extra

    @staticmethod
    def _paired(t: torch.Tensor, noise: torch.Tensor, extra: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """An item's own ``noise`` replaces the drawn one (a reflow pair), and with a ``t_window`` (lo, hi) the
        drawn t in (0, 1) becomes ``lo + t·(hi − lo)``: the flow-matching loss on one window of a straight
        path (:mod:`moviegen.train.distill`)."""
        noise = extra.pop("noise", noise)
        window = extra.pop("t_window", None)
        if window is not None:
            lo, hi = window[:, 0].to(t.dtype), window[:, 1].to(t.dtype)
            t = lo + t * (hi - lo)
        return t, noise

    def _frame_offset(self, latents: torch.Tensor, step: int, indices: list[int]) -> torch.Tensor | None:
        """Random temporal positions for a one-latent-frame batch (``random_image_frames``), drawn from
        (seed, step, item) so a resumed run draws the same."""
        if not self.config.random_image_frames or latents.shape[2] != 1:
            return None
        rows = self.transformer_config.max_latent_frames
        draws = [_mix(self.config.seed, step, i, 17) % rows for i in indices]
        return torch.tensor(draws, dtype=torch.long, device=self.device)

    def train_step(self) -> dict[str, Any]:
        """One optimizer step at ``self.step`` (does not advance it)."""
        c, step = self.config, self.step
        start = time.perf_counter()
        kind, indices = self.data.next(step)
        latents, raw_text, extra = self._batch(indices, self.cache)
        offset = self._frame_offset(latents, step, indices)
        if offset is not None:
            extra["frame_offset"] = offset
        lr = self.schedule.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.modules.train()
        tokens, mask = self.projector(raw_text)
        positions = [self.dp_rank * self.local_batch + j for j in range(len(indices))]
        t, noise, mask = sample_draws(
            tuple(latents.shape[1:]), positions, c.seed, step, self.device, mask, c.text_dropout, c.t_location
        )
        tokens, mask = self._context(tokens, mask, extra)
        t, noise = self._paired(t, noise, extra)
        loss = flow.flow_matching_loss(
            self.model, latents, tokens, mask, t=t, noise=noise.to(latents.dtype),
            frame_diff_weight=c.frame_diff_weight, **extra,
        )  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_grad_norm_(self.params, c.grad_clip)
        self.optimizer.step()
        value = loss.detach().float().clone()
        dist.all_reduce(value, group=self.dp_group)
        loss_value = float(value) / self.dp_size
        elapsed = time.perf_counter() - start
        per_sample = num_tokens(self.transformer_config, tuple(latents.shape[1:]))
        step_tokens = per_sample * c.global_batch
        self.tokens_seen += step_tokens
        from moviegen.train.planner import forward_flops

        flops = (
            forward_flops(self.transformer_config, per_sample, int(mask.shape[1])).training * c.global_batch
        )
        record = {
            "step": step + 1,
            "kind": kind,
            "loss": loss_value,
            "lr": lr,
            "grad_norm": grad_norm,
            "step_time_s": elapsed,
            "tokens": step_tokens,
            "tokens_per_s": step_tokens / elapsed,
            "tflops_per_device": flops / elapsed / self.world / 1e12,
        }
        if self.peak_flops:
            record["mfu"] = flops / elapsed / (self.world * self.peak_flops)
        return record

    # -- validation

    @torch.no_grad()
    def validate(self) -> float | None:
        """Flow-matching loss on the validation cache, per-item fixed noise and t (collective)."""
        if self.val_cache is None:
            return None
        c, cache = self.config, self.val_cache
        names = cache.buckets()
        chunks: list[list[int]] = []
        by_bucket: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            by_bucket.setdefault(name, []).append(i)
        for name in sorted(by_bucket):
            idx = by_bucket[name]
            chunks.extend(idx[k : k + c.val_batch] for k in range(0, len(idx), c.val_batch))
        if not chunks:
            return None
        self.modules.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        rounds = math.ceil(len(chunks) / self.dp_size)
        for r in range(rounds):
            k = r * self.dp_size + self.dp_rank
            weight = 1.0 if k < len(chunks) else 0.0  # every dp rank runs the same number of forwards
            chunk = chunks[k] if k < len(chunks) else chunks[0]
            latents, raw_text, extra = self._batch(chunk, cache)
            tokens, mask = self.projector(raw_text)
            t, noise, _ = sample_draws(
                tuple(latents.shape[1:]), chunk, c.seed + VAL_SEED_OFFSET, 0, self.device
            )
            tokens, mask = self._context(tokens, mask, extra)
            t, noise = self._paired(t, noise, extra)
            loss = flow.flow_matching_loss(
                self.model, latents, tokens, mask, t=t, noise=noise.to(latents.dtype), **extra
            )
            totals[0] += weight * float(loss) * len(chunk)
            totals[1] += weight * len(chunk)
        dist.all_reduce(totals, group=self.dp_group)
        self.modules.train()
        return float(totals[0] / totals[1])

    # -- checkpoints and logs

    def save_checkpoint(self) -> Path:
        train_state = {
            "step": self.step,
            "schedule": self.schedule.state_dict(),
            "tokens_seen": self.tokens_seen,
        }
        rank_state = {"data": self.data.state_dict()}
        self.last_checkpoint = self.checkpointer.save(self.step, train_state, rank_state)
        return self.last_checkpoint

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is None:
            return
        step = record["step"]
        for key, tag in (("loss", "train/loss"), ("lr", "train/lr"), ("grad_norm", "train/grad_norm"),
                         ("val_loss", "val/loss"), ("tokens_per_s", "perf/tokens_per_s"),
                         ("tflops_per_device", "perf/tflops_per_device"), ("mfu", "perf/mfu"),
                         ("step_time_s", "perf/step_time_s")):  # fmt: skip
            if key in record:
                self.writer.add_scalar(tag, record[key], step)
        if record.get("kind") == "image":
            self.writer.add_scalar("train/loss_images", record["loss"], step)

    # -- the loop

    def run(self) -> TrainResult:
        c = self.config
        record: dict[str, Any] = {}
        val_loss = None
        while self.step < c.steps:
            record = self.train_step()
            self.step += 1
            if c.val_every and self.step % c.val_every == 0:
                val_loss = self.validate()
                if val_loss is not None:
                    record["val_loss"] = val_loss
                    if self.schedule.observe(val_loss, self.step):
                        record["lr_halved"] = True
                        self.info(f"step {self.step}: validation loss plateaued, LR halved")
            self._write_metrics(record)
            if self.on_step is not None:
                self.on_step(record)
            if c.log_every and (self.step % c.log_every == 0 or self.step == c.steps):
                msg = f"step {self.step}/{c.steps} loss {record['loss']:.4f} lr {record['lr']:.2e}"
                msg += f" {record['tokens_per_s']:.0f} tok/s"
                if "val_loss" in record:
                    msg += f" val {record['val_loss']:.4f}"
                self.info(msg)
            if (c.ckpt_every and self.step % c.ckpt_every == 0) or self.step == c.steps:
                self.save_checkpoint()
        self.checkpointer.wait()
        export = self.export()
        return TrainResult(
            self.step, record.get("loss"), val_loss, export, self.last_checkpoint, self.resumed_from
        )

    def export(self) -> Path | None:
        c = self.config
        if c.export_dir == "none":
            return None
        out = Path(c.export_dir) if c.export_dir else self.run_dir / "export"
        text_dir = self.text_dir
        if text_dir is None:
            text_dir = self._text_dir_from_cache()
        ckpt.export_pretrained(self.model, self.projector, out, tae_dir=self.tae_dir, text_dir=text_dir)
        if self.reference is not None:
            ckpt.export_reference_encoder(self.reference, out / "reference")
        self.info(f"exported weights to {out}")
        return out

    def _text_dir_from_cache(self) -> Path | None:
        """The cache manifest's text config, when its encoders need no folder (the packaged MiniLM)."""
        text = getattr(self.cache, "manifest", {}).get("text")
        config = text.get("config") if isinstance(text, dict) else None
        if not isinstance(config, dict) or any(k != "minilm" for k in config.get("kinds", [])):
            return None
        folder = self.run_dir / "text-config"
        if self.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            data = {"_class_name": "TextConditionerConfig", **config}
            (folder / CONFIG_NAME).write_text(json.dumps(data, indent=2) + "\n")
        return folder

    def close(self, error: bool = False) -> None:
        """Finish pending checkpoint writes (not after an error: they may need ranks that are gone), close
        the logs, destroy a process group this trainer made."""
        if self.checkpointer is not None:
            self.checkpointer.close(wait=not error)
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def train(
    config: TrainConfig,
    resume: bool = False,
    log: Log | None = None,
    cache: Any = None,
    val_cache: Any = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Run one training stage to the end; tears down the process group it created.

    ``cache`` / ``val_cache`` replace the config's folders with cache objects (a recipe's
    :class:`~moviegen.data.cache.MemoryCache`); ``on_step(record)`` sees every step's metrics.
    """
    trainer = Trainer(config, resume=resume, log=log, cache=cache, val_cache=val_cache, on_step=on_step)
    try:
        result = trainer.run()
    except BaseException:
        trainer.close(error=True)
        raise
    trainer.close()
    return result


def loss_history(history: dict[str, list], loss_key: str, val_key: str, progress: Callable | None, label: str,
                 total: int) -> Callable[[dict[str, Any]], None]:  # fmt: skip
    """The world recipes' ``on_step`` for :func:`train`: appends ``(step, loss)`` to ``history[loss_key]`` and
    ``(step, val_loss)`` to ``history[val_key]``, and reports ``progress(label, step, total, {"loss": ...})``."""

    def on_step(record: dict[str, Any]) -> None:
        history.setdefault(loss_key, []).append((record["step"], record["loss"]))
        if "val_loss" in record:
            history.setdefault(val_key, []).append((record["step"], record["val_loss"]))
        if progress:
            progress(label, record["step"], total, {"loss": record["loss"]})

    return on_step


# --------------------------------------------------------------------------------------------------------
# CLI functions (registered by moviegen.cli)


def train_run_cli(
    config: Annotated[
        Path, typer.Option("--config", help="JSON file of TrainConfig keys (see TrainConfig).")
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest complete checkpoint in run_dir.")
    ] = False,
    stage: Annotated[
        str | None,
        typer.Option(
            "--stage", help="Run one stage of the staged recipe (t2i-256, t2iv-256, t2iv-768, sft, tiny-*)."
        ),
    ] = None,
) -> None:
    """Train the backbone from a latent cache: one process, or one per device under torchrun.

    \b
    Single process:  moviegen train run --config run.json
    Four processes:  torchrun --nproc_per_node=4 -m moviegen.cli train run --config run.json --resume
    A recipe stage:  moviegen train run --config paths.json --stage t2iv-256
    """
    cfg = load_train_config(config, stage)
    result = train(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"trained {result.steps} steps; final loss {result.final_loss}")
        if result.export_dir is not None:
            typer.echo(f"wrote {result.export_dir}")


def average_cli(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="Two or more from_pretrained folders to average.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
) -> None:
    """Uniformly average the weights of several model folders (the paper's SFT model averaging)."""
    ckpt.average_checkpoints(list(checkpoints), out)
    typer.echo(f"averaged {len(checkpoints)} folders into {out}")


__all__ = [
    "DataStream",
    "LRSchedule",
    "TrainConfig",
    "TrainModules",
    "TrainResult",
    "Trainer",
    "average_cli",
    "clip_grad_norm_",
    "init_distributed",
    "load_train_config",
    "resolve_init",
    "sample_draws",
    "train",
    "train_run_cli",
]
