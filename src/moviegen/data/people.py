"""People for the built-in world: procedural identities with exact ground truth, for PT2V (paper §5).

An :class:`Identity` is what stays the same about a person: face shape, skin tone, hair style and colour,
eye shape and eye spacing. A clip renders one identity with per-clip **pose** (position, size, in-plane
rotation, yaw), **expression** (smile, eyes open) and **lighting** (direction, strength, brightness, a warm
or cool tint) over a flat background, doing what its caption says (:data:`ACTIONS`): staying still, moving
left or right, smiling, turning left or right, or under a zoom-in camera. Captions name the action, never
the identity (the reference image carries who it is).

**Held-out identities**: the discrete part of an identity (face, skin, hair style, hair colour, eyes) is a
combination; :func:`is_held_out_identity` holds out a fixed eighth of the combinations (by a hash), so a
held-out identity shares no combination with any training identity, although each attribute value is
seen. :func:`identity` draws identity ``index`` of a split: ``train`` / ``val`` only training combinations
(``val`` other continuous draws), ``test`` only held-out ones.

**References** (the paper's data): a *paired* reference is a frame of the clip itself, cropped to the
face; a *cross-paired* one is a still of the same identity with another pose, expression and lighting
(:func:`reference_still`), which keeps the model from copy-pasting the reference's pose and lighting.
:func:`face_box` is where the face is (the world knows it); :func:`find_face` is the documented crop rule
for images from elsewhere: the largest region that differs from the border colour.

Every clip is a pure function of ``(seed, split, index)``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen.errors import MovieGenError
from moviegen.models.text import compose_prompt

FACE_SHAPES = {"round": 1.0, "oval": 1.16, "long": 1.32}  # height / width
SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "pale": (246, 218, 196),
    "light": (232, 190, 150),
    "tan": (205, 150, 105),
    "olive": (176, 134, 84),
    "brown": (138, 92, 60),
    "dark": (90, 58, 40),
}
HAIR_STYLES = ("short", "long", "bald", "bun")
HAIR_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (25, 22, 22),
    "brown": (105, 62, 30),
    "blonde": (230, 196, 95),
    "red": (190, 70, 30),
    "gray": (165, 165, 170),
    "blue": (50, 90, 220),
}
EYE_SHAPES = ("round", "narrow")
ACTIONS = ("still", "moving left", "moving right", "smiling", "turning left", "turning right", "zoom in")
FPS_CHOICES = (8, 16)

ACTION_PHRASES: dict[str, tuple[str, ...]] = {
    "still": ("a person standing still", "a person looking at the camera", "someone holding still"),
    "moving left": ("a person moving to the left", "someone walking left", "a person sliding to the left"),
    "moving right": ("a person moving to the right", "someone walking right", "a person sliding to the right"),
    "smiling": ("a person smiling", "someone breaking into a smile", "a person starting to smile"),
    "turning left": ("a person turning to the left", "someone turning their head left",
                     "a person looking to the left"),
    "turning right": ("a person turning to the right", "someone turning their head right",
                      "a person looking to the right"),
    "zoom in": ("a close-up of a person", "a person, the camera moving closer", "a portrait of someone"),
}  # fmt: skip
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "still": ("a man or woman who does not move at all", "the subject remains motionless"),
    "moving left": ("the subject drifts over towards the left edge", "a figure that heads leftward"),
    "moving right": ("the subject drifts over towards the right edge", "a figure that heads rightward"),
    "smiling": ("a happy grin spreads across the subject's face", "the subject beams with joy"),
    "turning left": ("the subject rotates their face leftward", "a head swivelling towards the left"),
    "turning right": ("the subject rotates their face rightward", "a head swivelling towards the right"),
    "zoom in": ("we push in on the subject's face", "the frame tightens on the subject"),
}
"""Evaluation-only phrasings (a test checks none is a training phrasing)."""


@dataclass(frozen=True)
class Identity:
    """Who a person is: the attributes that never change between clips."""

    face: str
    skin: str
    hair_style: str
    hair_color: str
    eyes: str
    eye_spacing: float  # eye centres' distance / face width, in [0.34, 0.52]

    def combination(self) -> tuple[str, str, str, str, str]:
        return (self.face, self.skin, self.hair_style, self.hair_color, self.eyes)

    def describe(self) -> str:
        """A text description (the vision tower's contrastive pretraining pairs crops with it)."""
        hair = "bald" if self.hair_style == "bald" else f"{self.hair_style} {self.hair_color} hair"
        gap = "wide-set" if self.eye_spacing > 0.46 else "close-set" if self.eye_spacing < 0.4 else "normal"
        return f"a person with a {self.face} face, {self.skin} skin, {hair}, {gap} {self.eyes} eyes"


@dataclass(frozen=True)
class Pose:
    cx: float  # face centre, px
    cy: float
    radius: float  # half the face width, px
    roll: float = 0.0  # in-plane rotation, radians
    yaw: float = 0.0  # -1 (looking to its left, features shift left) .. 1


@dataclass(frozen=True)
class Expression:
    smile: float = 0.0  # 0 neutral .. 1 full smile
    eyes_open: float = 1.0


@dataclass(frozen=True)
class Lighting:
    angle: float = 0.0  # direction the light comes from, radians (0 = from the right)
    strength: float = 0.0  # 0 flat .. 0.45 strong side light
    brightness: float = 1.0
    tint: float = 0.0  # -1 cool .. 1 warm


def is_held_out_identity(identity: Identity) -> bool:
    """True for the eighth of attribute combinations no training identity has."""
    return zlib.crc32("|".join(identity.combination()).encode()) % 8 == 0


def _draw_identity(rng: np.random.Generator) -> Identity:
    return Identity(
        face=list(FACE_SHAPES)[rng.integers(len(FACE_SHAPES))],
        skin=list(SKIN_TONES)[rng.integers(len(SKIN_TONES))],
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        hair_color=list(HAIR_COLORS)[rng.integers(len(HAIR_COLORS))],
        eyes=EYE_SHAPES[rng.integers(len(EYE_SHAPES))],
        eye_spacing=round(float(rng.uniform(0.34, 0.52)), 3),
    )


def identity(split: str, index: int, seed: int = 0) -> Identity:
    """Identity ``index`` of ``split``: training combinations for train/val, held-out ones for test."""
    if split not in ("train", "val", "test"):
        raise MovieGenError(f"unknown people split {split!r} (choose from train, val, test)")
    rng = np.random.default_rng([seed, ("train", "val", "test").index(split), index, 71])
    while True:
        person = _draw_identity(rng)
        if is_held_out_identity(person) == (split == "test"):
            return person


# -- rendering


def _soft(dist: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] from a signed distance in px (1-px anti-aliased edge)."""
    return np.clip(0.5 - dist, 0.0, 1.0)


def _ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance (px) to an axis-aligned ellipse with half-axes a, b."""
    r = np.hypot(u / a, v / b)
    return (r - 1.0) * min(a, b)


def render_face(
    person: Identity,
    pose: Pose,
    expression: Expression,
    lighting: Lighting,
    background: np.ndarray,
    size: int,
) -> np.ndarray:
    """One frame (3, size, size) in [0, 1]: the hair behind, the face, the hair on top, eyes and mouth."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    c, s = math.cos(pose.roll), math.sin(pose.roll)
    dx, dy = xs - pose.cx, ys - pose.cy
    u, v = c * dx + s * dy, -s * dx + c * dy  # face frame: u right, v down
    a = pose.radius * (1 - 0.12 * abs(pose.yaw))
    b = pose.radius * FACE_SHAPES[person.face]
    skin = np.asarray(SKIN_TONES[person.skin], dtype=np.float64) / 255
    hair = np.asarray(HAIR_COLORS[person.hair_color], dtype=np.float64) / 255
    out = np.broadcast_to(np.asarray(background, dtype=np.float64)[:, None, None], (3, size, size)).copy()

    def paint(alpha: np.ndarray, colour: np.ndarray) -> None:
        out[:] = out * (1 - alpha) + colour[:, None, None] * alpha

    face = _soft(_ellipse(u, v, a, b))
    hair_shift = -0.18 * pose.yaw * a
    if person.hair_style == "long":  # falls behind the face down to the shoulders
        behind = _soft(_ellipse(u - hair_shift, v - 0.35 * b, 1.22 * a, 1.3 * b))
        paint(behind * (v > -0.2 * b), hair)
    paint(face, skin)
    if person.hair_style in ("short", "long", "bun"):
        cap = _soft(_ellipse(u - hair_shift, v + 0.12 * b, 1.06 * a, 1.02 * b)) * _soft(v + 0.42 * b)
        paint(cap, hair)
    if person.hair_style == "bun":
        paint(_soft(_ellipse(u - hair_shift, v + 1.18 * b, 0.42 * a, 0.38 * a)), hair)
    feature_shift = 0.32 * pose.yaw * a
    gap = person.eye_spacing * a
    ex, ey = 0.24 * a, 0.17 * a * (1.0 if person.eyes == "round" else 0.5) * max(expression.eyes_open, 0.12)
    dark = np.array([0.08, 0.06, 0.06])
    for side in (-1, 1):
        eye = _soft(_ellipse(u - feature_shift - side * gap, v + 0.12 * b, ex, max(ey, 0.5)))
        paint(eye * face, dark)
    mu, mv = u - feature_shift, v - 0.5 * b
    width = 0.38 * a * (1 + 0.25 * expression.smile)
    curve = mv - expression.smile * 0.28 * a * (
        1 - (mu / width) ** 2
    )  # smile: the middle drops, the ends rise
    thickness = 0.07 * a + 0.1 * a * expression.smile
    mouth = _soft(np.maximum(np.abs(curve) - thickness, np.abs(mu) - width))
    paint(mouth * face, np.array([0.55, 0.12, 0.14]))
    light = lighting.brightness * (1 + lighting.strength * (math.cos(lighting.angle) * dx + math.sin(lighting.angle) * dy)
                                   / max(pose.radius, 1.0) * (face > 0))  # fmt: skip
    tint = np.array([1 + 0.08 * lighting.tint, 1.0, 1 - 0.08 * lighting.tint])
    return np.clip(out * light[None] * tint[:, None, None], 0.0, 1.0)


def face_box(pose: Pose, person: Identity | None = None) -> tuple[float, float, float]:
    """Where the face is: (centre x, centre y, side) of the square crop around it (hair included)."""
    tall = FACE_SHAPES[person.face] if person is not None else 1.16
    side = 2.7 * pose.radius * max(1.0, tall)
    return pose.cx, pose.cy - 0.1 * pose.radius, side


def crop(image: Tensor, box: tuple[float, float, float], out: int = 32) -> Tensor:
    """The square ``box`` of ``image`` (3, H, W) resampled to (3, out, out); outside the frame repeats the
    border (values keep their range)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise MovieGenError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    _, h, w = image.shape
    cx, cy, side = box
    lin = (torch.arange(out, dtype=torch.float64) + 0.5) / out - 0.5
    gx = (cx + lin * side) / w * 2 - 1
    gy = (cy + lin * side) / h * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None].float()
    return F.grid_sample(
        image[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )[0]


def find_face(image: Tensor, min_fraction: float = 0.02) -> tuple[float, float, float]:
    """The crop rule for images from elsewhere: (cx, cy, side) of the largest region that differs from the
    border colour, squared and padded by 10 %. ``image`` (3, H, W) in [-1, 1]. No such region covering at
    least ``min_fraction`` of the image, or one that fills it, raises "no face found"."""
    from scipy import ndimage

    x = ((image.float() + 1) / 2).clamp(0, 1)
    border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1).median(dim=1).values
    differs = ((x - border[:, None, None]).abs().amax(0) > 0.12).numpy()
    labels, n = ndimage.label(differs)
    if n == 0:
        raise MovieGenError("no face found in the reference image (nothing stands out from its background)")
    sizes = ndimage.sum(differs, labels, range(1, n + 1))
    k = int(np.argmax(sizes)) + 1
    area = sizes[k - 1] / differs.size
    if area < min_fraction or area > 0.9:
        raise MovieGenError(f"no face found in the reference image (the largest region covers {100 * area:.0f} %"
                            " of it); crop the image to the face first")  # fmt: skip
    rows, cols = np.nonzero(labels == k)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    return float(x0 + x1) / 2, float(y0 + y1) / 2, 1.1 * float(max(x1 - x0, y1 - y0))


