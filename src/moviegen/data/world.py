"""A built-in, deterministic video world of captioned clips, for training and evaluating on a CPU.

Two kinds of clip, both ``frames`` long at ``size × size`` (16 frames of 64×64 by default):

* **objects**: one shape (circle, square, triangle) of one colour on a dark background, moving left,
  right, up or down, or staying still. Speed is in pixels per *second*, so the same prompt at ``FPS-8``
  covers twice the distance per frame of ``FPS-16`` (the paper's FPS control, §3.1.4);
* **camera**: a real photo from scikit-image's bundled data seen through a moving camera (static, pan
  left/right, tilt up/down, zoom in/out); the camera-motion label is the caption prefix, as the paper
  prefixes its camera-motion classifier's labels (§3.1.4, §3.2.1).

Captions are drawn from several phrasings per attribute and composed with the FPS (and camera) prefix
by :func:`moviegen.models.text.compose_prompt`. Images (1-frame clips) come with captions without motion.

**Held-out compositions**: with indices in the orders of ``COLORS``, ``SHAPES`` and ``MOTIONS``, an
object triple (c, s, m) with ``(c + 2·s + 3·m) % 6 == 0`` never appears in training clips, although each
of its attributes does; the evaluator generates exactly those to test compositional generalisation.

Every clip is a pure function of ``(seed, split, index)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen.config import Config, require
from moviegen.errors import MovieGenError
from moviegen.models.text import compose_prompt
from moviegen.rewrite.style import CaptionStyle

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (45, 85, 235),
    "yellow": (235, 220, 40),
    "white": (240, 240, 240),
    "magenta": (215, 45, 215),
    "orange": (245, 135, 25),
    "cyan": (40, 215, 225),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "still")
CAMERA_MOTIONS = ("static", "pan left", "pan right", "tilt up", "tilt down", "zoom in", "zoom out")
PHOTOS: dict[str, tuple[str, ...]] = {
    "astronaut": ("an astronaut", "a portrait of an astronaut", "a woman in a space suit"),
    "coffee": ("a cup of coffee", "coffee on a saucer", "a coffee cup on a table"),
    "chelsea": ("a cat", "a ginger cat", "a tabby cat looking up"),
    "rocket": ("a rocket", "a rocket on the launch pad", "a space rocket before launch"),
    "immunohistochemistry": ("cells under a microscope", "a stained tissue sample", "microscopy of cells"),
}
FPS_CHOICES = (8, 16)

SHAPE_WORDS = {"circle": ("circle", "ball", "disc"), "square": ("square", "box", "block"),
               "triangle": ("triangle", "triangle", "wedge")}  # fmt: skip
MOTION_PHRASES = {
    "left": ("moving to the left", "travels left", "sliding left", "moves left"),
    "right": ("moving to the right", "travels right", "sliding right", "moves right"),
    "up": ("moving up", "travels upward", "rising", "moves up"),
    "down": ("moving down", "travels downward", "falling", "moves down"),
    "still": ("staying still", "not moving", "resting in place", "stays still"),
}
SHAPE_EXTENT = {
    "circle": 1.0,
    "square": 0.886 * math.sqrt(2),
    "triangle": 1.56,
}  # × radius, all shapes equal area
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}


def object_caption(color: str | None, shape: str, motion: str | None = None) -> str:
    """The canonical caption of one object (first words of :data:`SHAPE_WORDS` / :data:`MOTION_PHRASES`),
    without prefixes; colour and motion may be left out."""
    words = [w for w in (color, SHAPE_WORDS[shape][0], MOTION_PHRASES[motion][0] if motion else None) if w]
    return "a " + " ".join(words)


def is_held_out(color: int, shape: int, motion: int) -> bool:
    """True for the object triples that never appear in training data."""
    return (color + 2 * shape + 3 * motion) % 6 == 0


def held_out_triples() -> list[tuple[str, str, str]]:
    names = list(COLORS)
    return [
        (names[c], SHAPES[s], MOTIONS[m])
        for c in range(len(COLORS))
        for s in range(len(SHAPES))
        for m in range(len(MOTIONS))
        if is_held_out(c, s, m)
    ]


CAPTION_STYLE = CaptionStyle(
    name="world",
    colors=tuple(COLORS),
    shapes={s: SHAPE_WORDS[s][0] for s in SHAPES},
    motions={m: MOTION_PHRASES[m][0] for m in MOTIONS},
    subjects=PHOTOS,
    camera_motions=CAMERA_MOTIONS,
    object_caption=object_caption,
    examples=("FPS-16. a red circle moving to the left on a dark background",
              "FPS-8. blue box travels upward", "FPS-16. Camera: pan left. a cup of coffee",
              "FPS-16. Camera: zoom in. a ginger cat"),
    summary=(f"one {', '.join(COLORS)} circle, square or triangle moving left, right, up, down or "
             f"staying still, or a photo ({', '.join(p[0] for p in PHOTOS.values())}) under a static, "
             "panning, tilting or zooming camera"),
)  # fmt: skip
"""How the world's captions are written, for the prompt rewriter (:mod:`moviegen.rewrite.style`)."""


