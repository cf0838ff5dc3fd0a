"""Stage 1, probe and decode (PyAV): container facts, then the frames the other stages analyse.

:func:`probe` fills ``codec``, ``width``, ``height``, ``fps``, ``source_duration_s`` and
``source_frames`` of a source record, or drops it with a reason: ``missing``, ``empty_file``,
``unreadable`` (not a media container, or a truncated MP4 whose index is gone), ``no_video_stream``
(audio-only and other streams), ``bad_video_stream`` (no size or frame rate). :func:`decode` then reads
every frame once; a decoding error, no frames, or fewer than ``TRUNCATED_FRACTION`` of the frames the
container announces drop the source as ``decode_error``, ``no_frames`` or ``truncated``. Nothing raises:
a broken file is a record, never a crash.

Frame ``i`` is taken to be at ``i / fps`` seconds (constant frame rate, the source's average rate).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np

from moviegen.curate.config import CurateConfig
from moviegen.curate.record import Clip, Frames

TRUNCATED_FRACTION = 0.9


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def probe(clip: Clip) -> Clip:
    """Fill a source record's container facts, or drop it (``probe_reason``)."""
    path = Path(clip.source)
    if not path.is_file():
        return clip.drop("probe", "missing")
    if path.stat().st_size == 0:
        return clip.drop("probe", "empty_file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return clip.drop("probe", "no_video_stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            width, height = int(ctx.width or 0), int(ctx.height or 0)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = None
            frames = int(stream.frames or 0) or None
            codec = ctx.name
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError):
        return clip.drop("probe", "unreadable")
    if width <= 0 or height <= 0 or fps <= 0:
        return clip.drop("probe", "bad_video_stream", codec=codec)
    return dataclasses.replace(
        clip,
        codec=codec,
        width=width,
        height=height,
        fps=fps,
        source_duration_s=duration,
        source_frames=frames,
    )


def analysis_size(width: int, height: int, longer: int) -> tuple[int, int]:
    """``(w, h)`` with the longer side ``longer`` (never upscaled), even, aspect ratio kept."""
    scale = min(1.0, longer / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def decode(clip: Clip, config: CurateConfig) -> tuple[Clip, Frames | None]:
    """Decode a probed source once: analysis frames and stills, or the record dropped with a reason.

    Returns the record (``source_frames`` set to the number of decoded frames) and its frames.
    """
    if not clip.kept:
        return clip, None
    fps = float(clip.fps)
    step = max(1.0, fps / config.analysis_fps)
    aw, ah = analysis_size(clip.width, clip.height, config.analysis_size)
    sw, sh = analysis_size(clip.width, clip.height, config.still_max_side)
    still_step = max(1, round(config.still_interval_s * fps))
    rgb: list[np.ndarray] = []
    index: list[int] = []
    stills: list[tuple[int, np.ndarray]] = []
    count = 0
    next_sample = 0.0
    try:
        with av.open(clip.source) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # one core per worker: parallelism is across sources
            for frame in container.decode(stream):
                i = count
                count += 1
                if i + 1e-6 >= next_sample:
                    next_sample += step
                    rgb.append(frame.to_ndarray(width=aw, height=ah, format="rgb24"))
                    index.append(i)
                if i % still_step == 0:
                    stills.append((i, frame.to_ndarray(width=sw, height=sh, format="rgb24")))
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError, MemoryError) as e:
        return clip.drop("probe", f"decode_error: {_first_line(e)}"), None
    if count == 0:
        return clip.drop("probe", "no_frames"), None
    expected = clip.source_frames
    if expected is None and clip.source_duration_s:
        expected = round(clip.source_duration_s * fps)
    if expected and count < TRUNCATED_FRACTION * expected:
        return clip.drop("probe", "truncated", source_frames=count), None
    frames = Frames(np.stack(rgb), np.asarray(index, dtype=np.int64), stills, fps, clip.width, clip.height)
    frames.flow_size = config.flow_size
    return dataclasses.replace(clip, source_frames=count, source_duration_s=count / fps), frames
