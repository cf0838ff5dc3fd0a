"""The Movie Gen Audio benchmark on held-out world combinations (paper §7's synchronisation, sound quality
and music judgements, measured against the sound world's exact truth).

Cases (:func:`cases`): every held-out object triple (:func:`~moviegen.data.sound.held_out_triples`:
colour × shape × motion combinations no training clip has) twice, once without music and once with a
held-out (instrument, key) pair; and one camera clip per photo with a held-out music pair. Captions are a
training phrasing, or with ``phrasing="paraphrase"`` a wording no training caption uses
(:data:`~moviegen.data.sound.PARAPHRASES`), and the music prompt then says the same in other words
(:func:`paraphrase_music`). :func:`score` pools :func:`~moviegen.eval.audio.score_world_clip` over the
cases (onset synchrony, impact F1, pitch and timbre of matched impacts, tempo within 5 %) and adds an
FAD-style distance of the generated set to real world audio of other clips (:func:`reference_set`).

Baselines measured in the same run (:func:`baselines`): ``truth`` (the world's own audio: the
detector's ceiling), ``autoencoder`` (the truth through the model's audio autoencoder: the ceiling of any
DiT on that latent), ``shuffled`` (another case's true audio: right kind of sound, wrong times) and
``silence``.

:func:`extension` measures the audio extension (§7) on a long world video: its duration, the impact
scores over the whole clip, and the seams: :func:`seam_ratios` compares loudness and spectral change at
the window boundaries with the rest of the clip, for each extension mode and for the true audio.

:func:`write_cases` / :func:`read_truth` store a scored set as MP4s with their audio plus
``world_truth.json``, which ``moviegen metrics`` scores again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from moviegen import flow
from moviegen.data.sound import (
    AMBIENCE_CAPTIONS,
    INSTRUMENTS,
    KEYS,
    MOODS,
    PARAPHRASES,
    SOUND_CAPTIONS,
    TEMPOS,
    Impact,
    SoundClip,
    SoundWorld,
    SoundWorldConfig,
    held_out_triples,
    is_held_out_music,
)
from moviegen.data.world import PHOTOS
from moviegen.errors import MovieGenError
from moviegen.eval.audio import (
    AudioEmbedding,
    aggregate_world_scores,
    as_mono,
    frechet_distance,
    mel_distance,
    mel_spectrogram,
    score_world_clip,
    si_sdr,
)
from moviegen.files import write_atomic

Progress = Callable[[int, int], None]
TRUTH_NAME = "world_truth.json"
PHRASINGS = ("train", "paraphrase")


def held_out_music() -> list[tuple[str, str]]:
    """The (instrument, key) pairs no training clip plays."""
    names = list(INSTRUMENTS)
    return [(names[i], KEYS[k]) for i in range(len(names)) for k in range(len(KEYS)) if is_held_out_music(i, k)]


def paraphrase_music(instrument: str, tempo: int, key: str, mood: str) -> str:
    """A music prompt in other words than :func:`~moviegen.data.sound.music_prompt`'s template, naming the
    same instrument, tempo, key and mode."""
    feel = {"happy": "cheerful", "sad": "melancholy"}[mood]
    return f"{feel} tune played on {instrument}, {tempo} bpm, key of {key} {MOODS[mood]}"


@dataclass
class AudioCase:
    index: int
    clip: SoundClip
    phrasing: str

    @property
    def name(self) -> str:
        a = self.clip.attributes
        what = f"{a['color']}-{a['shape']}-{a['motion']}" if self.clip.kind == "object" else a["photo"]
        return f"{self.index:03d}-{what}" + ("-music" if self.clip.music else "")


def cases(phrasing: str = "train", seconds: float = 4.0, seed: int = 0) -> list[AudioCase]:
    """The benchmark's cases (module docstring); deterministic for ``seed``."""
    if phrasing not in PHRASINGS:
        raise MovieGenError(f"phrasing must be one of {', '.join(PHRASINGS)}, got {phrasing!r}")
    world = SoundWorld(SoundWorldConfig(seconds=seconds), seed=seed)
    music_pairs = held_out_music()
    out: list[AudioCase] = []

    def music_for(k: int) -> tuple:
        instrument, key = music_pairs[k % len(music_pairs)]
        return instrument, TEMPOS[k % len(TEMPOS)], key, list(MOODS)[k % 2]

    def caption(options: tuple[str, ...], k: int) -> str:
        return options[k % len(options)]

    for t, (color, shape, motion) in enumerate(held_out_triples()):
        for with_music in (False, True):
            k = len(out)
            rng = world.rng("test", 90_000 + k)
            music = music_for(k) if with_music else None
            words = PARAPHRASES[motion] if phrasing == "paraphrase" else SOUND_CAPTIONS[motion]
            clip = world.object_clip(color, shape, motion, rng, music, caption=caption(words, t))
            out.append(AudioCase(k, _phrase_music(clip, music, phrasing), phrasing))
    for p, photo in enumerate(PHOTOS):
        k = len(out)
        rng = world.rng("test", 90_000 + k)
        words = PARAPHRASES[photo] if phrasing == "paraphrase" else AMBIENCE_CAPTIONS[photo]
        camera = ("pan left", "pan right", "tilt up", "zoom in", "static")[p % 5]
        music = music_for(k)
        clip = world.camera_clip(photo, camera, rng, music, caption=caption(words, p))
        out.append(AudioCase(k, _phrase_music(clip, music, phrasing), phrasing))
    return out


