"""Stage 4, motion filters: static clips, slideshows, camera shake, too much motion.

Measured on the clip's analysis frames (``analysis_fps``, longer side ``analysis_size``):

* ``motion_score`` — VMAF-style motion: the mean absolute difference of consecutive luma frames blurred
  with VMAF's 5-tap Gaussian, and per frame the smaller of its differences to the previous and the next
  frame (VMAF's "motion2", which ignores single-frame spikes); averaged over the clip, in 8-bit levels;
* ``flow_magnitude`` — mean dense optical-flow magnitude (OpenCV's DIS optical flow, "fast" preset, at
  longer side ``flow_size``), in frame lengths (the longer side) per second;
* ``frozen_fraction`` — the fraction of consecutive frame pairs whose blurred difference is below
  ``frozen_diff``, and ``jumps`` — the number of changes between frozen stretches (runs of non-frozen
  pairs adding up to at least ``jump_diff``);
* ``shot_boundaries`` — content-detector boundaries inside the clip, from the scenes stage.

Decisions (``motion_reason``), in order: ``slideshow`` (frozen fraction ≥ ``slideshow_frozen`` with at
least ``slideshow_jumps`` jumps: still pictures with cuts or fades), ``static`` (motion score below
``min_motion`` and flow below ``min_flow``), ``shaky`` (at least ``shaky_boundaries`` shot boundaries: the
paper's shake filter by PySceneDetect boundary count), ``too_fast`` (flow above ``max_flow``).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from moviegen.curate.config import CurateConfig
from moviegen.curate.probe import analysis_size
from moviegen.curate.record import Clip, Frames

VMAF_BLUR = np.array([0.054488685, 0.244201342, 0.402619947, 0.244201342, 0.054488685], np.float32)


def blurred_differences(frames: Frames) -> np.ndarray:
    """``(N-1,)`` mean absolute differences of consecutive VMAF-blurred luma frames."""

    def compute() -> np.ndarray:
        if len(frames) < 2:
            return np.zeros(0, np.float32)
        blurred = [
            cv2.sepFilter2D(g, cv2.CV_32F, VMAF_BLUR, VMAF_BLUR, borderType=cv2.BORDER_REFLECT)
            for g in frames.gray
        ]
        return np.array([float(np.abs(b - a).mean()) for a, b in zip(blurred[:-1], blurred[1:], strict=True)])

    return frames.cached("blurred_differences", compute)


def optical_flow(frames: Frames) -> np.ndarray:
    """``(N-1, h, w, 2)`` DIS optical flow between consecutive analysis frames, longer side ``flow_size``."""

    def compute() -> np.ndarray:
        h, w = frames.gray.shape[1:] if len(frames) else (0, 0)
        fw, fh = analysis_size(w, h, frames.flow_size) if len(frames) else (2, 2)
        small = [cv2.resize(g, (fw, fh), interpolation=cv2.INTER_AREA).astype(np.uint8) for g in frames.gray]
        out = np.zeros((max(0, len(small) - 1), fh, fw, 2), np.float32)
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        for k in range(len(small) - 1):
            out[k] = dis.calc(small[k], small[k + 1], None)
        return out

    return frames.cached("optical_flow", compute)


def vmaf_motion(diffs: np.ndarray) -> float:
    """VMAF motion2: per frame the smaller of the differences to its neighbours, averaged."""
    if len(diffs) == 0:
        return 0.0
    if len(diffs) == 1:
        return float(diffs[0])
    return float(np.minimum(diffs[:-1], diffs[1:]).mean())


def count_jumps(diffs: np.ndarray, frozen: float, jump: float) -> int:
    """Runs of non-frozen frame pairs (between frozen ones) whose differences add up to ≥ ``jump``."""
    count, total, inside = 0, 0.0, False
    for d in diffs:
        if d >= frozen:
            total, inside = total + d, True
        elif inside:
            count += int(total >= jump)
            total, inside = 0.0, False
    return count + int(inside and total >= jump)


def motion(clip: Clip, frames: Frames, config: CurateConfig) -> Clip:
    """Measure motion and apply the motion filters (see the module docstring)."""
    if not clip.kept:
        return clip
    diffs = blurred_differences(frames)
    flow = optical_flow(frames)
    if len(flow):
        longer = max(flow.shape[1:3])
        magnitude = float(np.hypot(flow[..., 0], flow[..., 1]).mean()) / longer / frames.frame_interval_s
    else:
        magnitude = 0.0
    frozen = float((diffs < config.frozen_diff).mean()) if len(diffs) else 1.0
    jumps = count_jumps(diffs, config.frozen_diff, config.jump_diff)
    score = vmaf_motion(diffs)
    slideshow = frozen >= config.slideshow_frozen and jumps >= config.slideshow_jumps
    static = not slideshow and score < config.min_motion and magnitude < config.min_flow
    shaky = (clip.shot_boundaries or 0) >= config.shaky_boundaries
    clip = dataclasses.replace(
        clip,
        motion_score=score,
        flow_magnitude=magnitude,
        frozen_fraction=frozen,
        jumps=jumps,
        static=static,
        slideshow=slideshow,
        shaky=shaky,
    )
    if slideshow:
        return clip.drop("motion", "slideshow")
    if static:
        return clip.drop("motion", "static")
    if shaky:
        return clip.drop("motion", "shaky")
    if magnitude > config.max_flow:
        return clip.drop("motion", "too_fast")
    return clip
