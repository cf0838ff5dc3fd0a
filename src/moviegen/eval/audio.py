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

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import median_filter, uniform_filter1d
from scipy.signal import butter, sosfilt
from torch import Tensor, nn

from moviegen.config import Config, require
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
    decaying_partials,
    impact_sound,
    note_frequencies,
)
from moviegen.errors import MovieGenError
from moviegen.pretrained import PretrainedMixin

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


# -- events


def match_events(predicted: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray,
                 tolerance: float = EVENT_TOLERANCE_S) -> dict:  # fmt: skip
    """Pairs predicted and true event times (s) one to one within ``tolerance`` (the Hungarian
    assignment that maximises the number of pairs, then minimises their total |error|).

    Returns ``matched`` ([(pred_index, true_index, error_s)], error = predicted − true), ``tp``, ``fp``,
    ``fn``, ``precision``, ``recall``, ``f1``, ``errors`` (|error| of each pair, s) and ``median_error_s``
    (None without pairs). No prediction and no truth is a perfect score (1.0 each)."""
    from scipy.optimize import linear_sum_assignment

    pred = np.asarray(predicted, np.float64).reshape(-1)
    true = np.asarray(truth, np.float64).reshape(-1)
    if not (np.isfinite(pred).all() and np.isfinite(true).all()):
        raise MovieGenError("event times must be finite")
    if not tolerance > 0:
        raise MovieGenError(f"event tolerance must be > 0, got {tolerance!r}")
    matched: list[tuple[int, int, float]] = []
    if len(pred) and len(true):
        err = np.abs(pred[:, None] - true[None, :])
        ok = err <= tolerance
        # a pair inside the tolerance always beats any pair outside it: cost −1 + err/(big) for a pair
        cost = np.where(ok, -1.0 + err / (tolerance * (len(pred) + len(true) + 1)), 0.0)
        rows, cols = linear_sum_assignment(cost)
        matched = [(int(i), int(j), float(pred[i] - true[j])) for i, j in zip(rows, cols, strict=True) if ok[i, j]]
        matched.sort()
    tp = len(matched)
    fp, fn = len(pred) - tp, len(true) - tp
    precision = tp / len(pred) if len(pred) else (1.0 if not len(true) else 0.0)
    recall = tp / len(true) if len(true) else (1.0 if not len(pred) else 0.0)
    f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    errors = [abs(e) for _, _, e in matched]
    return dict(matched=matched, tp=tp, fp=fp, fn=fn, precision=precision, recall=recall, f1=f1,
                errors=errors, median_error_s=float(np.median(errors)) if errors else None)  # fmt: skip


TEMPLATE_FFT = 16384
TEMPLATE_BAND = (150.0, 8000.0)
TEMPLATE_GUARD_S = 0.005
"""The spectrum before an onset ends this long before it."""
TEMPLATE_FLOOR = 0.01
"""Log-magnitude compression: log(1 + |X| / (floor · max |X|)) of each feature vector."""
BEAT_TOLERANCE_S = 0.03
MIXTURE_LOUDNESS = 2.0
"""An onset on the music's beat grid whose new energy is this many times the median note's holds an
impact too (an impact is ~2.4× louder than a note in the world)."""


def _frames(x: np.ndarray, starts: Sequence[int], w: int) -> np.ndarray:
    segs = np.zeros((len(starts), w))
    for k, s in enumerate(starts):
        a, b = max(0, s), min(len(x), s + w)
        if b > a:
            segs[k, a - s : b - s] = x[a:b]
    return segs


@lru_cache(maxsize=8)
def _band_bins(sr: int, n_fft: int) -> tuple[int, int]:
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    return int(np.searchsorted(freqs, TEMPLATE_BAND[0])), int(np.searchsorted(freqs, min(TEMPLATE_BAND[1], sr / 2)))


