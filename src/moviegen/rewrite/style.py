"""What a model's training captions look like: the style a prompt rewriter writes in (paper §3.6).

The paper rewrites every user prompt into the style of the training captions before encoding it, since a
model follows best the kind of text it was trained on. A :class:`CaptionStyle` tells a rewriter what that
is for one model: the words its captions use for each attribute, how a caption is put together, which
camera-motion labels it was trained with, and a few example captions (for LLM rewriters).

A pipeline names its style in ``model_index.json`` (``"caption_style": "world"``); :func:`caption_style`
finds it. A model trained on free-form captions has no style, and its rewriter only moves camera-motion
phrases into the ``Camera: <label>.`` prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from moviegen.errors import MovieGenError


@dataclass(frozen=True)
class CaptionStyle:
    """The vocabulary and form of a model's training captions.

    * ``colors``: the colour names captions use;
    * ``shapes`` / ``motions``: concept → the caption's canonical word or phrase for it;
    * ``subjects``: subject key → caption phrases (the first is canonical);
    * ``camera_motions``: the ``Camera:`` labels the model was trained with;
    * ``object_caption(color, shape, motion)``: the caption of one object, any part may be None;
    * ``examples``: a few real training captions.
    """

    name: str
    colors: tuple[str, ...]
    shapes: Mapping[str, str]
    motions: Mapping[str, str]
    subjects: Mapping[str, tuple[str, ...]]
    camera_motions: tuple[str, ...]
    object_caption: Callable[[str | None, str | None, str | None], str] = field(repr=False)
    examples: tuple[str, ...] = ()
    summary: str = ""

    def describe(self) -> str:
        """One line on what a model of this style knows (for warnings)."""
        return self.summary or f"the {self.name} captions"


def caption_style(name: str | None) -> CaptionStyle | None:
    """The style a pipeline index names; ``None`` for free-form captions."""
    if name is None:
        return None
    if name == "world":
        from moviegen.data.world import CAPTION_STYLE

        return CAPTION_STYLE
    raise MovieGenError(f"unknown caption style {name!r} (known: world)")