# -- clips


@dataclass
class PeopleClip:
    """A clip ``(3, T, H, W)`` in [-1, 1] of one person, its caption and the per-frame ground truth."""

    video: Tensor
    caption: str
    fps: int
    person: Identity
    action: str
    poses: list[Pose]
    expressions: list[Expression]
    lighting: Lighting
    background: tuple[float, float, float]
    attributes: dict = field(default_factory=dict)

    def box(self, frame: int = 0) -> tuple[float, float, float]:
        return face_box(self.poses[frame], self.person)

    def state(self, frame: int = 0) -> dict:
        return {**asdict(self.poses[frame]), **asdict(self.expressions[frame]), **asdict(self.lighting)}


def caption_for(action: str, rng: np.random.Generator, fps: int, phrasing: str = "train") -> str:
    phrases = (ACTION_PHRASES if phrasing == "train" else PARAPHRASES)[action]
    return compose_prompt(phrases[rng.integers(len(phrases))], fps=fps)


def _random_state(rng: np.random.Generator, size: int) -> tuple[Pose, Expression, Lighting, np.ndarray]:
    k = size / 64
    radius = rng.uniform(12.0, 15.0) * k
    pose = Pose(cx=rng.uniform(0.42, 0.58) * size, cy=rng.uniform(0.45, 0.56) * size, radius=radius,
                roll=rng.uniform(-0.2, 0.2), yaw=rng.uniform(-0.3, 0.3))  # fmt: skip
    expression = Expression(smile=rng.uniform(0.0, 0.2), eyes_open=1.0)
    lighting = Lighting(angle=rng.uniform(-math.pi, math.pi), strength=rng.uniform(0.0, 0.4),
                        brightness=rng.uniform(0.85, 1.1), tint=rng.uniform(-1, 1))  # fmt: skip
    background = rng.uniform(0.03, 0.2, size=3)
    return pose, expression, lighting, background


