"""Personalized Movie Gen Video's world recipe (paper §5, scaled down): ``moviegen train personalize``.

Data: people clips of the built-in world (:mod:`moviegen.data.people`), one person per clip, training
identities only (held-out identity combinations appear in no stage). Each item is the clip's latent, its
caption (the action, never the identity) and a reference face crop (the crop rule of
:func:`moviegen.personalize.prepare_reference`): **paired** = a random frame of the clip itself,
**cross-paired** = a still of the same identity with another pose, expression and lighting.

0. **the people TAE** (ours, as for Edit): the world TAE never saw a face; it is fine-tuned for
   ``tae_steps`` on people clips and stills, with the world recipe's loss; every latent after it is its;
1. **the vision tower** (the "offline default trained here"): a small CLIP ViT
   (:class:`~moviegen.models.vision.CLIPVisionTower`) pretrained CLIP-style: face crops of training
   identities against the MiniLM embedding of their identity description (:meth:`Identity.describe`),
   symmetric InfoNCE with every same-description pair a positive. The paper's is MetaCLIP's, pretrained on
   image-text pairs; this is the world's image-text pairs;
2. the paper's three stages, each through the one Trainer, the reference tokens (tower + zero-initialised
   projector) concatenated to the text tokens: **stage 1** short videos (``short_frames``), paired
   references, the tower frozen; **stage 2** longer videos (``frames``), paired, frozen; **stage 3** the
   tower unfrozen, cross-paired references;
3. **ablation** (``ablation``): stage 3 again from stage 2 with *paired* references, all else equal: the
   copy-paste table's "paired-only" model (``OUT/paired-only``);
4. **guidance**: the text-guidance scale with the best mean of action accuracy and identity similarity on
   validation identities (never the held-out ones), stored in each model's folder.

Also trained here (:func:`moviegen.eval.people.train_analyzer`): the evaluation's identity embedding and
state regressor (``OUT/analyzer``), networks of their own, apart from the generator's tower.

``OUT/stage1..3`` and ``OUT/paired-only`` are :class:`~moviegen.personalize.PersonalizedPipeline` folders
(fp16, the shipped form), ``OUT/pipeline`` is the stage with the best validation score (the guidance
calibration's mean of action accuracy and identity cosine on validation identities with cross-paired
references; the ablation is not a candidate), ``OUT/training_log.json`` the timings and losses.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from moviegen import flow
from moviegen.config import Config, require
from moviegen.data.cache import CacheItem, MemoryCache, text_states
from moviegen.data.people import ACTIONS, People, PeopleClip
from moviegen.files import write_atomic
from moviegen.models.text import TextConditioner
from moviegen.models.transformer import MovieGenTransformer
from moviegen.models.vision import CLIPVisionTower, ReferenceEncoder, VisionConfig
from moviegen.personalize import PersonalizedPipeline, prepare_reference
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline, read_index, schedule_times
from moviegen.train.loop import TrainConfig, loss_history, train

Progress = Callable[[str, int, int, dict], None]


@dataclass(frozen=True)
class PersonalizeRecipe(Config):
    """Sizes and schedules of the PT2V recipe; ``quick`` is for CI."""

    size: int = 64
    identities: int = 1200
    clips: int = 2400
    short_frames: int = 8
    frames: int = 16
    val_clips: int = 42
    tae_steps: int = 1500
    tae_batch: int = 8
    tae_lr: float = 4e-4
    tower_steps: int = 500
    tower_batch: int = 64
    tower_lr: float = 1e-3
    analyzer_steps: int = 1200
    analyzer_samples: int = 12288
    stage1_steps: int = 2000
    stage2_steps: int = 2000
    stage3_steps: int = 1200
    batch_size: int = 32
    stage1_lr: float = 1e-3
    stage2_lr: float = 5e-4
    stage3_lr: float = 3e-4
    warmup_steps: int = 50
    text_dropout: float = 0.1
    t_location: float = -0.8  # as the world recipe: a small backbone needs the noisy times (train/world.py)
    frame_diff_weight: float = 2.0
    num_steps: int = 50
    calibration_steps: int = 20
    guidance_scales: tuple[float, ...] = (1.0, 2.0, 3.0)
    calibration_clips: int = 14
    val_every: int = 500
    ablation: bool = True
    seed: int = 0

    PRESETS: ClassVar[dict] = {
        "default": {},
        "quick": dict(identities=4, clips=6, val_clips=2, tae_steps=2, tae_batch=2, tower_steps=2,
                      tower_batch=4, analyzer_steps=2, analyzer_samples=256, stage1_steps=2, stage2_steps=2, stage3_steps=2,
                      batch_size=2, warmup_steps=1, num_steps=2, calibration_steps=2,
                      guidance_scales=(1.0, 2.0), calibration_clips=2, val_every=2),
    }  # fmt: skip

    def validate(self) -> None:
        name = "PersonalizeRecipe"
        for key in ("identities", "clips", "short_frames", "frames", "val_clips", "tower_batch", "stage1_steps",
                    "stage2_steps", "stage3_steps", "batch_size", "num_steps", "calibration_steps",
                    "calibration_clips", "val_every"):  # fmt: skip
            require(getattr(self, key) >= 1, name, f"{key} must be >= 1")
        require(self.size >= 16 and self.size % 16 == 0, name, "size must be a multiple of 16")
        require(self.short_frames <= self.frames, name, "short_frames must be <= frames")
        require(min(self.stage1_lr, self.stage2_lr, self.stage3_lr, self.tower_lr) > 0, name,
                "learning rates must be > 0")  # fmt: skip
        require(len(self.guidance_scales) >= 1 and all(g >= 1 for g in self.guidance_scales), name,
                "guidance_scales must be values >= 1")  # fmt: skip


def finetune_tae(tae, recipe: PersonalizeRecipe, progress: Progress | None = None):
    """Stage 0 (module docstring): the TAE fine-tuned on people clips (every third step) and stills."""
    from moviegen.train.tae import TAELoss, TAELossConfig, TAETrainer

    people = People(recipe.identities, recipe.size, recipe.frames, seed=recipe.seed + 11)
    trainer = TAETrainer(tae, TAELoss(TAELossConfig(opl_weight=10.0, l2_weight=20.0)), lr=recipe.tae_lr,
                         grad_clip=10.0, generator=torch.Generator().manual_seed(recipe.seed))  # fmt: skip
    for step in range(recipe.tae_steps):
        for group in trainer.optimizer.param_groups:  # cosine decay after a short warmup
            group["lr"] = recipe.tae_lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + np.cos(np.pi * step / recipe.tae_steps))
        if step % 3 == 2:
            batch = torch.stack([people.clip("train", step * 2 + k).video for k in range(2)])
        else:
            batch = torch.stack([people.reference("train", step * recipe.tae_batch + k).video
                                 for k in range(recipe.tae_batch)])  # fmt: skip
        terms = trainer.train_step(batch)
        if progress:
            progress("people TAE", step + 1, recipe.tae_steps, {"loss": terms["loss"]})
    return tae.eval()


@torch.no_grad()
def tae_psnr(tae, recipe: PersonalizeRecipe, count: int = 8) -> float:
    """Mean round-trip PSNR (dB) of the TAE on validation people clips."""
    people = People(recipe.identities, recipe.size, recipe.frames, seed=recipe.seed + 19)
    values = []
    for i in range(count):
        video = people.clip("val", i).video
        out = tae.decode(tae.encode(video[None]).float(), num_frames=video.shape[1])[0].clamp(-1, 1)
        values.append(float(10 * torch.log10(4 / (out - video).pow(2).mean())))
    return float(np.mean(values))


def _description_embeddings(text: TextConditioner, descriptions: list[str]) -> torch.Tensor:
    """Mean-pooled MiniLM states of each description (the contrastive targets), unit length."""
    out = []
    for d in descriptions:
        hidden, mask = text_states(text, d)[0]
        out.append(hidden[mask.bool()].mean(0))
    return F.normalize(torch.stack(out), dim=-1)


def pretrain_tower(
    text: TextConditioner, recipe: PersonalizeRecipe, progress: Progress | None = None
) -> tuple[CLIPVisionTower, list[float]]:
    """Stage 1 (module docstring): CLIP-style pretraining of the vision tower; returns it and the losses."""
    torch.manual_seed(recipe.seed + 21)
    tower = CLIPVisionTower(VisionConfig())
    people = People(recipe.identities, recipe.size, 1, seed=recipe.seed + 13)
    encoder = ReferenceEncoder(tower, 1)  # for its pixel normalisation
    image_head = torch.nn.Linear(tower.config.hidden_size, 128)
    text_head = torch.nn.Linear(int(text.encode_raw(["x"])[0][0].shape[-1]), 128)
    scale = torch.nn.Parameter(torch.tensor(2.6))
    params = [*tower.parameters(), *image_head.parameters(), *text_head.parameters(), scale]
    opt = torch.optim.AdamW(params, lr=recipe.tower_lr, weight_decay=0.05)
    cache: dict[str, torch.Tensor] = {}
    rng = np.random.default_rng([recipe.seed, 23])
    losses = []
    for step in range(recipe.tower_steps):
        ids = rng.integers(recipe.identities, size=recipe.tower_batch)
        stills = [people.reference("train", int(i), salt=step) for i in ids]
        faces = torch.stack([prepare_reference(s.video[:, 0], tower.config.image_size) for s in stills])
        texts = [s.person.describe() for s in stills]
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            cache.update(zip(missing, _description_embeddings(text, missing), strict=True))
        lr = recipe.tower_lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + np.cos(np.pi * step / recipe.tower_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        img = F.normalize(image_head(tower(encoder.pixels(faces))[:, 0]), dim=-1)
        txt = F.normalize(text_head(torch.stack([cache[t] for t in texts])), dim=-1)
        logits = scale.exp().clamp(max=100) * img @ txt.T
        same = torch.tensor([[a == b for b in texts] for a in texts], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean()
                      + torch.sum(-target * logits.log_softmax(0).T, 1).mean())  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress:
            progress("vision tower", step + 1, recipe.tower_steps, {"loss": losses[-1]})
    return tower.eval(), losses


class _Encoder:
    """TAE latents, memoised raw text states and reference crops for the cache items."""

    def __init__(self, text: TextConditioner, tae, image_size: int):
        self.text_encoder, self.tae, self.image_size, self.texts = text, tae, image_size, {}

    @torch.inference_mode()
    def latent(self, video: torch.Tensor) -> torch.Tensor:
        return self.tae.normalize(self.tae.encode(video[None].float()).float())[0]

    def text(self, text: str):
        if text not in self.texts:
            self.texts[text] = text_states(self.text_encoder, text)
        return self.texts[text]

    def face(self, frame: torch.Tensor) -> torch.Tensor:
        return prepare_reference(frame, self.image_size)

    def item(self, clip: PeopleClip, reference: torch.Tensor, bucket: str, i: int) -> CacheItem:
        return CacheItem(self.latent(clip.video), self.text(clip.caption), clip.caption, bucket, i,
                         {"reference": self.face(reference)})  # fmt: skip


def people_items(
    enc: _Encoder, recipe: PersonalizeRecipe, split: str, count: int, frames: int, reference: str, bucket: str,
    progress: Progress | None = None,
) -> list[CacheItem]:
    """``count`` clips of ``split`` with ``paired`` (a random frame of the clip) or ``cross`` (another still
    of the identity) references."""
    people = People(recipe.identities, recipe.size, frames, seed=recipe.seed)
    items = []
    for i in range(count):
        clip = people.clip(split, i)
        if reference == "paired":
            rng = np.random.default_rng([recipe.seed, i, 29])
            ref = clip.video[:, int(rng.integers(frames))]
        else:
            ref = people.reference(split, i).video[:, 0]
        items.append(enc.item(clip, ref, bucket, i))
        if progress:
            progress(f"{bucket.split('/')[0]} clips", i + 1, count, {})
    return items


@torch.inference_mode()
def generate_batch(
    pipe: PersonalizedPipeline, faces: torch.Tensor, prompts: list[str], frames: int, steps: int, guidance: float,
    seed: int,
) -> torch.Tensor:
    """Several samples in one batched sampling: face crops (N, 3, S, S), prompts as captions are written
    (with their FPS prefix) → videos (N, 3, frames, size, size)."""
    size = pipe.max_size[0]
    shape = pipe.latent_shape(frames, size, size)
    noise = torch.randn((len(prompts), *shape), generator=torch.Generator().manual_seed(seed))
    tokens, mask = pipe.text(list(prompts))
    x1 = flow.sample(pipe.transformer, noise, tokens, mask, schedule_times(pipe.schedule, steps), guidance,
                     context=pipe.reference_tokens(faces))  # fmt: skip
    return pipe.tae.decode(pipe.tae.denormalize(x1.float()), num_frames=frames).float().clamp(-1, 1)


@torch.no_grad()
def calibrate_guidance(
    pipe: PersonalizedPipeline, analyzer, recipe: PersonalizeRecipe, progress: Progress | None = None
) -> tuple[float, dict]:
    """The scale with the best mean of action accuracy and identity cosine on validation identities with
    cross-paired references (ties: the earlier scale)."""
    from moviegen.eval.people import detect_action, face_crop

    people = People(recipe.identities, recipe.size, recipe.frames, seed=recipe.seed + 17)
    n = recipe.calibration_clips
    clips = [people.clip("val", i, action=ACTIONS[i % len(ACTIONS)]) for i in range(n)]
    refs = [people.reference("val", i).video[:, 0] for i in range(n)]
    faces = torch.stack([prepare_reference(r, pipe.reference.image_size) for r in refs])
    table = {}
    for k, scale in enumerate(recipe.guidance_scales):
        videos = generate_batch(pipe, faces, [c.caption for c in clips], recipe.frames, recipe.calibration_steps,
                                scale, recipe.seed + 1000)  # fmt: skip
        actions = [detect_action(analyzer.video_states(v)) == c.action for v, c in zip(videos, clips, strict=True)]
        cos = [float(analyzer.video_embedding(v) @ analyzer.embed(face_crop(r)[None])[0])
               for v, r in zip(videos, refs, strict=True)]  # fmt: skip
        acc, sim = 100 * float(np.mean(actions)), float(np.mean(cos))
        table[str(float(scale))] = {"action": acc, "identity_cos": sim, "mean": (acc / 100 + sim) / 2}
        if progress:
            progress("guidance", k + 1, len(recipe.guidance_scales), {})
    best = max(table, key=lambda s: table[s]["mean"])
    return float(best), table


def train_personalize(
    recipe: PersonalizeRecipe,
    out: str | Path,
    base: str | Path | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
) -> PersonalizedPipeline:
    """Run the recipe (module docstring) from the text-to-video pipeline ``base`` (default: the shipped
    world model)."""
    from moviegen.eval.people import train_analyzer

    out = Path(out)
    base_dir = Path(base) if base is not None else DEFAULT_MODEL
    read_index(base_dir, "MovieGenPipeline")
    pipe = MovieGenPipeline.from_pretrained(base_dir)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    analyzer = train_analyzer(recipe.analyzer_steps, identities=max(recipe.identities, 8), size=recipe.size,
                              seed=recipe.seed, progress=progress, samples=recipe.analyzer_samples)  # fmt: skip
    analyzer.save(out / "analyzer")
    timings["analyzer_s"] = time.perf_counter() - start
    tae_quality = {"world_tae_psnr": tae_psnr(pipe.tae, recipe)}
    tae = finetune_tae(pipe.tae, recipe, progress)
    tae_quality["people_tae_psnr"] = tae_psnr(tae, recipe)
    if progress:
        progress("people TAE round trip", 1, 1, tae_quality)
    timings["tae_s"] = time.perf_counter() - start
    tower, tower_losses = pretrain_tower(pipe.text, recipe, progress)
    vision_dir = out / "vision-encoder"
    ReferenceEncoder(tower, pipe.transformer.config.dim).save_pretrained(vision_dir)
    timings["tower_s"] = time.perf_counter() - start
    enc = _Encoder(pipe.text, tae, tower.config.image_size)
    val = people_items(enc, recipe, "val", recipe.val_clips, recipe.frames, "cross", "val/video")
    short = people_items(enc, recipe, "train", recipe.clips, recipe.short_frames, "paired", "short/video", progress)
    paired = people_items(enc, recipe, "train", recipe.clips, recipe.frames, "paired", "paired/video", progress)
    cross = people_items(enc, recipe, "train", recipe.clips, recipe.frames, "cross", "cross/video", progress)
    timings["data_s"] = time.perf_counter() - start
    manifest = {"text": {"config": pipe.text.config.to_dict()}}
    history: dict[str, list] = {}
    guidance: dict[str, dict] = {}
    plan = [("stage1", short, recipe.stage1_steps, recipe.stage1_lr, False, base_dir),
            ("stage2", paired, recipe.stage2_steps, recipe.stage2_lr, False, "stage1"),
            ("stage3", cross, recipe.stage3_steps, recipe.stage3_lr, True, "stage2")]  # fmt: skip
    if recipe.ablation:
        plan.append(("paired-only", paired, recipe.stage3_steps, recipe.stage3_lr, True, "stage2"))
    exports: dict[str, Path] = {}
    models: dict[str, PersonalizedPipeline] = {}
    for name, items, steps, lr, unfreeze, init in plan:
        t0 = time.perf_counter()
        config = TrainConfig(
            stage=f"PT2V {name}", init_from=str(exports.get(init, init)),
            reference_encoder=str(vision_dir) if name == "stage1" else "", train_vision_tower=unfreeze,
            global_batch=recipe.batch_size, group_ratio={items[0].bucket.split("/")[0]: 1},
            text_dropout=recipe.text_dropout, t_location=recipe.t_location,
            frame_diff_weight=recipe.frame_diff_weight, lr=lr, betas=(0.9, 0.99), weight_decay=0.01,
            warmup_steps=recipe.warmup_steps, schedule="cosine", cosine_final_ratio=0.1, steps=steps,
            val_every=recipe.val_every, log_every=0, keep_checkpoints=1, seed=recipe.seed + len(exports),
            run_dir=str(out / f"run_{name}"), device=device,
        )  # fmt: skip

        on_step = loss_history(history, f"{name}/loss", f"{name}/val_loss", progress, f"PT2V {name}", steps)
        trained = train(config, log=lambda m: None, cache=MemoryCache(items, manifest),
                        val_cache=MemoryCache(val, manifest), on_step=on_step)  # fmt: skip
        timings[f"{name}_train_s"] = time.perf_counter() - t0
        export = exports[name] = trained.export_dir
        model = PersonalizedPipeline(TextConditioner.from_pretrained(export / "text"),
                                     MovieGenTransformer.from_pretrained(export / "transformer"), tae,
                                     ReferenceEncoder.from_pretrained(export / "reference"),
                                     num_steps=recipe.num_steps)  # fmt: skip
        t0 = time.perf_counter()
        scale, table = calibrate_guidance(model, analyzer, recipe, progress)
        model.guidance_scale = scale
        guidance[name] = {"chosen": scale, "table": table}
        timings[f"{name}_guidance_s"] = time.perf_counter() - t0
        model.save_pretrained(out / name, dtype=torch.float16)
        models[name] = model
    stages = [n for n in models if n.startswith("stage")]
    best = max(stages, key=lambda n: guidance[n]["table"][str(guidance[n]["chosen"])]["mean"])
    result = models[best]
    final = out / "pipeline"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(out / best, final)
    timings["total_s"] = time.perf_counter() - start
    log = {"recipe": recipe.to_dict(), "base": str(base_dir), "timings": timings, "guidance": guidance, "tae": tae_quality, "pipeline": best,
           "tower_losses": tower_losses, "history": history}  # fmt: skip
    write_atomic(out / "training_log.json", json.dumps(log))
    return result