def _new_energy(x: np.ndarray, sr: int, t: float) -> np.ndarray:
    """The magnitude spectra of the two :data:`TEMPLATE_WINDOW_S` windows after ``t`` less what the
    sound before it would have left there (its 120 ms spectrum decayed at the per-bin rate its two 60 ms
    halves show, never growing), clipped at 0 and flattened: (2 · bins in :data:`TEMPLATE_BAND`,)."""
    w = round(TEMPLATE_WINDOW_S * sr)
    h = w // 2
    n_fft = max(TEMPLATE_FFT, 1 << math.ceil(math.log2(w)))
    lo, hi = _band_bins(sr, n_fft)
    i, g = round(t * sr), round(TEMPLATE_GUARD_S * sr)
    full = np.abs(np.fft.rfft(_frames(x, (i - g - w, i, i + w), w) * np.hanning(w + 2)[1:-1], n_fft, axis=1))
    half = np.abs(np.fft.rfft(_frames(x, (i - g - w, i - g - h), h) * np.hanning(h + 2)[1:-1], n_fft, axis=1))
    full, half = full[:, lo:hi], 2 * _max_filter(half[:, lo:hi], 9)
    eps = 1e-3 * float(half.max()) + 1e-12
    decay = np.clip((half[1] + eps) / (half[0] + eps), 0.0, 1.0)
    steps = np.array([[(w + g) / h], [(2 * w + g) / h]])  # window centres after the before window, in halves
    expected = full[0][None] * decay[None] ** steps
    return np.maximum(full[1:] - expected, 0.0).reshape(-1)


def _max_filter(a: np.ndarray, size: int) -> np.ndarray:
    from scipy.ndimage import maximum_filter1d

    return maximum_filter1d(a, size, axis=-1)


def _compress(spec: np.ndarray) -> np.ndarray:
    """Log-ish magnitude, unit-normalised (cosine = dot product)."""
    top = float(spec.max()) if spec.size else 0.0
    if top <= 0:
        return np.zeros(spec.size)
    v = np.log1p(spec / (TEMPLATE_FLOOR * top))
    return v / np.linalg.norm(v)


def _note_names(music: dict | None) -> tuple[tuple[str, float], ...]:
    """(instrument, f0) of every note the music (a dict with ``instrument``, ``key``, ``mood`` or ``mode``,
    any missing or None) may play: all of the world's notes when nothing is named."""
    music = music or {}
    instruments = [music["instrument"]] if music.get("instrument") in INSTRUMENTS else list(INSTRUMENTS)
    keys = [music["key"]] if music.get("key") in KEYS else list(KEYS)
    mode = music.get("mode") or MOODS.get(music.get("mood"))
    modes = [mode] if mode in ("major", "minor") else sorted(set(MOODS.values()))
    freqs = sorted({round(f, 3) for k in keys for m in modes for f in note_frequencies(k, m)})
    return tuple((i, f) for i in instruments for f in freqs)


IMPACT_NAMES: list[tuple[str, str]] = [(c, s) for c in PITCHES for s in TIMBRES]


