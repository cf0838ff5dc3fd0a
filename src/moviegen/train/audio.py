"""Movie Gen Audio's world recipe (paper §7, scaled down): ``moviegen train audio``.

Data: clips of the sound world (:mod:`moviegen.data.sound`), training combinations only (held-out object
triples and (instrument, key) pairs appear in no stage): video, 48 kHz audio, audio caption, music prompt.

1. **the audio autoencoder** (:class:`~moviegen.models.audio.AudioAutoencoder`), ``ae_steps`` of the
   magnitude losses (:mod:`moviegen.train.audio_ae`) on random ``ae_crop_s`` crops; then the latent's
   per-channel mean and std over the training clips go into its config (the DiT's normalisation);
2. **the frame encoder** (:class:`~moviegen.models.audio.FrameEncoder`), ``frames_steps`` of supervised
   training on single frames: the object's colour and shape, the scene, the position and size (object
   frames only for all but the scene) [choice: the paper's video features come from a pretrained encoder;
   the world's labels are what trains ours];
3. **the DiT**, through the one Trainer (:mod:`moviegen.train.loop`): the ``audio-world`` preset trained
   from scratch [the paper trains its audio model from scratch too]; each item is a clip's normalised
   latent laid out (C, T, 1, 1), its text (:func:`~moviegen.data.sound.compose_audio_prompt` of caption
   and music prompt) and a ``cond`` tensor (:func:`moviegen.audio.dit_condition`): the frame features at
   the latent rate, and for ``context_fraction`` of the items a known prefix of random length (the masked
   audio context the extension continues from), for the rest none; for ``feature_dropout`` of them the
   video features are zeroed (what the guidance's unconditional branch sees);
4. **guidance**: the text-guidance scale with the best world score (mean of impact F1, pitch and timbre
   accuracy and the tempo hit rate, :func:`moviegen.eval.audio.aggregate_world_scores`) on validation clips.

Also trained here (:func:`moviegen.eval.audio.train_audio_embedding`): the evaluation's audio embedding
(``OUT/audio-embedding``), a network of its own for the FAD-style distance.

``OUT/pipeline`` is the :class:`~moviegen.audio.AudioPipeline` (fp16, the shipped form), ``OUT/run`` the
Trainer's run, ``OUT/training_log.json`` timings, losses, the autoencoder's validation round trip and the
guidance table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from moviegen.audio import AudioPipeline, dit_condition
from moviegen.config import Config, require
from moviegen.data.cache import CacheItem, MemoryCache, text_states
from moviegen.data.sound import (
    INSTRUMENTS,
    KEYS,
    MOODS,
    SoundClip,
    SoundWorld,
    SoundWorldConfig,
    bounce_path,
)
from moviegen.data.world import COLORS, SHAPES
from moviegen.files import write_atomic
from moviegen.models.audio import (
    SCENES,
    AudioAutoencoder,
    AudioAutoencoderConfig,
    FrameEncoder,
    FrameEncoderConfig,
    video_features,
)
from moviegen.models.text import TextConditioner, default_text_conditioner
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig
from moviegen.train.audio_ae import AudioAETrainer
from moviegen.train.loop import TrainConfig, loss_history, train

Progress = Callable[[str, int, int, dict], None]


@dataclass(frozen=True)
class AudioRecipe(Config):
    """Sizes and schedules of the audio recipe; ``quick`` is for CI."""

    clips: int = 2000
    val_clips: int = 24
    autoencoder: str = "world"
    ae_steps: int = 2000
    ae_batch: int = 8
    ae_crop_s: float = 1.0
    ae_lr: float = 2e-3
    frame_encoder: str = "world"
    frames_steps: int = 1500
    frames_batch: int = 128
    frames_lr: float = 2e-3
    model: str = "audio-world"
    steps: int = 3500
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    text_dropout: float = 0.1
    t_location: float = 0.0
    context_fraction: float = 0.5
    feature_dropout: float = 0.0
    num_steps: int = 50
    calibration_steps: int = 25
    guidance_scales: tuple[float, ...] = (1.0, 2.0, 3.0)
    calibration_clips: int = 10
    embedding_steps: int = 300
    val_every: int = 500
    seed: int = 0

    PRESETS: ClassVar[dict] = {
        "default": {},
        "quick": dict(clips=6, val_clips=2, autoencoder="tiny", ae_steps=2, ae_batch=2, frame_encoder="tiny",
                      frames_steps=2, frames_batch=8, model="audio-tiny", steps=2, batch_size=2, warmup_steps=1,
                      num_steps=2, calibration_steps=2, guidance_scales=(1.0, 2.0), calibration_clips=2,
                      embedding_steps=2, val_every=2),
    }  # fmt: skip

    def validate(self) -> None:
        name = "AudioRecipe"
        for key in ("clips", "val_clips", "ae_steps", "ae_batch", "frames_steps", "frames_batch", "steps",
                    "batch_size", "num_steps", "calibration_steps", "calibration_clips", "embedding_steps",
                    "val_every"):  # fmt: skip
            require(isinstance(getattr(self, key), int) and getattr(self, key) >= 1, name, f"{key} must be >= 1")
        require(0 < self.ae_crop_s <= 4, name, "ae_crop_s must be in (0, 4] s")
        require(min(self.ae_lr, self.frames_lr, self.lr) > 0, name, "learning rates must be > 0")
        require(0 <= self.context_fraction <= 1, name, "context_fraction must be in [0, 1]")
        require(0 <= self.feature_dropout < 1, name, "feature_dropout must be in [0, 1)")
        require(0 <= self.text_dropout < 1, name, "text_dropout must be in [0, 1)")
        require(len(self.guidance_scales) >= 1 and all(g >= 1 for g in self.guidance_scales), name,
                "guidance_scales must be values >= 1")  # fmt: skip
        AudioAutoencoderConfig.preset(self.autoencoder)
        FrameEncoderConfig.preset(self.frame_encoder)
        TransformerConfig.preset(self.model)


def world_for(model: str) -> SoundWorld:
    """The sound world whose clips are exactly one DiT window long (4 s for ``audio-world``)."""
    frames = TransformerConfig.preset(model).max_latent_frames
    return SoundWorld(SoundWorldConfig(seconds=min(4.0, frames / 25)))


def clip_pool(world: SoundWorld, split: str, count: int, progress: Progress | None = None,
              label: str = "sound clips") -> list[SoundClip]:  # fmt: skip
    clips = []
    for i in range(count):
        clips.append(world.clip(split, i))
        if progress:
            progress(label, i + 1, count, {})
    return clips


# -------------------------------------------------------------------------------------------- autoencoder


def train_autoencoder(clips: list[SoundClip], recipe: AudioRecipe, progress: Progress | None = None
                      ) -> tuple[AudioAutoencoder, list[float]]:  # fmt: skip
    """Stage 1: the VAE on random crops, AdamW with a 20-step warm-up and cosine decay to 0."""
    torch.manual_seed(recipe.seed)
    ae = AudioAutoencoder(AudioAutoencoderConfig.preset(recipe.autoencoder))
    trainer = AudioAETrainer(ae, lr=recipe.ae_lr, generator=torch.Generator().manual_seed(recipe.seed))
    rng = np.random.default_rng([recipe.seed, 41])
    crop = min(round(recipe.ae_crop_s * ae.config.sample_rate), min(len(c.audio) for c in clips))
    losses = []
    warm = min(20, recipe.ae_steps)
    for step in range(recipe.ae_steps):
        frac = step / recipe.ae_steps
        lr = recipe.ae_lr * min((step + 1) / warm, 0.5 * (1 + math.cos(math.pi * frac)))
        batch = []
        for _ in range(recipe.ae_batch):
            audio = clips[int(rng.integers(len(clips)))].audio
            start = int(rng.integers(0, len(audio) - crop + 1))
            batch.append(audio[start : start + crop])
        terms = trainer.train_step(torch.stack(batch), lr=lr)
        losses.append(terms["loss"])
        if progress:
            progress("audio autoencoder", step + 1, recipe.ae_steps, {"loss": terms["loss"]})
    ae.eval()
    return ae, losses


@torch.no_grad()
def encode_clips(ae: AudioAutoencoder, clips: list[SoundClip], batch: int = 16) -> list[torch.Tensor]:
    """Each clip's posterior mean (C, T), unnormalised."""
    out = []
    for i in range(0, len(clips), batch):
        audio = torch.stack([c.audio for c in clips[i : i + batch]])
        out.extend(ae.encode(audio).float())
    return out


