"""Edits of the built-in world with exact ground truth, for Movie Gen Edit (paper §6).

An object clip of :mod:`moviegen.data.world` is a :class:`Scene`: a flat background and sprites (shape,
colour, radius, one centre per frame). An :class:`Edit` changes the scene and the edited clip is rendered
again from the same scene, so every edit has an exact answer:

======== ============================================ ==========================================
task     what changes                                 instruction (one training phrasing)
======== ============================================ ==========================================
recolor  the object's colour                          "make the circle blue"
reshape  the object's shape (same place and size)     "turn the circle into a square"
backgr.  the background: a world photo behind it    "put the circle in front of a cat"
add      a second, still object in a named corner     "add a green square in the top left corner"
remove   the named object (background only left)      "remove the red circle"
grayscale every colour → its luminance (global)      "make it black and white"
segment  the object in a marker colour on black       "mark the circle in yellow"
======== ============================================ ==========================================

Why these and not flat background colours or a colour negative: the world TAE reproduces every flat
background as its one dark grey and a negative's bright flats as mid-grey (measured: a TAE round trip of
the true edit gives 37 % and 0 % edit accuracy on those), so no latent editor decoded by it could do them;
photos and grey levels it reproduces. Background photos are a static, centred view
(:func:`photo_background`), so the instruction determines the answer.

The corner of ``add`` is the one farthest from the first object's path, and the added object has the mean
world radius, so the instruction determines the answer. ``background`` "dark" (the world's own) exists only
as a reverse instruction (backtranslation). Instructions come in two phrasing sets: :data:`TRAIN_PHRASES`
(what training sees) and :data:`PARAPHRASES` (evaluation only, never trained on).

**Held-out compositions**: an edit's composition is (task, its argument, the object's colour, its shape);
:func:`is_held_out_edit` holds out a fixed fifth of them from every training stage.

**Animated frame editing** (stage 2, paper §6): :func:`animate` applies one random affine motion (shift,
zoom, rotation growing over time) to both images of an image-edit pair, making a video-edit pair.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen.data.world import (
    COLORS,
    MOTION_PHRASES,
    PHOTOS,
    SHAPE_EXTENT,
    SHAPE_WORDS,
    SHAPES,
    World,
    object_alpha,
    photo_tensor,
    render_views,
)
from moviegen.errors import MovieGenError

TASKS = ("recolor", "reshape", "background", "add", "remove", "grayscale", "segment")
BENCH_TASKS = ("recolor", "reshape", "background", "add", "remove", "grayscale")  # the 6 Edit Bench tasks
BACKGROUNDS: dict[str, tuple[str, ...]] = PHOTOS
"""Background photos (the world's photo names) and the words instructions use for them."""
DARK = (0.07, 0.07, 0.07)  # the world's own backgrounds are uniform in [0.02, 0.12] per channel
CORNERS = ("top left", "top right", "bottom left", "bottom right")
GLOBAL_TASKS = ("grayscale", "segment")
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Sprite:
    shape: str
    color: str
    radius: float
    centres: tuple[tuple[float, float], ...]
    motion: str = "still"


@dataclass(frozen=True)
class Scene:
    """A world object clip as data: render it at ``size`` px with :meth:`render`.

    ``photo`` (a world photo name) replaces the flat ``background`` by a static view of that photo.
    ``style`` "grayscale" renders every pixel's luminance; "segment" renders ``sprites[0]`` in the
    ``marker`` colour on black (the segmentation map)."""

    background: tuple[float, float, float]
    sprites: tuple[Sprite, ...]
    size: int = 64
    frames: int = 16
    style: str = "none"
    marker: str = ""
    photo: str = ""

    def background_video(self) -> np.ndarray:
        """The clip's background without its sprites: (3, T, size, size) in [0, 1]."""
        if self.photo:
            frame = photo_background(self.photo, self.size).numpy().astype(np.float64)
            return np.broadcast_to(frame[:, None], (3, self.frames, self.size, self.size)).copy()
        return np.broadcast_to(np.asarray(self.background, dtype=np.float64)[:, None, None, None],
                               (3, self.frames, self.size, self.size)).copy()  # fmt: skip

    def alpha(self, i: int) -> np.ndarray:
        s = self.sprites[i]
        return object_alpha(s.shape, s.radius, np.asarray(s.centres), self.size)

    def render(self) -> Tensor:
        """(3, T, size, size) in [-1, 1]."""
        t = self.frames
        if self.style == "segment":
            out = np.zeros((3, t, self.size, self.size))
            if self.sprites:
                a = self.alpha(0)[None]
                out = np.asarray(COLORS[self.marker], dtype=np.float64)[:, None, None, None] / 255.0 * a
        else:
            out = self.background_video()
            for i, s in enumerate(self.sprites):
                a = self.alpha(i)[None]
                out = (
                    out * (1 - a)
                    + np.asarray(COLORS[s.color], dtype=np.float64)[:, None, None, None] / 255 * a
                )
            if self.style == "grayscale":
                out = np.broadcast_to(np.tensordot(np.asarray(LUMA), out, axes=1)[None], out.shape).copy()
        return torch.from_numpy(out.astype(np.float32)) * 2 - 1

    def caption(self) -> str:
        """A caption of the scene (the Edit Bench's source / target caption)."""
        objects = []
        for sp in self.sprites:
            motion = "" if sp.motion == "still" else " " + MOTION_PHRASES[sp.motion][0]
            objects.append(f"{sp.color} {sp.shape}{motion}")
        if self.style == "segment":
            return f"{_a(self.marker)} {self.marker} mask of {_a(objects[0])} {objects[0]} on black"
        where = f"in front of {PHOTOS[self.photo][0]}" if self.photo else "on a dark background"
        text = (
            " and ".join(f"{_a(o)} {o}" for o in objects) + " " + where
            if objects
            else (PHOTOS[self.photo][0] if self.photo else "an empty dark background")
        )
        return f"a black-and-white video of {text}" if self.style == "grayscale" else text


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def background_name(scene: Scene) -> str:
    """The scene's background: its photo's name, or "dark" (the world's own flat backgrounds)."""
    return scene.photo or "dark"


def photo_background(photo: str, size: int) -> Tensor:
    """The static, centred view of a world photo used as a background: (3, size, size) in [0, 1]."""
    image = photo_tensor(photo, 2 * size)
    _, h, w = image.shape
    view = render_views(image, np.array([w / 2]), np.array([h / 2]), np.array([size * 1.25]), size)
    return (view[:, 0] + 1) / 2


def scene_of(clip) -> Scene:
    """The :class:`Scene` of a world object clip (``WorldClip.kind == "object"``)."""
    if clip.kind != "object":
        raise MovieGenError("only object clips of the world have an edit scene")
    a = clip.attributes
    sprite = Sprite(a["shape"], a["color"], float(a["radius"]), tuple(map(tuple, a["centres"])), a["motion"])
    return Scene(tuple(a["background"]), (sprite,), size=clip.video.shape[-1], frames=clip.video.shape[1])


@dataclass(frozen=True)
class Edit:
    """One edit: ``task`` and its argument (``color`` for recolor / add / segment's marker, ``shape`` for
    reshape / add, ``background`` for background, ``corner`` for add; remove names the object by its
    ``color`` and ``shape``)."""

    task: str
    color: str = ""
    shape: str = ""
    background: str = ""
    corner: str = ""

    def argument(self) -> str:
        return {"recolor": self.color, "reshape": self.shape, "background": self.background,
                "add": f"{self.color} {self.shape}", "segment": self.color}.get(self.task, "")  # fmt: skip


def is_held_out_edit(edit: Edit, color: str, shape: str) -> bool:
    """True for the (task, argument, object colour, object shape) compositions no training stage uses."""
    key = f"{edit.task}|{edit.argument()}|{color}|{shape}"
    return zlib.crc32(key.encode()) % 5 == 0


def edit_is_held_out(edit: Edit, scene: Scene) -> bool:
    """:func:`is_held_out_edit` for ``edit`` of ``scene``: its object is the named one for remove, else the
    first."""
    if edit.task == "remove":
        return is_held_out_edit(edit, edit.color, edit.shape)
    first = scene.sprites[0]
    return is_held_out_edit(edit, first.color, first.shape)


def corner_centre(corner: str, extent: float, size: int) -> tuple[float, float]:
    m = extent + 3.0
    x = m if "left" in corner else size - m
    y = m if "top" in corner else size - m
    return x, y


def farthest_corner(sprite: Sprite, size: int) -> str:
    path = np.asarray(sprite.centres)

    def clearance(c: str) -> float:
        x, y = corner_centre(c, 0.0, size)
        return float(np.hypot(path[:, 0] - x, path[:, 1] - y).min())

    return max(CORNERS, key=clearance)


def added_radius(size: int) -> float:
    return 8.5 * size / 64


def apply_edit(scene: Scene, edit: Edit) -> Scene:
    """The edited scene (its :meth:`Scene.render` is the exact answer)."""
    if not scene.sprites and edit.task not in ("background", "grayscale", "add"):
        raise MovieGenError(f"a {edit.task} edit needs an object in the scene")
    first = scene.sprites[0] if scene.sprites else None
    if edit.task == "recolor":
        return replace(scene, sprites=(replace(first, color=edit.color), *scene.sprites[1:]))
    if edit.task == "reshape":
        return replace(scene, sprites=(replace(first, shape=edit.shape), *scene.sprites[1:]))
    if edit.task == "background":
        if edit.background == "dark":
            return replace(scene, photo="", background=DARK if scene.photo else scene.background)
        if edit.background not in BACKGROUNDS:
            raise MovieGenError(
                f"unknown background {edit.background!r} (a world photo: {', '.join(BACKGROUNDS)})"
            )
        return replace(scene, photo=edit.background)
    if edit.task == "add":
        r = added_radius(scene.size)
        centre = corner_centre(edit.corner, r * SHAPE_EXTENT[edit.shape], scene.size)
        added = Sprite(edit.shape, edit.color, r, (centre,) * scene.frames, "still")
        return replace(scene, sprites=(*scene.sprites, added))
    if edit.task == "remove":
        keep = [s for s in scene.sprites if (s.color, s.shape) != (edit.color, edit.shape)]
        if len(keep) == len(scene.sprites):
            raise MovieGenError(f"remove: no {edit.color} {edit.shape} in the scene")
        return replace(scene, sprites=tuple(keep))
    if edit.task == "grayscale":
        return replace(scene, style="grayscale")
    if edit.task == "segment":
        return replace(scene, style="segment", marker=edit.color)
    raise MovieGenError(f"unknown edit task {edit.task!r} (choose from {', '.join(TASKS)})")


def sample_edit(scene: Scene, rng: np.random.Generator, tasks=TASKS, held_out: bool | None = False) -> Edit:
    """A random edit of ``scene``'s first object. ``held_out``: False = training compositions only, True =
    held-out ones only, None = any."""
    first = scene.sprites[0]
    colors = list(COLORS)
    for _ in range(1000):
        task = tasks[rng.integers(len(tasks))]
        if task == "recolor":
            edit = Edit(task, color=str(rng.choice([c for c in colors if c != first.color])))
        elif task == "reshape":
            edit = Edit(task, shape=str(rng.choice([s for s in SHAPES if s != first.shape])))
        elif task == "background":
            edit = Edit(task, background=str(rng.choice([b for b in BACKGROUNDS if b != scene.photo])))
        elif task == "add":
            edit = Edit(task, color=str(rng.choice([c for c in colors if c != first.color])),
                        shape=str(rng.choice(SHAPES)), corner=farthest_corner(first, scene.size))  # fmt: skip
        elif task == "remove":
            edit = Edit(task, color=first.color, shape=first.shape)
        elif task == "segment":
            edit = Edit(task, color=str(rng.choice(colors)))
        else:
            edit = Edit(task)
        if held_out is None or edit_is_held_out(edit, scene) == held_out:
            return edit
    raise MovieGenError(f"no {'held-out' if held_out else 'training'} edit of tasks {tasks} for {first}")


def reverse_edit(source: Scene, edit: Edit) -> Edit | None:
    """The edit that turns ``apply_edit(source, edit)`` back into ``source`` (backtranslation, paper §6),
    or None when the edited clip no longer says what to restore (remove, grayscale, segment)."""
    first = source.sprites[0]
    if edit.task == "recolor":
        return Edit("recolor", color=first.color)
    if edit.task == "reshape":
        return Edit("reshape", shape=first.shape)
    if edit.task == "background":
        return Edit("background", background=background_name(source))
    if edit.task == "add":
        return Edit("remove", color=edit.color, shape=edit.shape)
    return None


# ---------------------------------------------------------------------------------------- instructions

TRAIN_PHRASES: dict[str, tuple[str, ...]] = {
    "recolor": ("make the {shape} {color}", "change the colour of the {shape} to {color}",
                "turn the {old} {shape} {color}", "recolour the {shape} {color}", "paint the {shape} {color}"),
    "reshape": ("turn the {shape} into a {new}", "make the {shape} a {new}", "change the {shape} to a {new}",
                "replace the {shape} with a {new}"),
    "background": ("put the {shape} in front of {bg}", "change the background to {bg}",
                   "replace the background with {bg}", "make the background {bg}"),
    "add": ("add a {color} {new} in the {corner} corner", "put a {color} {new} in the {corner} corner",
            "place a {color} {new} at the {corner}", "insert a {color} {new} in the {corner} corner"),
    "remove": ("remove the {color} {shape}", "delete the {color} {shape}", "take the {color} {shape} out",
               "erase the {color} {shape}"),
    "grayscale": ("make it black and white", "turn the video grayscale", "convert it to grayscale",
                  "make the video black and white"),
    "segment": ("mark the {shape} in {color}", "segment the {shape} in {color}",
                "highlight the {shape} in {color} on black", "show the mask of the {shape} in {color}"),
}  # fmt: skip
"""Instruction phrasings training uses (``{shape}`` is one of the object's world words)."""

PARAPHRASES: dict[str, tuple[str, ...]] = {
    "recolor": ("I want the {shape} to be {color}", "could you colour the {shape} {color}?",
                "switch the {shape} over to {color}", "the {shape} should be {color} instead of {old}"),
    "reshape": ("the {shape} should become a {new}", "swap the {shape} for a {new} of the same colour",
                "morph the {shape} into a {new}", "I'd rather have a {new} than a {shape}"),
    "background": ("I'd like {bg} as the backdrop", "the {shape} should be moving over {bg}",
                   "swap the scenery behind the {shape} for {bg}", "set the {shape} against {bg}"),
    "add": ("there should also be a {color} {new} in the {corner} corner",
            "drop a {color} {new} into the {corner} corner", "include a {color} {new} at the {corner} too",
            "the {corner} corner needs a {color} {new}"),
    "remove": ("get rid of the {color} {shape}", "the {color} {shape} should disappear",
               "make the {color} {shape} vanish", "I don't want the {color} {shape} in the video"),
    "grayscale": ("drain all the colour out of it", "make it look like an old monochrome film",
                  "I want this in shades of grey only", "desaturate every pixel"),
    "segment": ("paint a {color} silhouette of the {shape} over black", "produce a {color} mask for the {shape}",
                "show only the {shape}'s outline area in {color}, everything else black",
                "cut out the {shape} as a {color} matte"),
}  # fmt: skip
"""Evaluation-only phrasings: no training stage uses them (a test asserts the sets are disjoint)."""


def instruction(edit: Edit, scene: Scene, rng: np.random.Generator, phrasing: str = "train") -> str:
    """An instruction for ``edit`` of ``scene`` in the ``phrasing`` set ("train" or "paraphrase")."""
    table = {"train": TRAIN_PHRASES, "paraphrase": PARAPHRASES}.get(phrasing)
    if table is None:
        raise MovieGenError(f"unknown phrasing {phrasing!r} (train or paraphrase)")
    first = scene.sprites[0] if scene.sprites else None
    if edit.task == "remove":
        target = next(s for s in scene.sprites if (s.color, s.shape) == (edit.color, edit.shape))
    else:
        target = first
    words = SHAPE_WORDS[target.shape] if target else ("object",)
    shape = words[rng.integers(len(words))] if phrasing == "train" else target.shape if target else "object"
    if edit.background in BACKGROUNDS:
        words = BACKGROUNDS[edit.background]
        bg = words[rng.integers(len(words))] if phrasing == "train" else words[0]
    else:
        bg = "a dark background"  # the reverse of a background edit
    template = table[edit.task][rng.integers(len(table[edit.task]))]
    return template.format(shape=shape, color=edit.color, old=target.color if target else "",
                           new=edit.shape, bg=bg, corner=edit.corner)  # fmt: skip


# ---------------------------------------------------------------------------------------- sources


def source_scene(
    world: World, split: str, index: int, frames: int | None = None, still: bool = False, salt: int = 31
) -> tuple[Scene, np.random.Generator]:
    """A random one-object scene of ``split`` (any colour, shape and motion; ``still`` for images) and the
    rng that drew it (for drawing the edit next)."""
    rng = world.rng(split, index, salt=salt)
    color = list(COLORS)[rng.integers(len(COLORS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    motion = "still" if still else ("left", "right", "up", "down", "still")[rng.integers(5)]
    clip = world.object_clip(color, shape, motion, int(rng.choice((8, 16))), rng, frames=frames)
    return scene_of(clip), rng


def animate(
    videos: list[Tensor],
    rng: np.random.Generator,
    frames: int,
    max_shift: float = 0.12,
    max_zoom: float = 0.15,
    max_angle: float = 12.0,
) -> list[Tensor]:
    """The same random affine motion applied to each one-frame video (3, 1, H, W) → (3, frames, H, W).

    Over the clip the content drifts by up to ``max_shift`` of the frame, zooms by up to ``max_zoom`` and
    turns by up to ``max_angle`` degrees, linearly in time (border pixels fill what comes into view)."""
    shift = rng.uniform(-max_shift, max_shift, size=2) * 2  # normalised coordinates span 2
    zoom = math.exp(rng.uniform(-max_zoom, max_zoom))
    angle = math.radians(rng.uniform(-max_angle, max_angle))
    s = torch.linspace(0, 1, frames, dtype=torch.float64)
    scale, rot = zoom**s, angle * s
    theta = torch.zeros(frames, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = torch.cos(rot) / scale
    theta[:, 0, 1] = -torch.sin(rot) / scale
    theta[:, 1, 0] = torch.sin(rot) / scale
    theta[:, 1, 1] = torch.cos(rot) / scale
    theta[:, 0, 2] = -shift[0] * s
    theta[:, 1, 2] = -shift[1] * s
    out = []
    for video in videos:
        if video.ndim != 4 or video.shape[1] != 1:
            raise MovieGenError(f"animate expects one-frame videos (3, 1, H, W), got {tuple(video.shape)}")
        _, _, h, w = video.shape
        grid = F.affine_grid(theta.float(), (frames, 3, h, w), align_corners=False)
        frame = video[:, 0][None].expand(frames, -1, -1, -1)
        warped = F.grid_sample(frame, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out.append(warped.permute(1, 0, 2, 3).contiguous())
    return out


# ---------------------------------------------------------------------------------------- as JSON


def scene_to_dict(scene: Scene) -> dict:
    return {"background": list(scene.background), "size": scene.size, "frames": scene.frames,
            "style": scene.style, "marker": scene.marker, "photo": scene.photo,
            "sprites": [{"shape": s.shape, "color": s.color, "radius": s.radius,
                         "centres": [list(c) for c in s.centres], "motion": s.motion} for s in scene.sprites]}  # fmt: skip


def scene_from_dict(data: dict) -> Scene:
    """The inverse of :func:`scene_to_dict` (one error for a malformed record)."""
    try:
        sprites = tuple(Sprite(str(s["shape"]), str(s["color"]), float(s["radius"]),
                               tuple((float(x), float(y)) for x, y in s["centres"]), str(s.get("motion", "still")))
                        for s in data["sprites"])  # fmt: skip
        scene = Scene(tuple(float(v) for v in data["background"]), sprites, int(data["size"]),
                      int(data["frames"]), str(data.get("style", "none")), str(data.get("marker", "")),
                      str(data.get("photo", "")))  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise MovieGenError(f"malformed world scene record: {e!r}") from None
    for s in scene.sprites:
        if s.shape not in SHAPES or s.color not in COLORS or len(s.centres) != scene.frames:
            raise MovieGenError(f"malformed world scene record: sprite {s.shape!r} {s.color!r}")
    if scene.photo and scene.photo not in PHOTOS:
        raise MovieGenError(f"malformed world scene record: unknown photo {scene.photo!r}")
    if len(scene.background) != 3:
        raise MovieGenError("malformed world scene record: background must be three numbers")
    return scene


def edit_to_dict(edit: Edit) -> dict:
    return {k: v for k, v in vars(edit).items() if v}


def edit_from_dict(data: dict) -> Edit:
    if not isinstance(data, dict) or data.get("task") not in TASKS:
        raise MovieGenError(f"malformed world edit record {data!r} (task must be one of {', '.join(TASKS)})")
    unknown = set(data) - {"task", "color", "shape", "background", "corner"}
    if unknown:
        raise MovieGenError(f"malformed world edit record: unknown keys {sorted(unknown)}")
    return Edit(**{k: str(v) for k, v in data.items()})