@lru_cache(maxsize=64)
def _bank(sr: int, notes: tuple[tuple[str, float], ...], avail: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear (unit-norm) and compressed features of every impact then every note, rendered alone after
    silence and cut ``avail`` samples after the onset (the end of a clip cuts the audio the same way)."""
    pad = round((TEMPLATE_GUARD_S + TEMPLATE_WINDOW_S) * sr) + 1
    sounds = [impact_sound(PITCHES[c], s, sr) for c, s in IMPACT_NAMES]
    for instrument, f0 in notes:
        spec = INSTRUMENTS[instrument]
        sounds.append(decaying_partials(f0, spec["ratios"], spec["amps"], spec["decay"], spec["attack"],
                                        2 * TEMPLATE_WINDOW_S + 0.01, sr))  # fmt: skip
    lin = np.stack([_new_energy(np.concatenate([np.zeros(pad), y[:avail]]), sr, pad / sr) for y in sounds])
    lin /= np.maximum(np.linalg.norm(lin, axis=1, keepdims=True), 1e-12)
    return lin, np.stack([_compress(v) for v in lin])


def _onset_features(x: np.ndarray, sr: int, onsets: np.ndarray, music: dict | None):
    notes = _note_names(music)
    full = 2 * round(TEMPLATE_WINDOW_S * sr)
    out = []
    for t in onsets:
        avail = int(np.clip(len(x) - round(t * sr), 1, full))
        lin, comp = _bank(sr, notes, avail)
        r = _new_energy(x, sr, float(t))
        out.append((r, comp @ _compress(r), lin))
    return notes, out


def impact_classes(audio: Tensor | np.ndarray, onsets: Sequence[float] | np.ndarray,
                   sample_rate: int = SAMPLE_RATE) -> list[tuple[str, str]]:  # fmt: skip
    """The (colour, shape) of the impact at each onset: the template (every colour's pitch × every
    shape's timbre, :func:`~moviegen.data.sound.impact_sound`) whose log-magnitude spectra of the two
    120 ms windows after the onset are closest (cosine) to the audio's new energy there (the sound before
    the onset, decayed at its own rate, taken away; 16384-point FFTs, 2.9 Hz bins)."""
    sr = _check_rate(sample_rate)
    x = as_mono(audio)
    _, feats = _onset_features(x, sr, np.asarray(onsets, np.float64).reshape(-1), None)
    n = len(IMPACT_NAMES)
    return [IMPACT_NAMES[int(np.argmax(s[:n]))] for _, s, _ in feats]


def classify_onsets(audio: Tensor | np.ndarray, onsets: Sequence[float] | np.ndarray | None = None,
                    sample_rate: int = SAMPLE_RATE, music: dict | str | None = None) -> list[dict]:  # fmt: skip
    """Each onset as ``{"time", "kind": "impact" | "music", "color", "shape", "score"}``.

    Notes are :data:`~moviegen.data.sound.INSTRUMENTS` tones at the note frequencies of every key and
    mood, or only the instrument / key / mood ``music`` names (a dict like a world clip's
    ``attributes["music"]`` or a music prompt). Music is present when the onsets hold a beat grid
    (:func:`estimate_tempo`'s comb) whose onsets mostly match a note better than any impact; then an onset
    off the grid is an impact, and one on it is music unless its new energy is :data:`MIXTURE_LOUDNESS`
    times the median note's (an impact on the beat: its colour and shape are those of the impact template
    that, with the best note, fits the spectra best). Without music every onset is an impact. ``color``,
    ``shape`` and ``score`` (the impact template's cosine) are those of the best impact template, also for
    music onsets."""
    from scipy.optimize import nnls

    from moviegen.data.sound import parse_music_prompt

    sr = _check_rate(sample_rate)
    x = as_mono(audio)
    times = onset_times(x, sr) if onsets is None else np.sort(np.asarray(onsets, np.float64).reshape(-1))
    if isinstance(music, str):
        music = parse_music_prompt(music)
    _, feats = _onset_features(x, sr, times, music)
    n = len(IMPACT_NAMES)
    rows = []
    for t, (_, s, _) in zip(times, feats, strict=True):
        k = int(np.argmax(s[:n]))
        note_better = len(s) > n and float(s[n:].max()) > float(s[k])
        rows.append(dict(time=float(t), kind="impact", color=IMPACT_NAMES[k][0], shape=IMPACT_NAMES[k][1],
                         score=float(s[k]), _note=note_better))  # fmt: skip
    grid = _beat_grid(times, len(x) / sr, 60.0, 200.0)
    if grid is not None:
        on = grid[2]
        if on.any() and np.mean([r["_note"] for r, o in zip(rows, on, strict=True) if o]) > 0.5:
            energy = np.array([np.linalg.norm(f[0]) for f in feats])
            typical = float(np.median(energy[on]))
            for j in np.flatnonzero(on):
                if energy[j] <= MIXTURE_LOUDNESS * typical:
                    rows[j]["kind"] = "music"
                    continue
                r, s, lin = feats[j]  # an impact on the beat: fit it with the best note
                note = n + int(np.argmax(s[n:]))
                fits = [nnls(lin[[note, i]].T, r)[1] for i in range(n)]
                i = int(np.argmin(fits))
                rows[j].update(color=IMPACT_NAMES[i][0], shape=IMPACT_NAMES[i][1], score=float(s[i]))
    for r in rows:
        del r["_note"]
    return rows


# -- music


def _beat_grid(onsets: np.ndarray, duration: float, lo: float, hi: float):
    """(period s, phase s, on-grid mask) of the fastest beat grid (``lo``–``hi`` BPM) that at least
    75 % of its beats within the onsets' span fall on (±:data:`BEAT_TOLERANCE_S`), refined by a line
    through the onsets on it; None when no grid explains ≥ 4 onsets."""
    t = np.sort(np.asarray(onsets, np.float64))
    if len(t) < 4 or not 0 < lo < hi:
        return None
    tol = BEAT_TOLERANCE_S
    periods = np.arange(60.0 / hi, 60.0 / lo + 5e-4, 1e-3)
    span_lo, span_hi = max(0.0, t[0] - tol), min(duration, t[-1] + tol)
    best_score = np.zeros(len(periods))
    best_anchor = np.zeros(len(periods), int)
    for j, p in enumerate(periods):
        d = (t[None, :] - t[:, None]) / p  # anchor × onset, in beats
        k = np.round(d)
        on = np.abs(d - k) * p <= tol
        hits = np.array([len(np.unique(k[a][on[a]])) for a in range(len(t))])
        first = np.ceil((span_lo - t) / p - 1e-9)
        last = np.floor((span_hi - t) / p + 1e-9)
        beats = np.maximum(last - first + 1, 1)
        score = np.where(hits >= 4, hits / beats, 0.0)
        best_anchor[j] = int(np.argmax(score))
        best_score[j] = score[best_anchor[j]]
    top = float(best_score.max())
    if top < 0.75:
        return None
    j = int(np.flatnonzero(best_score >= 0.9 * top)[0])  # the fastest period that explains the onsets
    near = np.flatnonzero(np.abs(periods - periods[j]) <= 0.02 * periods[j])
    j = int(near[np.argmax(best_score[near])])
    p, a = periods[j], t[best_anchor[j]]
    for _ in range(2):  # a line through the onsets on the grid: slope = period
        k = np.round((t - a) / p)
        on = np.abs(t - a - k * p) <= tol
        if on.sum() < 3 or len(np.unique(k[on])) < 2:
            break
        p, a = np.polyfit(k[on], t[on], 1)
        a = float(a)
    k = np.round((t - a) / p)
    on = np.abs(t - a - k * p) <= tol
    return float(p), float(a % p), on


def estimate_tempo(audio: Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE, lo: float = 60.0,
                   hi: float = 200.0, onsets: Sequence[float] | np.ndarray | None = None) -> float | None:  # fmt: skip
    """The tempo (BPM) of a waveform's onsets (:func:`onset_times`, or ``onsets`` given): a comb over
    periods (1 ms steps in [60/hi, 60/lo] s) and phases (every onset as an anchor) scores each grid by the
    share of its beats that hold an onset; the fastest period explaining ≥ 90 % of the best share wins and
    is refined by a line through the onsets on its grid. None without such a grid (< 4 onsets on it, or
    under 75 % of its beats)."""
    sr = _check_rate(sample_rate)
    x = as_mono(audio)
    t = onset_times(x, sr) if onsets is None else np.asarray(onsets, np.float64).reshape(-1)
    grid = _beat_grid(t, len(x) / sr, float(lo), float(hi))
    return None if grid is None else 60.0 / grid[0]


# -- signal scores


def mel_spectrogram(audio: Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = 80,
                    n_fft: int = 2048, hop_s: float = 0.01) -> np.ndarray:  # fmt: skip
    """log10 of a mel power spectrogram (n_mels, frames), 10 ms hop, 20 Hz–sr/2, floored at 1e-5
    (-100 dB)."""
    sr = _check_rate(sample_rate)
    x = as_mono(audio)
    fb = mel_filterbank(sr, n_fft, n_mels, 20.0, sr / 2)
    return np.log10(np.maximum(fb @ _stft_power(x, n_fft, round(hop_s * sr)), 1e-10)) / 2


def mel_distance(reference: Tensor | np.ndarray, estimate: Tensor | np.ndarray,
                 sample_rate: int = SAMPLE_RATE) -> float:  # fmt: skip
    """Mean absolute difference of the two :func:`mel_spectrogram` (log10 magnitude units; 0 is equal, 1 a
    factor of ten everywhere), over the shorter length [the paper's autoencoder table uses a mel distance;
    ours is this one]."""
    a, b = mel_spectrogram(reference, sample_rate), mel_spectrogram(estimate, sample_rate)
    n = min(a.shape[1], b.shape[1])
    return float(np.abs(a[:, :n] - b[:, :n]).mean())


def si_sdr(reference: Tensor | np.ndarray, estimate: Tensor | np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio (dB) of ``estimate`` against ``reference`` (means
    removed, over the shorter length); -inf-safe (clamped to ±100 dB)."""
    s, e = as_mono(reference), as_mono(estimate)
    n = min(len(s), len(e))
    s, e = s[:n] - s[:n].mean(), e[:n] - e[:n].mean()
    scale = float(e @ s) / max(float(s @ s), 1e-20)
    target = scale * s
    noise = e - target
    ratio = float(target @ target) / max(float(noise @ noise), 1e-20)
    return float(np.clip(10 * np.log10(max(ratio, 1e-10)), -100.0, 100.0))


# -- a world clip against its truth


def score_world_clip(audio: Tensor | np.ndarray, clip: SoundClip, sample_rate: int | None = None,
                     tolerance: float = EVENT_TOLERANCE_S, onsets: np.ndarray | None = None) -> dict:  # fmt: skip
    """One generated waveform scored against the world clip it was made for (same video, caption and
    music prompt): the onsets :func:`classify_onsets` calls impacts are matched to the true impacts
    (:func:`match_events`); each matched pair scores pitch (the colour the impact template names) and
    timbre (its shape); with music, the tempo :func:`estimate_tempo` reads from all onsets (its comb
    finds the beat grid among the impacts; else from the onsets named music) is within 5 % of the
    prompt's. Keys: ``kind``, ``tp``, ``fp``,
    ``fn``, ``errors_s``, ``pitch_hits``, ``timbre_hits`` (per matched pair, 0/1), ``tempo_true``,
    ``tempo`` (None when unreadable) and ``tempo_ok`` (None without music). ``onsets`` (s): the
    waveform's :func:`onset_times` when the caller has them already."""
    sr = clip.sample_rate if sample_rate is None else sample_rate
    x = as_mono(audio)
    music = clip.attributes.get("music")
    rows = classify_onsets(x, onsets, sr, music)
    impacts = [r for r in rows if r["kind"] == "impact"]
    truth = clip.impacts
    m = match_events([r["time"] for r in impacts], [i.time for i in truth], tolerance)
    pitch, timbre = [], []
    for i, j, _ in m["matched"]:
        pitch.append(int(PITCHES[impacts[i]["color"]] == truth[j].pitch))
        timbre.append(int(impacts[i]["shape"] == truth[j].shape))
    tempo_true = tempo = tempo_ok = None
    if music is not None:
        tempo_true = float(music["tempo"])
        tempo = estimate_tempo(x, sr, onsets=[r["time"] for r in rows])
        notes = [r["time"] for r in rows if r["kind"] == "music"]
        if tempo is None and len(notes) >= 4:
            tempo = estimate_tempo(x, sr, onsets=notes)
        tempo_ok = tempo is not None and abs(tempo - tempo_true) <= 0.05 * tempo_true
    return dict(kind=clip.kind, tp=m["tp"], fp=m["fp"], fn=m["fn"], errors_s=m["errors"], pitch_hits=pitch,
                timbre_hits=timbre, tempo_true=tempo_true, tempo=tempo, tempo_ok=tempo_ok)  # fmt: skip


def aggregate_world_scores(rows: Sequence[dict]) -> dict:
    """Pools :func:`score_world_clip` rows: impact precision / recall / F1 over all events (no event
    predicted and none true counts as perfect), the median and mean |onset − collision| (ms) of matched
    impacts, pitch and timbre accuracy over matched impacts, and the share of music clips whose tempo is
    within 5 % (rates in [0, 1]; None where a score has nothing to count)."""
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    errors = [e for r in rows for e in r["errors_s"]]
    pitch = [h for r in rows for h in r["pitch_hits"]]
    timbre = [h for r in rows for h in r["timbre_hits"]]
    tempo = [bool(r["tempo_ok"]) for r in rows if r["tempo_ok"] is not None]
    return dict(
        clips=len(rows), impacts_true=tp + fn, impacts_predicted=tp + fp,
        impact_precision=tp / (tp + fp) if tp + fp else (1.0 if not fn else 0.0),
        impact_recall=tp / (tp + fn) if tp + fn else (1.0 if not fp else 0.0),
        impact_f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        median_onset_error_ms=1000 * float(np.median(errors)) if errors else None,
        mean_onset_error_ms=1000 * float(np.mean(errors)) if errors else None,
        pitch_accuracy=float(np.mean(pitch)) if pitch else None,
        timbre_accuracy=float(np.mean(timbre)) if timbre else None,
        tempo_within_5pct=float(np.mean(tempo)) if tempo else None, music_clips=len(tempo),
    )  # fmt: skip


# -- an audio embedding for the distribution distance (FAD analogue)

SOUND_CLASSES = tuple(f"impact:{s}" for s in TIMBRES) + ("still",) + tuple(f"ambience:{p}" for p in AMBIENCES)
"""The embedding's first head: what makes the sound (a moving shape's timbre, a still room, a scene)."""
MUSIC_CLASSES = ("none", *INSTRUMENTS)
"""Its second head: which instrument plays, if any."""
EMBED_MELS = 64


@dataclass(frozen=True)
class AudioEmbeddingConfig(Config):
    """A small CNN over a 64-band log-mel spectrogram (10 ms hop), averaged over time into ``dim``."""

    channels: tuple[int, ...] = (16, 32, 64)
    dim: int = 64
    sample_rate: int = SAMPLE_RATE

    PRESETS: ClassVar[dict] = {"world": {}, "tiny": dict(channels=(4, 4, 4), dim=8)}

    def validate(self) -> None:
        name = "AudioEmbeddingConfig"
        require(len(self.channels) >= 1 and all(c > 0 for c in self.channels), name, "channels must be > 0")
        require(self.dim > 0, name, "dim must be > 0")
        require(8000 <= self.sample_rate <= 192000, name, "sample_rate must be in [8000, 192000]")


class AudioEmbedding(nn.Module, PretrainedMixin):
    """``embed(audio)`` → (dim,) per waveform [choice: the paper reports FAD-style distances with a
    pretrained audio classifier's embedding (e.g. PANNs/VGGish); none ships offline, so ours is trained
    here to name the world's sound classes and instruments (:func:`train_audio_embedding`), and any
    folder of the same format loads instead]."""

    config_class = AudioEmbeddingConfig

    def __init__(self, config: AudioEmbeddingConfig):
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = []
        width = 1
        for ch in c.channels:
            layers += [nn.Conv2d(width, ch, 3, stride=2, padding=1), nn.GroupNorm(1, ch), nn.SiLU()]
            width = ch
        self.net = nn.Sequential(*layers)
        self.project = nn.Linear(width, c.dim)
        self.sound = nn.Linear(c.dim, len(SOUND_CLASSES))
        self.music = nn.Linear(c.dim, len(MUSIC_CLASSES))

    def mels(self, audio: Tensor | np.ndarray) -> Tensor:
        """(1, 64, frames) log-mel of one waveform at the config's rate, roughly unit scale."""
        spec = mel_spectrogram(audio, self.config.sample_rate, n_mels=EMBED_MELS)
        return torch.from_numpy((spec + 3.0) / 2.0).float()[None]

    def forward(self, mels: Tensor) -> Tensor:
        """(B, 1, 64, frames) → (B, dim)."""
        h = self.net(mels.to(self.project.weight.dtype))
        return self.project(h.mean(dim=(2, 3)))

    @torch.no_grad()
    def embed(self, audios: Sequence[Tensor | np.ndarray]) -> np.ndarray:
        """(len(audios), dim) float64 embeddings, one waveform at a time (lengths may differ)."""
        if len(audios) == 0:
            raise MovieGenError("no audio to embed")
        return np.stack([self(self.mels(a)[None].to(self.project.weight.device))[0].double().cpu().numpy()
                         for a in audios])  # fmt: skip


def sound_labels(clip: SoundClip) -> tuple[int, int]:
    """(sound class, music class) of a world clip (:data:`SOUND_CLASSES`, :data:`MUSIC_CLASSES`)."""
    a = clip.attributes
    if clip.kind == "camera":
        sound = f"ambience:{a['photo']}"
    else:
        sound = "still" if a["motion"] == "still" else f"impact:{a['shape']}"
    music = a["music"]["instrument"] if "music" in a else "none"
    return SOUND_CLASSES.index(sound), MUSIC_CLASSES.index(music)


def train_audio_embedding(world: SoundWorld, steps: int = 300, clips: int = 240, batch: int = 16,
                          preset: str = "world", seed: int = 0, lr: float = 2e-3) -> AudioEmbedding:  # fmt: skip
    """Trains :class:`AudioEmbedding` on ``clips`` training clips of ``world`` (cross-entropy on both
    heads, AdamW, cosine decay), each a random 2 s crop per step."""
    torch.manual_seed(seed)
    model = AudioEmbedding(AudioEmbeddingConfig.preset(preset, sample_rate=world.config.sample_rate))
    pool = [world.clip("train", 50_000 + i) for i in range(clips)]
    mels = [model.mels(c.audio) for c in pool]
    labels = torch.tensor([sound_labels(c) for c in pool])
    crop = min(200, min(m.shape[-1] for m in mels))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(0, len(pool), (batch,), generator=gen)
        starts = [int(torch.randint(0, mels[i].shape[-1] - crop + 1, (1,), generator=gen)) for i in idx]
        x = torch.stack([mels[i][..., s : s + crop] for i, s in zip(idx.tolist(), starts, strict=True)])
        e = model(x)
        loss = F.cross_entropy(model.sound(e), labels[idx, 0]) + F.cross_entropy(model.music(e), labels[idx, 1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (N, D) and (M, D), N, M >= 2:
    ‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½)."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise MovieGenError(f"need two embedding sets (N >= 2, D) of one width, got {a.shape} and {b.shape}")
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # a few samples in many dimensions: singular covariances are expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = np.real(linalg.sqrtm(ca @ cb))
    return float(max(mu @ mu + np.trace(ca + cb - 2 * root), 0.0))


DEFAULT_AUDIO_EMBEDDING = Path(__file__).resolve().parent.parent / "weights" / "audio-embedding"


def load_audio_embedding(path: str | Path | None = None) -> AudioEmbedding:
    """An :class:`AudioEmbedding` folder (default: the shipped one, trained by ``moviegen train audio``)."""
    folder = DEFAULT_AUDIO_EMBEDDING if path is None else Path(path)
    if path is None and not (folder / "config.json").is_file():
        raise MovieGenError("no shipped audio embedding found: pass an audio-embedding folder (moviegen train audio)")
    return AudioEmbedding.from_pretrained(folder).eval()
