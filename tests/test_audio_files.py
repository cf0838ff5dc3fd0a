"""Audio IO: WAV round trips, resampling, AAC in MP4 with audio–video sync, clear errors, no leftovers."""

import wave

import av
import numpy as np
import pytest
import torch

from moviegen.audio_files import (
    MAX_AUDIO_SECONDS,
    SAMPLE_RATE,
    check_waveform,
    is_silent,
    mux_audio,
    read_audio,
    write_video_with_audio,
    write_wav,
)
from moviegen.errors import MovieGenError
from moviegen.video import read_video, write_video

CLICKS = (0.25, 0.5, 0.75)  # seconds


def tone_with_clicks(rate: int, seconds: float = 1.0) -> torch.Tensor:
    """A quiet 440 Hz tone with 1 ms loud clicks at :data:`CLICKS`."""
    t = torch.arange(round(rate * seconds), dtype=torch.float64) / rate
    x = 0.2 * torch.sin(2 * torch.pi * 440 * t)
    for c in CLICKS:
        x[round(c * rate) : round(c * rate) + rate // 1000] = 0.9
    return x.float()


def onsets(x: torch.Tensor, rate: int) -> np.ndarray:
    """Start times (s) of the bursts louder than 0.6."""
    idx = np.flatnonzero(x.abs().numpy() > 0.6)
    starts = [idx[0]] + [j for i, j in zip(idx[:-1], idx[1:], strict=True) if j - i > rate // 10]
    return np.array(starts) / rate


def dominant_hz(x: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.numpy() * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def clip(frames: int = 8) -> torch.Tensor:
    return torch.rand(3, frames, 32, 32) * 2 - 1


def assert_synced_second(path) -> None:
    """The MP4's audio decodes as 1 s at 48 kHz, tone and clicks in place, starting with the video."""
    audio, rate = read_audio(path)
    assert rate == SAMPLE_RATE and audio.dtype == torch.float32 and audio.dim() == 1
    assert abs(len(audio) - SAMPLE_RATE) <= 48  # within 1 ms of frames / fps
    assert abs(dominant_hz(audio, rate) - 440) <= 5
    assert np.abs(onsets(audio, rate) - CLICKS).max() <= 0.005  # AAC priming is skipped: no 21 ms offset
    with av.open(str(path)) as c:
        assert c.streams.video[0].start_time == 0 == c.streams.audio[0].start_time
        assert (
            c.streams.audio[0].codec_context.name == "aac" and c.streams.audio[0].sample_rate == SAMPLE_RATE
        )
    video, fps = read_video(path)
    assert video.shape == (3, 8, 32, 32) and fps == 8


def test_wav_round_trip_and_layouts(tmp_path):
    x = torch.rand(2, 4800) * 2 - 1
    path = write_wav(tmp_path / "a.wav", x, 24_000)
    y, rate = read_audio(path, sample_rate=24_000)
    assert rate == 24_000 and y.shape == (4800,)
    assert (y - x.mean(0)).abs().max() <= 2 / 32768  # stereo averaged to mono, 16-bit PCM
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24_000)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]
    loud, _ = read_audio(write_wav(tmp_path / "b.wav", torch.full((100,), 3.0)))
    assert loud.max() == pytest.approx(1.0, abs=1 / 32768)  # clipped on write


@pytest.mark.parametrize("width", [1, 3, 4])
def test_reads_8_24_32_bit_stereo_wav(tmp_path, width):
    x = 0.5 * np.sin(np.linspace(0, 20, 1000))
    ints = np.round(x * (2 ** (8 * width - 1) - 1)).astype(np.int64)
    data = (ints + 128).astype(np.uint8).tobytes() if width == 1 else b""
    if width > 1:
        data = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints)
    frames = b"".join(data[i * width : (i + 1) * width] * 2 for i in range(1000))  # L = R
    with wave.open(str(tmp_path / "pcm.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(frames)
    y, _ = read_audio(tmp_path / "pcm.wav", sample_rate=8000)
    assert y.shape == (1000,) and np.abs(y.numpy() - x).max() < 2 / 2 ** min(
        8 * width - 1, 23
    )  # float32 keeps 24 bits


def test_wav_resampled_keeps_tone(tmp_path):
    path = write_wav(tmp_path / "low.wav", tone_with_clicks(16_000), 16_000)
    y, rate = read_audio(path)
    assert rate == SAMPLE_RATE and len(y) == SAMPLE_RATE
    assert abs(dominant_hz(y, rate) - 440) <= 1
    assert np.abs(onsets(y, rate) - CLICKS).max() <= 0.001  # polyphase resampling adds no delay


def test_mux_audio_keeps_sync_and_frames(tmp_path):
    video = write_video(tmp_path / "v.mp4", clip(), fps=8)
    out = mux_audio(video, tone_with_clicks(SAMPLE_RATE), tmp_path / "av.mp4")
    assert_synced_second(out)
    # longer audio at 44.1 kHz: resampled, trimmed to the video's 1 s; the video is replaced in place
    long = tone_with_clicks(44_100, seconds=2.5)
    assert mux_audio(video, long, video, sample_rate=44_100) == video
    assert_synced_second(video)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["av.mp4", "v.mp4"]


def test_mux_audio_pads_short_audio_with_silence(tmp_path):
    video = write_video(tmp_path / "v.mp4", clip(), fps=8)
    out = mux_audio(video, torch.full((4800,), 0.5), tmp_path / "av.mp4")  # 0.1 s for a 1 s video
    audio, _ = read_audio(out)
    assert abs(len(audio) - SAMPLE_RATE) <= 48
    assert not is_silent(audio[:4000]) and is_silent(audio[9600:])


def test_write_video_with_audio(tmp_path):
    frames = clip()
    path = write_video_with_audio(tmp_path / "out.mp4", frames, 8, tone_with_clicks(SAMPLE_RATE))
    assert_synced_second(path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_is_silent():
    assert is_silent(torch.zeros(100)) and is_silent(torch.full((100,), 1e-4))  # -80 dBFS
    assert not is_silent(torch.full((100,), 0.01))  # -40 dBFS
    assert is_silent(torch.full((100,), 0.01), threshold_db=-30.0)


def test_check_waveform_shapes_and_refusals():
    assert check_waveform(torch.ones(2, 10, dtype=torch.float64), 8000).dtype == torch.float32
    assert check_waveform(torch.tensor([[1.0, 3.0], [3.0, 1.0]]), 8000).tolist() == [2.0, 2.0]
    bad = [
        (np.zeros(10), 8000, "expected a waveform tensor"),
        (torch.zeros(10, dtype=torch.int16), 8000, "floating-point"),
        (torch.zeros(1, 1, 10), 8000, r"\(N,\) or \(C, N\)"),
        (torch.zeros(10, 2), 8000, r"\(N,\) or \(C, N\)"),
        (torch.zeros(0), 8000, "no samples"),
        (torch.tensor([0.0, float("nan")]), 8000, "NaN"),
        (torch.tensor([0.0, float("inf")]), 8000, "NaN or infinite"),
        (torch.zeros(10), 7999, "sample rate"),
        (torch.zeros(10), 48000.0, "sample rate"),
        # one sample over the limit, as a stride-0 view: nothing is allocated and nothing is read
        (torch.zeros(1).expand(int(MAX_AUDIO_SECONDS * 8000) + 1), 8000, "over the 3600 s limit"),
    ]
    for audio, rate, message in bad:
        with pytest.raises(MovieGenError, match=message):
            check_waveform(audio, rate)


def test_read_audio_errors(tmp_path):
    with pytest.raises(MovieGenError, match="audio file not found"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MovieGenError, match="audio file is empty"):
        read_audio(tmp_path / "empty.mp4")
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for name in ("noise.mp4", "noise.wav"):
        (tmp_path / name).write_bytes(noise)
        with pytest.raises(MovieGenError, match="cannot decode audio"):
            read_audio(tmp_path / name)
    with pytest.raises(MovieGenError, match="has no audio stream"):
        read_audio(write_video(tmp_path / "silent.mp4", clip(), fps=8))
    write_wav(tmp_path / "long.wav", torch.zeros(16_000), 8000)  # 2 s, refused from the header
    with pytest.raises(MovieGenError, match="over the 1 s limit"):
        read_audio(tmp_path / "long.wav", max_seconds=1.0)
    with pytest.raises(MovieGenError, match="over the 0.5 s limit"):
        read_audio(
            write_video_with_audio(tmp_path / "av.mp4", clip(), 8, torch.zeros(48_000)), max_seconds=0.5
        )
    with wave.open(str(tmp_path / "none.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
    with pytest.raises(MovieGenError, match="has no samples"):
        read_audio(tmp_path / "none.wav")
    with pytest.raises(MovieGenError, match="sample rate"):
        read_audio(tmp_path / "long.wav", sample_rate=1000)


def test_failed_writes_leave_nothing_behind(tmp_path):
    video = write_video(tmp_path / "v.mp4", clip(), fps=8)
    before = video.read_bytes()
    nan = torch.full((48_000,), float("nan"))
    for call in (
        lambda: mux_audio(video, nan, tmp_path / "out.mp4"),
        lambda: mux_audio(video, nan, video),  # in place: the original survives
        lambda: mux_audio(tmp_path / "nope.mp4", torch.zeros(100), tmp_path / "out.mp4"),
        lambda: write_video_with_audio(tmp_path / "out.mp4", clip(), 8, torch.zeros(0)),
        lambda: write_video_with_audio(tmp_path / "out.mp4", torch.zeros(4, 8, 32, 32), 8, torch.zeros(100)),
        lambda: write_wav(tmp_path / "out.wav", nan),
    ):
        with pytest.raises(MovieGenError):
            call()
    (tmp_path / "noise.mp4").write_bytes(b"\x00\x01" * 500)
    with pytest.raises(MovieGenError, match="cannot decode video"):
        mux_audio(tmp_path / "noise.mp4", torch.zeros(100), tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.mp4", "v.mp4"]
    assert video.read_bytes() == before
