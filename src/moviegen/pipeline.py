"""Prompt → frames → MP4: Movie Gen Video inference (paper §3.1, §3.1.6).

The pipeline only orchestrates its three components, each a ``save_pretrained`` folder of its own:

* ``text/``: the frozen text encoders and their trained projector (:class:`TextConditioner`);
* ``transformer/``: the Movie Gen Video backbone (:class:`MovieGenTransformer`);
* ``tae/``: the temporal autoencoder (:class:`TAE`);

plus a top-level ``model_index.json`` naming them. Sampling: compose the prompt with its FPS (and
optional camera-motion) prefix, encode it, draw Gaussian noise of the latent shape from a seeded
generator, integrate the flow with Euler steps and classifier-free guidance over the linear-quadratic
(or linear) schedule from t = 0 (noise) to t = 1 (data), then decode with the tiled TAE.

Latents are normalised for the transformer by :meth:`TAE.normalize` (the scale stored in the TAE's
config) and un-normalised by :meth:`TAE.denormalize` before decoding.

The guidance scale is a property of a trained model: the paper's 7.5 (§3.1.6) suits a 30B backbone, a
small one can be pushed off its data by it (the shipped world model follows prompts best near 1.5). So
the index may hold the model's own ``guidance_scale``, the default of every call that does not pass one;
``moviegen eval guidance --write`` (and the world recipe) choose it on training compositions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from moviegen import __version__, flow
from moviegen.errors import MovieGenError
from moviegen.files import read_json, write_atomic
from moviegen.models.tae import TAE, TAEConfig
from moviegen.models.text import TextConditioner, compose_prompt, default_text_conditioner
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig
from moviegen.pretrained import atomic_dir
from moviegen.video import write_video

INDEX_NAME = "model_index.json"
DEFAULT_MODEL = Path(__file__).parent / "weights" / "world"  # shipped by the world recipe
COMPONENTS = {"text": TextConditioner, "transformer": MovieGenTransformer, "tae": TAE}
SCHEDULES = ("linear-quadratic", "linear")
SPATIAL_MULTIPLE = 16  # TAE 8× times the 2×2 patch


def schedule_times(schedule: str, num_steps: int) -> Tensor:
    """The sampling times for a named schedule: ``linear-quadratic`` (paper default) or ``linear``."""
    if num_steps < 1:
        raise MovieGenError(f"steps must be >= 1, got {num_steps}")
    if schedule == "linear-quadratic":
        return flow.linear_quadratic_schedule(num_steps, max(num_steps, 5 * num_steps))
    if schedule == "linear":
        return flow.linear(num_steps)
    raise MovieGenError(f"unknown schedule {schedule!r} (choose from {', '.join(SCHEDULES)})")


@dataclass(frozen=True)
class GenerationRequest:
    """A validated set of sampling arguments."""

    prompt: str
    num_frames: int
    height: int
    width: int
    fps: int
    num_steps: int
    schedule: str
    guidance_scale: float | None  # None: the model's default
    seed: int
    camera_motion: str | None = None

    def validate(self) -> None:
        if not self.prompt or not self.prompt.strip():
            raise MovieGenError("the prompt is empty")
        if self.num_frames < 1:
            raise MovieGenError(f"frames must be >= 1, got {self.num_frames}")
        if (
            self.height < 1
            or self.width < 1
            or self.height % SPATIAL_MULTIPLE
            or self.width % SPATIAL_MULTIPLE
        ):
            raise MovieGenError(
                f"height and width must be positive multiples of {SPATIAL_MULTIPLE}, "
                f"got {self.height}x{self.width}"
            )
        if self.fps < 1:
            raise MovieGenError(f"fps must be >= 1, got {self.fps}")
        if self.guidance_scale is not None and not self.guidance_scale >= 0:
            raise MovieGenError(f"guidance must be >= 0, got {self.guidance_scale}")
        schedule_times(self.schedule, self.num_steps)
        compose_prompt(self.prompt, fps=self.fps, camera_motion=self.camera_motion)


def check_guidance_scale(scale: object) -> float:
    """A model's default guidance scale: a plain number in [0, 1000)."""
    if isinstance(scale, bool) or not (isinstance(scale, int | float) and 0 <= scale < 1e3):
        raise MovieGenError(f"guidance_scale must be a number in [0, 1000), got {scale!r}")
    return float(scale)


def set_guidance_scale(path: str | Path, scale: float) -> None:
    """Store ``scale`` as the default guidance of the pipeline folder at ``path`` (atomically)."""
    check_guidance_scale(scale)
    index = read_index(path)
    write_atomic(
        Path(path) / INDEX_NAME, json.dumps(index | {"guidance_scale": float(scale)}, indent=2) + "\n"
    )


def read_index(path: str | Path) -> dict:
    """The ``model_index.json`` of a MovieGenPipeline folder, checked to be one."""
    path = Path(path)
    index = read_json(path / INDEX_NAME, missing=f"{path} is not a MovieGenPipeline folder (no {INDEX_NAME})")
    if not isinstance(index, dict):
        raise MovieGenError(f"{path / INDEX_NAME} must hold a JSON object")
    if index.get("_class_name") != MovieGenPipeline.__name__:
        raise MovieGenError(f"{path} holds a {index.get('_class_name')!r}, not a {MovieGenPipeline.__name__}")
    return index


