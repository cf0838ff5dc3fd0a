"""Audio files in and out: WAV (stdlib :mod:`wave`), any container PyAV decodes, and MP4s with an AAC track.

Movie Gen Audio (paper §7) generates 48 kHz audio for a video, so waveforms here are mono float32 tensors
``(N,)`` in [-1, 1] at :data:`SAMPLE_RATE` unless a rate is given. Every bad input is one clear
:class:`MovieGenError`; every write goes to a temporary sibling that :func:`moviegen.files.publish` renames
into place, so a failed write never leaves a file (nor a temporary) behind.

Synchrony: FFmpeg's AAC encoder primes each stream with 1024 samples (21.3 ms at 48 kHz); it stamps its
first packet at pts -1024 and the MP4 muxer writes an edit list that skips them, which FFmpeg's demuxer
honours on reading. Our MP4s therefore decode with the audio aligned to the video to the sample (measured
offset 0 samples); nothing is compensated by hand. The encoder also pads the last frame, so decoded audio
runs up to 1024 samples past the track's declared duration: :func:`read_audio` trims that surplus. A raw
ADTS ``.aac`` file has no edit list: it decodes 1024 samples (21.3 ms) late, and nothing can tell us so.
"""

from __future__ import annotations

import itertools
import math
import struct
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from scipy.signal import resample_poly
from torch import Tensor

from moviegen.errors import MovieGenError
from moviegen.files import check_output_file, publish, temporary_sibling
from moviegen.video import write_video

SAMPLE_RATE = 48_000  # Movie Gen Audio's output rate (paper §7)
MAX_AUDIO_SECONDS = 3600.0  # longer waveforms or files are refused, not decoded
MIN_RATE, MAX_RATE = 8_000, 192_000
AAC_FRAME = 1024  # samples per AAC-LC frame
_PADDING_S = 0.05  # decoded audio this far past the declared duration is encoder padding, trimmed


def _check_rate(sample_rate: object, what: str) -> int:
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, int)
        or not MIN_RATE <= sample_rate <= MAX_RATE
    ):
        raise MovieGenError(
            f"{what}: sample rate must be an integer in [{MIN_RATE}, {MAX_RATE}] Hz, got {sample_rate!r}"
        )
    return sample_rate


def _check_shape(audio: object, what: str) -> int:
    """Validate type, dtype and shape without touching the values; the number of samples."""
    if not isinstance(audio, Tensor):
        raise MovieGenError(f"{what}: expected a waveform tensor, got {type(audio).__name__}")
    if not audio.is_floating_point():
        raise MovieGenError(f"{what}: expected a floating-point waveform, got dtype {audio.dtype}")
    if audio.dim() not in (1, 2) or (audio.dim() == 2 and audio.shape[0] not in (1, 2)):
        raise MovieGenError(
            f"{what}: expected a waveform (N,) or (C, N) with C in {{1, 2}}, got {tuple(audio.shape)}"
        )
    if audio.shape[-1] == 0:
        raise MovieGenError(f"{what}: the waveform has no samples")
    return audio.shape[-1]


def _to_mono(audio: Tensor, what: str) -> Tensor:
    x = audio.detach().to("cpu", torch.float32)
    x = x.mean(0) if x.dim() == 2 else x
    if not torch.isfinite(x).all():
        raise MovieGenError(f"{what}: the waveform holds NaN or infinite values")
    return x.contiguous()


def check_waveform(audio: Tensor, sample_rate: int, what: str = "audio") -> Tensor:
    """A valid waveform ``(N,)`` or ``(C, N)`` (C = 1 or 2) as mono float32 ``(N,)``; channels are averaged.

    Refuses non-tensors, non-float dtypes, other shapes, zero samples, NaN/inf, sample rates outside
    [8000, 192000] and durations over :data:`MAX_AUDIO_SECONDS`. Values are not clipped (writers clip).
    """
    _check_rate(sample_rate, what)
    n = _check_shape(audio, what)
    if n / sample_rate > MAX_AUDIO_SECONDS:
        raise MovieGenError(
            f"{what}: {n / sample_rate:.0f} s of audio is over the {MAX_AUDIO_SECONDS:g} s limit"
        )
    return _to_mono(audio, what)


