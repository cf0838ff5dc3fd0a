"""Video files in and out (PyAV). Frames as float tensors ``(3, T, H, W)`` in [-1, 1].

Reading turns every failure (missing, empty, corrupt, not a video) into one clear MovieGenError.
Writing encodes H.264 (yuv420p) into a temporary file beside the target and renames it into place,
so an interrupted or failed write never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor

from moviegen.errors import MovieGenError


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[Tensor, float]:
    """Decode a video file to ``(3, T, H, W)`` floats in [-1, 1] and its frame rate."""
    path = Path(path)
    if not path.is_file():
        raise MovieGenError(f"video file not found: {path}")
    if path.stat().st_size == 0:
        raise MovieGenError(f"video file is empty: {path}")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MovieGenError(f"no video stream in {path}")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 16.0
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except MovieGenError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise MovieGenError(f"cannot decode video {path}: {e}") from None
    if not frames:
        raise MovieGenError(f"no decodable frames in {path}")
    video = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float()
    return video / 127.5 - 1.0, fps


def to_uint8(video: Tensor) -> np.ndarray:
    """``(3, T, H, W)`` in [-1, 1] → ``(T, H, W, 3)`` uint8."""
    if video.dim() != 4 or video.shape[0] != 3:
        raise MovieGenError(f"expected frames (3, T, H, W); got {tuple(video.shape)}")
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def write_video(path: str | Path, video: Tensor, fps: float = 16.0, crf: int = 18) -> Path:
    """Encode ``(3, T, H, W)`` frames in [-1, 1] as an H.264 MP4, atomically."""
    path = Path(path)
    frames = to_uint8(video)
    t, h, w, _ = frames.shape
    if fps <= 0:
        raise MovieGenError(f"fps must be positive, got {fps}")
    # yuv420p needs even sizes: pad by edge replication
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".mp4", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for array in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