def _phrase_music(clip: SoundClip, music: tuple | None, phrasing: str) -> SoundClip:
    if music is not None and phrasing == "paraphrase":
        clip.music = paraphrase_music(*music)
    return clip


def reference_set(count: int = 48, seconds: float = 4.0, seed: int = 1) -> list[Tensor]:
    """Real world audio of validation clips (none of them a case) for the distribution distance."""
    world = SoundWorld(SoundWorldConfig(seconds=seconds), seed=seed)
    return [world.clip("val", 70_000 + i).audio for i in range(count)]


@torch.no_grad()
def generate_cases(pipe, all_cases: list[AudioCase], steps: int | None = None, guidance: float | None = None,
                   seed: int = 0, progress: Progress | None = None) -> list[Tensor]:  # fmt: skip
    """Each case's audio from its video, caption and music prompt (seed ``seed + index``)."""
    out = []
    for i, case in enumerate(all_cases):
        c = case.clip
        out.append(pipe(c.video, c.caption, c.music, fps=c.fps, num_steps=steps, guidance_scale=guidance,
                        seed=seed + case.index))  # fmt: skip
        if progress:
            progress(i + 1, len(all_cases))
    return out


def score(audios: list[Tensor], all_cases: list[AudioCase], embedding: AudioEmbedding | None = None,
          reference: np.ndarray | None = None) -> dict:  # fmt: skip
    """:func:`~moviegen.eval.audio.aggregate_world_scores` over the cases; ``no_music``: the same over the
    object cases without music (synchrony without the detector's music/impact confusion);
    ``camera_false_impacts``; and ``fad`` (with an embedding and reference embeddings)."""
    if len(audios) != len(all_cases):
        raise MovieGenError(f"{len(audios)} audios for {len(all_cases)} cases")
    rows = [score_world_clip(a, case.clip) for a, case in zip(audios, all_cases, strict=True)]
    report = aggregate_world_scores(rows)
    report["no_music"] = aggregate_world_scores([r for r, c in zip(rows, all_cases, strict=True)
                                                 if c.clip.kind == "object" and c.clip.music is None])  # fmt: skip
    report["camera_false_impacts"] = sum(r["fp"] for r in rows if r["kind"] == "camera")
    if embedding is not None and reference is not None:
        report["fad"] = frechet_distance(embedding.embed(audios), reference)
    return report