@dataclass(frozen=True)
class WorldConfig(Config):
    """World sizes. Speeds are in pixels per second at ``size`` (scaled with it)."""

    size: int = 64
    frames: int = 16
    object_fraction: float = 0.75
    min_radius: float = 7.0
    max_radius: float = 10.0
    min_speed: float = 11.0
    max_speed: float = 15.0
    camera_speed: float = 10.0
    zoom_per_second: float = 1.25

    PRESETS: ClassVar[dict] = {"default": {}, "small": dict(size=32, min_radius=4.0, max_radius=5.5)}

    def validate(self) -> None:
        name = "WorldConfig"
        require(self.size >= 16 and self.size % 8 == 0, name, "size must be a multiple of 8, >= 16")
        require(self.frames >= 1, name, "frames must be >= 1")
        require(0.0 <= self.object_fraction <= 1.0, name, "object_fraction must be in [0, 1]")
        require(0 < self.min_radius <= self.max_radius, name, "need 0 < min_radius <= max_radius")
        require(0 < self.min_speed <= self.max_speed, name, "need 0 < min_speed <= max_speed")

    @property
    def scale(self) -> float:
        return self.size / 64


@dataclass
class WorldClip:
    """A clip ``(3, T, H, W)`` in [-1, 1], its caption (with prefixes) and its ground truth."""

    video: Tensor
    caption: str
    fps: int
    kind: str  # "object" or "camera"
    attributes: dict = field(default_factory=dict)


