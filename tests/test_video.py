"""Video IO: round trips, streaming writes, clear errors, and no half-written files."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from helpers import moving_clip
from moviegen.errors import MovieGenError
from moviegen.eval.reconstruction import ReconstructionScore, psnr, ssim
from moviegen.video import VideoWriter, read_video, write_video


def test_write_then_read_round_trip(tmp_path):
    clip = moving_clip(20, 48, 64)
    path = write_video(tmp_path / "clip.mp4", clip, fps=8)
    video, fps = read_video(path)
    assert video.shape == clip.shape and fps == 8
    assert psnr(video, clip) > 35 and ssim(video, clip) > 0.9  # yuv420p chroma subsampling
    assert read_video(path, max_frames=5)[0].shape[1] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_streamed_chunks_and_odd_sizes(tmp_path):
    clip = moving_clip(12, 31, 45)
    with VideoWriter(tmp_path / "s.mp4", fps=12) as w:
        for i in range(0, 12, 5):
            w.write(clip[:, i : i + 5])
    video, _ = read_video(tmp_path / "s.mp4")
    assert video.shape == (3, 12, 32, 46)  # padded by one row/column for yuv420p


def test_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(MovieGenError):
        write_video(tmp_path / "bad.mp4", torch.zeros(4, 3, 8, 8))
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "half.mp4") as w:
        w.write(moving_clip(4))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_same_frames_same_bytes_and_fps_bounds(tmp_path):
    clip = moving_clip(24, 96, 128)
    first = write_video(tmp_path / "a.mp4", clip).read_bytes()
    assert all(write_video(tmp_path / "b.mp4", clip).read_bytes() == first for _ in range(3))
    for fps in (0, -1, 100000, 1001):
        with pytest.raises(MovieGenError, match="fps must be in"):
            write_video(tmp_path / "c.mp4", clip, fps=fps)
    assert read_video(write_video(tmp_path / "d.mp4", clip, fps=1000))[0].shape[1] == 24
    assert not (tmp_path / "c.mp4").exists()


def _audio_only(path):
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.time_base = 16000, Fraction(1, 16000)
        for i in range(4):
            frame.pts = i * 1024
            c.mux(s.encode(frame))
        c.mux(s.encode())


def test_unreadable_inputs_are_one_clear_error(tmp_path):
    with pytest.raises(MovieGenError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MovieGenError, match="empty"):
        read_video(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
    with pytest.raises(MovieGenError, match="cannot decode"):
        read_video(tmp_path / "text.mp4")
    good = write_video(tmp_path / "good.mp4", moving_clip(16, 64, 64)).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 3])
    with pytest.raises(MovieGenError):
        read_video(tmp_path / "truncated.mp4")
    _audio_only(tmp_path / "audio.mp4")
    with pytest.raises(MovieGenError, match="no video stream"):
        read_video(tmp_path / "audio.mp4")


def test_chunked_score_equals_whole_video_score():
    a, b = moving_clip(10), moving_clip(10).flip(-1)
    score = ReconstructionScore()
    score.update(a[:, :4], b[:, :4])
    score.update(a[:, 4:], b[:, 4:])
    assert score.psnr == pytest.approx(psnr(a, b), rel=1e-5)
    assert score.ssim == pytest.approx(ssim(a, b), rel=1e-5)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