def baselines(all_cases: list[AudioCase], autoencoder=None) -> dict[str, list[Tensor]]:
    """The baselines' audio for the cases (module docstring); ``autoencoder`` adds its round trip."""
    truth = [c.clip.audio for c in all_cases]
    out = {"truth": truth}
    if autoencoder is not None:
        with torch.no_grad():
            out["autoencoder"] = [autoencoder.decode(autoencoder.encode(a[None]), a.shape[-1])[0] for a in truth]
    out["shuffled"] = [truth[(i + 7) % len(truth)] for i in range(len(truth))]
    out["silence"] = [1e-4 * torch.randn(a.shape, generator=torch.Generator().manual_seed(i)) for i, a in
                      enumerate(truth)]  # fmt: skip
    return out


@torch.no_grad()
def round_trip(autoencoder, audios: list[Tensor]) -> dict:
    """Mel distance and SI-SDR (means) of the autoencoder's round trip, and the same for the true STFT
    magnitude inverted by the decoder's Griffin-Lim (the phase-recovery ceiling)."""
    rows: dict[str, list[float]] = {k: [] for k in ("mel_distance", "si_sdr_db", "griffin_lim_mel_distance",
                                                    "griffin_lim_si_sdr_db")}  # fmt: skip
    for audio in audios:
        x = audio[None]
        y = autoencoder.decode(autoencoder.encode(x), x.shape[-1])[0]
        g = autoencoder.waveform(autoencoder.spectrum(autoencoder.pad(x)), x.shape[-1])[0]
        rows["mel_distance"].append(mel_distance(audio, y))
        rows["si_sdr_db"].append(si_sdr(audio, y))
        rows["griffin_lim_mel_distance"].append(mel_distance(audio, g))
        rows["griffin_lim_si_sdr_db"].append(si_sdr(audio, g))
    return {k: float(np.mean(v)) for k, v in rows.items()} | {"clips": len(audios)}


# -- audio extension


def boundaries(num_latent: int, window: int, overlap: int, extension: str) -> list[int]:
    """Latent frames where a window starts or ends inside the clip (the seams an extension may leave)."""
    if num_latent <= window:
        return []
    starts = flow.window_starts(num_latent, window, 0 if extension == "independent" else overlap)
    edges = {s for s in starts} | {s + window for s in starts}
    return sorted(e for e in edges if 0 < e < num_latent)


def seam_ratios(audio: Tensor | np.ndarray, seam_times: list[float], sample_rate: int, radius_s: float = 0.05
                ) -> dict:  # fmt: skip
    """Loudness and discontinuity at ``seam_times`` (s) relative to the rest of the clip: ``loudness`` is
    the RMS within ±``radius_s`` of the seams over the RMS elsewhere; ``discontinuity`` the mean absolute
    change of the log-mel spectrum between consecutive 10 ms frames near the seams over the same elsewhere
    (1.0: a seam is like any other place)."""
    x = as_mono(audio)
    if not seam_times:
        return {"loudness": None, "discontinuity": None, "seams": 0}
    spec = mel_spectrogram(x, sample_rate)
    change = np.abs(np.diff(spec, axis=1)).mean(0)
    frame_t = (np.arange(len(change)) + 1) * 0.01
    near_f = np.zeros(len(change), bool)
    t = np.arange(len(x)) / sample_rate
    near_s = np.zeros(len(x), bool)
    for s in seam_times:
        near_f |= np.abs(frame_t - s) <= radius_s
        near_s |= np.abs(t - s) <= radius_s
    rms = lambda v: float(np.sqrt(np.mean(v**2))) if v.size else 0.0  # noqa: E731
    return {"loudness": rms(x[near_s]) / max(rms(x[~near_s]), 1e-12),
            "discontinuity": float(change[near_f].mean()) / max(float(change[~near_f].mean()), 1e-12),
            "seams": len(seam_times)}  # fmt: skip


