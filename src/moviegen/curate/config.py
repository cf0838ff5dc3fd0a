"""The curation pipeline's settings: one frozen config, JSON overrides, unknown keys rejected.

Units: seconds for times; *motion rates* (pan/tilt, flow) in fractions of the frame's longer side per
second, zoom in natural-log scale per second, roll in degrees per second, so that thresholds do not depend
on resolution or frame rate. Scores measured "per analysis frame" use frames resampled to
``analysis_fps`` and ``analysis_size`` (the longer side), again to make them comparable across sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from moviegen.config import Config, require
from moviegen.data.buckets import BucketGrid

ASPECT_CLASSES = ("landscape", "portrait", "square")


@dataclass(frozen=True)
class CurateConfig(Config):
    """Every threshold of every stage. Presets: ``paper`` (the defaults) and ``tiny`` (low-res tests).

    The defaults follow the paper where it gives a number (min side 720 → 768, 4–16 s clips, 80 %
    landscape / 20 % portrait, ≥ 60 % of clips matching the concept list when one is given); the other
    thresholds are [choice]s calibrated on synthetic clips (see ``moviegen.curate.synthetic``).

    ``require_caption`` is false by default: the normal first run has neither sidecars nor a local VLM,
    and every clip that passes the filters is kept and marked ``caption_source = "needs_caption"``
    (the paper captions after filtering, so the filters never depend on a caption). ``device`` is not part
    of a run's identity: a run resumes on another device.
    """

    # decoding: analysis frames (every stage but the visual one) and full-resolution stills
    analysis_fps: float = 12.0
    analysis_size: int = 256
    still_interval_s: float = 1.0
    still_max_side: int = 1280
    # scenes: PySceneDetect content detector; clips of min_clip_s..max_clip_s after trimming the source
    trim_start_s: float = 1.0
    min_clip_s: float = 4.0
    max_clip_s: float = 16.0
    scene_threshold: float = 27.0
    min_shot_s: float = 0.3
    shake_gap_s: float = 1.0
    # visual
    min_side: int = 720
    aspect_tolerance: float = 1.1
    visual_samples: int = 3
    ocr: bool = True
    ocr_samples: int = 2
    ocr_max_side: int = 640
    max_text_area: float = 0.02
    max_border: float = 0.08
    min_quality: float = 0.45
    aesthetic_model: str | None = None
    min_aesthetic: float | None = None
    # motion
    min_motion: float = 0.3
    min_flow: float = 0.01
    max_flow: float = 1.0
    frozen_diff: float = 0.25
    jump_diff: float = 2.0
    slideshow_frozen: float = 0.6
    slideshow_jumps: int = 2
    shaky_boundaries: int = 2
    flow_size: int = 160
    # camera motion (thresholds of the dominant component; jitter per analysis frame)
    camera_pan: float = 0.03
    camera_zoom: float = 0.03
    camera_roll: float = 2.0
    camera_jitter: float = 0.008
    camera_prefix_confidence: float = 0.5
    # content
    embedding_model: str | None = None
    embedding_frames: int = 4
    dedup_threshold: float = 0.95
    clusters: int = 0
    seed: int = 0
    # captions
    captioner: str | None = None
    caption_prompt: str = ""
    caption_max_tokens: int = 60
    require_caption: bool = False
    # models: where the embedder, aesthetic scorer and captioner run ("cpu", "cuda", "cuda:1")
    device: str = "cpu"
    # subsets
    subset_min_sides: tuple[int, ...] = (720, 768)
    landscape_fraction: float | None = 0.8
    concepts: tuple[str, ...] = ()
    concepts_file: str | None = None
    concept_threshold: float = 0.35
    concept_fraction: float = 0.6
    # buckets
    grid: str = "paper-768"
    grid_sizes: tuple[tuple[int, int], ...] | None = None
    grid_durations: tuple[int, ...] | None = None

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "tiny": {
            "trim_start_s": 0.5,
            "min_clip_s": 2.0,
            "max_clip_s": 5.0,
            "min_side": 128,
            "subset_min_sides": (128, 144),
            "landscape_fraction": None,
            "grid": "tiny",
        },
    }

    def validate(self) -> None:
        owner = type(self).__name__
        positive = (
            "analysis_fps",
            "analysis_size",
            "still_interval_s",
            "still_max_side",
            "min_clip_s",
            "max_clip_s",
            "scene_threshold",
            "min_side",
            "visual_samples",
            "ocr_max_side",
            "flow_size",
            "camera_pan",
            "camera_zoom",
            "camera_roll",
            "camera_jitter",
            "embedding_frames",
            "caption_max_tokens",
        )
        for key in positive:
            require(getattr(self, key) > 0, owner, f"{key} must be positive, got {getattr(self, key)!r}")
        require(self.trim_start_s >= 0, owner, "trim_start_s must be >= 0")
        require(self.max_clip_s >= self.min_clip_s, owner, "max_clip_s must be >= min_clip_s")
        require(self.aspect_tolerance >= 1, owner, "aspect_tolerance must be >= 1")
        require(self.ocr_samples >= 0, owner, "ocr_samples must be >= 0")
        for key in ("max_text_area", "max_border", "slideshow_frozen", "camera_prefix_confidence"):
            require(0 <= getattr(self, key) <= 1, owner, f"{key} must be in [0, 1]")
        require(-1 <= self.dedup_threshold <= 1, owner, "dedup_threshold must be in [-1, 1]")
        require(self.clusters >= 0, owner, "clusters must be >= 0 (0: automatic)")
        require(self.min_flow <= self.max_flow, owner, "min_flow must be <= max_flow")
        require(self.slideshow_jumps >= 1 and self.shaky_boundaries >= 1, owner, "counts must be >= 1")
        require(
            list(self.subset_min_sides) == sorted(self.subset_min_sides)
            and all(s > 0 for s in self.subset_min_sides),
            owner,
            "subset_min_sides must be positive and ascending",
        )
        if self.landscape_fraction is not None:
            require(0 < self.landscape_fraction < 1, owner, "landscape_fraction must be in (0, 1) or null")
        require(0 < self.concept_fraction <= 1, owner, "concept_fraction must be in (0, 1]")
        self.bucket_grid()  # raises on an unknown preset or invalid sizes

    def bucket_grid(self) -> BucketGrid:
        """The bucket grid: the ``grid`` preset with ``grid_sizes`` / ``grid_durations`` overrides."""
        overrides: dict[str, Any] = {}
        if self.grid_sizes is not None:
            overrides["aspect_sizes"] = self.grid_sizes
        if self.grid_durations is not None:
            overrides["durations"] = self.grid_durations
        return BucketGrid.preset(self.grid, **overrides)