def with_latent_stats(ae: AudioAutoencoder, latents: list[torch.Tensor]) -> AudioAutoencoder:
    """The autoencoder with its config's ``latents_mean`` / ``latents_std`` measured on ``latents``."""
    stacked = torch.cat([z for z in latents], dim=1)
    mean = stacked.mean(1)
    std = stacked.std(1).clamp_min(1e-4)
    config = dataclasses.replace(ae.config, latents_mean=tuple(mean.tolist()), latents_std=tuple(std.tolist()))
    out = AudioAutoencoder(config)
    out.load_state_dict(ae.state_dict())
    return out.eval()


# ---------------------------------------------------------------------------------------- frame encoder


def frame_labels(clip: SoundClip, world: SoundWorld) -> dict[str, torch.Tensor]:
    """Per-frame targets: colour, shape (-100 on camera frames), scene, geometry (x, y, size in [0, 1]) and
    whether geometry applies."""
    frames = clip.video.shape[1]
    a = clip.attributes
    if clip.kind == "object":
        size = world.config.size
        times = np.arange(frames) / clip.fps
        lo, hi = a["walls"]
        vx, vy = a["velocity"]
        xs = bounce_path(a["start"][0], vx, lo, hi, times) / size
        ys = bounce_path(a["start"][1], vy, lo, hi, times) / size
        geometry = np.stack([xs, ys, np.full(frames, a["radius"] / size)], 1)
        colour, shape, scene, has = list(COLORS).index(a["color"]), SHAPES.index(a["shape"]), 0, 1.0
    else:
        geometry = np.zeros((frames, 3))
        colour, shape, scene, has = -100, -100, SCENES.index(a["photo"]), 0.0
    full = lambda v: torch.full((frames,), v, dtype=torch.long)  # noqa: E731
    return dict(colour=full(colour), shape=full(shape), scene=full(scene),
                geometry=torch.from_numpy(geometry).float(), has_geometry=torch.full((frames,), has))  # fmt: skip


