"""Text-to-image on the built-in world (issue 16): does an image show the colour and shape it was asked for?

An image is a one-frame video; the world detector (:func:`moviegen.eval.world.detect_object`) reads its
colour and shape. Prompts name every colour × shape pair in two phrasings:

* ``captions`` — the world's own image-caption form (``a red ball``), what the model was trained on;
* ``paraphrases`` — sentence forms no world caption uses (``an image showing a deep blue orb``), with
  the shape nouns and colour forms of the paraphrase benchmark (:mod:`moviegen.eval.paraphrase`), so the
  score measures generalisation, not recall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from moviegen.data.world import COLORS, SHAPE_WORDS, SHAPES
from moviegen.eval.paraphrase import _COLOR_FORMS, _SHAPES, _article
from moviegen.eval.world import EvalPrompt, detect_object

PHRASINGS = ("captions", "paraphrases")
IMAGE_FORMS = (
    "a picture of {a} {color} {shape}",
    "an image showing {a} {color} {shape}",
    "{a} {color} {shape} all by itself",
    "still life: one {color} {shape}",
)


def image_prompts(phrasing: str = "captions") -> list[EvalPrompt]:
    """One prompt per colour × shape pair (``captions``) or two (``paraphrases``); truth = colour, shape."""
    if phrasing not in PHRASINGS:
        raise ValueError(f"phrasing must be one of {PHRASINGS}, got {phrasing!r}")
    prompts = []
    for i, color in enumerate(COLORS):
        for j, shape in enumerate(SHAPES):
            truth = dict(color=color, shape=shape)
            if phrasing == "captions":
                words = SHAPE_WORDS[shape][(i + j) % len(SHAPE_WORDS[shape])]
                prompts.append(EvalPrompt(f"a {color} {words}", "captions", truth))
                continue
            for k in range(2):
                n = 2 * (i * len(SHAPES) + j) + k
                colour = _COLOR_FORMS[color][n % 2]
                text = IMAGE_FORMS[n % len(IMAGE_FORMS)].format(
                    a=_article(colour), color=colour, shape=_SHAPES[shape][n % len(_SHAPES[shape])]
                )
                prompts.append(EvalPrompt(text, "paraphrases", truth))
    return prompts


def score_images(
    generate: Callable[[EvalPrompt, int], Tensor],
    prompts: Sequence[EvalPrompt],
    seeds: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Percent of images (``generate(prompt, seed)`` → ``(3, 1, H, W)``) whose detected colour / shape /
    both match the prompt, over ``seeds`` seeds per prompt."""
    hits = {"color": 0, "shape": 0, "both": 0}
    total = len(prompts) * seeds
    done = 0
    for prompt in prompts:
        for seed in range(seeds):
            image = generate(prompt, seed)
            if image.ndim != 4 or image.shape[1] != 1:
                raise ValueError(f"expected a one-frame image (3, 1, H, W), got {tuple(image.shape)}")
            found = detect_object(image)
            color, shape = found.color == prompt.truth["color"], found.shape == prompt.truth["shape"]
            hits["color"] += color
            hits["shape"] += shape
            hits["both"] += color and shape
            done += 1
            if progress:
                progress(done, total)
    return {k: 100.0 * v / max(total, 1) for k, v in hits.items()} | {"images": total}
