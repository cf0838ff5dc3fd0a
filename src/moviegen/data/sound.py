"""The built-in world, with sound: video clips whose 48 kHz audio is synthesised from exact ground truth.

Movie Gen Audio (paper §7) makes sound effects synchronised with a video, ambience, and music from a
prompt. This world makes data for all three with answers known to the sample:

* **object clips**: one shape of one colour (the video world's shapes and palette) moving inside the
  frame and bouncing off its walls (``horizontal``, ``vertical`` or ``diagonal`` motion) or staying
  ``still``. Every wall contact is an **impact** at an exactly known time (the trajectory is piecewise
  linear, so a contact's time is solved, not sampled at a frame), whose **timbre** comes from the shape
  and whose **pitch** from the colour (:data:`TIMBRES`, :data:`PITCHES`). A moving object also makes a
  soft continuous **rolling** noise; a still one makes none;
* **camera clips**: a photo under a moving camera (the video world's), with the **ambience** of its
  scene (:data:`AMBIENCES`), continuous and without events;
* **music**: any clip may carry a music prompt (instrument, tempo, key, mood) and then a melody rendered
  by a small additive synthesizer is mixed under the effects (:func:`render_music`).

The audio caption says what kind of sound it is, never the colour or shape: timbre and pitch must be
heard from the video, as a sound designer would. Captions come in several phrasings; the benchmark's
paraphrases (:data:`PARAPHRASES`) are never used in training.

**Held-out combinations**: an object triple (colour c, shape s, motion m, indices in :data:`COLORS`,
:data:`SHAPES`, :data:`SOUND_MOTIONS`) with ``(c + 2·s + m) % 5 == 0`` never appears in training clips,
and a music pair (instrument i, key k) with ``(i + k) % 4 == 0`` never does; each attribute does.

Every clip is a pure function of ``(seed, split, index)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from moviegen.config import Config, require
from moviegen.data.world import (
    CAMERA_MOTIONS,
    COLORS,
    PHOTOS,
    SHAPE_EXTENT,
    SHAPES,
    photo_tensor,
    render_objects,
    render_views,
)
from moviegen.errors import MovieGenError

SAMPLE_RATE = 48_000
SOUND_MOTIONS = ("horizontal", "vertical", "diagonal", "still")
TIMBRES: dict[str, dict] = {
    # partial frequency ratios, amplitudes and decay time constant (s): a plucked-wood knock, a hollow
    # clarinet-like square wave and a metal bar's inharmonic modes (free-free beam ratios)
    "circle": dict(name="wooden knock", ratios=(1.0, 2.0, 3.0, 4.0), amps=(1.0, 0.5, 0.33, 0.25), decay=0.12),
    "square": dict(name="hollow thud", ratios=(1.0, 3.0, 5.0, 7.0), amps=(1.0, 0.45, 0.25, 0.15), decay=0.20),
    "triangle": dict(name="metal clang", ratios=(1.0, 2.756, 5.404, 8.933), amps=(1.0, 0.6, 0.4, 0.3),
                     decay=0.35),
}  # fmt: skip
PITCHES: dict[str, float] = {  # the fundamental of each colour's impacts (Hz): a whole-tone-ish ladder
    "red": 220.0, "orange": 246.9, "yellow": 277.2, "green": 311.1,
    "cyan": 349.2, "blue": 392.0, "magenta": 440.0, "white": 493.9,
}  # fmt: skip
AMBIENCES: dict[str, dict] = {  # a band of noise (Hz), an amplitude modulation (Hz) and a hum (Hz, or 0)
    "astronaut": dict(name="radio static", band=(3000.0, 9000.0), am=0.0, hum=0.0, level=0.05),
    "coffee": dict(name="cafe murmur", band=(300.0, 1800.0), am=3.0, hum=0.0, level=0.07),
    "chelsea": dict(name="purring", band=(60.0, 400.0), am=25.0, hum=0.0, level=0.10),
    "rocket": dict(name="engine rumble", band=(30.0, 250.0), am=0.0, hum=0.0, level=0.12),
    "immunohistochemistry": dict(name="laboratory hum", band=(500.0, 4000.0), am=0.0, hum=120.0, level=0.03),
}  # fmt: skip
INSTRUMENTS: dict[str, dict] = {
    "piano": dict(ratios=(1, 2, 3, 4, 5), amps=(1.0, 0.4, 0.25, 0.12, 0.06), attack=0.005, decay=0.45),
    "organ": dict(ratios=(1, 2, 4, 8), amps=(1.0, 0.8, 0.5, 0.3), attack=0.03, decay=0.0),
    "pluck": dict(ratios=(1, 2, 3, 4, 6), amps=(1.0, 0.7, 0.45, 0.3, 0.15), attack=0.002, decay=0.15),
}
KEYS = ("C", "D", "E", "F", "G", "A")
KEY_ROOTS = {"C": 261.63, "D": 293.66, "E": 329.63, "F": 349.23, "G": 392.0, "A": 440.0}
TEMPOS = (90, 120, 150)
MOODS = {"happy": "major", "sad": "minor"}
MUSIC_LEVEL = 0.25
ROLL_LEVEL = 0.02
IMPACT_LEVEL = 0.6

SOUND_CAPTIONS = {
    "horizontal": ("an object bouncing from side to side", "knocks as something slides left and right",
                   "a thing ricocheting between the side walls"),
    "vertical": ("an object bouncing up and down", "knocks as something bounces between floor and ceiling",
                 "a thing rebounding up and down"),
    "diagonal": ("an object bouncing around a box", "knocks as something ricochets off every wall",
                 "a thing bouncing off the walls"),
    "still": ("a quiet room", "near silence", "a still, silent room"),
}  # fmt: skip
AMBIENCE_CAPTIONS = {name: (f"ambient sound: {spec['name']}", f"the sound of {spec['name']}",
                            f"background {spec['name']}")
                     for name, spec in AMBIENCES.items()}  # fmt: skip
PARAPHRASES = {
    "horizontal": ("sound of a thing colliding with the left and right edges", "tapping as it rebounds sideways"),
    "vertical": ("sound of a thing hitting the top and bottom edges", "tapping as it rebounds vertically"),
    "diagonal": ("sound of a thing hitting every edge of the frame", "clatter of a thing rebounding in a box"),
    "still": ("no sound at all", "hushed stillness"),
    "astronaut": ("crackling radio noise",), "coffee": ("murmur of people in a coffee shop",),
    "chelsea": ("a cat purring softly",), "rocket": ("the low roar of rocket engines",),
    "immunohistochemistry": ("the buzz of lab equipment",),
}  # fmt: skip
"""Audio captions in wordings the training captions never use (the benchmark's paraphrase set)."""


def is_held_out(color: int, shape: int, motion: int) -> bool:
    """True for the object triples (colour, shape, motion indices) that never appear in training."""
    return (color + 2 * shape + motion) % 5 == 0


def is_held_out_music(instrument: int, key: int) -> bool:
    """True for the (instrument, key) pairs that never appear in training."""
    return (instrument + key) % 4 == 0


def held_out_triples() -> list[tuple[str, str, str]]:
    names = list(COLORS)
    return [(names[c], SHAPES[s], SOUND_MOTIONS[m]) for c in range(len(names)) for s in range(len(SHAPES))
            for m in range(len(SOUND_MOTIONS)) if is_held_out(c, s, m)]  # fmt: skip


def music_prompt(instrument: str, tempo: int, key: str, mood: str) -> str:
    """The canonical music prompt, e.g. ``"happy piano melody in C major at 120 BPM"``."""
    return f"{mood} {instrument} melody in {key} {MOODS[mood]} at {tempo} BPM"


def parse_music_prompt(prompt: str) -> dict | None:
    """The (instrument, tempo, key, mood) a music prompt names, read word by word; None if it names no
    instrument. Unnamed parts are None (the metrics then skip them)."""
    words = prompt.lower().replace(",", " ").split()
    instrument = next((w for w in words if w in INSTRUMENTS), None)
    if instrument is None:
        return None
    key = next((w.upper() for w in prompt.replace(",", " ").split() if w in KEYS), None)
    mood = next((w for w in words if w in MOODS), None)
    mode = "minor" if "minor" in words else "major" if "major" in words else (MOODS[mood] if mood else None)
    tempo = None
    for i, w in enumerate(words):
        if w == "bpm" and i > 0 and words[i - 1].isdigit():
            tempo = int(words[i - 1])
    return dict(instrument=instrument, tempo=tempo, key=key, mode=mode, mood=mood)


@dataclass(frozen=True)
class SoundWorldConfig(Config):
    """Sizes: a ``seconds``-long clip at ``fps`` of ``size``² pixels with ``sample_rate`` audio. Speeds are
    in pixels per second at ``size`` 32."""

    size: int = 32
    fps: int = 16
    seconds: float = 4.0
    sample_rate: int = SAMPLE_RATE
    min_radius: float = 4.0
    max_radius: float = 5.5
    min_speed: float = 14.0
    max_speed: float = 26.0
    object_fraction: float = 0.7
    music_fraction: float = 0.3

    PRESETS: ClassVar[dict] = {"default": {}}

    def validate(self) -> None:
        name = "SoundWorldConfig"
        require(self.size >= 16 and self.size % 8 == 0, name, "size must be a multiple of 8, >= 16")
        require(1 <= self.fps <= 120, name, "fps must be in [1, 120]")
        require(0 < self.seconds <= 600, name, "seconds must be in (0, 600]")
        require(8000 <= self.sample_rate <= 192000, name, "sample_rate must be in [8000, 192000]")
        require(0 < self.min_radius <= self.max_radius, name, "need 0 < min_radius <= max_radius")
        require(0 < self.min_speed <= self.max_speed, name, "need 0 < min_speed <= max_speed")
        for key in ("object_fraction", "music_fraction"):
            require(0.0 <= getattr(self, key) <= 1.0, name, f"{key} must be in [0, 1]")

    @property
    def num_frames(self) -> int:
        return round(self.seconds * self.fps)

    @property
    def num_samples(self) -> int:
        return round(self.seconds * self.sample_rate)


@dataclass
class Impact:
    """One wall contact: its time (s), the pitch (Hz) and timbre (shape) of its sound."""

    time: float
    pitch: float
    shape: str


@dataclass
class SoundClip:
    """A clip's video (3, T, H, W) in [-1, 1] at ``fps``, audio (N,) in [-1, 1] at ``sample_rate``, the
    audio caption, the music prompt (or None) and the ground truth."""

    video: Tensor
    audio: Tensor
    fps: int
    sample_rate: int
    caption: str
    music: str | None
    kind: str  # "object" or "camera"
    impacts: list[Impact] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """What the audio model is conditioned on: the caption, and the music prompt after it."""
        return compose_audio_prompt(self.caption, self.music)


def compose_audio_prompt(caption: str, music: str | None = None) -> str:
    """The one text the audio model reads: ``"<caption>. Music: <music prompt>."`` or the caption alone
    [choice: the paper conditions on an audio caption and an optional music prompt by cross-attention;
    one text with a ``Music:`` part gives both to the same encoder]."""
    caption = caption.strip().rstrip(".")
    if not caption:
        raise MovieGenError("the audio prompt is empty")
    return f"{caption}. Music: {music.strip().rstrip('.')}." if music and music.strip() else caption


def bounce_path(start: float, velocity: float, lo: float, hi: float, times: np.ndarray) -> np.ndarray:
    """Positions at ``times`` of a point moving at ``velocity`` between walls ``lo`` and ``hi``, reflecting
    off them (a triangle wave); exact, not integrated."""
    span = hi - lo
    if span <= 0 or velocity == 0:
        return np.full_like(times, start, dtype=np.float64)
    u = (start - lo + velocity * times) % (2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


def contact_times(start: float, velocity: float, lo: float, hi: float, seconds: float) -> list[float]:
    """Times in [0, seconds) at which :func:`bounce_path` touches a wall."""
    if velocity == 0 or hi <= lo:
        return []
    span, speed = hi - lo, abs(velocity)
    # distance to the first wall in the direction of motion, then a wall every `span`
    first = (hi - start) if velocity > 0 else (start - lo)
    out, d = [], first
    while d / speed < seconds:
        if d > 0:
            out.append(d / speed)
        d += span
    return out


def decaying_partials(
    f0: float, ratios, amps, decay: float, attack: float, seconds: float, sr: int
) -> np.ndarray:
    """Sum of sine partials ``amps[k]·sin(2π·f0·ratios[k]·t)`` under an attack and exponential decay (decay 0
    = sustained), normalised to peak ≈ 1; partials above Nyquist are left out."""
    t = np.arange(round(seconds * sr)) / sr
    out = np.zeros_like(t)
    for r, a in zip(ratios, amps, strict=True):
        if f0 * r < sr / 2:
            out += a * np.sin(2 * np.pi * f0 * r * t)
    env = np.minimum(t / attack, 1.0) if attack > 0 else np.ones_like(t)
    if decay > 0:
        env = env * np.exp(-t / decay)
    return out * env / max(sum(amps), 1e-9)


def impact_sound(pitch: float, shape: str, sr: int) -> np.ndarray:
    """One impact of ``shape``'s timbre at ``pitch`` (Hz): 5 τ long, 1 ms attack."""
    spec = TIMBRES[shape]
    return decaying_partials(pitch, spec["ratios"], spec["amps"], spec["decay"], 0.001, 5 * spec["decay"], sr)


def band_noise(rng: np.random.Generator, n: int, sr: int, band: tuple[float, float]) -> np.ndarray:
    """Gaussian noise band-limited to ``band`` (Hz) by zeroing FFT bins; unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[(freqs < band[0]) | (freqs > band[1])] = 0
    out = np.fft.irfft(spec, n)
    return out / max(float(np.sqrt(np.mean(out**2))), 1e-9)


def render_ambience(photo: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    spec = AMBIENCES[photo]
    t = np.arange(n) / sr
    out = band_noise(rng, n, sr, spec["band"])
    if spec["am"]:
        out *= 0.6 + 0.4 * np.sin(2 * np.pi * spec["am"] * t + rng.uniform(0, 2 * np.pi))
    if spec["hum"]:
        out = 0.3 * out + 2.0 * (np.sin(2 * np.pi * spec["hum"] * t) + 0.5 * np.sin(4 * np.pi * spec["hum"] * t))
    return spec["level"] * out


def note_frequencies(key: str, mode: str) -> list[float]:
    """The key's triad and octave (root, third, fifth, octave) in Hz."""
    root = KEY_ROOTS[key]
    third = 3 if mode == "minor" else 4
    return [root * 2 ** (s / 12) for s in (0, third, 7, 12)]


def beat_times(tempo: float, seconds: float, offset: float = 0.0) -> np.ndarray:
    """Note onsets: one per beat at ``tempo`` BPM from ``offset`` (s)."""
    return np.arange(offset, seconds, 60.0 / tempo)


def render_music(instrument: str, tempo: int, key: str, mood: str, n: int, sr: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A melody: one note per beat cycling through the key's triad (in an order drawn per clip), each a
    :data:`INSTRUMENTS` tone held for a beat. Returns the audio (n,) and its note onsets (s)."""
    spec = INSTRUMENTS[instrument]
    notes = note_frequencies(key, MOODS[mood])
    order = rng.permutation(len(notes))
    seconds = n / sr
    onsets = beat_times(tempo, seconds, offset=rng.uniform(0, 60.0 / tempo))
    beat = 60.0 / tempo
    out = np.zeros(n)
    for j, onset in enumerate(onsets):
        f0 = notes[order[j % len(notes)]]
        tone = decaying_partials(f0, spec["ratios"], spec["amps"], spec["decay"], spec["attack"], beat, sr)
        tone *= np.minimum(1.0, (beat - np.arange(len(tone)) / sr) / 0.01)  # 10 ms release, no clicks
        i = round(onset * sr)
        m = min(len(tone), n - i)
        out[i : i + m] += tone[:m]
    return out, onsets


class SoundWorld:
    """Deterministic audio-visual clip generator (module docstring)."""

    SPLITS = ("train", "val", "test")

    def __init__(self, config: SoundWorldConfig | None = None, seed: int = 0):
        self.config = config or SoundWorldConfig()
        self.seed = seed

    def rng(self, split: str, index: int, salt: int = 0) -> np.random.Generator:
        if split not in self.SPLITS:
            raise MovieGenError(f"unknown world split {split!r} (choose from {', '.join(self.SPLITS)})")
        return np.random.default_rng([self.seed, self.SPLITS.index(split), index, salt, 7])

    def clip(self, split: str, index: int, seconds: float | None = None) -> SoundClip:
        """A random training-distribution clip: never a held-out object triple or music pair."""
        cfg = self.config
        rng = self.rng(split, index)
        music = None
        if rng.random() < cfg.music_fraction:
            while True:
                i, k = rng.integers(len(INSTRUMENTS)), rng.integers(len(KEYS))
                if not is_held_out_music(i, k):
                    break
            music = (list(INSTRUMENTS)[i], int(rng.choice(TEMPOS)), KEYS[k], list(MOODS)[rng.integers(2)])
        if rng.random() < cfg.object_fraction:
            while True:
                c, s, m = rng.integers(len(COLORS)), rng.integers(len(SHAPES)), rng.integers(len(SOUND_MOTIONS))
                if not is_held_out(c, s, m):
                    break
            return self.object_clip(list(COLORS)[c], SHAPES[s], SOUND_MOTIONS[m], rng, music, seconds)
        photo = list(PHOTOS)[rng.integers(len(PHOTOS))]
        camera = CAMERA_MOTIONS[rng.integers(len(CAMERA_MOTIONS))]
        return self.camera_clip(photo, camera, rng, music, seconds)

    def _caption(self, options: tuple[str, ...], rng: np.random.Generator) -> str:
        return options[rng.integers(len(options))]

    def object_clip(
        self,
        color: str,
        shape: str,
        motion: str,
        rng: np.random.Generator | None = None,
        music: tuple | None = None,
        seconds: float | None = None,
        caption: str | None = None,
    ) -> SoundClip:
        """One bouncing (or still) object; ``music`` is (instrument, tempo, key, mood) or None."""
        cfg = self.config
        if color not in COLORS or shape not in SHAPES or motion not in SOUND_MOTIONS:
            raise MovieGenError(f"unknown object ({color}, {shape}, {motion})")
        rng = rng or np.random.default_rng(self.seed)
        seconds = cfg.seconds if seconds is None else seconds
        k = cfg.size / 32
        radius = rng.uniform(cfg.min_radius, cfg.max_radius) * k
        speed = rng.uniform(cfg.min_speed, cfg.max_speed) * k
        extent = radius * SHAPE_EXTENT[shape]
        lo, hi = extent + 0.5, cfg.size - extent - 0.5
        start = rng.uniform(lo, hi, size=2)
        angle = rng.uniform(math.radians(25), math.radians(65))
        sx, sy = rng.choice([-1.0, 1.0], size=2)
        vx, vy = {"horizontal": (sx * speed, 0.0), "vertical": (0.0, sy * speed), "still": (0.0, 0.0),
                  "diagonal": (sx * speed * math.cos(angle), sy * speed * math.sin(angle))}[motion]  # fmt: skip
        frames = round(seconds * cfg.fps)
        times = np.arange(frames) / cfg.fps
        centres = np.stack([bounce_path(start[0], vx, lo, hi, times), bounce_path(start[1], vy, lo, hi, times)], 1)
        background = rng.uniform(0.02, 0.12, size=3)
        video = render_objects(shape, COLORS[color], radius, centres, background, cfg.size)
        hits = sorted(contact_times(start[0], vx, lo, hi, seconds) + contact_times(start[1], vy, lo, hi, seconds))
        merged: list[float] = []
        for h in hits:  # a corner hit (both walls within 5 ms) is one impact
            if not merged or h - merged[-1] > 0.005:
                merged.append(h)
        impacts = [Impact(h, PITCHES[color], shape) for h in merged]
        n = round(seconds * cfg.sample_rate)
        audio = self._room_tone(rng, n)
        for imp in impacts:
            sound = IMPACT_LEVEL * impact_sound(imp.pitch, shape, cfg.sample_rate)
            i = round(imp.time * cfg.sample_rate)
            m = min(len(sound), n - i)
            audio[i : i + m] += sound[:m]
        if motion != "still":
            audio += ROLL_LEVEL * band_noise(rng, n, cfg.sample_rate, (1500.0, 3500.0))
        caption = caption or self._caption(SOUND_CAPTIONS[motion], rng)
        attributes = dict(color=color, shape=shape, motion=motion, radius=radius, speed=speed,
                          velocity=(vx, vy), start=start.tolist(), walls=(lo, hi))  # fmt: skip
        return self._finish(video, audio, caption, music, "object", impacts, attributes, rng)

    def camera_clip(
        self,
        photo: str,
        camera: str,
        rng: np.random.Generator | None = None,
        music: tuple | None = None,
        seconds: float | None = None,
        caption: str | None = None,
    ) -> SoundClip:
        """A photo under a moving camera with its scene's ambience."""
        cfg = self.config
        if photo not in PHOTOS or camera not in CAMERA_MOTIONS:
            raise MovieGenError(f"unknown camera clip ({photo}, {camera})")
        rng = rng or np.random.default_rng(self.seed)
        seconds = cfg.seconds if seconds is None else seconds
        frames = round(seconds * cfg.fps)
        image = photo_tensor(photo, 2 * cfg.size)
        _, h, w = image.shape
        times = np.arange(frames) / cfg.fps
        window = cfg.size * 1.25
        speed = 5.0 * (window / cfg.size)
        cx, cy = rng.uniform(0.4 * w, 0.6 * w), rng.uniform(0.4 * h, 0.6 * h)
        shift, zoom = np.zeros((frames, 2)), np.ones(frames)
        if camera.startswith("pan"):
            shift[:, 0] = bounce_path(0.0, (-1 if camera == "pan left" else 1) * speed, -0.2 * w, 0.2 * w, times)
        elif camera.startswith("tilt"):
            shift[:, 1] = bounce_path(0.0, (-1 if camera == "tilt up" else 1) * speed, -0.2 * h, 0.2 * h, times)
        elif camera.startswith("zoom"):
            zoom = 1.0 + 0.3 * (1 - np.cos(2 * np.pi * times / 8.0)) * (1 if camera == "zoom in" else -0.5)
        video = render_views(image, cx + shift[:, 0], cy + shift[:, 1], window / zoom, cfg.size)
        n = round(seconds * cfg.sample_rate)
        audio = self._room_tone(rng, n) + render_ambience(photo, n, cfg.sample_rate, rng)
        caption = caption or self._caption(AMBIENCE_CAPTIONS[photo], rng)
        return self._finish(video, audio, caption, music, "camera", [], dict(photo=photo, camera=camera), rng)

    def _room_tone(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return 0.002 * band_noise(rng, n, self.config.sample_rate, (50.0, 8000.0))

    def _finish(self, video, audio, caption, music, kind, impacts, attributes, rng) -> SoundClip:
        cfg = self.config
        prompt = None
        if music is not None:
            instrument, tempo, key, mood = music
            melody, onsets = render_music(instrument, tempo, key, mood, len(audio), cfg.sample_rate, rng)
            audio = audio + MUSIC_LEVEL * melody
            prompt = music_prompt(instrument, tempo, key, mood)
            attributes = {**attributes, "music": dict(instrument=instrument, tempo=tempo, key=key, mood=mood,
                                                      onsets=onsets.tolist())}  # fmt: skip
        audio = torch.from_numpy(np.clip(audio, -1.0, 1.0).astype(np.float32))
        return SoundClip(video, audio, cfg.fps, cfg.sample_rate, caption, prompt, kind, impacts, attributes)


__all__ = [
    "AMBIENCES",
    "INSTRUMENTS",
    "KEYS",
    "PARAPHRASES",
    "PITCHES",
    "SAMPLE_RATE",
    "SOUND_MOTIONS",
    "TEMPOS",
    "TIMBRES",
    "Impact",
    "SoundClip",
    "SoundWorld",
    "SoundWorldConfig",
    "compose_audio_prompt",
    "held_out_triples",
    "is_held_out",
    "is_held_out_music",
    "music_prompt",
    "parse_music_prompt",
]