def long_clip(seconds: float = 60.0, seed: int = 0) -> SoundClip:
    """A long held-out world clip: a held-out object triple bouncing diagonally, with held-out music."""
    world = SoundWorld(SoundWorldConfig(seconds=seconds), seed=seed)
    color, shape, motion = next(t for t in held_out_triples() if t[2] == "diagonal")
    instrument, key = held_out_music()[0]
    return world.object_clip(color, shape, motion, world.rng("test", 99_999), (instrument, 120, key, "happy"),
                             caption=SOUND_CAPTIONS[motion][0])  # fmt: skip


@torch.no_grad()
def extension(pipe, clip: SoundClip, modes: tuple[str, ...] = ("triangular", "uniform", "independent", "context"),
              steps: int | None = None, seed: int = 0, progress: Progress | None = None
              ) -> dict[str, dict]:  # fmt: skip
    """For each extension mode (and ``truth``): seconds of audio made, impact scores over the clip, and
    :func:`seam_ratios` at that mode's window boundaries."""
    sr = pipe.sample_rate
    latent = pipe.autoencoder.num_latent_frames(len(clip.audio))
    rate = pipe.autoencoder.config.latent_rate
    out = {}
    triangular_seams = [b / rate for b in boundaries(latent, pipe.window, pipe.overlap, "triangular")]
    for k, mode in enumerate(("truth", *modes)):
        if mode == "truth":
            audio, seams = clip.audio, triangular_seams
        else:
            audio = pipe(clip.video, clip.caption, clip.music, fps=clip.fps, num_steps=steps, seed=seed, extension=mode)
            seams = [b / rate for b in boundaries(latent, pipe.window, pipe.overlap, mode)]
        scores = aggregate_world_scores([score_world_clip(audio, clip)])
        out[mode] = {"seconds": len(audio) / sr, **seam_ratios(audio, seams, sr),
                     **{k2: scores[k2] for k2 in ("impact_f1", "median_onset_error_ms", "pitch_accuracy",
                                                   "timbre_accuracy", "tempo_within_5pct")}}  # fmt: skip
        if progress:
            progress(k + 1, len(modes) + 1)
    return out


# -- stored sets for `moviegen metrics`


def clip_truth(clip: SoundClip) -> dict:
    """What :func:`~moviegen.eval.audio.score_world_clip` needs of a clip, as JSON."""
    return dict(kind=clip.kind, sample_rate=clip.sample_rate, fps=clip.fps, caption=clip.caption, music=clip.music,
                impacts=[[i.time, i.pitch, i.shape] for i in clip.impacts], attributes=clip.attributes)  # fmt: skip


def truth_clip(entry: dict) -> SoundClip:
    """The inverse of :func:`clip_truth` (without video and audio)."""
    try:
        impacts = [Impact(float(t), float(p), str(s)) for t, p, s in entry["impacts"]]
        return SoundClip(torch.zeros(0), torch.zeros(0), int(entry["fps"]), int(entry["sample_rate"]),
                         entry["caption"], entry["music"], entry["kind"], impacts, dict(entry["attributes"]))  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise MovieGenError(f"bad world truth entry: {e!r}") from None


def write_cases(folder: Path, all_cases: list[AudioCase], audios: list[Tensor], sample_rate: int) -> Path:
    """Each case as ``{name}.mp4`` (its video with ``audio`` as AAC) and ``world_truth.json`` (file → truth)."""
    from moviegen.audio_files import write_video_with_audio

    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for case, audio in zip(all_cases, audios, strict=True):
        name = f"{case.name}.mp4"
        write_video_with_audio(folder / name, case.clip.video, case.clip.fps, audio, sample_rate)
        truth[name] = clip_truth(case.clip)
    return write_atomic(folder / TRUTH_NAME, json.dumps(truth, indent=1) + "\n")