class World:
    """Deterministic clip generator: ``clip(split, index)`` is a pure function of the seed."""

    SPLITS = ("train", "val", "test")

    def __init__(self, config: WorldConfig | None = None, seed: int = 0):
        self.config = config or WorldConfig()
        self.seed = seed

    def rng(self, split: str, index: int, salt: int = 0) -> np.random.Generator:
        if split not in self.SPLITS:
            raise MovieGenError(f"unknown world split {split!r} (choose from {', '.join(self.SPLITS)})")
        return np.random.default_rng([self.seed, self.SPLITS.index(split), index, salt])

    # -- sampling the training distribution

    def clip(self, split: str, index: int) -> WorldClip:
        """A random clip; training and validation clips never use a held-out triple."""
        rng = self.rng(split, index)
        fps = int(rng.choice(FPS_CHOICES))
        if rng.random() < self.config.object_fraction:
            while True:
                c, s, m = rng.integers(len(COLORS)), rng.integers(len(SHAPES)), rng.integers(len(MOTIONS))
                if not is_held_out(c, s, m):
                    break
            return self.object_clip(list(COLORS)[c], SHAPES[s], MOTIONS[m], fps, rng)
        photo = list(PHOTOS)[rng.integers(len(PHOTOS))]
        motion = CAMERA_MOTIONS[rng.integers(len(CAMERA_MOTIONS))]
        return self.camera_clip(photo, motion, fps, rng)

    def image(self, split: str, index: int) -> WorldClip:
        """A 1-frame clip (still object or photo) for joint image/video training."""
        rng = self.rng(split, index, salt=1)
        if rng.random() < self.config.object_fraction:
            color = list(COLORS)[rng.integers(len(COLORS))]
            shape = SHAPES[rng.integers(len(SHAPES))]
            clip = self.object_clip(color, shape, "still", 16, rng, frames=1)
            words = SHAPE_WORDS[shape][rng.integers(3)]
            clip.caption = compose_prompt(f"a {color} {words}" + self._background_phrase(rng))
            return clip
        photo = list(PHOTOS)[rng.integers(len(PHOTOS))]
        clip = self.camera_clip(photo, "static", 16, rng, frames=1)
        clip.caption = compose_prompt(PHOTOS[photo][rng.integers(3)])
        return clip

    # -- rendering

    def object_clip(
        self,
        color: str,
        shape: str,
        motion: str,
        fps: int,
        rng: np.random.Generator | None = None,
        frames: int | None = None,
    ) -> WorldClip:
        cfg = self.config
        rng = rng or np.random.default_rng(self.seed)
        frames = cfg.frames if frames is None else frames
        if color not in COLORS or shape not in SHAPES or motion not in MOTIONS:
            raise MovieGenError(f"unknown object ({color}, {shape}, {motion})")
        size, k = cfg.size, cfg.scale
        radius = rng.uniform(cfg.min_radius, cfg.max_radius) * k
        speed = rng.uniform(cfg.min_speed, cfg.max_speed) * k
        dx, dy = DIRECTIONS[motion]
        travel = speed * (frames - 1) / fps
        extent = radius * SHAPE_EXTENT[shape]
        lo, hi = extent + 1, size - extent - 1
        start = []
        for d in (dx, dy):
            span = (lo, hi - travel) if d > 0 else (lo + travel, hi) if d < 0 else (lo, hi)
            if span[0] > span[1]:
                raise MovieGenError("object travel does not fit the frame: lower speed or fps")
            start.append(rng.uniform(*span))
        background = rng.uniform(0.02, 0.12, size=3)
        times = np.arange(frames) / fps
        centres = np.stack([start[0] + dx * speed * times, start[1] + dy * speed * times], axis=1)
        video = render_objects(shape, COLORS[color], radius, centres, background, size)
        words = SHAPE_WORDS[shape][rng.integers(3)]
        phrase = MOTION_PHRASES[motion][rng.integers(4)]
        article = "" if rng.random() < 0.3 else "a "
        caption = compose_prompt(f"{article}{color} {words} {phrase}{self._background_phrase(rng)}", fps=fps)
        attributes = dict(color=color, shape=shape, motion=motion, radius=radius, speed=speed,
                          centres=centres.tolist(), background=background.tolist())  # fmt: skip
        return WorldClip(video, caption, fps, "object", attributes)

    def camera_clip(
        self,
        photo: str,
        motion: str,
        fps: int,
        rng: np.random.Generator | None = None,
        frames: int | None = None,
    ) -> WorldClip:
        cfg = self.config
        rng = rng or np.random.default_rng(self.seed)
        frames = cfg.frames if frames is None else frames
        if photo not in PHOTOS or motion not in CAMERA_MOTIONS:
            raise MovieGenError(f"unknown camera clip ({photo}, {motion})")
        image = photo_tensor(photo, 2 * cfg.size)  # (3, H, W), short side = 2·size
        _, h, w = image.shape
        times = np.arange(frames) / fps
        window = cfg.size * 1.25  # photo pixels seen at zoom 1
        speed = cfg.camera_speed * cfg.scale * (window / cfg.size)  # output px/s → photo px/s
        cx = rng.uniform(w / 2 - 0.1 * w, w / 2 + 0.1 * w)
        cy = rng.uniform(h / 2 - 0.1 * h, h / 2 + 0.1 * h)
        zoom = np.ones(frames)
        shift = np.zeros((frames, 2))
        if motion.startswith("pan"):
            shift[:, 0] = (-1 if motion == "pan left" else 1) * speed * times
        elif motion.startswith("tilt"):
            shift[:, 1] = (-1 if motion == "tilt up" else 1) * speed * times
        elif motion.startswith("zoom"):
            zoom = cfg.zoom_per_second ** ((1 if motion == "zoom in" else -1) * times)
        sides = window / zoom
        video = render_views(image, cx + shift[:, 0], cy + shift[:, 1], sides, cfg.size)
        caption = compose_prompt(PHOTOS[photo][rng.integers(3)], fps=fps, camera_motion=motion)
        return WorldClip(video, caption, fps, "camera", dict(photo=photo, camera=motion))

    @staticmethod
    def _background_phrase(rng: np.random.Generator) -> str:
        return ("", "", " on a dark background", " against black")[rng.integers(4)]


