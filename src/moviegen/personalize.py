"""Personalized Movie Gen Video (PT2V): a prompt and a reference face → a video of that person (paper §5).

The text-to-video backbone, unchanged in shape, gains context tokens: the reference face is cropped
(:func:`prepare_reference`), encoded by a CLIP vision tower and projected to the model width
(:class:`~moviegen.models.vision.ReferenceEncoder`), and its tokens are concatenated to the text tokens for
cross-attention (:func:`moviegen.flow.sample`'s ``context``). Classifier-free guidance is on the text: the
reference tokens ride along both branches [choice: the paper does not say how PT2V guides; keeping the
face in the unconditional branch steers the prompt, as Edit keeps its source video].

Crop rule (the reference an encoder sees): the world knows where its faces are, but for any image —
training references included, so training and sampling crop alike — the face is found by
:func:`moviegen.data.people.find_face`: the largest region differing from the border colour, squared and
padded by 10 %. An image with no such region is refused ("no face found"); pass ``box`` to crop by hand.

Folder: :class:`~moviegen.pipeline.MovieGenPipeline`'s ``text/``, ``transformer/``, ``tae/`` plus
``reference/`` (the encoder) and a ``model_index.json`` whose ``_class_name`` is ``PersonalizedPipeline``,
recording ``num_steps``, ``schedule`` and ``guidance_scale`` and every weight's SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from moviegen import flow
from moviegen.data.people import crop, find_face
from moviegen.devices import autocast
from moviegen.errors import MovieGenError
from moviegen.models.tae import TAE
from moviegen.models.text import TextConditioner, compose_clip_prompt, merge_prompt_controls
from moviegen.models.transformer import MovieGenTransformer
from moviegen.models.vision import ReferenceEncoder
from moviegen.pipeline import (
    DEFAULT_FPS,
    SCHEDULES,
    GenerationRequest,
    MemberPipeline,
    MovieGenPipeline,
    check_guidance_scale,
    schedule_times,
)

DEFAULT_PERSONALIZED_MODEL = Path(__file__).parent / "weights" / "personalize"  # ``moviegen train personalize``
MAX_REFERENCE_PIXELS = 4096 * 4096


def prepare_reference(image: Tensor, size: int, box: tuple[float, float, float] | None = None) -> Tensor:
    """The face crop (3, size, size) of ``image`` (3, H, W) or (3, 1, H, W) in [-1, 1] (module docstring)."""
    if isinstance(image, Tensor) and image.ndim == 4 and image.shape[1] == 1:
        image = image[:, 0]
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise MovieGenError(f"a reference image must have shape (3, H, W), got {shape}")
    if image.shape[1] * image.shape[2] > MAX_REFERENCE_PIXELS:
        raise MovieGenError(f"reference image of {image.shape[2]}x{image.shape[1]} px is too large "
                            f"(at most {MAX_REFERENCE_PIXELS} pixels)")  # fmt: skip
    if image.shape[1] < 8 or image.shape[2] < 8:
        raise MovieGenError(f"reference image of {image.shape[2]}x{image.shape[1]} px is too small to hold a face")
    if not bool(torch.isfinite(image).all()):
        raise MovieGenError("the reference image holds non-finite values")
    return crop(image.float(), box if box is not None else find_face(image), out=size)


def read_reference(path: str | Path) -> Tensor:
    """A reference image file (PNG, JPEG, WebP or BMP) as (3, H, W) in [-1, 1]; the size is checked from
    the header, before any pixel is decoded."""
    import numpy as np
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise MovieGenError(f"reference image not found: {path}")
    try:
        with Image.open(path) as im:
            if im.format not in ("PNG", "JPEG", "WEBP", "BMP"):
                raise MovieGenError(f"reference image {path}: a {im.format} file (use PNG or JPEG)")
            w, h = im.size
            if w * h > MAX_REFERENCE_PIXELS:
                raise MovieGenError(f"reference image {path} is {w}x{h} px: too large "
                                    f"(at most {MAX_REFERENCE_PIXELS} pixels)")  # fmt: skip
            array = np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError:
        raise MovieGenError(f"reference image {path} is too large (at most {MAX_REFERENCE_PIXELS} pixels)") from None
    except (OSError, ValueError) as e:
        raise MovieGenError(f"cannot read reference image {path}: not a PNG/JPEG image ({e})") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


class PersonalizedPipeline(MemberPipeline):
    """Text encoders + projector, the backbone, the TAE and the reference encoder; ``__call__`` generates."""

    SETTINGS = ("num_steps", "schedule", "guidance_scale")
    PARTS = {"reference": ReferenceEncoder}
    FOLDER = "PT2V model"

    def __init__(
        self,
        text: TextConditioner,
        transformer: MovieGenTransformer,
        tae: TAE,
        reference: ReferenceEncoder,
        num_steps: int = 50,
        schedule: str = "linear-quadratic",
        guidance_scale: float = flow.GUIDANCE_SCALE,
    ):
        c = transformer.config
        if c.in_channels != c.out_channels or c.out_channels != tae.config.latent_channels:
            raise MovieGenError(
                f"a PT2V backbone is a text-to-video one ({tae.config.latent_channels} latent channels in and "
                f"out); this one reads {c.in_channels} and writes {c.out_channels}"
            )
        if text.model_dim != c.dim or reference.model_dim != c.dim:
            raise MovieGenError(f"text ({text.model_dim}) and reference ({reference.model_dim}) projectors "
                                f"must be {c.dim} wide, the transformer's dim")  # fmt: skip
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise MovieGenError(f"num_steps must be a positive integer, got {num_steps!r}")
        if schedule not in SCHEDULES:
            raise MovieGenError(f"unknown schedule {schedule!r} (choose from {', '.join(SCHEDULES)})")
        self.text, self.transformer, self.tae, self.reference = text, transformer, tae, reference
        self.num_steps, self.schedule = num_steps, schedule
        self.guidance_scale = check_guidance_scale(guidance_scale)
        for module in (text, transformer, tae, reference):
            module.eval()

    @classmethod
    def from_base(cls, base: MovieGenPipeline | str | Path, reference: ReferenceEncoder, **defaults):
        """An untrained PT2V model from a text-to-video pipeline. A fresh encoder's zero-initialised
        projector makes all-zero tokens: they carry no values (the cross-attention has no biases) and only
        dilute the attention over the text, so training starts near the base model."""
        if not isinstance(base, MovieGenPipeline):
            base = MovieGenPipeline.from_pretrained(base)
        return cls(base.text, base.transformer, base.tae, reference, **defaults)

    export_mp4 = staticmethod(MovieGenPipeline.export_mp4)

    # -- sampling

    def check_reference(self, image: Tensor, box: tuple[float, float, float] | None = None) -> None:
        """The reference errors (shape, size, no face found) before any sampling."""
        prepare_reference(image, self.reference.image_size, box)

    def reference_tokens(self, faces: Tensor) -> tuple[Tensor, Tensor]:
        """Context tokens and mask of face crops (B, 3, S, S) in [-1, 1]."""
        tokens = self.reference(faces.to(self.device))
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)

    @torch.inference_mode()
    def __call__(
        self,
        prompt: str,
        reference: Tensor,
        num_frames: int = 16,
        height: int = 64,
        width: int = 64,
        fps: int | None = None,
        num_steps: int | None = None,
        schedule: str | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        box: tuple[float, float, float] | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """A video (3, num_frames, height, width) in [-1, 1] of the person in ``reference`` (an image
        (3, H, W) in [-1, 1], cropped by the crop rule unless ``box`` is given) doing what ``prompt`` says.
        Defaults are the model's own; deterministic for a seed."""
        steps = self.num_steps if num_steps is None else num_steps
        schedule = self.schedule if schedule is None else schedule
        guidance = self.guidance_scale if guidance_scale is None else check_guidance_scale(guidance_scale)
        GenerationRequest(prompt, num_frames, height, width, fps, steps, schedule, guidance, seed).validate()
        shape = self.latent_shape(num_frames, height, width)
        self._check_fits(num_frames, shape)
        face = prepare_reference(reference, self.reference.image_size, box)
        text, fps, camera = merge_prompt_controls(prompt, fps, None)
        encoded = compose_clip_prompt(text, num_frames, DEFAULT_FPS if fps is None else fps, camera)
        device = self.device
        noise = torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed)).to(device)
        with autocast(device):
            tokens, mask = self.text([encoded])
            context = self.reference_tokens(face[None])
            x1 = flow.sample(self.transformer, noise, tokens, mask.to(device), schedule_times(schedule, steps),
                             guidance, callback=callback, context=context)  # fmt: skip
            frames = self.tae.decode(self.tae.denormalize(x1.float()), num_frames=num_frames)
        frames = frames[0].float().cpu()
        if not bool(torch.isfinite(frames).all()):
            raise MovieGenError("the sample came out non-finite (NaN/inf); nothing was written")
        return frames.clamp(-1, 1)