def read_truth(folder: Path) -> dict[str, SoundClip]:
    path = Path(folder) / TRUTH_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MovieGenError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise MovieGenError(f"{path}: expected an object of file → truth")
    return {str(k): truth_clip(v) for k, v in data.items()}


AUDIO_SUFFIXES = (".wav", ".mp4", ".m4a", ".mp3", ".aac", ".flac", ".ogg", ".mov", ".mkv")


def audio_files(folder: Path) -> list[str]:
    """The files of an audio folder: a bench index's (when ``index.json`` is there), else those of
    ``world_truth.json``, else every audio or video file in it."""
    folder = Path(folder)
    if (folder / "index.json").is_file():
        from moviegen.eval.bench import load_index

        return [r.file for r in load_index(folder) if r.status == "ok"]
    if (folder / TRUTH_NAME).is_file():
        return sorted(read_truth(folder))
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def is_audio_folder(folder: Path) -> bool:
    """A folder ``moviegen metrics`` scores for audio: world truth, or a bench index with audio prompts."""
    folder = Path(folder)
    if (folder / TRUTH_NAME).is_file():
        return True
    if (folder / "index.json").is_file():
        from moviegen.eval.bench import load_index

        return any(r.audio_prompt for r in load_index(folder))
    return False


def read_reference(spec: str, sample_rate: int, count: int = 48) -> list[Tensor]:
    """The FAD reference: ``world`` (:func:`reference_set`) or a folder of audio/video files."""
    from moviegen.audio_files import read_audio

    if spec == "world":
        return reference_set(count)
    folder = Path(spec)
    if not folder.is_dir():
        raise MovieGenError(f"audio reference folder not found: {folder} (or use 'world')")
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if len(names) < 2:
        raise MovieGenError(f"{folder} holds {len(names)} audio files; the distance needs at least 2")
    return [read_audio(p, sample_rate)[0] for p in names]


def evaluate_audio_folder(folder: Path, embedding: AudioEmbedding, reference: list[Tensor] | None = None,
                          autoencoder=None, progress: Progress | None = None) -> dict:  # fmt: skip
    """``moviegen metrics`` of audio: per file its duration, loudness (dBFS) and onset count, and, where
    ``world_truth.json`` names it, :func:`~moviegen.eval.audio.score_world_clip`; pooled: the world
    scores, ``fad`` against ``reference`` (two or more files), and with ``autoencoder`` its round trip on
    the files' audio (:func:`round_trip`). Unreadable or silent files are errors, not fatal."""
    from moviegen.audio_files import is_silent, read_audio
    from moviegen.eval.audio import onset_times

    folder = Path(folder)
    truth = read_truth(folder) if (folder / TRUTH_NAME).is_file() else {}
    rate = embedding.config.sample_rate
    files, errors, audios, rows = [], [], [], []
    names = audio_files(folder)
    for i, name in enumerate(names):
        try:
            audio, _ = read_audio(folder / name, rate)
            if is_silent(audio):
                raise MovieGenError("its audio is silent")
        except MovieGenError as e:
            errors.append(f"{name}: {e}")
            continue
        x = audio.double()
        onsets = onset_times(audio, rate)
        record = {"file": name, "seconds": len(audio) / rate,
                  "loudness_dbfs": float(20 * torch.log10(x.pow(2).mean().sqrt().clamp_min(1e-12))),
                  "onsets": int(len(onsets))}  # fmt: skip
        if name in truth:
            row = score_world_clip(audio, truth[name], rate, onsets=onsets)
            rows.append(row)
            record.update(tp=row["tp"], fp=row["fp"], fn=row["fn"], tempo=row["tempo"])
        files.append(record)
        audios.append(audio)
        if progress:
            progress(i + 1, len(names))
    report: dict = {"folder": str(folder), "files": files, "errors": errors}
    if rows:
        report["world"] = aggregate_world_scores(rows)
    if reference is not None and len(audios) >= 2:
        report["fad"] = frechet_distance(embedding.embed(audios), embedding.embed(reference))
    if autoencoder is not None and audios:
        report["autoencoder"] = round_trip(autoencoder, audios)
    return report


