"""The paraphrase benchmark: the world's held-out compositions, asked for the way people write prompts.

Users do not write in the phrasings of the training captions: they say "a crimson sphere drifting
leftward" or "the camera pans left across a kitten". The paper answers this with a prompt rewriter that
brings every prompt into the training captions' style (§3.1.4, §3.6); this benchmark measures how well
the whole system (rewriter and model) copes, on prompts that share none of the world's caption words:

* **objects**: every held-out colour × shape × motion triple (never in training, see
  :func:`moviegen.data.world.is_held_out`), each in :data:`OBJECTS_PER_TRIPLE` sentences built from
  shape nouns, motion phrases and sentence forms that :mod:`moviegen.data.world` never uses (colours
  keep their name, sometimes with a modifier or a near synonym);
* **camera**: every camera motion said in words in the prompt body ("zooming in on an espresso cup"),
  never as the ``Camera: <label>.`` prefix, over the world's photos described in new words.

:func:`check_disjoint` asserts that no shape noun, motion phrase, photo description or camera prefix of
the world's captions appears in a prompt, so the benchmark measures generalisation, not recall. The
sentences were written once, before the rewriter's vocabulary was extended, and are not tuned on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor

from moviegen.data.world import (
    CAMERA_MOTIONS,
    COLORS,
    MOTION_PHRASES,
    MOTIONS,
    PHOTOS,
    SHAPE_WORDS,
    SHAPES,
    held_out_triples,
)
from moviegen.errors import MovieGenError
from moviegen.eval.world import EvalPrompt, score
from moviegen.files import read_json

OBJECTS_PER_TRIPLE = 2
CAMERAS_PER_MOTION = 2

_SHAPES = {
    "circle": ("sphere", "round dot", "orb", "round shape"),
    "square": ("cube", "tile", "four-sided shape", "cube shape"),
    "triangle": ("pyramid", "three-sided shape", "arrowhead", "triangular shape"),
}
# (finite clause, participle clause) per motion
_MOTIONS = {
    "left": (("drifts leftward", "drifting leftward"),
             ("heads toward the left edge", "heading to the left"),
             ("glides leftwards", "gliding off to the left")),
    "right": (("drifts rightward", "drifting rightward"),
              ("heads toward the right edge", "heading to the right"),
              ("glides rightwards", "gliding off to the right")),
    "up": (("floats upward", "floating upward"), ("climbs toward the top", "climbing toward the top"),
           ("ascends", "ascending")),
    "down": (("sinks toward the bottom", "sinking toward the bottom"), ("descends", "descending"),
             ("drops downward", "dropping downward")),
    "still": (("sits motionless", "sitting motionless"), ("stays put", "holding its position"),
              ("remains stationary", "frozen in place")),
}  # fmt: skip
_COLOR_FORMS = {
    "red": ("red", "bright red"), "green": ("green", "grass-green"), "blue": ("blue", "deep blue"),
    "yellow": ("yellow", "lemon yellow"), "white": ("white", "pure white"),
    "magenta": ("magenta", "hot pink"), "orange": ("orange", "bright orange"), "cyan": ("cyan", "turquoise"),
}  # fmt: skip
_OBJECT_FORMS = (
    "{a} {color} {shape} {finite}",
    "there is {a} {color} {shape} {participle}",
    "{color} {shape}, {participle}",
    "watch {a} {color} {shape} as it {finite}",
)

_PHOTO_WORDS = {
    "astronaut": ("a smiling spacewoman in her orange suit", "an official NASA crew photo"),
    "coffee": ("an espresso cup", "a mug of hot coffee with a spoon"),
    "chelsea": ("a kitten", "an orange tabby kitty"),
    "rocket": ("a spacecraft standing on its pad", "a launch vehicle waiting to lift off"),
    "immunohistochemistry": ("a microscope slide of stained tissue", "a histology sample"),
}
_CAMERA_FORMS = {
    "static": ("a still, locked-off shot of {x}", "{x}, filmed on a tripod without moving"),
    "pan left": ("the camera pans left across {x}", "{x}, the view panning toward the left"),
    "pan right": ("panning right over {x}", "the camera pans to the right across {x}"),
    "tilt up": ("the camera tilts up over {x}", "{x}, tilting the camera upward"),
    "tilt down": ("tilting down across {x}", "the camera tilts downward over {x}"),
    "zoom in": ("zooming in on {x}", "the camera zooms in closer to {x}"),
    "zoom out": ("zooming out from {x}", "the camera zooms out to reveal {x}"),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_paraphrases() -> list[EvalPrompt]:
    """:data:`OBJECTS_PER_TRIPLE` paraphrases of every held-out triple (kind ``held_out``)."""
    prompts = []
    for i, (color, shape, motion) in enumerate(held_out_triples()):
        for j in range(OBJECTS_PER_TRIPLE):
            k = i * OBJECTS_PER_TRIPLE + j
            colour = _COLOR_FORMS[color][k % 2]
            finite, participle = _MOTIONS[motion][k % 3]
            text = _OBJECT_FORMS[k % len(_OBJECT_FORMS)].format(
                a=_article(colour),
                color=colour,
                shape=_SHAPES[shape][k % 4],
                finite=finite,
                participle=participle,
            )
            prompts.append(EvalPrompt(text, "held_out", dict(color=color, shape=shape, motion=motion)))
    return prompts


def camera_paraphrases() -> list[EvalPrompt]:
    """:data:`CAMERAS_PER_MOTION` sentences per camera motion, the motion said in the prompt body."""
    photos = list(PHOTOS)
    prompts = []
    for i, motion in enumerate(CAMERA_MOTIONS):
        for j in range(CAMERAS_PER_MOTION):
            photo = photos[(i + 2 * j) % len(photos)]
            text = _CAMERA_FORMS[motion][j].format(x=_PHOTO_WORDS[photo][(i + j) % 2])
            prompts.append(EvalPrompt(text, "camera", dict(camera=motion, photo=photo)))
    return prompts


def paraphrase_prompts() -> list[EvalPrompt]:
    return object_paraphrases() + camera_paraphrases()


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text, re.I) is not None


def check_disjoint(prompts: list[EvalPrompt]) -> None:
    """Raise ``AssertionError`` if a prompt uses any shape noun, motion phrase or photo description of the
    world's captions, or the ``Camera:`` prefix."""
    shapes = {w for words in SHAPE_WORDS.values() for w in words}
    motions = {p for phrases in MOTION_PHRASES.values() for p in phrases}
    photos = {p for phrases in PHOTOS.values() for p in phrases}
    for p in prompts:
        used = [w for w in shapes | motions | photos if _has(p.prompt, w)]
        assert not used, f"{p.prompt!r} uses the world's caption words {used}"
        assert "camera:" not in p.prompt.lower(), p.prompt


