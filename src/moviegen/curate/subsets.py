"""Stage 8, subsets and buckets: the staged training subsets and the aspect × duration bucket of each clip.

Run over all clips at once, after deduplication:

* :func:`assign_buckets` — :meth:`moviegen.data.buckets.BucketGrid.assign` on the clip's height, width
  and frame count (what ``moviegen cache`` will do with the cut clip); a clip shorter than the grid's
  shortest duration is dropped (``buckets_reason = "no_bucket"``).
* :func:`concept_filter` — optional (``concepts`` / ``concepts_file``): zero-shot text retrieval of each
  caption over the concept list with the offline MiniLM encoder (mean-pooled, cosine similarity);
  ``concept`` / ``concept_score`` name the best match, a match needs ``concept_threshold``. Non-matching
  clips, least similar first, are dropped (``concept``) until at least ``concept_fraction`` of the kept
  clips match (the paper: ≥ 60 % with humans over a 600-concept list; 1.0 keeps only matches).
* :func:`balance_aspect` — when ``landscape_fraction`` is set and both orientations are present, the
  over-represented orientation is cut, lowest quality first (``aspect_mix``), to that share of the
  landscape + portrait clips (the paper's final 80 % / 20 %); square clips are not counted.
* :func:`subset_levels` — ``subset_level``: how many of the ascending ``subset_min_sides`` (the paper's
  720 → 768 stages) the clip's shorter side reaches; stage ``k`` trains on clips with level ≥ ``k``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moviegen.curate.config import CurateConfig
from moviegen.curate.record import Clip
from moviegen.data.buckets import BucketGrid
from moviegen.errors import MovieGenError


def assign_buckets(clips: Sequence[Clip], grid: BucketGrid) -> list[Clip]:
    out = []
    for clip in clips:
        if not clip.kept:
            out.append(clip)
            continue
        bucket = grid.assign(int(clip.height), int(clip.width), int(clip.frames))
        if bucket is None:
            out.append(clip.drop("buckets", "no_bucket"))
        else:
            out.append(dataclasses.replace(clip, bucket=bucket.name))
    return out


def load_concepts(config: CurateConfig) -> list[str]:
    """The concept list: ``concepts`` plus the non-empty lines of ``concepts_file``."""
    concepts = [c.strip() for c in config.concepts if c.strip()]
    if config.concepts_file:
        path = Path(config.concepts_file)
        try:
            concepts += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise MovieGenError(f"cannot read concepts file {path}: {e}") from None
    return list(dict.fromkeys(concepts))


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from the packaged MiniLM (offline)."""

    def __init__(self) -> None:
        from moviegen.models.text import MiniLMTextEncoder

        self.encoder = MiniLMTextEncoder()

    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for s in range(0, len(texts), 64):
            hidden, mask = self.encoder.encode(texts[s : s + 64])
            m = mask.float()[..., None]
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            out.append(np.asarray(pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-6)))
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def concept_filter(
    clips: Sequence[Clip], concepts: list[str], config: CurateConfig, encoder: SentenceEncoder | None = None
) -> list[Clip]:
    out = list(clips)
    idx = [i for i, c in enumerate(clips) if c.kept and c.caption]
    if not concepts or not idx:
        return out
    encoder = encoder or SentenceEncoder()
    sims = encoder.embed([clips[i].caption for i in idx]) @ encoder.embed(concepts).T
    best = sims.argmax(1)
    for pos, i in enumerate(idx):
        out[i] = dataclasses.replace(
            clips[i], concept=concepts[best[pos]], concept_score=float(sims[pos, best[pos]])
        )
    kept = [i for i, c in enumerate(out) if c.kept]
    misses = sorted(
        (i for i in kept if (out[i].concept_score or -1.0) < config.concept_threshold),
        key=lambda i: (out[i].concept_score if out[i].concept_score is not None else -1.0, out[i].clip_id),
    )
    hits = len(kept) - len(misses)
    # drop the least similar misses until hits / kept >= concept_fraction
    allowed = math.floor(hits * (1 - config.concept_fraction) / config.concept_fraction + 1e-9)
    for i in misses[: max(0, len(misses) - allowed)]:
        out[i] = out[i].drop("subsets", "concept")
    return out


def balance_aspect(clips: Sequence[Clip], landscape_fraction: float | None) -> list[Clip]:
    out = list(clips)
    if landscape_fraction is None:
        return out
    land = [i for i, c in enumerate(clips) if c.kept and c.aspect == "landscape"]
    port = [i for i, c in enumerate(clips) if c.kept and c.aspect == "portrait"]
    if not land or not port:
        return out
    f = landscape_fraction
    if len(land) / (len(land) + len(port)) > f:
        excess, keep = land, math.floor(f / (1 - f) * len(port) + 1e-9)
    else:
        excess, keep = port, math.floor((1 - f) / f * len(land) + 1e-9)
    keep = max(1, keep)
    ranked = sorted(excess, key=lambda i: (-(clips[i].quality or 0.0), clips[i].clip_id))
    for i in ranked[keep:]:
        out[i] = out[i].drop("subsets", "aspect_mix")
    return out


def subset_levels(clips: Sequence[Clip], sides: Sequence[int]) -> list[Clip]:
    out = []
    for clip in clips:
        if clip.kept:
            side = min(int(clip.width), int(clip.height))
            clip = dataclasses.replace(clip, subset_level=sum(side >= s for s in sides))
        out.append(clip)
    return out


def subsets(
    clips: Sequence[Clip], config: CurateConfig, encoder: SentenceEncoder | None = None
) -> list[Clip]:
    """Concept filter, landscape/portrait mix and subset levels, in that order."""
    out = concept_filter(clips, load_concepts(config), config, encoder)
    out = balance_aspect(out, config.landscape_fraction)
    return subset_levels(out, config.subset_min_sides)
