"""Stage 6, content: frame embeddings, near-duplicate removal, clusters and sampling weights.

* ``embedding`` — by default a compact perceptual embedding computed here [choice]: for
  ``embedding_frames`` frames spread over the clip, the luma downscaled to 16×16 (zero mean, unit norm:
  invariant to brightness and contrast changes) and the chroma at 8×8 (weighted ½), concatenated and
  L2-normalised (1 536 numbers for 4 frames). With ``embedding_model`` set, the mean of a local CLIP image
  encoder's embeddings of the same frames (``moviegen.curate.vision``).
* **Near-duplicates** (``content_reason = "duplicate"``): clips are visited in order of decreasing
  ``quality`` (ties: source, then clip index); a clip whose cosine similarity to an already kept clip is
  ≥ ``dedup_threshold`` is dropped, with ``duplicate_of`` / ``duplicate_similarity`` naming that clip.
  Exact all-pairs search: fine for a machine's worth of clips; a cluster run of millions would shard it
  by cluster first.
* **Clusters**: k-means (k-means++ seeded with ``seed``, Lloyd iterations to convergence) over the
  embeddings of the final kept clips, ``clusters`` clusters (0: ``round(sqrt(n / 2))``); cluster ids
  are numbered by decreasing size. Each clip's sampling ``weight`` is ∝ 1/√(cluster size) (the paper's
  resampling), normalised to a mean of 1 over the kept clips.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from moviegen.curate.record import Clip, Frames

LUMA_SIDE = 16
CHROMA_SIDE = 8
CHROMA_WEIGHT = 0.5


class ImageEncoder(Protocol):
    def embed(self, images: list[np.ndarray]) -> np.ndarray: ...


def sample_frames(frames: Frames, count: int) -> list[np.ndarray]:
    """``count`` analysis frames at the centres of ``count`` equal parts of the clip."""
    n = len(frames)
    if n == 0:
        return []
    picks = sorted({min(n - 1, int((k + 0.5) * n / count)) for k in range(count)})
    return [frames.rgb[p] for p in picks]


def perceptual_embedding(images: Sequence[np.ndarray], count: int) -> np.ndarray:
    """The default embedding of a clip's sampled RGB frames (unit float32 vector)."""
    parts = []
    for k in range(count):
        rgb = images[min(len(images) - 1, k * len(images) // count)]
        ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        luma = cv2.resize(ycc[..., 0], (LUMA_SIDE, LUMA_SIDE), interpolation=cv2.INTER_AREA).astype(
            np.float32
        )
        luma = luma.ravel() - luma.mean()
        luma /= max(float(np.linalg.norm(luma)), 1e-6)
        chroma = cv2.resize(ycc[..., 1:], (CHROMA_SIDE, CHROMA_SIDE), interpolation=cv2.INTER_AREA)
        chroma = (chroma.astype(np.float32).ravel() - 128.0) / 128.0 * CHROMA_WEIGHT
        parts += [luma, chroma]
    vector = np.concatenate(parts)
    return (vector / max(float(np.linalg.norm(vector)), 1e-6)).astype(np.float32)


def embed(clip: Clip, frames: Frames, count: int, encoder: ImageEncoder | None = None) -> Clip:
    """Fill ``embedding`` of a kept clip (see the module docstring)."""
    if not clip.kept:
        return clip
    images = sample_frames(frames, count)
    if not images:
        return clip
    if encoder is None:
        vector = perceptual_embedding(images, count)
    else:
        vector = encoder.embed(images).mean(0)
        vector = (vector / max(float(np.linalg.norm(vector)), 1e-6)).astype(np.float32)
    return dataclasses.replace(clip, embedding=[float(x) for x in vector])


def _matrix(clips: Sequence[Clip]) -> np.ndarray:
    return np.asarray([c.embedding for c in clips], dtype=np.float32)


def deduplicate(clips: Sequence[Clip], threshold: float) -> list[Clip]:
    """Drop near-duplicates among the kept clips (others pass through); the input order is kept."""
    candidates = [i for i, c in enumerate(clips) if c.kept and c.embedding is not None]
    order = sorted(
        candidates, key=lambda i: (-(clips[i].quality or 0.0), clips[i].source, clips[i].clip_index)
    )
    out = list(clips)
    if not order:
        return out
    vectors = _matrix([clips[i] for i in order])
    kept: list[int] = []  # positions in `order`
    for pos, i in enumerate(order):
        if kept:
            sims = vectors[kept] @ vectors[pos]
            best = int(np.argmax(sims))
            if float(sims[best]) >= threshold:
                twin = clips[order[kept[best]]]
                out[i] = clips[i].drop(
                    "content", "duplicate", duplicate_of=twin.clip_id, duplicate_similarity=float(sims[best])
                )
                continue
        kept.append(pos)
    return out


def kmeans(vectors: np.ndarray, k: int, seed: int = 0, iterations: int = 100) -> np.ndarray:
    """Cluster labels of ``(n, d)`` vectors: k-means++ initialisation, Lloyd iterations (deterministic)."""
    n = len(vectors)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    x = vectors.astype(np.float64)
    centres = [x[int(rng.integers(n))]]
    for _ in range(1, k):
        d2 = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        total = float(d2.sum())
        if total <= 0:
            break
        centres.append(x[int(rng.choice(n, p=d2 / total))])
    c = np.stack(centres)
    labels = np.full(n, -1)
    for _ in range(iterations):
        d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        new = d.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(len(c)):
            members = x[labels == j]
            if len(members):
                c[j] = members.mean(0)
    return labels


def cluster(clips: Sequence[Clip], clusters: int = 0, seed: int = 0) -> list[Clip]:
    """Fill ``cluster``, ``cluster_size`` and ``weight`` of the kept clips (see the module docstring)."""
    idx = [i for i, c in enumerate(clips) if c.kept and c.embedding is not None]
    out = list(clips)
    if not idx:
        return out
    k = clusters or max(1, round(math.sqrt(len(idx) / 2)))
    labels = kmeans(_matrix([clips[i] for i in idx]), k, seed)
    sizes = np.bincount(labels)
    # renumber clusters by decreasing size, ties by first member
    first = {int(lab): pos for pos, lab in reversed(list(enumerate(labels)))}
    ranking = sorted(first, key=lambda lab: (-int(sizes[lab]), first[lab]))
    rename = {lab: r for r, lab in enumerate(ranking)}
    raw = np.array([1.0 / math.sqrt(sizes[lab]) for lab in labels])
    weights = raw * len(raw) / raw.sum()
    for pos, i in enumerate(idx):
        lab = int(labels[pos])
        out[i] = dataclasses.replace(
            clips[i], cluster=rename[lab], cluster_size=int(sizes[lab]), weight=float(weights[pos])
        )
    return out