class MovieGenPipeline:
    """Text encoders + projector, backbone and TAE, with diffusers-style saving and loading."""

    def __init__(
        self,
        text: TextConditioner,
        transformer: MovieGenTransformer,
        tae: TAE,
        guidance_scale: float = flow.GUIDANCE_SCALE,
    ):
        if text.model_dim != transformer.config.dim:
            raise MovieGenError(
                f"text projector width {text.model_dim} != transformer dim {transformer.config.dim}"
            )
        if tae.config.latent_channels != transformer.config.out_channels:
            raise MovieGenError(
                f"TAE latent channels {tae.config.latent_channels} != transformer out_channels "
                f"{transformer.config.out_channels}"
            )
        self.text, self.transformer, self.tae = text, transformer, tae
        self.guidance_scale = check_guidance_scale(guidance_scale)
        for module in (text, transformer, tae):
            module.eval()

    # -- construction, saving, loading

    @classmethod
    def from_presets(cls, transformer: str = "tiny", tae: str = "tiny", seed: int = 0) -> MovieGenPipeline:
        """Randomly initialised components from presets, with the offline MiniLM text encoder."""
        torch.manual_seed(seed)
        backbone = MovieGenTransformer(TransformerConfig.preset(transformer))
        return cls(default_text_conditioner(backbone.config.dim), backbone, TAE(TAEConfig.preset(tae)))

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write the three component folders and the index; ``dtype`` shrinks backbone and TAE weights."""
        with atomic_dir(path) as tmp:
            self.text.save_pretrained(tmp / "text")
            self.transformer.save_pretrained(tmp / "transformer", dtype=dtype)
            self.tae.save_pretrained(tmp / "tae", dtype=dtype)
            index = {"_class_name": type(self).__name__, "moviegen_version": __version__}
            index |= {name: cls.__name__ for name, cls in COMPONENTS.items()}
            index["guidance_scale"] = self.guidance_scale
            (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MovieGenPipeline:
        path = Path(path)
        if not path.is_dir():
            raise MovieGenError(f"model folder not found: {path}")
        index = read_index(path)
        try:
            guidance = check_guidance_scale(index.get("guidance_scale", flow.GUIDANCE_SCALE))
        except MovieGenError as e:
            raise MovieGenError(f"{path / INDEX_NAME}: {e}") from None
        parts = {}
        for name, component in COMPONENTS.items():
            if index.get(name) != component.__name__:
                raise MovieGenError(f"{path / INDEX_NAME}: component {name!r} must be a {component.__name__}")
            parts[name] = component.from_pretrained(path / name)
        return cls(**parts, guidance_scale=guidance)

    def to(self, device: str | torch.device) -> MovieGenPipeline:
        for module in (self.text, self.transformer, self.tae):
            module.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    # -- sampling

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        c = self.tae.compression
        return (self.tae.config.latent_channels, -(-num_frames // c), height // c, width // c)

    @torch.inference_mode()
    def __call__(
        self,
        prompt: str,
        num_frames: int = 16,
        height: int = 64,
        width: int = 64,
        fps: int = 16,
        num_steps: int = 50,
        schedule: str = "linear-quadratic",
        guidance_scale: float | None = None,
        seed: int = 0,
        camera_motion: str | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Generate one video; returns frames ``(3, num_frames, height, width)`` in [-1, 1].

        Deterministic for a fixed seed on a given device (noise comes from a seeded CPU generator).
        ``guidance_scale`` None is the model's own (:attr:`guidance_scale`).
        """
        if guidance_scale is None:
            guidance_scale = self.guidance_scale
        req = GenerationRequest(
            prompt, num_frames, height, width, fps, num_steps, schedule, guidance_scale, seed, camera_motion
        )
        req.validate()
        text_prompt = compose_prompt(prompt, fps=fps, camera_motion=camera_motion)
        shape = self.latent_shape(num_frames, height, width)
        self._check_fits(shape)
        times = schedule_times(schedule, num_steps)
        device = self.device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((1, *shape), generator=generator).to(device)
        with autocast:
            tokens, mask = self.text([text_prompt])
            x1 = flow.sample(
                self.transformer, noise, tokens, mask.to(device), times, guidance_scale, callback=callback
            )
        frames = self.tae.decode(self.tae.denormalize(x1.float()), num_frames=num_frames)
        return frames[0].clamp(-1, 1).cpu()

    def _check_fits(self, shape: tuple[int, int, int, int]) -> None:
        cfg = self.transformer.config
        _, t, h, w = shape
        pt, ph, pw = cfg.patch_size
        grid = (-(-t // pt), h // ph, w // pw)
        limits = (cfg.max_latent_frames, cfg.max_height_patches, cfg.max_width_patches)
        if any(g > m for g, m in zip(grid, limits, strict=True)):
            c = self.tae.compression
            raise MovieGenError(
                f"this model generates at most {cfg.max_latent_frames * pt * c} frames of "
                f"{cfg.max_height_patches * ph * c}x{cfg.max_width_patches * pw * c} px "
                f"(asked for {grid[0] * pt * c} frames at {h * c}x{w * c})"
            )

    @staticmethod
    def export_mp4(frames: Tensor, path: str | Path, fps: float = 16) -> Path:
        """Write ``(3, T, H, W)`` frames in [-1, 1] as an H.264 MP4 (atomically)."""
        return write_video(path, frames, fps=fps)
