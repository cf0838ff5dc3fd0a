"""Stage 3, visual filters: minimum side, aspect class, burned-in text, quality/aesthetics, borders.

Decisions, in order (``visual_reason``): ``min_side`` (shorter side < ``min_side``), ``border``
(letterbox / pillarbox / large uniform frame covering more than ``max_border`` of the frame), ``text``
(OCR text boxes covering more than ``max_text_area`` of some sampled frame), ``quality`` (classical
score < ``min_quality``), ``aesthetic`` (CLIP predictor score < ``min_aesthetic``, when configured).

Scores are measured on up to ``visual_samples`` full-resolution stills spread over the clip:

* ``sharpness`` — variance ``v`` of the Laplacian of the luma (downscaled to a longer side of at most
  512, never upscaled), mapped to [0, 1] by ``log10(1 + v) / 3`` (1 from ``v`` ≈ 1000 up);
* ``exposure`` — 1 at mid-grey mean luma, falling linearly to 0 at black/white, times the fraction of
  pixels that are not clipped (luma ≤ 8 or ≥ 247);
* ``colorfulness`` — Hasler & Süsstrunk's colourfulness metric / 100, capped at 1;
* ``border`` — the fraction of the frame covered by flat bars (rows/columns from an edge inward whose
  luma spread is < 4 levels, and that stay constant across the samples);
* ``quality`` — ``sharpness^0.5 · exposure^0.3 · colorfulness^0.2`` over the frame inside the borders
  [choice: a transparent classical default; a learned predictor plugs in as ``aesthetic``];
* ``text_area`` — the largest union area of RapidOCR's text-detection boxes (PP-OCRv4 det, ONNX, the
  model ships in the ``rapidocr-onnxruntime`` wheel) over ``ocr_samples`` stills, as a fraction.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import cv2
import numpy as np

from moviegen.curate.config import CurateConfig
from moviegen.curate.record import Clip, Frames

WORK_SIDE = 512
FLAT_SPREAD = 4.0
BAR_DRIFT = 3.0


class AestheticScorer(Protocol):
    def score(self, images: list[np.ndarray]) -> float: ...


def aspect_class(width: int, height: int, tolerance: float = 1.1) -> str:
    """``landscape`` (w/h > tolerance), ``portrait`` (h/w > tolerance) or ``square``."""
    if width > tolerance * height:
        return "landscape"
    if height > tolerance * width:
        return "portrait"
    return "square"


def _spread(values: np.ndarray) -> np.ndarray:
    return np.percentile(values, 95, axis=-1) - np.percentile(values, 5, axis=-1)


def border_box(stills: list[np.ndarray]) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` widths in pixels of flat, constant bars at the frame edges."""
    gray = np.stack([cv2.cvtColor(s, cv2.COLOR_RGB2GRAY).astype(np.float32) for s in stills])
    h, w = gray.shape[1:]

    def run(lines: np.ndarray, limit: int) -> int:
        # lines: (samples, n, length) ordered from the edge inward
        flat = (_spread(lines).max(axis=0) < FLAT_SPREAD) & (np.ptp(lines.mean(-1), axis=0) < BAR_DRIFT)
        count = 0
        while count < limit and flat[count]:
            count += 1
        return count

    top = run(gray, h // 2)
    bottom = run(gray[:, ::-1], h // 2)
    cols = gray.transpose(0, 2, 1)
    left = run(cols, w // 2)
    right = run(cols[:, ::-1], w // 2)
    return top, bottom, left, right


def border_fraction(box: tuple[int, int, int, int], height: int, width: int) -> float:
    top, bottom, left, right = box
    inner_h = max(0, height - top - bottom)
    inner_w = max(0, width - left - right)
    return 1.0 - inner_h * inner_w / (height * width)


def classical_scores(stills: list[np.ndarray]) -> dict[str, float]:
    """``sharpness``, ``exposure``, ``colorfulness``, ``border`` and ``quality`` of RGB stills."""
    h, w = stills[0].shape[:2]
    box = border_box(stills) if len(stills) > 1 else (0, 0, 0, 0)
    border = border_fraction(box, h, w)
    top, bottom, left, right = box
    sharp, expo, colour = [], [], []
    for still in stills:
        inner = still[top : h - bottom or None, left : w - right or None]
        if inner.shape[0] < 8 or inner.shape[1] < 8:
            inner = still
        scale = WORK_SIDE / max(inner.shape[:2])
        work = (
            cv2.resize(inner, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else inner
        )
        gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
        v = float(cv2.Laplacian(gray, cv2.CV_64F).var())
        sharp.append(min(1.0, np.log10(1.0 + v) / 3.0))
        mean = float(gray.mean())
        clipped = float(((gray <= 8) | (gray >= 247)).mean())
        expo.append(max(0.0, 1.0 - abs(mean - 127.5) / 127.5) * (1.0 - clipped))
        rgb = work.astype(np.float32)
        rg = rgb[..., 0] - rgb[..., 1]
        yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
        m = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
        colour.append(min(1.0, float(m) / 100.0))
    scores = {
        "sharpness": float(np.mean(sharp)),
        "exposure": float(np.mean(expo)),
        "colorfulness": float(np.mean(colour)),
        "border": border,
    }
    scores["quality"] = scores["sharpness"] ** 0.5 * scores["exposure"] ** 0.3 * scores["colorfulness"] ** 0.2
    return scores


class TextDetector:
    """RapidOCR's text detector (detection only: recognition is not needed to measure text area)."""

    def __init__(self, max_side: int = 640):
        from rapidocr_onnxruntime import RapidOCR

        engine = RapidOCR(
            det_limit_side_len=max_side,
            det_limit_type="max",
            intra_op_num_threads=1,
            inter_op_num_threads=1,
        )
        self.detector = engine.text_det

    def text_area(self, rgb: np.ndarray) -> float:
        """The fraction of the image covered by the union of detected text boxes."""
        boxes, _ = self.detector(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if boxes is None or len(boxes) == 0:
            return 0.0
        mask = np.zeros(rgb.shape[:2], np.uint8)
        for box in boxes:
            cv2.fillPoly(mask, [np.round(np.asarray(box)).astype(np.int32)], 1)
        return float(mask.mean())


def _spread_samples(items: list[Any], count: int) -> list[Any]:
    if count <= 0 or not items:
        return []
    if len(items) <= count:
        return list(items)
    picks = np.linspace(0, len(items) - 1, count + 2)[1:-1].round().astype(int)
    return [items[i] for i in picks]


def visual(
    clip: Clip,
    frames: Frames,
    config: CurateConfig,
    text_detector: TextDetector | None = None,
    aesthetic: AestheticScorer | None = None,
) -> Clip:
    """Score a clip's stills and apply the visual filters (see the module docstring)."""
    if not clip.kept:
        return clip
    aspect = aspect_class(clip.width, clip.height, config.aspect_tolerance)
    clip = dataclasses.replace(clip, aspect=aspect)
    if min(clip.width, clip.height) < config.min_side:
        return clip.drop("visual", "min_side")
    stills = [s for _, s in frames.stills] or [frames.rgb[len(frames) // 2]]
    scores = classical_scores(_spread_samples(stills, config.visual_samples))
    text = 0.0
    if config.ocr and text_detector is not None:
        for still in _spread_samples(stills, config.ocr_samples):
            text = max(text, text_detector.text_area(still))
    aesthetic_score = None
    if aesthetic is not None:
        aesthetic_score = aesthetic.score(_spread_samples(stills, config.visual_samples))
    clip = dataclasses.replace(clip, text_area=text, aesthetic=aesthetic_score, **scores)
    if scores["border"] > config.max_border:
        return clip.drop("visual", "border")
    if text > config.max_text_area:
        return clip.drop("visual", "text")
    if scores["quality"] < config.min_quality:
        return clip.drop("visual", "quality")
    if (
        aesthetic_score is not None
        and config.min_aesthetic is not None
        and aesthetic_score < config.min_aesthetic
    ):
        return clip.drop("visual", "aesthetic")
    return clip