def object_alpha(shape: str, radius: float, centres: np.ndarray, size: int) -> np.ndarray:
    """Coverage (T, size, size) in [0, 1] of an anti-aliased shape (1-pixel soft edge from a signed
    distance) at each centre; every shape has the circle's area."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    out = np.empty((len(centres), size, size), dtype=np.float64)
    for t, (cx, cy) in enumerate(centres):
        px, py = xs - cx, ys - cy
        if shape == "circle":
            dist = np.hypot(px, py) - radius
        elif shape == "square":
            half = radius * 0.886  # same area as the circle
            dist = np.maximum(np.abs(px), np.abs(py)) - half
        else:  # equilateral triangle pointing up, same area as the circle
            side = radius * math.sqrt(4 * math.pi / math.sqrt(3))
            inner = side / (2 * math.sqrt(3))  # inradius; the centroid is the centre
            edges = [
                py - inner,
                -(py * 0.5) + px * math.sqrt(3) / 2 - inner,
                -(py * 0.5) - px * math.sqrt(3) / 2 - inner,
            ]
            dist = np.maximum.reduce(edges)
        out[t] = np.clip(0.5 - dist, 0.0, 1.0)
    return out


def render_objects(
    shape: str,
    rgb: tuple[int, int, int],
    radius: float,
    centres: np.ndarray,
    background: np.ndarray,
    size: int,
) -> Tensor:
    """One shape of colour ``rgb`` at each centre over a flat ``background``: (3, T, size, size) in [-1, 1]."""
    alpha = object_alpha(shape, radius, centres, size)[None]
    colour = np.asarray(rgb, dtype=np.float64) / 255.0
    out = np.asarray(background, dtype=np.float64)[:, None, None, None] * (1 - alpha)
    out = out + colour[:, None, None, None] * alpha
    return torch.from_numpy(out.astype(np.float32)) * 2 - 1


@lru_cache(maxsize=16)
def photo_tensor(name: str, short_side: int) -> Tensor:
    """A scikit-image bundled photo as (3, H, W) in [0, 1], resized so its short side is ``short_side``."""
    import skimage.data

    array = np.asarray(getattr(skimage.data, name)())
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    image = torch.from_numpy(array[..., :3].copy()).permute(2, 0, 1).float() / 255.0
    h, w = image.shape[1:]
    scale = short_side / min(h, w)
    size = (round(h * scale), round(w * scale))
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def render_views(image: Tensor, cx: np.ndarray, cy: np.ndarray, sides: np.ndarray, size: int) -> Tensor:
    """Square views of ``image`` centred at (cx, cy) with side ``sides`` (photo px), resampled to size²."""
    _, h, w = image.shape
    lin = (torch.arange(size, dtype=torch.float64) + 0.5) / size - 0.5  # [-0.5, 0.5)
    grids = []
    for x, y, s in zip(cx, cy, sides, strict=True):
        gx = (x + lin * s) / w * 2 - 1
        gy = (y + lin * s) / h * 2 - 1
        grids.append(torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1))
    grid = torch.stack(grids).float()
    frames = F.grid_sample(image[None].expand(len(grids), -1, -1, -1), grid, mode="bilinear",
                           padding_mode="reflection", align_corners=False)  # fmt: skip
    return frames.permute(1, 0, 2, 3).clamp(0, 1) * 2 - 1