def read_prompt_set(path: str | Path) -> list[EvalPrompt]:
    """A paraphrase set from a JSON list of ``{"prompt", "kind", "truth"}`` objects (see
    ``paraphrases_blind.json``), checked against the world's names."""
    data = read_json(path, "paraphrase set")
    if not isinstance(data, list) or not data:
        raise MovieGenError(f"paraphrase set {path} must be a non-empty JSON list")
    prompts = []
    for i, row in enumerate(data):
        where = f"paraphrase set {path}, item {i}"
        if not isinstance(row, dict) or set(row) != {"prompt", "kind", "truth"}:
            raise MovieGenError(f"{where}: needs exactly the keys prompt, kind, truth")
        kind, truth = row["kind"], row["truth"]
        if not isinstance(row["prompt"], str) or not row["prompt"].strip() or not isinstance(truth, dict):
            raise MovieGenError(f"{where}: prompt must be text and truth an object")
        valid = {"held_out": {"color": COLORS, "shape": SHAPES, "motion": MOTIONS},
                 "seen": {"color": COLORS, "shape": SHAPES, "motion": MOTIONS},
                 "camera": {"camera": CAMERA_MOTIONS, "photo": PHOTOS}}.get(kind)  # fmt: skip
        if valid is None or set(truth) != set(valid) or any(truth[k] not in v for k, v in valid.items()):
            raise MovieGenError(f"{where}: kind/truth are not world names: {kind!r} {truth!r}")
        prompts.append(EvalPrompt(row["prompt"], kind, truth))
    return prompts


BLIND_SET = Path(__file__).with_name("paraphrases_blind.json")
"""88 prompts written by someone who had seen the world's captions but not the rewriter's lexicon."""


def evaluate_paraphrases(
    generate: Callable[[EvalPrompt, int, bool], Tensor],
    prompts: Sequence[EvalPrompt],
    seeds: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Scores with and without rewriting; ``generate(prompt, seed, rewrite)`` returns a clip."""
    results, total, done = {}, 2 * len(prompts) * seeds, 0
    for rewrite in (True, False):
        items, videos = [], []
        for seed in range(seeds):
            for p in prompts:
                videos.append(generate(p, seed, rewrite))
                items.append(p)
                done += 1
                if progress is not None:
                    progress(done, total)
        results["rewritten" if rewrite else "as typed"] = score(items, videos)
    return results