def render_clip(
    person: Identity,
    action: str,
    rng: np.random.Generator,
    size: int = 64,
    frames: int = 16,
    fps: int = 16,
    phrasing: str = "train",
) -> PeopleClip:
    """``person`` doing ``action`` for ``frames`` frames; pose, expression, lighting drawn from ``rng``."""
    if action not in ACTIONS:
        raise MovieGenError(f"unknown action {action!r} (choose from {', '.join(ACTIONS)})")
    pose, expression, lighting, background = _random_state(rng, size)
    seconds = (frames - 1) / fps
    speed = rng.uniform(9.0, 12.0) * size / 64  # px / s
    if action in ("moving left", "moving right"):  # start on the side it moves away from
        sign = -1 if action == "moving left" else 1
        pose = replace(pose, cx=size / 2 - sign * speed * seconds / 2 + rng.uniform(-2, 2))
    if action in ("turning left", "turning right"):
        pose = replace(pose, yaw=rng.uniform(-0.15, 0.15))
    if action == "smiling":
        expression = replace(expression, smile=0.0)
    poses, expressions = [], []
    for i in range(frames):
        f = i / max(frames - 1, 1)  # progress through the clip
        time = i / fps
        p, e = pose, expression
        if action in ("moving left", "moving right"):
            p = replace(p, cx=pose.cx + (-1 if action == "moving left" else 1) * speed * time)
        elif action in ("turning left", "turning right"):
            rate = 0.8 / max(seconds, 1e-6) if frames > 1 else 0.0
            p = replace(p, yaw=pose.yaw + (-1 if action == "turning left" else 1) * min(rate * time, 0.8))
        elif action == "smiling":
            e = replace(e, smile=min(1.0, 1.6 * f))
        elif action == "zoom in":
            z = 1.25**time
            p = replace(p, cx=size / 2 + (pose.cx - size / 2) * z, cy=size / 2 + (pose.cy - size / 2) * z,
                        radius=pose.radius * z)  # fmt: skip
        poses.append(p)
        expressions.append(e)
    video = np.stack([render_face(person, p, e, lighting, background, size) for p, e in zip(poses, expressions)],
                     axis=1)  # fmt: skip
    caption = caption_for(action, rng, fps, phrasing)
    return PeopleClip(torch.from_numpy(video.astype(np.float32)) * 2 - 1, caption, fps, person, action, poses,
                      expressions, lighting, tuple(float(b) for b in background))  # fmt: skip


