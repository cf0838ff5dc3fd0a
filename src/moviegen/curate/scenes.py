"""Stage 2, scene cuts and clips: PySceneDetect's content detector, then 4–16 s clips.

The content detector (HSV frame difference ≥ ``scene_threshold``, at most one boundary per
``min_shot_s``) runs over the analysis frames of the whole source. Its boundaries are then read in
context [choice]: an **isolated** boundary (no other one within ``shake_gap_s``) is a scene cut; boundaries
that come in bursts are not cuts but *shot boundaries inside* the shot — camera shake, flashes, strobing —
and are counted into each clip's ``shot_boundaries`` (the motion stage's shaky filter reads it).

Each scene, after the first ``trim_start_s`` of the source are dropped, becomes one clip, or several
equal ones when it is longer than ``max_clip_s``; pieces shorter than ``min_clip_s`` are recorded and
dropped (``too_short``). A clip ends at the last analysis frame before the next cut, so it never
contains a frame of the next scene although analysis frames are subsampled.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from scenedetect import ContentDetector, FrameTimecode
from scenedetect.detector import FlashFilter

from moviegen.curate.config import CurateConfig
from moviegen.curate.record import Clip, Frames, clip_id


def content_boundaries(frames: Frames, config: CurateConfig) -> list[int]:
    """Positions (analysis-frame numbers) where the content detector reports a new shot."""
    afps = 1.0 / frames.frame_interval_s
    detector = ContentDetector(
        threshold=config.scene_threshold,
        min_scene_len=max(1, round(config.min_shot_s * afps)),
        filter_mode=FlashFilter.Mode.SUPPRESS,
    )
    found: list[int] = []
    for k, rgb in enumerate(frames.rgb):
        timecode = FrameTimecode(k, fps=afps)
        for cut in detector.process_frame(timecode, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            found.append(int(cut.frame_num))
    return sorted(set(b for b in found if b > 0))


def split_boundaries(
    boundaries: list[int], frames: Frames, config: CurateConfig
) -> tuple[list[int], list[int]]:
    """Separate isolated boundaries (cuts) from bursts (shot boundaries); both as analysis positions."""
    times = frames.times
    cuts, bursts = [], []
    for j, b in enumerate(boundaries):
        near = [o for o in boundaries[max(0, j - 1) : j + 2] if o != b]
        if any(abs(times[o] - times[b]) < config.shake_gap_s for o in near):
            bursts.append(b)
        else:
            cuts.append(b)
    return cuts, bursts


def split(source: Clip, frames: Frames, config: CurateConfig) -> tuple[list[Clip], list[float]]:
    """The clips of a decoded source, and the scene-cut times (seconds) found in it."""
    boundaries = content_boundaries(frames, config)
    cuts, bursts = split_boundaries(boundaries, frames, config)
    index = frames.index
    n = len(index)
    burst_frames = np.asarray([index[b] for b in bursts], dtype=np.int64)
    edges = [0, *cuts, n]
    clips: list[Clip] = []
    trim = math.ceil(config.trim_start_s * frames.fps - 1e-9)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        start = int(index[a])
        end = int(index[b - 1]) + 1 if b < n else int(source.source_frames or index[-1] + 1)
        start = max(start, trim)
        if end <= start:
            continue
        length = end - start
        pieces = max(1, math.ceil(length / (config.max_clip_s * frames.fps) - 1e-9))
        bounds = [start + round(k * length / pieces) for k in range(pieces + 1)]
        for s, e in zip(bounds[:-1], bounds[1:], strict=True):
            clip = dataclasses.replace(
                source,
                clip_id=clip_id(source.source, len(clips)),
                clip_index=len(clips),
                start_frame=s,
                end_frame=e,
                frames=e - s,
                start_s=s / frames.fps,
                end_s=e / frames.fps,
                duration_s=(e - s) / frames.fps,
                shot_boundaries=int(((burst_frames >= s) & (burst_frames < e)).sum()),
            )
            if clip.duration_s < config.min_clip_s - 1e-9:
                clip = clip.drop("scenes", "too_short")
            clips.append(clip)
    return clips, [float(frames.times[c]) for c in cuts]
