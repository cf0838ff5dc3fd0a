"""A synthetic, seeded video corpus with known ground truth, for testing and benchmarking curation.

Every clip is rendered by a virtual camera looking at a textured "world" image (a colour gradient with
hundreds of soft ellipses: texture for motion estimation, no text-like strokes). Camera motions are
defined on the camera, as in the paper's labels: ``pan right`` moves the view window right (the content
moves left on screen), ``tilt up`` moves it up, ``zoom in`` narrows it, ``roll clockwise`` rotates it
clockwise (the content turns counter-clockwise on screen).

:func:`make_corpus` writes a folder of named videos with planted defects and returns the ground truth
for each file (see its docstring).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch

from moviegen.video import VideoWriter

SLIDE_FADE_S = 0.5
"""Cross-fade length between the pictures of a synthetic slideshow."""

MOTIONS = {
    # name: (pan, tilt, zoom, roll) — pan/tilt in view widths per second, zoom log/s, roll deg/s
    "static": (0.0, 0.0, 0.0, 0.0),
    "pan left": (-1.0, 0.0, 0.0, 0.0),
    "pan right": (1.0, 0.0, 0.0, 0.0),
    "tilt up": (0.0, -1.0, 0.0, 0.0),
    "tilt down": (0.0, 1.0, 0.0, 0.0),
    "zoom in": (0.0, 0.0, 1.0, 0.0),
    "zoom out": (0.0, 0.0, -1.0, 0.0),
    "roll clockwise": (0.0, 0.0, 0.0, 1.0),
    "roll counterclockwise": (0.0, 0.0, 0.0, -1.0),
}


def world_image(seed: int, height: int, width: int, blobs_per_kpx: float = 1.1) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 texture: a random gradient with random soft ellipses."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(50, 200, 3).astype(np.float32)
    grad = rng.uniform(-70, 70, (2, 3)).astype(np.float32)
    img = base + (xx / width)[..., None] * grad[0] + (yy / height)[..., None] * grad[1]
    img = np.ascontiguousarray(img, dtype=np.float32)
    scale = min(height, width)
    for _ in range(int(height * width / 1000 * blobs_per_kpx)):
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        ax = int(rng.uniform(0.01, 0.035) * scale) + 2
        axes = (ax, max(2, int(ax * rng.uniform(0.5, 1.5))))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), max(0.6, scale / 900))
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass
class Shot:
    """``seconds`` of one camera motion over the world of ``seed`` (``speed`` scales the motion)."""

    seconds: float
    motion: str = "static"
    seed: int = 0
    speed: float = 0.08
    shake: float = 0.0
    text: str | None = None
    slideshow: float | None = None
    letterbox: float = 0.0
    blur: float = 0.0
    brightness: float = 0.0


def render_shot(shot: Shot, height: int, width: int, fps: float) -> np.ndarray:
    """``(T, height, width, 3)`` uint8 frames of one shot."""
    frames = max(1, round(shot.seconds * fps))
    wh, ww = 3 * height, 3 * width
    world = world_image(shot.seed, wh, ww)
    pan, tilt, zoom, roll = (shot.speed * v for v in MOTIONS[shot.motion])
    rng = np.random.default_rng(shot.seed + 1000)
    out = np.empty((frames, height, width, 3), np.uint8)
    z0 = 1.6 if zoom < 0 else 1.0
    slides: dict[int, np.ndarray] = {}
    for t in range(frames):
        sec = t / fps
        cx = ww / 2 + pan * sec * width
        cy = wh / 2 + tilt * sec * width
        z = z0 * math.exp(zoom * sec)
        phi = math.radians(roll * sec)
        if shot.shake:
            cx += rng.normal(0, shot.shake * width)
            cy += rng.normal(0, shot.shake * width)
        # destination pixel (u, v) → world: C + R(phi) · ((u, v) − centre) / z; phi > 0 turns the view
        # window clockwise on screen (y points down)
        c, s = math.cos(phi) / z, math.sin(phi) / z
        a = np.array([[c, -s], [s, c]])
        b = np.array([cx, cy]) - a @ np.array([width / 2, height / 2])
        m = np.hstack([a, b[:, None]]).astype(np.float64)

        def view(image: np.ndarray, m: np.ndarray = m) -> np.ndarray:
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            return cv2.warpAffine(image, m, (width, height), flags=flags, borderMode=cv2.BORDER_REFLECT)

        if shot.slideshow is not None:  # still pictures, each held, with short cross-fades between them
            k, phase = int(sec // shot.slideshow), sec % shot.slideshow
            for j in (k, k + 1):
                if j not in slides:
                    slides[j] = view(world_image(shot.seed + 7919 * (j + 1), wh, ww))
            alpha = min(1.0, max(0.0, (phase - (shot.slideshow - SLIDE_FADE_S)) / SLIDE_FADE_S))
            frame = cv2.addWeighted(slides[k], 1 - alpha, slides[k + 1], alpha, 0.0)
        else:
            frame = view(world)
        if shot.blur:
            frame = cv2.GaussianBlur(frame, (0, 0), shot.blur)
        if shot.brightness:
            frame = np.clip(frame.astype(np.float32) + shot.brightness, 0, 255).astype(np.uint8)
        if shot.text:
            scale = height / 160
            cv2.putText(
                frame,
                shot.text,
                (int(0.05 * width), int(0.8 * height)),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (255, 255, 255),
                max(1, round(2 * scale)),
                cv2.LINE_AA,
            )
        if shot.letterbox:
            bar = round(shot.letterbox * height)
            frame[:bar] = 0
            frame[height - bar :] = 0
        out[t] = frame
    return out


def write_clip(path: str | Path, frames: np.ndarray, fps: float, crf: int = 20) -> Path:
    """Encode ``(T, H, W, 3)`` uint8 frames as H.264 with :class:`moviegen.video.VideoWriter`."""
    with VideoWriter(path, fps=fps, crf=crf) as writer:
        for s in range(0, len(frames), 32):
            chunk = torch.from_numpy(frames[s : s + 32]).permute(3, 0, 1, 2).float() / 127.5 - 1.0
            writer.write(chunk)
    return Path(path)


def render(shots: list[Shot], height: int, width: int, fps: float) -> np.ndarray:
    return np.concatenate([render_shot(s, height, width, fps) for s in shots])


def write_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An MP4 holding one AAC audio stream and no video."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)
        for s in range(0, samples, 1024):
            chunk = tone[None, s : s + 1024]
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return Path(path)


def write_matroska(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Encode frames as H.264 in Matroska (its header comes first: a cut file still opens)."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)


def make_corpus(
    folder: str | Path, height: int = 144, width: int = 256, fps: float = 12.0
) -> dict[str, dict]:
    """Write the test corpus into ``folder``; return ``{file name: ground truth}``.

    Ground-truth keys: ``cuts`` (scene-cut times in seconds), ``reason`` (the expected
    ``"<stage>:<reason>"`` of every clip, None for clean clips), ``camera`` (the camera motion of clean
    clips), ``duplicates`` (the group name of duplicate files), ``aspect``. Clean clips get a ``.txt``
    caption sidecar; ``uncaptioned.mp4`` has none. Sizes assume a config like the ``tiny`` preset
    (min side 128, 2–5 s clips, 0.5 s trimmed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    h, w = height, width

    def clip(
        name: str, shots: list[Shot], size: tuple[int, int] = (h, w), caption: str | None = "", **gt: Any
    ):
        frames = render(shots, size[0], size[1], fps)
        write_clip(folder / name, frames, fps)
        if caption is not None:
            (folder / name).with_suffix(".txt").write_text(caption or f"a video called {Path(name).stem}")
        truth[name] = {"reason": None, **gt}

    clip(
        "cuts.mp4",
        [Shot(4.0, "pan right", seed=1), Shot(3.5, "zoom in", seed=2), Shot(6.5, "tilt down", seed=3)],
        cuts=[4.0, 7.5],
        camera=["pan right", "zoom in", "tilt down", "tilt down"],
    )
    clip("pan_left.mp4", [Shot(4.0, "pan left", seed=11)], camera="pan left")
    clip("pan_right.mp4", [Shot(4.0, "pan right", seed=12)], camera="pan right", duplicates="pan_right")
    clip("tilt_up.mp4", [Shot(4.0, "tilt up", seed=13)], camera="tilt up")
    clip("zoom_out.mp4", [Shot(4.0, "zoom out", seed=14)], camera="zoom out")
    clip("roll.mp4", [Shot(4.0, "roll clockwise", seed=15, speed=12.0)], camera="roll clockwise")
    clip("portrait.mp4", [Shot(4.0, "pan left", seed=16)], size=(w, h), camera="pan left", aspect="portrait")
    clip("uncaptioned.mp4", [Shot(4.0, "tilt down", seed=17)], caption=None, caption_source="needs_caption")
    clip("text.mp4", [Shot(4.0, "pan right", seed=21, text="BREAKING NEWS")], reason="visual:text")
    clip("letterbox.mp4", [Shot(4.0, "pan left", seed=22, letterbox=0.125)], size=(h * 4 // 3, w),
         reason="visual:border")  # fmt: skip
    clip("lowres.mp4", [Shot(4.0, "pan right", seed=23)], size=(h // 2, w // 2), reason="visual:min_side")
    clip("blurry.mp4", [Shot(4.0, "pan right", seed=24, blur=5.0, brightness=-80)], reason="visual:quality")
    clip("static.mp4", [Shot(4.0, "static", seed=25)], reason="motion:static")
    clip("slideshow.mp4", [Shot(5.0, "static", seed=26, slideshow=2.0)], reason="motion:slideshow")
    clip("shaky.mp4", [Shot(4.0, "static", seed=27, shake=0.06)], reason="motion:shaky")
    # duplicates of pan_right.mp4: a byte copy and a re-encoded, brightened copy
    shutil.copyfile(folder / "pan_right.mp4", folder / "pan_right_copy.mp4")
    (folder / "pan_right_copy.txt").write_text("a copy")
    frames = render([Shot(4.0, "pan right", seed=12, brightness=12)], h, w, fps)
    write_clip(folder / "pan_right_near.mp4", frames, fps, crf=32)
    (folder / "pan_right_near.txt").write_text("a near copy")
    truth["pan_right_copy.mp4"] = {"reason": None, "camera": "pan right", "duplicates": "pan_right"}
    truth["pan_right_near.mp4"] = {"reason": None, "camera": "pan right", "duplicates": "pan_right"}
    # broken files
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    (folder / "notes.mkv").write_text("this is not a video\n" * 20)
    data = (folder / "pan_left.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    write_audio_only(folder / "audio.mp4")
    write_matroska(folder / "cut_short.mkv", render([Shot(4.0, "pan left", seed=28)], h, w, fps), fps)
    data = (folder / "cut_short.mkv").read_bytes()
    (folder / "cut_short.mkv").write_bytes(data[: len(data) // 2])
    truth["empty.mp4"] = {"reason": "probe:empty_file"}
    truth["garbage.mp4"] = {"reason": "probe:unreadable"}
    truth["notes.mkv"] = {"reason": "probe:unreadable"}
    truth["truncated.mp4"] = {"reason": "probe:unreadable"}
    truth["audio.mp4"] = {"reason": "probe:no_video_stream"}
    truth["cut_short.mkv"] = {"reason": "probe:truncated"}
    for name in truth:
        truth[name].setdefault("aspect", "landscape")
    return truth
