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
small one can be pushed off its data by it (the shipped world model's own scale is 2). So the index may
hold the model's own ``guidance_scale``, the default of every call that does not pass one;
``moviegen eval guidance --write`` (and the world recipe) choose it on training compositions.

Prompts (:meth:`MovieGenPipeline.prepare_prompt`): a leading ``FPS-<n>.`` / ``Camera: <label>.`` prefix
is read as the frame rate / camera motion (it must agree with explicit ones). When the index names the
model's ``caption_style``, the prompt is rewritten into it by default (paper §3.6, :mod:`moviegen.rewrite`):
the model then sees the kind of text it was trained on, whatever words the user chose.

Integrity: the index records the SHA-256 of every weight file (``weights_sha256``); loading checks them
and names a damaged file (safetensors itself checks only its header). A sample that comes out non-finite
is refused rather than written as a black video.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from moviegen import __version__, flow
from moviegen.devices import autocast
from moviegen.errors import MovieGenError
from moviegen.files import read_json, write_atomic
from moviegen.models.tae import TAE, TAEConfig
from moviegen.models.text import (
    TextConditioner,
    compose_clip_prompt,
    default_text_conditioner,
    merge_prompt_controls,
    parse_prompt_prefix,
)
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig
from moviegen.pretrained import WEIGHTS_NAME, atomic_dir
from moviegen.rewrite.style import CaptionStyle
from moviegen.rewrite.style import caption_style as find_caption_style
from moviegen.rewrite.template import TemplateRewriter
from moviegen.video import MAX_FPS, write_video

INDEX_NAME = "model_index.json"
DEFAULT_MODEL = Path(__file__).parent / "weights" / "world"  # shipped by the world recipe
DEFAULT_IMAGE_MODEL = Path(__file__).parent / "weights" / "image"  # the image recipe's (issue 16)
DISTILLED_MODEL = Path(__file__).parent / "weights" / "world-distilled"  # ``moviegen train distill`` (issue 21)
SHIPPED_MODELS = {"world": DEFAULT_MODEL, "world-distilled": DISTILLED_MODEL}
"""The shipped text-to-video models ``--model`` takes by name."""
# ``moviegen generate``'s (and the service's) text-to-video default: the 8-step student holds the 50-step
# teacher's ``eval world`` accuracies within 3 points (docs/fast.md); ``world`` stays the base of every recipe.
GENERATE_DEFAULT = "world-distilled"
COMPONENTS = {"text": TextConditioner, "transformer": MovieGenTransformer, "tae": TAE}
SCHEDULES = ("linear-quadratic", "linear")
SPATIAL_MULTIPLE = 16  # TAE 8× times the 2×2 patch
DEFAULT_FPS = 16
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 1e3


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
    fps: int | None  # None: the prompt's FPS prefix, else 16
    num_steps: int
    schedule: str
    guidance_scale: float | None  # None: the model's default
    seed: int
    camera_motion: str | None = None

    def validate(self) -> None:
        """Every argument checked before any work; bad ones are one clear :class:`MovieGenError`."""
        _, fps, _ = merge_prompt_controls(self.prompt, self.fps, self.camera_motion)
        for name, value in (("frames", self.num_frames), ("height", self.height), ("width", self.width),
                            ("steps", self.num_steps), ("seed", self.seed)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int):
                raise MovieGenError(f"{name} must be an integer, got {value!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise MovieGenError(f"seed must be in [0, 2^63 - 1], got {self.seed}")
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
        if fps is not None and not 1 <= fps <= MAX_FPS:
            raise MovieGenError(f"fps must be in [1, {MAX_FPS}] (what MP4 players keep), got {fps}")
        if self.guidance_scale is not None:
            check_guidance_scale(self.guidance_scale, "guidance")
        if self.num_steps > 10_000:
            raise MovieGenError(f"steps must be at most 10000, got {self.num_steps}")
        schedule_times(self.schedule, self.num_steps)


def check_guidance_scale(scale: object, name: str = "guidance_scale") -> float:
    """A guidance scale: a finite number in [0, 1000) (NaN, inf and 1e30 only ever give garbage)."""
    if isinstance(scale, bool) or not (isinstance(scale, int | float) and 0 <= scale < MAX_GUIDANCE):
        raise MovieGenError(f"{name} must be a number in [0, 1000) (finite), got {scale!r}")
    return float(scale)


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt as the text encoders will see it, and what happened on the way."""

    text: str  # the description, without prefixes
    fps: int
    camera_motion: str | None
    original: str
    rewritten: bool = False  # rewriting changed the description or found a camera motion
    dropped: tuple[str, ...] = ()  # words the model's captions have no words for
    in_style: bool | None = None  # does the model know what is asked (None: no caption style)
    notes: list[str] = field(default_factory=list)
    num_frames: int | None = None  # 1: an image (no FPS prefix or camera label); None: a video

    @property
    def encoded(self) -> str:
        return compose_clip_prompt(self.text, self.num_frames or 0, self.fps, self.camera_motion)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(path: Path, index: dict) -> None:
    """Check every weight file against the SHA-256 the index recorded at save time."""
    recorded = index.get("weights_sha256")
    if recorded is None:
        return  # written before checksums were recorded
    if not isinstance(recorded, dict):
        raise MovieGenError(f"{path / INDEX_NAME}: weights_sha256 must be an object")
    for name, digest in recorded.items():
        file = path / name
        if not file.is_file():
            raise MovieGenError(f"weights file not found: {file}")
        if file_sha256(file) != digest:
            raise MovieGenError(
                f"{path}: weight file {name} is damaged (its SHA-256 differs from the index's)"
            )


def write_components(
    folder: Path,
    pipeline: object,
    extra: dict,
    dtype: torch.dtype | None,
    parts: dict[str, type] | None = None,
    base: dict[str, type] | None = None,
) -> None:
    """Save a pipeline's ``text``/``transformer``/``tae`` folders (``base``: another set of components, e.g.
    Audio's) and its extra ``parts`` (e.g. PT2V's ``reference``) into ``folder`` and its index: class name,
    version, component classes, ``extra`` keys and the SHA-256 of every weight file (shared by every
    pipeline of the cast). The text conditioner keeps its own precision; ``dtype`` applies to the rest."""
    parts = parts or {}
    components = (COMPONENTS if base is None else base) | parts
    for name in components:
        module = getattr(pipeline, name)
        if isinstance(module, TextConditioner):
            module.save_pretrained(folder / name)
        else:
            module.save_pretrained(folder / name, dtype=dtype)
    index = {"_class_name": type(pipeline).__name__, "moviegen_version": __version__}
    index |= {name: cls.__name__ for name, cls in components.items()} | extra
    files = set(folder.glob(f"*/{WEIGHTS_NAME}"))
    files |= {f for name in parts for f in (folder / name).rglob(WEIGHTS_NAME)}  # e.g. reference/vision/
    weights = sorted(f.relative_to(folder).as_posix() for f in files)
    index["weights_sha256"] = {name: file_sha256(folder / name) for name in weights}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")


def set_guidance_scale(path: str | Path, scale: float) -> None:
    """Store ``scale`` as the default guidance of the pipeline folder at ``path`` (atomically)."""
    check_guidance_scale(scale)
    index = read_index(path)
    write_atomic(
        Path(path) / INDEX_NAME, json.dumps(index | {"guidance_scale": float(scale)}, indent=2) + "\n"
    )


PIPELINE_KINDS = {"MovieGenPipeline": "a text-to-video model", "UpsamplerPipeline": "a spatial upsampler",
                  "EditPipeline": "a video Edit model", "PersonalizedPipeline": "a personalization (PT2V) model",
                  "AudioPipeline": "a Movie Gen Audio model"}
"""What each pipeline class of the cast is, for the error that names a folder of the wrong kind."""


def read_index(path: str | Path, kind: str = "MovieGenPipeline") -> dict:
    """The ``model_index.json`` of a pipeline folder whose class is ``kind``, checked to be one."""
    path = Path(path)
    index = read_json(path / INDEX_NAME, missing=f"{path} is not a {kind} folder (no {INDEX_NAME})")
    if not isinstance(index, dict):
        raise MovieGenError(f"{path / INDEX_NAME} must hold a JSON object")
    found = index.get("_class_name")
    if found != kind:
        what = PIPELINE_KINDS.get(found, f"a {found!r}")
        hint = f"; load it with {found}.from_pretrained" if found in PIPELINE_KINDS else ""
        raise MovieGenError(
            f"{path} holds {what}, not {PIPELINE_KINDS.get(kind, 'a ' + kind)} ({kind}){hint}"
        )
    return index


def read_components(
    path: Path, index: dict, extra_parts: dict[str, type] | None = None, base: dict[str, type] | None = None
) -> dict:
    """The ``text`` / ``transformer`` / ``tae`` components (or ``base``'s) and ``extra_parts`` of a pipeline
    folder whose checked ``index`` names them (their weights verified against the index's checksums
    first)."""
    verify_weights(path, index)
    parts = {}
    for name, component in ((COMPONENTS if base is None else base) | (extra_parts or {})).items():
        if index.get(name) != component.__name__:
            raise MovieGenError(f"{path / INDEX_NAME}: component {name!r} must be a {component.__name__}")
        parts[name] = component.from_pretrained(path / name)
    return parts


class Components:
    """What every pipeline of the cast shares: its ``text``, ``transformer``, ``tae`` (and ``PARTS``) move
    together, and the backbone's positional tables bound the latent shape it can make."""

    text: TextConditioner
    transformer: MovieGenTransformer
    tae: TAE
    COMPONENTS: dict[str, type] = COMPONENTS
    """The components every folder of this kind holds (Audio has its own autoencoder and frame encoder)."""
    PARTS: dict[str, type] = {}
    """Components beyond the three, by attribute (= folder) name and class (PT2V's ``reference``)."""

    def to(self, device: str | torch.device):
        """Move every component to ``device`` (``resolve_device`` names one; bf16 autocast on CUDA)."""
        for name in (*self.COMPONENTS, *self.PARTS):
            getattr(self, name).to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def max_size(self) -> tuple[int, int]:
        """The largest (height, width) in pixels the backbone's spatial tables cover."""
        cfg, c = self.transformer.config, self.tae.compression
        _, ph, pw = cfg.patch_size
        return cfg.max_height_patches * ph * c, cfg.max_width_patches * pw * c

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        c = self.tae.compression
        return (self.tae.config.latent_channels, -(-num_frames // c), height // c, width // c)

    def _check_fits(self, num_frames: int, shape: tuple[int, int, int, int]) -> None:
        cfg = self.transformer.config
        _, t, h, w = shape
        pt, ph, pw = cfg.patch_size
        grid = (-(-t // pt), h // ph, w // pw)
        limits = (cfg.max_latent_frames, cfg.max_height_patches, cfg.max_width_patches)
        if any(g > m for g, m in zip(grid, limits, strict=True)):
            c = self.tae.compression
            max_h, max_w = self.max_size
            raise MovieGenError(
                f"this model generates at most {cfg.max_latent_frames * pt * c} frames of "
                f"{max_h}x{max_w} px (asked for {num_frames} frames at {h * c}x{w * c})"
            )


class MemberPipeline(Components):
    """A post-trained member of the cast (upsampler, Edit, PT2V): its components (with its ``PARTS``) plus
    the sampling defaults named in ``SETTINGS``, which ``save_pretrained`` writes into ``model_index.json``
    (as attributes of the same names) and ``from_pretrained`` passes back to the constructor. ``FOLDER``
    names the folder kind in the not-found error."""

    SETTINGS: tuple[str, ...] = ()
    FOLDER: str = "model"

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        with atomic_dir(path) as tmp:
            write_components(tmp, self, {k: getattr(self, k) for k in self.SETTINGS}, dtype, self.PARTS,
                             self.COMPONENTS)
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | Path):
        path = Path(path)
        if not path.is_dir():
            raise MovieGenError(f"{cls.FOLDER} folder not found: {path}")
        index = read_index(path, cls.__name__)
        parts = read_components(path, index, cls.PARTS, cls.COMPONENTS)
        try:
            return cls(**parts, **{k: index[k] for k in cls.SETTINGS if k in index})
        except MovieGenError as e:
            raise MovieGenError(f"{path / INDEX_NAME}: {e}") from None


class MovieGenPipeline(Components):
    """Text encoders + projector, backbone and TAE, with diffusers-style saving and loading."""

    def __init__(
        self,
        text: TextConditioner,
        transformer: MovieGenTransformer,
        tae: TAE,
        guidance_scale: float = flow.GUIDANCE_SCALE,
        caption_style: str | None = None,
        num_steps: int = 50,
        schedule: str = "linear-quadratic",
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
        if transformer.config.in_channels != transformer.config.out_channels:
            raise MovieGenError(
                f"this backbone reads {transformer.config.in_channels} input channels for "
                f"{transformer.config.out_channels} latent channels: a conditioned variant (upsampler, "
                "Edit), not a text-to-video model; load it with its own pipeline"
            )
        self.text, self.transformer, self.tae = text, transformer, tae
        self.guidance_scale = check_guidance_scale(guidance_scale)
        if isinstance(num_steps, bool) or not isinstance(num_steps, int):
            raise MovieGenError(f"num_steps must be an integer, got {num_steps!r}")
        schedule_times(schedule, num_steps)  # a known schedule and a usable step count
        self.num_steps, self.schedule = num_steps, schedule  # the defaults (a distilled model's are few)
        self.caption_style = caption_style
        self.style: CaptionStyle | None = find_caption_style(caption_style)
        self.rewriter = TemplateRewriter(self.style)
        self.rewrite_by_default = self.style is not None
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
            extra = {"guidance_scale": self.guidance_scale, "num_steps": self.num_steps, "schedule": self.schedule}
            if self.caption_style is not None:
                extra["caption_style"] = self.caption_style
            write_components(tmp, self, extra, dtype)
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
        style = index.get("caption_style")
        if style is not None and not isinstance(style, str):
            raise MovieGenError(f"{path / INDEX_NAME}: caption_style must be a name")
        try:
            find_caption_style(style)
        except MovieGenError as e:
            raise MovieGenError(f"{path / INDEX_NAME}: {e}") from None
        sampling = {k: index[k] for k in ("num_steps", "schedule") if k in index}
        try:
            return cls(**read_components(path, index), guidance_scale=guidance, caption_style=style, **sampling)
        except MovieGenError as e:
            raise MovieGenError(f"{path / INDEX_NAME}: {e}") from None

    # -- sampling

    @torch.inference_mode()
    def __call__(
        self,
        prompt: str,
        num_frames: int = 16,
        height: int = 64,
        width: int = 64,
        fps: int | None = None,
        num_steps: int | None = None,
        schedule: str | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        camera_motion: str | None = None,
        callback: Callable[[int, int], None] | None = None,
        rewrite: bool | None = None,
    ) -> Tensor:
        """Generate one video; returns frames ``(3, num_frames, height, width)`` in [-1, 1].

        Deterministic for a fixed seed on a given device (noise comes from a seeded CPU generator).
        ``num_steps`` / ``schedule`` / ``guidance_scale`` None are the model's own (:attr:`num_steps`, 50 unless
        distilled; :attr:`schedule`; :attr:`guidance_scale`); ``fps`` None is the prompt's
        ``FPS-`` prefix, else 16; ``rewrite`` None is the model's default (:meth:`prepare_prompt`).
        """
        num_steps = self.num_steps if num_steps is None else num_steps
        schedule = self.schedule if schedule is None else schedule
        prepared = prompt if isinstance(prompt, PreparedPrompt) else None
        if prepared is None:
            args = (num_frames, height, width, fps, num_steps, schedule, guidance_scale, seed, camera_motion)
            self.check_request(prompt, *args)
            prepared = self.prepare_prompt(prompt, fps, camera_motion, rewrite, num_frames)
        guidance_scale = self.guidance_scale if guidance_scale is None else guidance_scale
        shape = self.latent_shape(num_frames, height, width)
        times = schedule_times(schedule, num_steps)
        device = self.device
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((1, *shape), generator=generator).to(device)
        with autocast(device):
            tokens, mask = self.text([prepared.encoded])
            x1 = flow.sample(
                self.transformer, noise, tokens, mask.to(device), times, guidance_scale, callback=callback
            )
            frames = self.tae.decode(self.tae.denormalize(x1.float()), num_frames=num_frames)
        frames = frames[0].float()
        if not bool(torch.isfinite(frames).all()):
            raise MovieGenError(
                "the sample came out non-finite (NaN/inf): the model's weights or the guidance scale "
                f"({guidance_scale:g}) are broken; nothing was written"
            )
        return frames.clamp(-1, 1).cpu()

    def check_request(
        self,
        prompt: str,
        num_frames: int = 16,
        height: int = 64,
        width: int = 64,
        fps: int | None = None,
        num_steps: int | None = None,
        schedule: str | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        camera_motion: str | None = None,
    ) -> None:
        """Every argument, and whether this model can make a video that size, checked before any work."""
        num_steps = self.num_steps if num_steps is None else num_steps
        schedule = self.schedule if schedule is None else schedule
        GenerationRequest(
            prompt, num_frames, height, width, fps, num_steps, schedule, guidance_scale, seed, camera_motion
        ).validate()
        self._check_fits(num_frames, self.latent_shape(num_frames, height, width))

    def prepare_prompt(
        self,
        prompt: str,
        fps: int | None = None,
        camera_motion: str | None = None,
        rewrite: bool | None = None,
        num_frames: int | None = None,
    ) -> PreparedPrompt:
        """The prompt the text encoders will see (paper §3.1.4, §3.6).

        Prefixes are merged with ``fps`` / ``camera_motion`` (:func:`merge_prompt_controls`); for one frame
        (an image) neither is encoded (:func:`compose_clip_prompt`, as the caches write images). With
        ``rewrite`` (default: on when the model has a caption style) the description is rewritten by
        :attr:`rewriter` into the model's caption style; an explicit camera motion wins over one the
        rewriter read from the words.
        """
        from moviegen.rewrite import rewrite_prompt

        text, fps, camera = merge_prompt_controls(prompt, fps, camera_motion)
        fps = DEFAULT_FPS if fps is None else fps
        rewrite = self.rewrite_by_default if rewrite is None else rewrite
        notes: list[str] = []
        reading = TemplateRewriter(self.style).read(text) if self.style is not None else None
        new_text, new_camera = text, camera
        if rewrite:
            _, found, new_text = parse_prompt_prefix(rewrite_prompt(text, self.rewriter))
            new_camera = camera or found
        dropped = tuple(reading.dropped) if reading is not None and rewrite else ()
        in_style = reading.in_style if reading is not None else None
        if in_style is False:
            notes.append(f"this model knows {self.style.describe()}; it cannot draw what the prompt asks for "
                         "(use --model DIR for a model trained on other data)")  # fmt: skip
        elif dropped:
            notes.append(f"this model's captions have no words for: {', '.join(dropped)}")
        if num_frames == 1 and new_camera is not None:
            notes.append(f"an image has no camera motion: 'Camera: {new_camera}.' is not encoded")
        encoded = compose_clip_prompt(new_text, num_frames or 0, fps, new_camera)
        for name, count, limit in self.text.overlong(encoded):
            notes.append(
                f"the prompt is {count} tokens long for the {name} text encoder, which reads only the "
                f"first {limit}: the rest is cut"
            )
        return PreparedPrompt(new_text, fps, new_camera, prompt, (new_text, new_camera) != (text, camera),
                              dropped, in_style, notes, num_frames)  # fmt: skip

    @staticmethod
    def export_mp4(frames: Tensor, path: str | Path, fps: float = 16) -> Path:
        """Write ``(3, T, H, W)`` frames in [-1, 1] as an H.264 MP4 (atomically)."""
        return write_video(path, frames, fps=fps)