def format_audio_table(report: dict) -> str:
    """The audio report as a few text lines."""
    lines = [f"{len(report['files'])} files with audio, {len(report['errors'])} errors"]
    w = report.get("world")
    if w:
        ms = "—" if w["median_onset_error_ms"] is None else f"{w['median_onset_error_ms']:.1f} ms"
        pct = lambda v: "—" if v is None else f"{100 * v:.1f} %"  # noqa: E731
        lines.append(f"world: impact F1 {w['impact_f1']:.3f} (P {w['impact_precision']:.3f}, R "
                     f"{w['impact_recall']:.3f}), median |onset − collision| {ms}, pitch {pct(w['pitch_accuracy'])}, "
                     f"timbre {pct(w['timbre_accuracy'])}, tempo within 5 % {pct(w['tempo_within_5pct'])}")  # fmt: skip
    if "fad" in report:
        lines.append(f"FAD-style distance to the reference: {report['fad']:.3f}")
    if "autoencoder" in report:
        a = report["autoencoder"]
        lines.append(f"autoencoder round trip: mel distance {a['mel_distance']:.3f}, SI-SDR {a['si_sdr_db']:.2f} dB")
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """``moviegen eval audio``'s tables."""
    pct = lambda v: "—" if v is None else f"{100 * v:.1f}"  # noqa: E731
    num = lambda v, f="{:.1f}": "—" if v is None else f.format(v)  # noqa: E731
    lines = [f"{'':<30}{'F1':>6}{'P':>6}{'R':>6}{'onset ms':>10}{'pitch %':>9}{'timbre %':>10}{'tempo %':>9}"
             f"{'FAD':>8}   ({report['phrasing']} phrasing, {report['cases']} held-out cases)"]  # fmt: skip
    for name, r in report["rows"].items():
        lines.append(f"{name[-30:]:<30}{r['impact_f1']:>6.3f}{r['impact_precision']:>6.3f}{r['impact_recall']:>6.3f}"
                     f"{num(r['median_onset_error_ms']):>10}{pct(r['pitch_accuracy']):>9}{pct(r['timbre_accuracy']):>10}"
                     f"{pct(r['tempo_within_5pct']):>9}{num(r.get('fad'), '{:.2f}'):>8}")  # fmt: skip
    lines.append(f"{'objects without music':<30}{'F1':>6}{'onset ms':>10}{'pitch %':>9}{'timbre %':>10}")
    for name, r in report["rows"].items():
        q = r["no_music"]
        lines.append(f"{name[-30:]:<30}{q['impact_f1']:>6.3f}{num(q['median_onset_error_ms']):>10}"
                     f"{pct(q['pitch_accuracy']):>9}{pct(q['timbre_accuracy']):>10}")  # fmt: skip
    a = report["autoencoder"]
    lines.append(f"autoencoder round trip ({a['clips']} clips): mel distance {a['mel_distance']:.3f}, SI-SDR "
                 f"{a['si_sdr_db']:.2f} dB; Griffin-Lim of the true magnitude {a['griffin_lim_mel_distance']:.3f}, "
                 f"{a['griffin_lim_si_sdr_db']:.2f} dB")  # fmt: skip
    for name, modes in report.get("extension", {}).items():
        lines.append(f"extension ({name}): {'mode':<12}{'seconds':>8}{'loudness':>10}{'disc.':>7}{'F1':>7}{'onset ms':>10}")
        for mode, r in modes.items():
            lines.append(f"{'':<13}{mode:<12}{r['seconds']:>8.2f}{num(r['loudness'], '{:.3f}'):>10}"
                         f"{num(r['discontinuity'], '{:.3f}'):>7}{r['impact_f1']:>7.3f}{num(r['median_onset_error_ms']):>10}")  # fmt: skip
    return "\n".join(lines)