def is_silent(audio: Tensor, threshold_db: float = -60.0) -> bool:
    """Whether the waveform's RMS level, in dBFS (full scale = 1.0), is below ``threshold_db``."""
    _check_shape(audio, "audio")
    x = _to_mono(audio, "audio").double()
    rms = float(x.square().mean().sqrt())
    return (20 * math.log10(rms) if rms > 0 else -math.inf) < threshold_db


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (zero phase: no delay is added)."""
    if rate == target:
        return x
    ratio = Fraction(target, rate)
    return resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator).astype(np.float32)


def write_wav(path: str | Path, audio: Tensor, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write a 16-bit PCM mono WAV (values clipped to [-1, 1]), atomically."""
    x = check_waveform(audio, sample_rate)
    pcm = (x.clamp(-1, 1) * 32768).round().clamp(-32768, 32767).to(torch.int16).numpy().astype("<i2")
    check_output_file(path, "output audio")
    tmp = temporary_sibling(path, suffix=".wav")
    try:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())
        publish(tmp, path)
    except OSError as e:
        raise MovieGenError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return Path(path)


def _read_wav(path: Path, max_seconds: float) -> tuple[np.ndarray, int] | None:
    """A PCM WAV's samples (mono float32) and rate, or None when :mod:`wave` cannot parse it (float or
    extensible headers, not a WAV): PyAV then tries."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if channels < 1 or rate < 1 or width not in (1, 2, 3, 4):
                return None
            if n / rate > max_seconds:
                raise MovieGenError(
                    f"audio {path} is {n / rate:.0f} s long, over the {max_seconds:g} s limit"
                )
            data = w.readframes(n)
    except (wave.Error, EOFError, struct.error):
        return None
    usable = len(data) // (width * channels) * width * channels
    raw = np.frombuffer(data[:usable], dtype=np.uint8)
    if width == 1:  # 8-bit WAV is unsigned
        x = (raw.astype(np.float32) - 128) / 128
    elif width == 3:
        b = raw.reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 2**23
    else:
        x = np.frombuffer(raw.tobytes(), dtype=f"<i{width}").astype(np.float32) / 2 ** (8 * width - 1)
    return x.reshape(-1, channels).mean(axis=1), rate


def _decode_av(path: Path, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Decode the first audio stream with PyAV, resampled to ``sample_rate`` and mixed to mono.

    Audio that starts after the file's start time is preceded by that much silence, so the waveform's
    time 0 is the video's; surplus past the declared duration (encoder padding, under 50 ms) is trimmed.
    """
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise MovieGenError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            declared = container.duration / av.time_base
        if declared is not None and declared > max_seconds:
            raise MovieGenError(f"audio {path} is {declared:.0f} s long, over the {max_seconds:g} s limit")
        limit = max_seconds * sample_rate
        start = (container.start_time or 0) / av.time_base
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        chunks: list[np.ndarray] = []
        total, lead = 0, 0
        for frame in itertools.chain(container.decode(stream), [None]):
            if frame is not None and not chunks and frame.time is not None:
                lead = max(0, round((frame.time - start) * sample_rate))
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0))
                total += chunks[-1].size
            if total + lead > limit:
                raise MovieGenError(f"audio {path} is over the {max_seconds:g} s limit")
    if total == 0:
        raise MovieGenError(f"audio {path} has no samples")
    x = np.concatenate([np.zeros(lead, np.float32), *chunks])
    if declared is not None:
        expected = round(declared * sample_rate) + lead
        if 0 < x.size - expected <= _PADDING_S * sample_rate:
            x = x[:expected]
    return x


def read_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float = MAX_AUDIO_SECONDS
) -> tuple[Tensor, int]:
    """The audio of a WAV or of any file PyAV decodes (MP4, M4A, AAC, MP3, …) as mono float32 ``(N,)`` in
    [-1, 1] at ``sample_rate`` (48 kHz by default, Movie Gen Audio's rate, paper §7), and that rate.

    PCM WAVs (8/16/24/32-bit) are read with :mod:`wave` and resampled with ``scipy.signal.resample_poly``;
    everything else is decoded and resampled by FFmpeg (``av.AudioResampler``). Durations over
    ``max_seconds`` are refused from the header where it has one, before decoding.
    """
    path = Path(path)
    _check_rate(sample_rate, f"reading {path}")
    if not (isinstance(max_seconds, int | float) and max_seconds > 0):
        raise MovieGenError(f"max_seconds must be a positive number, got {max_seconds!r}")
    if not path.is_file():
        raise MovieGenError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise MovieGenError(f"audio file is empty: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(12)
        pcm = _read_wav(path, max_seconds) if head[:4] == b"RIFF" and head[8:12] == b"WAVE" else None
        if pcm is not None:
            if pcm[0].size == 0:
                raise MovieGenError(f"audio {path} has no samples")
            x = _resample(*pcm, sample_rate)
        else:
            x = _decode_av(path, sample_rate, max_seconds)
    except MovieGenError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError) as e:
        raise MovieGenError(f"cannot decode audio {path}: {e}") from None
    return torch.from_numpy(np.clip(x, -1, 1).astype(np.float32)), sample_rate


