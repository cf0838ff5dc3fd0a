"""Video files in and out (PyAV). Frames as float tensors ``(3, T, H, W)`` in [-1, 1].

Reading turns every failure (missing, empty, corrupt, not a video) into one clear MovieGenError.
Writing encodes H.264 (yuv420p) into a temporary file beside the target and renames it into place,
so an interrupted or failed write never leaves a half-written file (images: PNG, written the same way);
a symlink's target is written and a device such as ``/dev/null`` is written in place, never replaced
(:mod:`moviegen.files`).
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from moviegen.errors import MovieGenError
from moviegen.files import check_output_file, publish, temporary_sibling, write_atomic

MAX_FPS = 1000


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


class VideoWriter:
    """Stream frames into an H.264 MP4 (yuv420p); the file appears only when the writer closes cleanly.

    Use as a context manager and call :meth:`write` with ``(3, T, H, W)`` chunks in [-1, 1]; odd sizes
    are padded by one replicated row/column (yuv420p needs even sizes).

    ``fps`` is bounded to :data:`MAX_FPS`: above a few thousand fps MP4 decoders drop frames (OpenCV
    decodes 9 of 16 frames at 9000 fps, none at 100000). On closing, the packets in the file are counted
    and must equal the frames written. ``deterministic`` (the default) encodes on one thread, so the same
    frames give the same bytes; libx264's frame threads otherwise decide differently from run to run
    (decoded pixels then differ by up to 30/255). ``deterministic=False`` is faster for long videos.
    """

    def __init__(self, path: str | Path, fps: float = 16.0, crf: int = 18, deterministic: bool = True):
        if not (isinstance(fps, int | float) and 0 < fps <= MAX_FPS):
            raise MovieGenError(f"fps must be in (0, {MAX_FPS}] (what MP4 players keep), got {fps}")
        self.path, self.fps, self.crf, self.deterministic = Path(path), fps, crf, deterministic
        self.frames_written = 0
        self._container = self._stream = None
        self._tmp: str | None = None

    def __enter__(self) -> VideoWriter:
        check_output_file(self.path, "output video")
        self._tmp = str(temporary_sibling(self.path, suffix=".mp4"))
        self._container = av.open(self._tmp, mode="w", format="mp4")
        return self

    def write(self, video: Tensor) -> None:
        frames = to_uint8(video)
        frames = np.pad(
            frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge"
        )
        if self._stream is None:
            self._stream = self._container.add_stream(
                "libx264", rate=Fraction(self.fps).limit_denominator(1001)
            )
            self._stream.width, self._stream.height = frames.shape[2], frames.shape[1]
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf)} | ({"threads": "1"} if self.deterministic else {})
        elif (frames.shape[1], frames.shape[2]) != (self._stream.height, self._stream.width):
            raise MovieGenError("all frames written to one video must have the same size")
        for array in frames:
            self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        self.frames_written += len(frames)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._stream is None:
                raise MovieGenError(f"no frames were written to {self.path}")
            if exc_type is None:
                self._container.mux(self._stream.encode())
            self._container.close()
            if exc_type is None:
                kept = _count_packets(self._tmp)
                if kept != self.frames_written:
                    raise MovieGenError(
                        f"the MP4 kept {kept} of {self.frames_written} frames at {self.fps:g} fps; "
                        "nothing written"
                    )
                publish(self._tmp, self.path)
        finally:
            if self._tmp and os.path.exists(self._tmp):
                os.unlink(self._tmp)


def write_video(
    path: str | Path, video: Tensor, fps: float = 16.0, crf: int = 18, deterministic: bool = True
) -> Path:
    """Encode ``(3, T, H, W)`` frames in [-1, 1] as an H.264 MP4, atomically."""
    with VideoWriter(path, fps, crf, deterministic) as writer:
        writer.write(video)
    return Path(path)


def write_image(path: str | Path, image: Tensor) -> Path:
    """Write one frame — ``(3, H, W)`` or a one-frame video ``(3, 1, H, W)`` in [-1, 1] — as a PNG,
    atomically."""
    if image.dim() == 3:
        image = image[:, None]
    if image.dim() != 4 or image.shape[1] != 1:
        raise MovieGenError(f"a PNG holds one frame; got frames of shape {tuple(image.shape)}")
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)[0]).save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue())


def read_image(path: str | Path) -> Tensor:
    """A PNG/JPEG file as a one-frame video ``(3, 1, H, W)`` in [-1, 1]."""
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise MovieGenError(f"image not found: {path}") from None
    except (OSError, ValueError) as e:
        raise MovieGenError(f"cannot read image {path}: {e}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[:, None].float() / 127.5 - 1.0


def _count_packets(path: str | Path) -> int:
    """Video packets in a finished MP4 (one per frame for H.264 without B-frame drops)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size)