def reference_still(person: Identity, rng: np.random.Generator, size: int = 64) -> PeopleClip:
    """A one-frame portrait of ``person`` with a fresh pose, expression (smile up to 0.6) and lighting."""
    pose, expression, lighting, background = _random_state(rng, size)
    expression = replace(expression, smile=float(rng.uniform(0.0, 0.6)))
    frame = render_face(person, pose, expression, lighting, background, size)[:, None]
    return PeopleClip(
        torch.from_numpy(frame.astype(np.float32)) * 2 - 1,
        compose_prompt("a portrait of a person"),
        16,
        person,
        "still",
        [pose],
        [expression],
        lighting,
        tuple(float(b) for b in background),
    )


class People:
    """Deterministic people clips: ``clip(split, index)`` is a pure function of the seed.

    Clip ``index`` of a split shows identity ``index % num_identities`` of that split, so every identity
    appears in many clips (the cross-pairs' source)."""

    def __init__(self, num_identities: int = 96, size: int = 64, frames: int = 16, seed: int = 0):
        if num_identities < 1 or size < 16 or size % 8 or frames < 1:
            raise MovieGenError("People: need num_identities >= 1, size a multiple of 8 >= 16, frames >= 1")
        self.num_identities, self.size, self.frames, self.seed = num_identities, size, frames, seed

    def identity(self, split: str, index: int) -> Identity:
        return identity(split, index % self.num_identities, self.seed)

    def rng(self, split: str, index: int, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, ("train", "val", "test").index(split), index, 73, salt])

    def clip(
        self,
        split: str,
        index: int,
        action: str | None = None,
        frames: int | None = None,
        phrasing: str = "train",
    ) -> PeopleClip:
        rng = self.rng(split, index)
        action = action or ACTIONS[rng.integers(len(ACTIONS))]
        fps = int(rng.choice(FPS_CHOICES))
        return render_clip(self.identity(split, index), action, rng, self.size, frames or self.frames, fps,
                           phrasing)  # fmt: skip

    def reference(self, split: str, index: int, salt: int = 0) -> PeopleClip:
        """A cross-pair reference for clip ``index``: the same identity, another pose and lighting."""
        return reference_still(self.identity(split, index), self.rng(split, index, 1000 + salt), self.size)