def _video_frames(path: Path) -> tuple[int, float]:
    """Frames (video packets) and frame rate of a video file whose first frame decodes."""
    if not path.is_file():
        raise MovieGenError(f"video file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MovieGenError(f"no video stream in {path}")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 16.0
            frames, decoded = 0, False
            for packet in container.demux(stream):
                frames += bool(packet.size)
                decoded = decoded or bool(packet.decode())  # the flush packet (size 0) drains the decoder
    except MovieGenError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise MovieGenError(f"cannot decode video {path}: {e}") from None
    if not frames or not decoded:
        raise MovieGenError(f"no decodable frames in {path}")
    return frames, fps


def _aac_frame(samples: np.ndarray, pts: int) -> av.AudioFrame:
    """Mono float32 samples as an fltp frame at 48 kHz, stamped ``pts`` samples from the start."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None]), format="fltp", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, pts, Fraction(1, SAMPLE_RATE)
    return frame


def mux_audio(
    video_path: str | Path,
    audio: Tensor,
    out_path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    bitrate: int = 192_000,
) -> Path:
    """Write ``out_path``: the video stream of ``video_path`` plus ``audio`` as a 48 kHz mono AAC track.

    The video packets are copied without re-encoding (other streams of ``video_path`` are dropped) and
    shifted so the video starts at time 0, as the audio does. The audio is resampled to 48 kHz if needed,
    then trimmed or zero-padded to the video's duration, frames / fps. It is encoded in frames of 1024
    samples (the last may be shorter, so the track's duration is exact); the encoder's 1024 priming samples
    are skipped by the MP4 edit list, so the decoded audio stays aligned to the video (module docstring).
    Atomic: ``out_path`` may be ``video_path``, which is then replaced only on success.
    """
    x = check_waveform(audio, sample_rate).numpy()
    if isinstance(bitrate, bool) or not isinstance(bitrate, int) or not 8_000 <= bitrate <= 1_000_000:
        raise MovieGenError(f"audio bitrate must be an integer in [8000, 1000000] bit/s, got {bitrate!r}")
    video_path = Path(video_path)
    check_output_file(out_path, "output video")
    frames, fps = _video_frames(video_path)
    x = _resample(x, sample_rate, SAMPLE_RATE)
    n = max(1, round(frames / fps * SAMPLE_RATE))
    x = np.ascontiguousarray(np.pad(x[:n], (0, max(0, n - x.size))).clip(-1, 1), dtype=np.float32)
    tmp = temporary_sibling(out_path, suffix=".mp4")
    try:
        with av.open(str(video_path)) as src, av.open(str(tmp), mode="w", format="mp4") as dst:
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            aout = dst.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
            aout.bit_rate = bitrate
            shift, done = vin.start_time or 0, 0

            def encode_until(t: float) -> None:  # interleave: the audio up to video time t (seconds)
                nonlocal done
                while done < min(n, t * SAMPLE_RATE):
                    frame = _aac_frame(x[done : done + AAC_FRAME], done)
                    dst.mux(aout.encode(frame))
                    done += frame.samples

            for packet in src.demux(vin):
                if packet.dts is None:
                    continue
                packet.dts -= shift
                if packet.pts is not None:
                    packet.pts -= shift
                encode_until(float(packet.dts * packet.time_base))
                packet.stream = vout
                dst.mux(packet)
            encode_until(math.inf)
            dst.mux(aout.encode(None))
        publish(tmp, out_path)
    except MovieGenError:
        raise
    except (av.FFmpegError, ValueError, OSError) as e:
        raise MovieGenError(f"cannot write {out_path} from {video_path}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return Path(out_path)


def write_video_with_audio(
    path: str | Path, frames: Tensor, fps: float, audio: Tensor, sample_rate: int = SAMPLE_RATE
) -> Path:
    """Frames ``(3, T, H, W)`` in [-1, 1] and a waveform as one MP4 (H.264 video, 48 kHz AAC audio trimmed or
    padded to T / fps seconds), atomically: the video goes to a temporary sibling, then :func:`mux_audio`."""
    check_waveform(audio, sample_rate)
    check_output_file(path, "output video")
    tmp = temporary_sibling(path, suffix=".mp4")
    try:
        write_video(tmp, frames, fps)
        return mux_audio(tmp, audio, path, sample_rate)
    finally:
        tmp.unlink(missing_ok=True)