def train_frame_encoder(clips: list[SoundClip], world: SoundWorld, recipe: AudioRecipe,
                        progress: Progress | None = None) -> tuple[FrameEncoder, list[float]]:  # fmt: skip
    """Stage 2: cross-entropy on colour / shape / scene and L1 on geometry, on random single frames."""
    torch.manual_seed(recipe.seed + 2)
    model = FrameEncoder(FrameEncoderConfig.preset(recipe.frame_encoder))
    frames = torch.cat([FrameEncoder.resize(c.video) for c in clips])
    labels = [frame_labels(c, world) for c in clips]
    target = {k: torch.cat([lab[k] for lab in labels]) for k in labels[0]}
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.frames_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(recipe.seed + 3)
    losses = []
    for step in range(recipe.frames_steps):
        for group in opt.param_groups:
            group["lr"] = recipe.frames_lr * 0.5 * (1 + math.cos(math.pi * step / recipe.frames_steps))
        idx = torch.randint(0, len(frames), (recipe.frames_batch,), generator=gen)
        colour, shape, scene, geometry = model.heads(frames[idx])
        loss = F.cross_entropy(scene, target["scene"][idx])
        if (target["colour"][idx] >= 0).any():
            loss = loss + F.cross_entropy(colour, target["colour"][idx], ignore_index=-100)
            loss = loss + F.cross_entropy(shape, target["shape"][idx], ignore_index=-100)
        has = target["has_geometry"][idx][:, None]
        loss = loss + 10 * ((geometry - target["geometry"][idx]).abs() * has).sum() / (3 * has.sum()).clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress:
            progress("frame encoder", step + 1, recipe.frames_steps, {"loss": losses[-1]})
    return model.eval(), losses


@torch.no_grad()
def frame_accuracy(model: FrameEncoder, clips: list[SoundClip], world: SoundWorld) -> dict:
    """Validation accuracy of the frame heads (colour, shape on object frames; scene on all) and the mean
    absolute position error (pixels)."""
    hits = {"colour": [], "shape": [], "scene": []}
    errors = []
    for clip in clips:
        lab = frame_labels(clip, world)
        colour, shape, scene, geometry = model.heads(FrameEncoder.resize(clip.video))
        hits["scene"].append(float((scene.argmax(1) == lab["scene"]).float().mean()))
        if clip.kind == "object":
            hits["colour"].append(float((colour.argmax(1) == lab["colour"]).float().mean()))
            hits["shape"].append(float((shape.argmax(1) == lab["shape"]).float().mean()))
            errors.append(float((geometry[:, :2] - lab["geometry"][:, :2]).abs().mean()) * world.config.size)
    out = {k: 100 * float(np.mean(v)) if v else None for k, v in hits.items()}
    return out | {"position_error_px": float(np.mean(errors)) if errors else None}


