"""Stage 5, camera motion: one of the paper's 16 labels with a confidence, from global 2D motion.

Between consecutive analysis frames, the dense optical flow of the motion stage (sampled on textured
pixels) is fitted with a similarity transform (OpenCV ``estimateAffinePartial2D``, RANSAC): the motion of
the frame centre, a scale and a rotation. Per clip, the medians over frame pairs give

* ``camera_pan`` (> 0: the camera turns right, so the content moves left) and ``camera_tilt`` (> 0: up),
  in frame lengths (the longer side) per second;
* ``camera_zoom`` (> 0: in), natural-log scale per second; ``camera_roll`` (> 0: clockwise, so the
  content turns counter-clockwise on screen), degrees per second;
* ``camera_jitter`` — the RMS deviation of the per-pair centre motion from its median, in frame lengths
  per analysis frame (high-frequency shake).

Each component divided by its threshold (``camera_pan`` for pan and tilt, ``camera_zoom``, ``camera_roll``,
``camera_jitter``) is a *strength*. The label is ``shaky`` when the jitter is the strongest and ≥ 1,
else the strongest motion when ≥ 1, else ``static``. The confidence is the fraction of frame pairs that
agree with the label, times how clearly it beats the runner-up, times the fit's inlier ratio.

**What a 2D global-motion model cannot tell apart** (documented limitation): camera *rotation* and camera
*translation* produce the same image motion on a distant or flat scene, and differ only by parallax,
which a single similarity/homography fit does not model. So ``truck left/right`` are reported as
``pan left/right``, ``pedestal up/down`` as ``tilt up/down``, and ``dolly in/out`` as ``zoom in/out``:
this classifier emits 11 of the 16 labels (static, pan ×2, tilt ×2, zoom ×2, roll ×2, shaky).
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from moviegen.curate.config import CurateConfig
from moviegen.curate.motion import optical_flow
from moviegen.curate.record import Clip, Frames

GRID_STEP = 4
MIN_POINTS = 12

LABELS = {
    ("pan", 1): "pan right",
    ("pan", -1): "pan left",
    ("tilt", 1): "tilt up",
    ("tilt", -1): "tilt down",
    ("zoom", 1): "zoom in",
    ("zoom", -1): "zoom out",
    ("roll", 1): "roll clockwise",
    ("roll", -1): "roll counterclockwise",
}


def pair_motion(flow: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, float] | None:
    """``(pan, tilt, log-zoom, roll°)`` of the camera for one flow field (per pair), and the inlier ratio.

    Pan/tilt are in frame lengths, with the camera's sign convention (content moving left → pan > 0).
    """
    h, w = flow.shape[:2]
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    texture = np.hypot(gx, gy)
    ys, xs = np.mgrid[GRID_STEP // 2 : h : GRID_STEP, GRID_STEP // 2 : w : GRID_STEP]
    ys, xs = ys.ravel(), xs.ravel()
    keep = texture[ys, xs] > np.percentile(texture[ys, xs], 40)
    ys, xs = ys[keep], xs[keep]
    if len(xs) < MIN_POINTS:
        return None
    src = np.stack([xs, ys], 1).astype(np.float32)
    dst = src + flow[ys, xs]
    matrix, inliers = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0, maxIters=500, confidence=0.99
    )
    if matrix is None:
        return None
    a, b = float(matrix[0, 0]), float(matrix[1, 0])
    centre = np.array([w / 2, h / 2])
    moved = matrix[:, :2] @ centre + matrix[:, 2]
    dx, dy = (moved - centre) / max(h, w)
    scale = math.hypot(a, b)
    angle = math.degrees(math.atan2(b, a))  # > 0: content turns clockwise on screen (y down)
    values = np.array([-dx, dy, math.log(max(scale, 1e-6)), -angle])
    return values, float(inliers.mean()) if inliers is not None else 0.0


def camera(clip: Clip, frames: Frames, config: CurateConfig) -> Clip:
    """Label the clip's camera motion (see the module docstring). Never drops a clip."""
    if not clip.kept:
        return clip
    flow = optical_flow(frames)
    if len(flow) == 0:
        return dataclasses.replace(clip, camera_motion="static", camera_confidence=0.0)
    small = [
        cv2.resize(g, (flow.shape[2], flow.shape[1]), interpolation=cv2.INTER_AREA) for g in frames.gray[:-1]
    ]
    fits = [pair_motion(f, g) for f, g in zip(flow, small, strict=True)]
    good = [f for f in fits if f is not None]
    if not good:
        return dataclasses.replace(clip, camera_motion="static", camera_confidence=0.0)
    per_pair = np.stack([v for v, _ in good])  # (P, 4) per analysis-frame pair
    inlier = float(np.mean([r for _, r in good])) * len(good) / len(fits)
    dt = frames.frame_interval_s
    median = np.median(per_pair, axis=0)
    rates = median / dt  # per second
    jitter = float(np.sqrt(((per_pair[:, :2] - median[:2]) ** 2).sum(1).mean()))
    thresholds = np.array([config.camera_pan, config.camera_pan, config.camera_zoom, config.camera_roll])
    strength = np.abs(rates) / thresholds
    jitter_strength = jitter / config.camera_jitter
    order = np.argsort(-strength)
    top, runner = int(order[0]), float(strength[order[1]])
    names = ("pan", "tilt", "zoom", "roll")
    if jitter_strength >= 1 and jitter_strength >= strength[top]:
        label = "shaky"
        confidence = (1 - 1 / jitter_strength) * min(1.0, 2 * inlier)
    elif strength[top] >= 1:
        sign = 1 if rates[top] > 0 else -1
        label = LABELS[(names[top], sign)]
        per_second = per_pair[:, top] / dt
        agree = float(((np.sign(per_second) == sign) & (np.abs(per_second) >= 0.5 * thresholds[top])).mean())
        separation = 1 - max(runner, jitter_strength) / strength[top] if strength[top] > 0 else 0.0
        confidence = agree * min(1.0, 2 * max(0.0, separation)) * min(1.0, 2 * inlier)
    else:
        label = "static"
        calm = float((np.abs(per_pair / dt) < thresholds).all(axis=1).mean())
        confidence = calm * (1 - max(float(strength[top]), min(1.0, jitter_strength)))
    return dataclasses.replace(
        clip,
        camera_motion=label,
        camera_confidence=float(np.clip(confidence, 0.0, 1.0)),
        camera_pan=float(rates[0]),
        camera_tilt=float(rates[1]),
        camera_zoom=float(rates[2]),
        camera_roll=float(rates[3]),
        camera_jitter=jitter,
    )
