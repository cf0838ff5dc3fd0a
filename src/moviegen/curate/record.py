"""The clip record every stage reads and returns, the decoded frames they analyse, and the manifest schema.

A :class:`Clip` is one row of ``manifest.parquet``: a frozen dataclass, so a stage is a pure function
``stage(clip, ...) -> Clip`` that returns a copy with its fields filled in (``dataclasses.replace``).
A source that cannot be read is one record with ``clip_index = -1`` and a ``probe_reason``.

Each stage that can drop a clip writes its reason into ``<stage>_reason`` (``None``: passed, or not
reached because an earlier stage dropped the clip; later stages leave dropped clips untouched).
``kept`` is true when no stage dropped the clip and ``reason`` is ``"<stage>:<reason>"`` of the first
stage that did.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

NEEDS_CAPTION = "needs_caption"
"""``caption_source`` of a kept clip that neither a captioner nor a sidecar captioned."""
DROP_STAGES = ("probe", "scenes", "visual", "motion", "captions", "content", "buckets", "subsets")
"""Stages that may drop a clip, in pipeline order (camera and clustering only annotate)."""


@dataclass(frozen=True)
class Clip:
    """One clip (or one unreadable source): its place in the source, every score, label and decision."""

    clip_id: str
    source: str
    clip_index: int = -1
    # probe
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    source_duration_s: float | None = None
    source_frames: int | None = None
    # scenes
    start_s: float | None = None
    end_s: float | None = None
    start_frame: int | None = None
    end_frame: int | None = None
    frames: int | None = None
    duration_s: float | None = None
    shot_boundaries: int | None = None
    # visual
    aspect: str | None = None
    text_area: float | None = None
    sharpness: float | None = None
    exposure: float | None = None
    colorfulness: float | None = None
    border: float | None = None
    quality: float | None = None
    aesthetic: float | None = None
    # motion
    motion_score: float | None = None
    flow_magnitude: float | None = None
    frozen_fraction: float | None = None
    jumps: int | None = None
    static: bool | None = None
    slideshow: bool | None = None
    shaky: bool | None = None
    # camera
    camera_motion: str | None = None
    camera_confidence: float | None = None
    camera_pan: float | None = None
    camera_tilt: float | None = None
    camera_zoom: float | None = None
    camera_roll: float | None = None
    camera_jitter: float | None = None
    # content
    embedding: list[float] | None = None
    duplicate_of: str | None = None
    duplicate_similarity: float | None = None
    cluster: int | None = None
    cluster_size: int | None = None
    weight: float | None = None
    # captions
    caption: str | None = None
    caption_source: str | None = None
    prompt: str | None = None
    # subsets and buckets
    concept: str | None = None
    concept_score: float | None = None
    subset_level: int | None = None
    bucket: str | None = None
    clip_path: str | None = None
    # decisions
    probe_reason: str | None = None
    scenes_reason: str | None = None
    visual_reason: str | None = None
    motion_reason: str | None = None
    captions_reason: str | None = None
    content_reason: str | None = None
    buckets_reason: str | None = None
    subsets_reason: str | None = None

    @property
    def reason(self) -> str | None:
        """``"<stage>:<reason>"`` of the first stage that dropped the clip, or None."""
        for stage in DROP_STAGES:
            value = getattr(self, f"{stage}_reason")
            if value is not None:
                return f"{stage}:{value}"
        return None

    @property
    def kept(self) -> bool:
        return self.reason is None

    def drop(self, stage: str, reason: str, **changes: Any) -> Clip:
        """A copy dropped by ``stage`` for ``reason`` (with other fields changed too)."""
        if stage not in DROP_STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        return dataclasses.replace(self, **{f"{stage}_reason": reason}, **changes)

    def to_row(self) -> dict[str, Any]:
        """The manifest row: every field plus ``kept`` and ``reason``."""
        row = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        row["kept"] = self.kept
        row["reason"] = self.reason
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Clip:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        if values.get("embedding") is not None:
            values["embedding"] = [float(x) for x in values["embedding"]]
        return cls(**values)


def _plain(value: Any) -> Any:
    """Numpy scalars → Python scalars (JSON and Arrow friendly)."""
    return value.item() if isinstance(value, np.generic) else value


def source_key(source: str | Path) -> str:
    """A stable short id of a source path (the name of its result file)."""
    return hashlib.sha1(str(source).encode()).hexdigest()[:12]


def clip_id(source: str | Path, index: int) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(source).stem)[:40]
    return f"{stem}-{source_key(source)[:8]}" + ("" if index < 0 else f"-{index:03d}")


@dataclass
class Frames:
    """Decoded frames of a source (or a window of it) for analysis.

    ``rgb``: ``(N, h, w, 3)`` uint8 analysis frames (resampled to about ``analysis_fps``, longer side
    ``analysis_size``); ``index``: each one's frame number in the source; ``stills``: ``(frame number,
    rgb)`` full-resolution frames (longer side capped), one every ``still_interval_s``; ``fps``: the
    source frame rate. Frame ``i`` of the source is at ``i / fps`` seconds. Derived arrays (grey
    levels, optical flow) are computed once per window and cached.
    """

    rgb: np.ndarray
    index: np.ndarray
    stills: list[tuple[int, np.ndarray]]
    fps: float
    width: int
    height: int
    flow_size: int = 160
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.rgb)

    @property
    def times(self) -> np.ndarray:
        return self.index / self.fps

    @property
    def frame_interval_s(self) -> float:
        """Mean seconds between consecutive analysis frames."""
        if len(self.index) < 2:
            return 1.0 / self.fps
        return float(self.index[-1] - self.index[0]) / (len(self.index) - 1) / self.fps

    def window(self, start_frame: int, end_frame: int) -> Frames:
        """The analysis frames and stills with source frame numbers in ``[start_frame, end_frame)``."""
        keep = (self.index >= start_frame) & (self.index < end_frame)
        stills = [(i, s) for i, s in self.stills if start_frame <= i < end_frame]
        return Frames(
            self.rgb[keep], self.index[keep], stills, self.fps, self.width, self.height, self.flow_size
        )

    @cached_property
    def gray(self) -> np.ndarray:
        """``(N, h, w)`` float32 luma (BT.601) of the analysis frames."""
        rgb = self.rgb.astype(np.float32)
        return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114

    def cached(self, key: str, compute: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]