# -------------------------------------------------------------------------------------------------- DiT


def dit_items(clips: list[SoundClip], latents: list[torch.Tensor], ae: AudioAutoencoder, frames: FrameEncoder,
              text: TextConditioner, recipe: AudioRecipe, bucket: str, progress: Progress | None = None
              ) -> list[CacheItem]:  # fmt: skip
    """One Trainer item per clip (module docstring, stage 3); ``context_fraction`` of them with a known
    prefix of 1..T-1 latent frames."""
    rng = np.random.default_rng([recipe.seed, 43, len(bucket)])
    states: dict[str, list] = {}
    items = []
    for i, (clip, latent) in enumerate(zip(clips, latents, strict=True)):
        z = ae.normalize(latent[None])[0]
        t = z.shape[-1]
        feats = video_features(frames, clip.video, clip.fps, t, ae.config.latent_rate)
        known = torch.zeros(1, t, dtype=torch.bool)
        if rng.random() < recipe.context_fraction and t > 1:
            known[:, : int(rng.integers(1, t))] = True
        if rng.random() < recipe.feature_dropout:
            feats = torch.zeros_like(feats)  # the unconditional branch of video guidance
        cond = dit_condition(feats[None], z[None], known)[0]
        prompt = clip.prompt
        if prompt not in states:
            states[prompt] = text_states(text, prompt)
        items.append(CacheItem(z[:, :, None, None].contiguous(), states[prompt], prompt, bucket, i,
                               {"cond": cond.contiguous()}))  # fmt: skip
        if progress:
            progress(f"{bucket.split('/')[0]} items", i + 1, len(clips), {})
    return items


