"""Movie Gen Edit: a video and an instruction → the edited video (paper §6).

A variant of the text-to-video backbone (:meth:`MovieGenTransformer.from_base`): the source video's TAE
latent (normalised) is concatenated after the noisy latent on the channels (``in_channels = 2 × latent
channels``, the new ones zero-initialised) and a learned task embedding says which task a batch is:
:data:`TASK_GENERATE` (text-to-video, multi-tasked in training, with an all-zero source latent) or
:data:`TASK_EDIT`. The instruction is the text prompt. Sampling is the one sampler,
:func:`moviegen.flow.sample`, with ``cond`` and ``task``; classifier-free guidance is on the instruction
(the unconditional branch keeps the source video and drops the text).

Two task rows are our reading of the paper's "learned task embedding" (it does not list its tasks):
segmentation and every edit kind share the edit row, since the instruction already says which edit.

Folder layout as :class:`~moviegen.pipeline.MovieGenPipeline` with a ``model_index.json`` whose
``_class_name`` is ``EditPipeline``, recording the model's ``num_steps``, ``schedule`` and
``guidance_scale`` defaults and the weights' SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from moviegen import flow
from moviegen.devices import autocast
from moviegen.errors import MovieGenError
from moviegen.models.tae import TAE
from moviegen.models.text import TextConditioner
from moviegen.models.transformer import MovieGenTransformer
from moviegen.pipeline import (
    SCHEDULES,
    SPATIAL_MULTIPLE,
    MemberPipeline,
    MovieGenPipeline,
    check_guidance_scale,
    schedule_times,
)

DEFAULT_EDIT_MODEL = Path(__file__).parent / "weights" / "edit"  # shipped by ``moviegen train edit``
TASK_GENERATE, TASK_EDIT = 0, 1
NUM_TASKS = 2
MAX_INSTRUCTION_CHARS = 2000


class EditPipeline(MemberPipeline):
    """Text encoders + projector, the source-conditioned backbone and the TAE; ``__call__`` edits a video."""

    SETTINGS = ("num_steps", "schedule", "guidance_scale")
    FOLDER = "Edit model"

    def __init__(
        self,
        text: TextConditioner,
        transformer: MovieGenTransformer,
        tae: TAE,
        num_steps: int = 50,
        schedule: str = "linear-quadratic",
        guidance_scale: float = 1.0,
    ):
        c = transformer.config
        latent = tae.config.latent_channels
        if c.in_channels != 2 * latent or c.out_channels != latent or c.num_tasks < NUM_TASKS:
            raise MovieGenError(
                f"an Edit backbone reads 2 × {latent} channels (noisy + source latent), writes {latent} and "
                f"has >= {NUM_TASKS} task rows; this one reads {c.in_channels}, writes {c.out_channels} with "
                f"{c.num_tasks} task rows (a text-to-video model? make one with EditPipeline.from_base)"
            )
        if text.model_dim != c.dim:
            raise MovieGenError(f"text projector width {text.model_dim} != transformer dim {c.dim}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise MovieGenError(f"num_steps must be a positive integer, got {num_steps!r}")
        if schedule not in SCHEDULES:
            raise MovieGenError(f"unknown schedule {schedule!r} (choose from {', '.join(SCHEDULES)})")
        self.text, self.transformer, self.tae = text, transformer, tae
        self.num_steps, self.schedule = num_steps, schedule
        self.guidance_scale = check_guidance_scale(guidance_scale)
        for module in (text, transformer, tae):
            module.eval()

    @classmethod
    def from_base(cls, base: MovieGenPipeline | str | Path, **defaults) -> EditPipeline:
        """An untrained Edit model from a text-to-video pipeline (``from_base``: it starts as the base)."""
        if not isinstance(base, MovieGenPipeline):
            base = MovieGenPipeline.from_pretrained(base)
        c = base.transformer.config
        variant = MovieGenTransformer.from_base(base.transformer, in_channels=2 * c.out_channels,
                                                num_tasks=max(NUM_TASKS, c.num_tasks))  # fmt: skip
        return cls(base.text, variant, base.tae, **defaults)

    # -- editing

    def check_video(self, video: Tensor) -> None:
        """One error for a video this model cannot edit (shape, values, size, length)."""
        if not isinstance(video, Tensor) or video.ndim != 4 or video.shape[0] != 3 or video.shape[1] < 1:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise MovieGenError(f"expected a video of shape (3, T, H, W), got {shape}")
        if not bool(torch.isfinite(video).all()):
            raise MovieGenError("the input video holds non-finite values")
        _, t, h, w = video.shape
        if h % SPATIAL_MULTIPLE or w % SPATIAL_MULTIPLE:
            raise MovieGenError(f"video {h}x{w}: sides must be multiples of {SPATIAL_MULTIPLE} px")
        limit = self.max_size
        if h > limit[0] or w > limit[1]:
            raise MovieGenError(f"this Edit model edits at most {limit[0]}x{limit[1]} px (got {h}x{w})")
        frames = self.tae.latent_frames(t)
        if frames > self.transformer.config.max_latent_frames:
            most = self.tae.compression * self.transformer.config.max_latent_frames
            raise MovieGenError(f"this Edit model edits at most {most} frames (got {t})")

    def source_latent(self, video: Tensor) -> Tensor:
        """The conditioning latent (1, C, t, h, w) of ``video`` (3, T, H, W): encoded and normalised."""
        return self.tae.normalize(self.tae.encode(video[None].float().to(self.device)).float())

    @torch.inference_mode()
    def __call__(
        self,
        video: Tensor,
        instruction: str,
        seed: int = 0,
        num_steps: int | None = None,
        guidance_scale: float | None = None,
        schedule: str | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Edit ``video`` (3, T, H, W) in [-1, 1] as ``instruction`` says; returns the same shape in [-1, 1].

        Defaults are the model's own; deterministic for a seed (noise from a seeded CPU generator)."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise MovieGenError("an edit needs an instruction (got an empty one)")
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise MovieGenError(
                f"instruction of {len(instruction)} characters (at most {MAX_INSTRUCTION_CHARS})"
            )
        self.check_video(video)
        steps = self.num_steps if num_steps is None else num_steps
        guidance = self.guidance_scale if guidance_scale is None else check_guidance_scale(guidance_scale)
        times = schedule_times(self.schedule if schedule is None else schedule, steps)
        device = self.device
        with autocast(device):
            cond = self.source_latent(video)
            generator = torch.Generator().manual_seed(seed)
            noise = torch.randn(cond.shape, generator=generator).to(device)
            tokens, mask = self.text([instruction.strip()])
            task = torch.full((1,), TASK_EDIT, dtype=torch.long, device=device)
            x1 = flow.sample(self.transformer, noise, tokens, mask.to(device), times, guidance,
                             callback=callback, cond=cond, task=task)  # fmt: skip
            out = self.tae.decode(self.tae.denormalize(x1.float()), num_frames=video.shape[1])
        out = out[0].float().cpu()
        if not bool(torch.isfinite(out).all()):
            raise MovieGenError("the edited video came out non-finite (NaN/inf); nothing was written")
        return out.clamp(-1, 1)
