"""Measuring generated audio on the sound world (paper §7: Movie Gen Audio's sound effects and music).

The paper judges video-to-audio by people (synchronisation, quality, music) and by automatic scores of
the audio autoencoder (§7.1.1); with the world's exact ground truth (:mod:`moviegen.data.sound`) most of
those judgements become measurements:

* **events**: :func:`onset_times` finds sound onsets (spectral flux of a log-mel spectrogram, 5 ms hop,
  an adaptive threshold and peak picking, then a variance change-point to the sample). On an object clip
  each impact is an onset; :func:`match_events` pairs them with the true impact times one to one, giving
  onset synchrony (|error|, s) and event precision / recall / F1;
* **what each event sounds like**: :func:`impact_classes` names the (colour, shape) of each onset by
  template matching: the new energy after the onset (two 120 ms spectra, less the spectrum before it)
  against every impact :func:`~moviegen.data.sound.impact_sound` renders, colour ↔ pitch by
  :data:`~moviegen.data.sound.PITCHES`. Music notes are matched against instrument templates too, so
  that onsets of music are not counted as impacts (:func:`classify_onsets`);
* **music**: :func:`estimate_tempo` reads BPM from the onset envelope (a comb over periods and phases,
  the fastest period that explains the onsets, refined by a line through the onsets on its grid);
* **signal scores** of an autoencoder round trip (§7.1.1): :func:`mel_distance` (mean L1 between
  log-mel spectrograms, :func:`mel_spectrogram`) and :func:`si_sdr`;
* **distribution** (an FAD analogue): :class:`AudioEmbedding`, a small CNN over log-mel trained here on
  world clips (:func:`train_audio_embedding`) to name the sound's class, and :func:`frechet_distance`
  between embeddings of real and generated sets.

:func:`score_world_clip` scores one generated clip against its world clip's truth and
:func:`aggregate_world_scores` pools many.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import median_filter, uniform_filter1d
from scipy.signal import butter, sosfilt
from torch import Tensor, nn

from moviegen.data.sound import (
    AMBIENCES,
    INSTRUMENTS,
    KEYS,
    MOODS,
    PITCHES,
    SAMPLE_RATE,
    TIMBRES,
    SoundClip,
    SoundWorld,
    SoundWorldConfig,
    decaying_partials,
    impact_sound,
    note_frequencies,
)
from moviegen.errors import MovieGenError
from moviegen.pretrained import CONFIG_NAME, WEIGHTS_NAME, atomic_dir, load_safetensors

ONSET_HOP_S = 0.005
ONSET_MIN_GAP_S = 0.03
ONSET_THRESHOLD = 6.0
"""Default onset threshold: flux above its local median (nats summed over mel bands)."""
ONSET_NOISE_FACTOR = 12.0
"""The threshold also rises to this many local median absolute deviations of the flux (noisy ambiences)."""
EVENT_TOLERANCE_S = 0.05
TEMPLATE_WINDOW_S = 0.12


# -- input


def as_mono(audio: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    """A waveform as a float64 numpy vector: (N,) as is, (C, N) averaged over channels; refuses empty or
    non-finite input."""
    x = audio.detach().cpu().double().numpy() if isinstance(audio, Tensor) else np.asarray(audio, np.float64)
    if x.ndim == 2:
        x = x.mean(0)
    if x.ndim != 1:
        raise MovieGenError(f"audio must be (samples,) or (channels, samples), got shape {tuple(x.shape)}")
    if x.size == 0:
        raise MovieGenError("audio is empty")
    if not np.isfinite(x).all():
        raise MovieGenError("audio has non-finite samples")
    return x


def _check_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 192000:
        raise MovieGenError(f"sample_rate must be an integer in [8000, 192000], got {sample_rate!r}")
    return int(sample_rate)


@lru_cache(maxsize=32)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:  # fmt: skip
    """Triangular filters on the mel scale (HTK's 2595·log10(1 + f/700)), each of unit area over the
    ``n_fft // 2 + 1`` rfft bins: (n_mels, n_fft // 2 + 1)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise MovieGenError(f"mel band must satisfy 0 <= fmin < fmax <= {sample_rate / 2}, got ({fmin}, {fmax})")
    mels = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    edges = 700.0 * (10 ** (mels / 2595.0) - 1)
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return fb / np.maximum(fb.sum(1, keepdims=True), 1e-12)


def _hz_to_mel(f: float) -> float:
    return 2595.0 * math.log10(1 + f / 700.0)


def _stft_power(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT|² (bins, frames) with a Hann window, frames centred on multiples of ``hop``."""
    pad = n_fft // 2
    xp = np.pad(x, (pad, pad), mode="reflect" if len(x) > pad else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop]
    return (np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1)) ** 2).T


# -- onsets


def onset_strength(audio: Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """The onset envelope (one value per 5 ms frame) and its frame rate (Hz): the rise of a log-mel
    spectrogram (128 bands, 400 Hz–12 kHz, 21 ms window, smoothed over 3 frames) over 20 ms, summed over
    bands after a 0.3-nat dead zone per band. The band starts above the world's low hums and purring, and
    the dead zone keeps the fluctuation of steady noise out of the sum."""
    sr = _check_rate(sample_rate)
    x = as_mono(audio)
    hop = round(ONSET_HOP_S * sr)
    n_fft = 1 << math.ceil(math.log2(0.0213 * sr))
    fb = mel_filterbank(sr, n_fft, 128, 400.0, min(12000.0, sr / 2))
    level = np.log1p(np.sqrt(fb @ _stft_power(x, n_fft, hop)))
    level = uniform_filter1d(level, 3, axis=1, mode="nearest")
    lag = 4
    rise = np.maximum(level[:, lag:] - level[:, :-lag] - 0.3, 0.0).sum(0)
    return np.concatenate([np.zeros(min(lag, level.shape[1])), rise]), sr / hop


def onset_times(audio: Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE,
                threshold: float | None = None) -> np.ndarray:  # fmt: skip
    """Onset times (s, ascending) of a waveform: peaks of :func:`onset_strength` above its local median
    (±0.5 s) by ``threshold`` (default :data:`ONSET_THRESHOLD`, or more in noisy stretches), at least
    30 ms apart, each moved to the sample where the signal's variance jumps (a two-segment change-point
    in a 25 ms window around it)."""
    sr = _check_rate(sample_rate)
    x = as_mono(audio)
    env, rate = onset_strength(x, sr)
    delta = ONSET_THRESHOLD if threshold is None else float(threshold)
    if not delta > 0:
        raise MovieGenError(f"onset threshold must be > 0, got {threshold!r}")
    win = 2 * round(0.5 * rate) + 1
    med = median_filter(env, win, mode="nearest")
    spread = median_filter(np.abs(env - med), win, mode="nearest")
    excess = env - med
    limit = np.maximum(delta, ONSET_NOISE_FACTOR * spread)
    peaks = _pick_peaks(excess, limit, max(1, round(ONSET_MIN_GAP_S * rate)))
    return _refine_onsets(x, sr, peaks / rate)


def _pick_peaks(values: np.ndarray, limit: np.ndarray, gap: int) -> np.ndarray:
    """Frames where ``values`` exceed ``limit`` and are the largest within ``gap`` frames, greedily
    strongest first."""
    order = np.argsort(-values, kind="stable")
    taken = np.zeros(len(values), bool)
    keep = []
    for i in order:
        if values[i] <= limit[i]:
            break
        if taken[max(0, i - gap) : i + gap + 1].any():
            continue
        taken[i] = True
        keep.append(i)
    return np.sort(np.asarray(keep, dtype=np.float64))


@lru_cache(maxsize=8)
def _highpass(sample_rate: int) -> np.ndarray:
    return butter(2, 300.0, btype="highpass", fs=sample_rate, output="sos")


def _refine_onsets(x: np.ndarray, sr: int, coarse: np.ndarray) -> np.ndarray:
    """Each coarse onset moved to the variance change-point of the high-passed signal in
    [coarse − 15 ms, coarse + 10 ms] (the flux peaks 0–8 ms after an attack); onsets that land within the minimum gap of another are merged."""
    if len(coarse) == 0:
        return np.zeros(0)
    y = sosfilt(_highpass(sr), x)
    cum = np.concatenate([[0.0], np.cumsum(y * y)])
    out = []
    for t in coarse:
        a = max(0, round((t - 0.015) * sr))
        b = min(len(x), round((t + 0.010) * sr))
        out.append(_change_point(cum, a, b) / sr if b - a > 64 else t)
    out = np.sort(np.asarray(out))
    merged = [out[0]]
    for t in out[1:]:
        if t - merged[-1] >= ONSET_MIN_GAP_S / 2:
            merged.append(t)
    return np.asarray(merged)


def _change_point(cum: np.ndarray, a: int, b: int) -> int:
    """The sample k in (a, b) that best splits y[a:b] into two zero-mean Gaussian segments of different
    variance (``cum`` is the cumulative sum of y², with a leading 0)."""
    m = 16
    k = np.arange(a + m, b - m)
    left = (cum[k] - cum[a]) / (k - a)
    right = (cum[b] - cum[k]) / (b - k)
    tiny = 1e-20 + 1e-12 * (cum[b] - cum[a]) / (b - a)
    cost = (k - a) * np.log(left + tiny) + (b - k) * np.log(right + tiny)
    cost[right <= left] = np.inf  # an onset is a rise
    return int(k[np.argmin(cost)]) if np.isfinite(cost).any() else (a + b) // 2