def dit_config(recipe: AudioRecipe, run_dir: Path, device: str) -> TrainConfig:
    return TrainConfig(
        stage="audio DiT", model=recipe.model, global_batch=recipe.batch_size, group_ratio={"audio": 1},
        text_dropout=recipe.text_dropout, t_location=recipe.t_location, lr=recipe.lr, betas=(0.9, 0.99),
        weight_decay=0.01, warmup_steps=recipe.warmup_steps, schedule="cosine", cosine_final_ratio=0.1,
        steps=recipe.steps, val_every=recipe.val_every, log_every=0, keep_checkpoints=1, seed=recipe.seed + 5,
        run_dir=str(run_dir), device=device, val_batch=32,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- guidance


def calibration_clips(world: SoundWorld, recipe: AudioRecipe) -> list[SoundClip]:
    """Validation clips for the guidance choice: bouncing objects, half with music (training combinations)."""
    rng = np.random.default_rng([recipe.seed, 47])
    clips = []
    index = 0
    while len(clips) < recipe.calibration_clips:
        clip = world.clip("val", 10_000 + index)
        index += 1
        if clip.kind != "object" or not clip.impacts:
            continue
        if len(clips) % 2 == 1 and clip.music is None:
            inst, key = int(rng.integers(len(INSTRUMENTS))), int(rng.integers(len(KEYS)))
            if (inst + key) % 4 == 0:
                continue
            music = (list(INSTRUMENTS)[inst], 120, KEYS[key], list(MOODS)[int(rng.integers(2))])
            clip = world.object_clip(clip.attributes["color"], clip.attributes["shape"], clip.attributes["motion"],
                                     world.rng("val", 10_000 + index, 1), music=music)  # fmt: skip
        clips.append(clip)
    return clips


def world_score(summary: dict) -> float:
    """The guidance choice's score: the mean of the available rates (impact F1, pitch, timbre, tempo)."""
    keys = ("impact_f1", "pitch_accuracy", "timbre_accuracy", "tempo_within_5pct")
    values = [summary[k] for k in keys if summary.get(k) is not None]
    return float(np.mean(values)) if values else 0.0


@torch.no_grad()
def calibrate_guidance(pipe: AudioPipeline, clips: list[SoundClip], recipe: AudioRecipe,
                       progress: Progress | None = None) -> tuple[float, dict]:  # fmt: skip
    from moviegen.eval.audio import aggregate_world_scores, score_world_clip

    table = {}
    for k, scale in enumerate(recipe.guidance_scales):
        rows = []
        for i, clip in enumerate(clips):
            audio = pipe(clip.video, clip.caption, clip.music, fps=clip.fps, num_steps=recipe.calibration_steps,
                         guidance_scale=scale, seed=recipe.seed + i)  # fmt: skip
            rows.append(score_world_clip(audio, clip))
        summary = aggregate_world_scores(rows)
        table[str(float(scale))] = summary | {"score": world_score(summary)}
        if progress:
            progress("guidance", k + 1, len(recipe.guidance_scales), {})
    best = max(table, key=lambda s: table[s]["score"])
    return float(best), table


# ------------------------------------------------------------------------------------------------ recipe


def train_audio(recipe: AudioRecipe, out: str | Path, base: str | Path | None = None,
                progress: Progress | None = None, device: str = "cpu") -> AudioPipeline:  # fmt: skip
    """Run the recipe (module docstring). ``base`` is unused (the audio model trains from scratch; the
    argument keeps the members' recipe signature)."""
    from moviegen.eval.audio import train_audio_embedding
    from moviegen.eval.audio_bench import round_trip

    out = Path(out)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    world = world_for(recipe.model)
    clips = clip_pool(world, "train", recipe.clips, progress)
    val = clip_pool(world, "val", recipe.val_clips, progress, "validation clips")
    timings["data_s"] = time.perf_counter() - start

    ae, ae_losses = train_autoencoder(clips, recipe, progress)
    latents = encode_clips(ae, clips)
    ae = with_latent_stats(ae, latents)
    ae_quality = round_trip(ae, [c.audio for c in val[: min(len(val), 12)]])
    if progress:
        progress("autoencoder round trip", 1, 1, {"mel": ae_quality["mel_distance"]})
    timings["autoencoder_s"] = time.perf_counter() - start

    frames, frame_losses = train_frame_encoder(clips, world, recipe, progress)
    frames_quality = frame_accuracy(frames, val, world)
    timings["frame_encoder_s"] = time.perf_counter() - start

    dim = TransformerConfig.preset(recipe.model).dim
    text = default_text_conditioner(dim)
    items = dit_items(clips, latents, ae, frames, text, recipe, "audio/train", progress)
    val_items = dit_items(val, encode_clips(ae, val), ae, frames, text, recipe, "audio/val")
    manifest = {"text": {"config": text.config.to_dict()}}
    timings["dit_data_s"] = time.perf_counter() - start

    history: dict[str, list] = {}
    on_step = loss_history(history, "loss", "val_loss", progress, "audio DiT", recipe.steps)

    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    trained = train(dit_config(recipe, run_dir, device), log=lambda m: None, cache=MemoryCache(items, manifest),
                    val_cache=MemoryCache(val_items, manifest), on_step=on_step)  # fmt: skip
    timings["dit_s"] = time.perf_counter() - start
    export = trained.export_dir
    pipe = AudioPipeline(TextConditioner.from_pretrained(export / "text"),
                         MovieGenTransformer.from_pretrained(export / "transformer"), ae, frames,
                         num_steps=recipe.num_steps, video_guidance=recipe.feature_dropout > 0)  # fmt: skip

    scale, table = calibrate_guidance(pipe, calibration_clips(world, recipe), recipe, progress)
    pipe.guidance_scale = scale
    timings["guidance_s"] = time.perf_counter() - start
    final = out / "pipeline"
    if final.exists():
        shutil.rmtree(final)
    pipe.save_pretrained(final, dtype=torch.float16)

    embedding = train_audio_embedding(world, steps=recipe.embedding_steps, seed=recipe.seed)
    embedding.save_pretrained(out / "audio-embedding")
    timings["total_s"] = time.perf_counter() - start
    log = {"recipe": recipe.to_dict(), "timings": timings, "autoencoder": ae_quality, "frame_encoder": frames_quality,
           "guidance": {"chosen": scale, "table": table}, "ae_losses": ae_losses[:: max(1, len(ae_losses) // 200)],
           "frame_losses": frame_losses[:: max(1, len(frame_losses) // 200)], "history": history}  # fmt: skip
    write_atomic(out / "training_log.json", json.dumps(log))
    return pipe
