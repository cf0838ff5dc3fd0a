"""The ``moviegen`` command line. Every user error is one ``error: ...`` line and exit status 1."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from moviegen.devices import DEVICE_HELP
from moviegen.errors import MovieGenError

app = typer.Typer(
    help="Movie Gen: text-to-video foundation models (arXiv 2410.13720).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tae_app = typer.Typer(help="The temporal autoencoder (TAE).", no_args_is_help=True)
app.add_typer(tae_app, name="tae")
train_app = typer.Typer(help="Training recipes.", no_args_is_help=True)
app.add_typer(train_app, name="train")
eval_app = typer.Typer(help="Evaluation.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

console = Console(stderr=True)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    )


def load_tae(model: str | None):
    """A TAE: the shipped model's by default, a TAE folder, a pipeline folder (its ``tae/``), or an untrained
    preset by name (``tiny``, ``paper``)."""
    from moviegen.models.tae import TAE, TAEConfig
    from moviegen.pipeline import DEFAULT_MODEL, INDEX_NAME

    if model is None:
        model = str(DEFAULT_MODEL / "tae")
    elif model in TAEConfig.PRESETS and not Path(model).exists():
        console.print(
            f"[yellow]note:[/] '{model}' is an untrained preset TAE (give a folder for a trained one)"
        )
        torch.manual_seed(0)
        return TAE(TAEConfig.preset(model)).eval()
    if (Path(model) / INDEX_NAME).is_file():
        model = str(Path(model) / "tae")
    return TAE.from_pretrained(model).eval()


def flags_show_no_type() -> None:
    """Typer prints flags that take no value as ``--json <bool>``; show them as plain ``--json``."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_flags_fixed", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._flags_fixed = True
    TyperOption.display_type_rich = display_type_rich


def pad_to_multiple(video: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad H and W of ``(B, C, T, H, W)`` up to a multiple (cropped off after decoding)."""
    h, w = video.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return video
    return torch.nn.functional.pad(video, (0, pw, 0, ph, 0, 0), mode="replicate")


@tae_app.command("roundtrip")
def tae_roundtrip(
    src: Annotated[Path, typer.Argument(help="Input video file.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the reconstructed MP4.")],
    model: Annotated[
        str | None,
        typer.Option(help="TAE folder, pipeline folder or preset name (default: the shipped TAE)."),
    ] = None,
    max_frames: Annotated[int | None, typer.Option(help="Read at most this many frames.")] = None,
    tile_frames: Annotated[int, typer.Option(help="Encoder tile length in frames (0: untiled).")] = 32,
    tile_latents: Annotated[int, typer.Option(help="Decoder window in latent frames (0: untiled).")] = 4,
    overlap_latents: Annotated[int, typer.Option(help="Decoder window overlap in latent frames.")] = 2,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Encode and decode a real video file; print PSNR, SSIM and the latent shape."""
    from moviegen.devices import autocast, resolve_device
    from moviegen.eval.reconstruction import ReconstructionScore
    from moviegen.files import check_output_file
    from moviegen.video import VideoWriter, read_video

    if max_frames is not None and max_frames <= 0:
        raise MovieGenError(f"--max-frames must be positive, got {max_frames}")
    if min(tile_frames, tile_latents, overlap_latents) < 0:
        raise MovieGenError("--tile-frames, --tile-latents and --overlap-latents must be >= 0")
    check_output_file(out, "output video")
    dev = resolve_device(device)
    video, fps = read_video(src, max_frames=max_frames)
    tae = load_tae(model).to(dev)
    x = pad_to_multiple(video.unsqueeze(0), tae.compression).to(dev)
    score = ReconstructionScore()
    _, t, h, w = video.shape
    with torch.inference_mode(), autocast(dev), progress() as bar, VideoWriter(out, fps) as writer:
        z = tae.encode(x, tile_frames=tile_frames or None)
        task = bar.add_task("decoding", total=t, status="")
        chunks = tae.decode_chunks(z, t, tile_latents or None, overlap_latents)
        for chunk in chunks:
            recon = chunk[0, :, :, :h, :w].float().clamp(-1, 1).cpu()
            score.update(recon, video[:, writer.frames_written : writer.frames_written + recon.shape[1]])
            writer.write(recon)
            bar.update(task, advance=recon.shape[1])
    typer.echo(f"frames: {t}  size: {h}x{w}  fps: {fps:g}")
    typer.echo(f"latent shape: {list(z.shape[1:])}")
    typer.echo(f"PSNR: {score.psnr:.2f} dB  SSIM: {score.ssim:.4f}")
    typer.echo(f"wrote {out}")


@tae_app.command("train")
def tae_train(
    videos: Annotated[list[Path], typer.Argument(help="Training video files.")],
    out: Annotated[Path, typer.Option("--out", help="Output TAE folder.")],
    preset: Annotated[str, typer.Option(help="TAE config preset.")] = "tiny",
    init: Annotated[Path | None, typer.Option(help="Start from this TAE folder instead of a preset.")] = None,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 300,
    frames: Annotated[int, typer.Option(help="Frames per training clip.")] = 16,
    size: Annotated[int, typer.Option(help="Square crop size in pixels (multiple of 8).")] = 64,
    batch_size: Annotated[int, typer.Option(help="Clips per batch.")] = 1,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Train a TAE on video files (images : videos = 1 : 3, L1 + KL + OPL) and save it."""
    from moviegen.data.clips import ClipSampler
    from moviegen.devices import resolve_device
    from moviegen.files import check_output_dir
    from moviegen.memory import (
        available_bytes,
        check_fits,
        largest_tae_size,
        module_bytes,
        tae_training_bytes,
    )
    from moviegen.models.tae import TAE, TAEConfig
    from moviegen.train.tae import TAETrainer, mix_images_and_videos

    if steps <= 0 or frames <= 0 or batch_size <= 0:
        raise MovieGenError("--steps, --frames and --batch-size must be positive")
    if not math.isfinite(lr) or lr <= 0:
        raise MovieGenError(f"--lr must be a positive finite number, got {lr}")
    check_output_dir(out)
    dev = resolve_device(device)
    config = TAEConfig.from_json(init / "config.json") if init is not None else TAEConfig.preset(preset)
    if size <= 0 or size % config.compression:
        raise MovieGenError(f"--size must be a positive multiple of {config.compression}, got {size}")
    weights = 4 * module_bytes(lambda: TAE(config))  # weights, gradients and AdamW's two moments
    need = weights + tae_training_bytes(config, batch_size, frames, size)
    budget = available_bytes(dev) - weights
    fits = largest_tae_size(config, batch_size, frames, budget, config.compression)
    fix = f"--size {fits} fits" if tae_training_bytes(config, batch_size, frames, fits) <= budget else ""
    what = f"training this TAE at --size {size} ({frames} frames, batch {batch_size})"
    check_fits(need, what, dev, fix or "lower --frames or --batch-size")
    torch.manual_seed(seed)
    model = (TAE.from_pretrained(init) if init is not None else TAE(config)).to(dev)
    sampler = ClipSampler.from_files(videos, size=size, multiple=model.compression, seed=seed)
    batches = mix_images_and_videos(sampler.batches(batch_size, 1), sampler.batches(batch_size, frames))
    trainer = TAETrainer(model, lr=lr, grad_clip=100.0)
    trainer.loss.to(dev)
    with progress() as bar:
        task = bar.add_task("training TAE", total=steps, status="")
        for _, batch in zip(range(steps), batches, strict=False):
            terms = trainer.train_step(batch.to(dev))
            bar.update(task, advance=1, status=f"l1 {terms['l1']:.4f} opl {terms['opl']:.2e}")
    model.save_pretrained(out)
    typer.echo(f"wrote {out}")


@tae_app.command("inflate")
def tae_inflate(
    image_ae: Annotated[Path, typer.Argument(help="A diffusers AutoencoderKL folder.")],
    out: Annotated[Path, typer.Option("--out", help="Output TAE folder.")],
    latent_channels: Annotated[
        int | None,
        typer.Option(help="Latent channels of the TAE (default: the source's; e.g. 16 from a 4-channel AE)."),
    ] = None,
) -> None:
    """Inflate a pretrained image autoencoder into a TAE (identity temporal layers)."""
    from moviegen.files import check_output_dir
    from moviegen.models.tae import TAE

    check_output_dir(out)
    tae = TAE.from_image_autoencoder(image_ae, latent_channels=latent_channels)
    tae.save_pretrained(out)
    c = tae.config
    typer.echo(f"inflated {image_ae} → {out} ({list(c.block_out_channels)}, latent {c.latent_channels})")


def stage_reporter(bar: Progress):
    """A recipe's ``progress(stage, step, total, terms)`` callback: one bar per stage, its loss terms."""
    tasks: dict[str, int] = {}

    def report(stage: str, step: int, total: int, terms: dict) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(f"training {stage}", total=total, status="")
        status = " ".join(f"{k} {v:.4f}" for k, v in terms.items() if k in ("l1", "loss", "val"))
        bar.update(tasks[stage], completed=step, status=status)

    return report


@train_app.command("world")
def train_world_command(
    out: Annotated[Path, typer.Option("--out", help="Output folder (pipeline/, logs/, training_log.json).")],
    quick: Annotated[bool, typer.Option("--quick", help="A few-minute variant (CI).")] = False,
    config: Annotated[Path | None, typer.Option(help="JSON file of WorldRecipe overrides.")] = None,
    steps: Annotated[int | None, typer.Option(help="Override the backbone steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    tae: Annotated[
        Path | None, typer.Option(help="Reuse a trained TAE folder (e.g. an earlier OUT/tae).")
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Train the TAE and the text-to-video backbone on the built-in world; write a pipeline."""
    from moviegen.devices import resolve_device
    from moviegen.files import check_output_dir, read_json_object
    from moviegen.train.world import WorldRecipe, train_world

    overrides: dict = {}
    if config is not None:
        overrides = read_json_object(config, "config file", missing=f"config file not found: {config}")
    overrides |= {k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None}
    recipe = WorldRecipe.preset("quick" if quick else "default", **overrides)
    check_output_dir(out)
    dev = resolve_device(device)
    with progress() as bar:
        train_world(recipe, out, progress=stage_reporter(bar), tae_from=tae, device=dev)
    typer.echo(f"wrote {out / 'pipeline'}")


QuickRecipe = Annotated[bool, typer.Option("--quick", help="A seconds-long variant (CI).")]
BaseModel = Annotated[
    Path | None, typer.Option(help="Text-to-video pipeline to start from (default: the shipped world model).")
]
"""Options of every post-trained member's world recipe (``moviegen train upsampler|image``)."""


@train_app.command("upsampler")
def train_upsampler_command(
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (pipeline/, cache/, run/, training_log.json).")
    ],
    quick: QuickRecipe = False,
    base: BaseModel = None,
    steps: Annotated[int | None, typer.Option(help="Override the training steps.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Train the 2x spatial upsampler on the built-in world from a text-to-video backbone (paper §5)."""
    from moviegen.train.upsampler import UpsamplerRecipe, train_upsampler

    run_member_recipe(UpsamplerRecipe, train_upsampler, out, quick, base, steps, device)


@train_app.command("distill")
def train_distill_command(
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (pipeline/, cache/, val_cache/, run/, training_log.json).")
    ],
    quick: QuickRecipe = False,
    base: BaseModel = None,
    steps: Annotated[int | None, typer.Option(help="Override the training steps.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Distil a text-to-video model (default: the shipped world model) into an 8-step student (beyond the
    paper: piecewise reflow of the teacher's guided trajectories, guidance distilled in)."""
    from moviegen.train.distill import DistillRecipe, distill

    run_member_recipe(DistillRecipe, distill, out, quick, base, steps, device)


@train_app.command("image")
def train_image_command(
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (pipeline/, caches, run_*/, training_log.json).")
    ],
    quick: QuickRecipe = False,
    base: BaseModel = None,
    steps: Annotated[int | None, typer.Option(help="Override the fine-tuning steps.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Post-train a text-to-video backbone into the image model on the built-in world (paper §9)."""
    from moviegen.train.image import ImageRecipe, train_image

    run_member_recipe(ImageRecipe, train_image, out, quick, base, steps, device)


@train_app.command("edit")
def train_edit_command(
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (stage1-3/, pipeline/, run_stage*/, training_log.json).")
    ],
    quick: QuickRecipe = False,
    base: Annotated[
        Path | None,
        typer.Option(help="Text-to-video pipeline to start stage 1 from (default: the shipped world model); "
                     "an Edit model folder when --stages starts at 2 or 3."),
    ] = None,
    stages: Annotated[str, typer.Option(help="Stages to run, consecutive: 1,2,3 | 1,2 | 1 | 2,3 | 3.")] = "1,2,3",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Train Movie Gen Edit on the built-in world without video-edit pairs (paper §6, three stages)."""
    from moviegen.train.edit import EditRecipe, parse_stages, train_edit

    chosen = parse_stages(stages)
    if chosen[0] > 1 and base is None:
        raise MovieGenError("--stages starting at 2 or 3 needs --base: the Edit model of the stage before")
    run_member_recipe(EditRecipe, train_edit, out, quick, base, None, device, stages=chosen)


@train_app.command("personalize")
def train_personalize_command(
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (stage1-3/, paired-only/, pipeline/, analyzer/, run_*/).")
    ],
    quick: QuickRecipe = False,
    base: BaseModel = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Train personalized text-to-video (PT2V, paper §5) on the world's people: three stages + ablation."""
    from moviegen.train.personalize import PersonalizeRecipe, train_personalize

    run_member_recipe(PersonalizeRecipe, train_personalize, out, quick, base, None, device)


@train_app.command("audio")
def train_audio_command(
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (pipeline/, audio-embedding/, run/, training_log.json).")
    ],
    quick: QuickRecipe = False,
    steps: Annotated[int | None, typer.Option(help="Override the DiT's training steps.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Train Movie Gen Audio on the sound world (paper §7): the audio autoencoder, then the DiT."""
    from moviegen.train.audio import AudioRecipe, train_audio

    run_member_recipe(AudioRecipe, train_audio, out, quick, None, steps, device)


def run_member_recipe(
    recipe_class, train_fn, out: Path, quick: bool, base, steps, device: str, **options
) -> None:
    """The shared body of the post-trained members' world recipes (``moviegen train upsampler|image|edit``):
    preset (``--quick``), ``--steps`` override, output checks before work, progress, ``OUT/pipeline``."""
    from moviegen.devices import resolve_device
    from moviegen.files import check_output_dir

    overrides = {"steps": steps} if steps is not None else {}
    recipe = recipe_class.preset("quick" if quick else "default", **overrides)
    check_output_dir(out)
    dev = resolve_device(device)
    with progress() as bar:
        train_fn(recipe, out, base=base, progress=stage_reporter(bar), device=dev.type, **options)
    typer.echo(f"wrote {out / 'pipeline'}")


@eval_app.command("edit")
def eval_edit_command(
    model: Annotated[
        list[Path] | None, typer.Option(help="EditPipeline folder(s) to compare (default: the shipped one).")
    ] = None,
    per_task: Annotated[int, typer.Option(help="Held-out edits per task.")] = 24,
    phrasing: Annotated[str, typer.Option(help="train | paraphrase (evaluation-only phrasings)")] = "train",
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: each model's own).")] = None,
    baselines: Annotated[bool, typer.Option("--baselines", help="Also the copy-input and TAE-ceiling rows.")] = False,
    export: Annotated[
        Path | None, typer.Option(help="Write the benchmark as an Edit Bench folder (JSONL + MP4s) instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """The world's Edit Bench: held-out edit compositions, detector-read edit accuracy, preservation, PSNR."""
    import json

    from moviegen.eval.edit import bench_cases, copy_baseline, evaluate_edits, tae_ceiling

    if not 1 <= per_task <= 10_000:
        raise MovieGenError(f"--per-task must be in [1, 10000], got {per_task}")
    if phrasing not in ("train", "paraphrase"):
        raise MovieGenError(f"--phrasing must be train or paraphrase, got {phrasing!r}")
    if export is not None:
        from moviegen.eval.edit_bench import export_world_bench
        from moviegen.files import check_output_dir

        check_output_dir(export)
        typer.echo(f"wrote {export_world_bench(export, per_task, phrasing)}")
        return
    pipes = [(str(p), load_edit_model(p, device)) for p in (model or [None])]
    cases = bench_cases(per_task=per_task, phrasing=phrasing)
    rows = {}
    with progress() as bar:
        for name, pipe in pipes:
            task = bar.add_task(f"editing ({Path(name).name})", total=len(cases), status="")
            rows[name] = evaluate_edits(lambda c, pipe=pipe: pipe(c.video, c.instruction, num_steps=steps),
                                        cases, lambda i, n, task=task: bar.update(task, completed=i))[0]  # fmt: skip
        if baselines:
            rows["copy input"] = evaluate_edits(copy_baseline, cases)[0]
            rows["TAE round trip of the truth"] = evaluate_edits(tae_ceiling(pipes[0][1].tae), cases)[0]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for name, table in rows.items():
        typer.echo(f"{name}  ({phrasing} phrasing, {per_task} held-out edits per task)")
        typer.echo(f"  {'task':<12}{'edit %':>9}{'keep %':>9}{'both %':>9}{'PSNR':>8}")
        for task, r in table.items():
            typer.echo(f"  {task:<12}{r['edit']:>9.1f}{r['preserve']:>9.1f}{r['both']:>9.1f}{r['psnr']:>8.2f}")


@eval_app.command("personalize")
def eval_personalize_command(
    model: Annotated[
        list[Path] | None, typer.Option(help="PersonalizedPipeline folder(s) (default: the shipped one).")
    ] = None,
    identities: Annotated[int, typer.Option(help="Held-out identities (two cases each).")] = 21,
    phrasing: Annotated[str, typer.Option(help="train | paraphrase (evaluation-only phrasings)")] = "train",
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: each model's own).")] = None,
    analyzer: Annotated[
        Path | None, typer.Option(help="People-analyzer folder (default: the shipped one).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Held-out identities: identity similarity and retrieval, prompt following, copy-paste (with baselines)."""
    import json

    from moviegen.devices import resolve_device
    from moviegen.eval import personalize as bench
    from moviegen.eval.people import DEFAULT_ANALYZER, PeopleAnalyzer
    from moviegen.files import check_output_file, write_atomic
    from moviegen.personalize import DEFAULT_PERSONALIZED_MODEL, PersonalizedPipeline

    if not 2 <= identities <= 1000:
        raise MovieGenError(f"--identities must be in [2, 1000], got {identities}")
    if phrasing not in ("train", "paraphrase"):
        raise MovieGenError(f"--phrasing must be train or paraphrase, got {phrasing!r}")
    if out is not None:
        check_output_file(out, "report")
    judge = PeopleAnalyzer.load(analyzer or DEFAULT_ANALYZER)
    folders = model or [DEFAULT_PERSONALIZED_MODEL]
    pipes = [(str(f), PersonalizedPipeline.from_pretrained(f).to(resolve_device(device))) for f in folders]
    cases = bench.cases(identities, phrasing=phrasing)
    table = bench.gallery(judge, cases)
    rows = bench.baselines(cases, judge, table)
    with progress() as bar:
        for name, pipe in pipes:
            task = bar.add_task(f"generating ({Path(name).name})", total=len(cases), status="")
            videos = bench.generate_cases(pipe, cases, steps, progress=lambda i, n, t=task: bar.update(t, completed=i))
            rows[name] = bench.score(videos, cases, judge, table)
    report = {"phrasing": phrasing, "identities": identities, "rows": rows}
    if out is not None:
        write_atomic(out, json.dumps(report, indent=1) + "\n")
    typer.echo(f"{'':<34}{'id cos':>8}{'top-1 %':>9}{'action %':>10}{'copy':>7}   ({phrasing} phrasing, "
               f"{len(cases)} cases, {identities} held-out identities)")  # fmt: skip
    for name, r in rows.items():
        typer.echo(f"{name[-34:]:<34}{r['identity_cos']:>8.3f}{r['retrieval']:>9.1f}{r['action']:>10.1f}{r['copy']:>7.2f}")


@eval_app.command("audio")
def eval_audio_command(
    model: Annotated[
        list[Path] | None, typer.Option(help="AudioPipeline folder(s) (default: the shipped one).")
    ] = None,
    phrasing: Annotated[str, typer.Option(help="train | paraphrase (evaluation-only phrasings)")] = "train",
    limit: Annotated[int | None, typer.Option(help="Only every k-th case, for about this many cases.")] = None,
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: each model's own).")] = None,
    guidance: Annotated[float | None, typer.Option(help="Guidance scale (default: each model's own).")] = None,
    embedding: Annotated[
        Path | None, typer.Option(help="Audio-embedding folder for the FAD-style distance (default: the shipped one).")
    ] = None,
    extension_seconds: Annotated[
        float, typer.Option(help="Length of the extension check's world video (0: skip it).")
    ] = 60.0,
    videos: Annotated[
        Path | None, typer.Option(help="Also write the first model's cases as MP4s + world_truth.json here.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Held-out world combinations: onset synchrony, impact F1, pitch / timbre, tempo, FAD (with baselines);
    the autoencoder's round trip; the extension's seams on a long video."""
    import json

    from moviegen.eval import audio_bench as bench
    from moviegen.eval.audio import load_audio_embedding
    from moviegen.files import check_output_dir, check_output_file, write_atomic

    if phrasing not in bench.PHRASINGS:
        raise MovieGenError(f"--phrasing must be train or paraphrase, got {phrasing!r}")
    if limit is not None and not 1 <= limit <= 10_000:
        raise MovieGenError(f"--limit must be in [1, 10000], got {limit}")
    if not 0 <= extension_seconds <= 600:
        raise MovieGenError(f"--extension-seconds must be in [0, 600], got {extension_seconds}")
    _check_audio_options(steps, guidance, None)
    if out is not None:
        check_output_file(out, "report")
    if videos is not None:
        check_output_dir(videos, "videos folder")
    judge = load_audio_embedding(embedding)
    pipes = [(str(f or "default"), load_audio_model(f, device)) for f in (model or [None])]
    cases = bench.cases(phrasing, seconds=pipes[0][1].window / pipes[0][1].autoencoder.config.latent_rate)
    if limit is not None:
        cases = cases[:: max(1, len(cases) // limit)][:limit]
    reference = judge.embed(bench.reference_set())
    results, extension = {}, {}
    with progress() as bar:
        task = bar.add_task("baselines", total=None, status="")
        for name, audios in bench.baselines(cases, pipes[0][1].autoencoder).items():
            results[name] = bench.score(audios, cases, judge, reference)
        for k, (name, pipe) in enumerate(pipes):
            task = bar.add_task(f"generating ({Path(name).name})", total=len(cases), status="")
            audios = bench.generate_cases(pipe, cases, steps, guidance, progress=lambda i, n, t=task: bar.update(
                t, completed=i))  # fmt: skip
            results[name] = bench.score(audios, cases, judge, reference)
            if k == 0 and videos is not None:
                bench.write_cases(videos, cases, audios, pipe.sample_rate)
        round_trip = bench.round_trip(pipes[0][1].autoencoder, [c.clip.audio for c in cases])
        if extension_seconds > 0:
            clip = bench.long_clip(extension_seconds)
            for name, pipe in pipes:
                task = bar.add_task(f"extension ({Path(name).name})", total=None, status="")
                extension[name] = bench.extension(pipe, clip, steps=steps, progress=lambda i, n, t=task: bar.update(
                    t, completed=i, total=n))  # fmt: skip
    report = {"phrasing": phrasing, "cases": len(cases), "rows": results, "autoencoder": round_trip,
              "extension": extension}  # fmt: skip
    if out is not None:
        write_atomic(out, json.dumps(report, indent=1) + "\n")
    typer.echo(bench.format_report(report))


@eval_app.command("world")
def eval_world_command(
    model: Annotated[str | None, typer.Option(help="Pipeline folder (default: the shipped model).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per prompt.")] = 2,
    num_seen: Annotated[int, typer.Option(help="Seen (training) triples to include.")] = 20,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
    quick: Annotated[bool, typer.Option(help="Only the model's own sampler (skip linear-250).")] = False,
    guidance: Annotated[
        float | None, typer.Option(help="Guidance scale (default: the model's own, else 7.5).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Euler steps of the main sampler (default: the model's own: 50, 8 distilled).")
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Generate held-out compositions and camera motions; score them with the classical detector."""
    import json

    from moviegen.eval.world import evaluate_world, tae_roundtrip_scores
    from moviegen.files import check_output_file, write_atomic
    from moviegen.pipeline import check_guidance_scale

    if seeds < 1 or seeds > 1000:
        raise MovieGenError(f"--seeds must be in [1, 1000], got {seeds}")
    if num_seen < 0:
        raise MovieGenError(f"--num-seen must be >= 0, got {num_seen}")
    if guidance is not None:
        check_guidance_scale(guidance, "--guidance")
    if out is not None:
        check_output_file(out, "report")
    pipe = load_pipeline(model, device)
    guidance = pipe.guidance_scale if guidance is None else guidance
    check_steps(steps)
    samplers = [(pipe.schedule, steps or pipe.num_steps)] + ([] if quick else [("linear", 250)])

    def generate(p, seed, schedule, steps):
        camera = p.truth.get("camera")
        return pipe(p.prompt, fps=16, num_steps=steps, schedule=schedule, seed=seed, camera_motion=camera,
                    guidance_scale=guidance)  # fmt: skip

    with progress() as bar:
        task = bar.add_task("evaluating", total=None, status="")
        results = evaluate_world(
            generate, seeds, samplers, num_seen, progress=lambda i, n: bar.update(task, completed=i, total=n)
        )
        results["tae-roundtrip"] = tae_roundtrip_scores(pipe.tae, seeds, num_seen)
    for name in results:
        if name != "tae-roundtrip":
            results[name]["guidance_scale"] = guidance
    if out is not None:
        write_atomic(out, json.dumps(results, indent=2) + "\n")
    names = list(results)
    keys = sorted({k for r in results.values() for k in r})
    typer.echo(f"{'metric':<22}" + "".join(f"{n:>22}" for n in names))
    for k in keys:
        typer.echo(f"{k:<22}" + "".join(f"{results[n].get(k, float('nan')):>22.2f}" for n in names))
    typer.echo(json.dumps(results))


@eval_app.command("paraphrase")
def eval_paraphrase_command(
    model: Annotated[str | None, typer.Option(help="Pipeline folder (default: the shipped model).")] = None,
    sets: Annotated[
        str,
        typer.Option("--set", help="builtin, blind, both, or a JSON file of {prompt, kind, truth} items."),
    ] = "both",
    seeds: Annotated[int, typer.Option(help="Seeds per prompt.")] = 2,
    guidance: Annotated[
        float | None, typer.Option(help="Guidance scale (default: the model's own, else 7.5).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Held-out compositions and camera motions phrased as people write them, with and without rewriting."""
    import json

    from moviegen.eval import paraphrase as para
    from moviegen.files import check_output_file, write_atomic
    from moviegen.pipeline import check_guidance_scale

    if not 1 <= seeds <= 1000:
        raise MovieGenError(f"--seeds must be in [1, 1000], got {seeds}")
    if guidance is not None:
        check_guidance_scale(guidance, "--guidance")
    if out is not None:
        check_output_file(out, "report")
    named = {"builtin": para.paraphrase_prompts, "blind": lambda: para.read_prompt_set(para.BLIND_SET)}
    chosen = ["builtin", "blind"] if sets == "both" else [sets]
    prompt_sets = {s: named[s]() if s in named else para.read_prompt_set(s) for s in chosen}
    pipe = load_pipeline(model, device)

    def generate(p, seed, rewrite):
        return pipe(p.prompt, fps=16, seed=seed, guidance_scale=guidance, rewrite=rewrite)

    results = {}
    with progress() as bar:
        task = bar.add_task("evaluating", total=None, status="")
        for name, prompts in prompt_sets.items():
            bar.update(task, status=name)
            scores = para.evaluate_paraphrases(
                generate, prompts, seeds, progress=lambda i, n: bar.update(task, completed=i, total=n)
            )
            results |= {f"{name} {mode}": row for mode, row in scores.items()}
    if out is not None:
        write_atomic(out, json.dumps(results, indent=2) + "\n")
    keys = ["held_out_color", "held_out_shape", "held_out_motion", "camera"]
    typer.echo(f"{'prompts':<24}" + "".join(f"{k:>17}" for k in keys))
    for name, row in results.items():
        typer.echo(f"{name:<24}" + "".join(f"{row.get(k, float('nan')):>17.1f}" for k in keys))


@eval_app.command("guidance")
def eval_guidance_command(
    model: Annotated[str | None, typer.Option(help="Pipeline folder (default: the shipped model).")] = None,
    scales: Annotated[
        str, typer.Option(help="Comma-separated guidance scales to try.")
    ] = "1,1.5,2,3,4.5,7.5",
    seeds: Annotated[int, typer.Option(help="Seeds per calibration prompt.")] = 2,
    num_seen: Annotated[int, typer.Option(help="Seen (training) triples per seed.")] = 24,
    write: Annotated[
        bool, typer.Option("--write", help="Store the best scale in the model's model_index.json.")
    ] = False,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Choose a model's guidance scale on training compositions of the world (not the held-out ones)."""
    from moviegen.eval.world import calibrate_pipeline_guidance
    from moviegen.pipeline import DEFAULT_MODEL, set_guidance_scale

    try:
        grid = [float(x) for x in scales.split(",") if x.strip()]
    except ValueError:
        raise MovieGenError(f"--scales must be comma-separated numbers, got {scales!r}") from None
    if not grid or any(not 0 <= g < 1e3 for g in grid):
        raise MovieGenError(f"--scales must be numbers in [0, 1000), got {scales!r}")
    if seeds < 1 or num_seen < 0:
        raise MovieGenError(f"--seeds must be >= 1 and --num-seen >= 0, got {seeds} and {num_seen}")
    pipe = load_pipeline(model, device)
    with progress() as bar:
        task = bar.add_task("calibrating", total=None, status="")
        best, table = calibrate_pipeline_guidance(
            pipe, grid, seeds, num_seen, progress=lambda i, n: bar.update(task, completed=i, total=n)
        )
    keys = ["seen_color", "seen_shape", "seen_motion", "camera", "mean"]
    typer.echo(f"{'guidance':>9}" + "".join(f"{k:>13}" for k in keys))
    for scale, row in table.items():
        typer.echo(f"{scale:>9.2f}" + "".join(f"{row.get(k, float('nan')):>13.1f}" for k in keys))
    typer.echo(f"best guidance scale: {best:g} (model default was {pipe.guidance_scale:g})")
    if write:
        folder = Path(model) if model is not None else DEFAULT_MODEL
        set_guidance_scale(folder, best)
        typer.echo(f"wrote guidance_scale {best:g} to {folder / 'model_index.json'}")


@app.command()
def bench(
    out: Annotated[Path, typer.Option("--out", help="Output folder (MP4s, index.json, index.parquet).")],
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="Prompt file: .txt, Movie Gen Bench .csv, or .jsonl.")
    ] = None,
    edit: Annotated[
        Path | None,
        typer.Option("--edit", help="Edit Bench JSONL (id, video, instruction, source_caption, target_caption): "
                     "edit each video with an Edit model (--model: an EditPipeline folder)."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Pipeline folder (default: the shipped model).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per prompt (0..K-1).")] = 1,
    frames: Annotated[int, typer.Option(help="Frames per video.")] = 16,
    height: Annotated[int, typer.Option(help="Height in pixels.")] = 64,
    width: Annotated[int, typer.Option(help="Width in pixels.")] = 64,
    fps: Annotated[int, typer.Option(help="Frame rate (and FPS-N prefix).")] = 16,
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: the model's own).")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="linear-quadratic | linear (default: the model's own).")
    ] = None,
    guidance: Annotated[
        float | None, typer.Option(help="Guidance scale (default: the model's own, else 7.5).")
    ] = None,
    rewrite: Annotated[
        bool | None,
        typer.Option(
            "--rewrite/--no-rewrite",
            help="Rewrite prompts into the model's caption style (default: on when the model has one).",
        ),
    ] = None,  # fmt: skip
    audio: Annotated[
        bool | None,
        typer.Option("--audio/--no-audio", help="Add each video's sound from its audio_prompt (and music_prompt) "
                     "with Movie Gen Audio (default: on for Audio Bench .jsonl rows)."),
    ] = None,  # fmt: skip
    audio_model: Annotated[
        Path | None, typer.Option(help="AudioPipeline folder for the sound (default: the shipped one).")
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Generate a benchmark prompt set with fixed seeds (resumable); bad rows are reported, not fatal.
    With ``--edit``, run the Edit Bench instead: each row's video edited as its instruction says. Movie
    Gen Audio Bench rows (.jsonl) get their sound too: videos with 48 kHz AAC audio."""
    from moviegen.audio_files import SAMPLE_RATE
    from moviegen.cascade import VideoRequest
    from moviegen.eval.bench import read_prompts, run_bench
    from moviegen.files import check_output_dir

    if limit is not None and limit < 1:
        raise MovieGenError(f"--limit must be at least 1 (got {limit})")
    if not 1 <= seeds <= 1000:
        raise MovieGenError(f"--seeds must be in [1, 1000], got {seeds}")
    if (prompts is None) == (edit is None):
        raise MovieGenError("give one of --prompts (a prompt file) or --edit (an Edit Bench JSONL)")
    check_output_dir(out)
    if edit is not None:
        _edit_bench(edit, out, model, limit, seeds, steps, guidance, device)
        return
    items, row_errors = read_prompts(prompts)
    for e in row_errors:
        console.print(f"[yellow]{prompts}:[/] {e}", highlight=False, soft_wrap=True)
    items = items[:limit] if limit is not None else items
    VideoRequest("x", frames, height, width, fps, steps, schedule, guidance, 0, None).validate()
    has_audio = any(p.audio_prompt for p in items)
    if audio and not has_audio:
        raise MovieGenError("--audio needs Audio Bench rows (.jsonl with audio_prompt)")
    if audio_model is not None and not (audio or (audio is None and has_audio)):
        raise MovieGenError("--audio-model is only used when the bench makes sound (--audio)")
    if audio and frames == 1:
        raise MovieGenError("--audio needs videos, not images (--frames > 1)")
    sound = _bench_sound(audio_model, fps, device) if has_audio and audio is not False and frames > 1 else None
    pipe = load_pipeline(model, device)
    pipe.check_request("x", frames, height, width, fps, steps, schedule, guidance)
    guidance = pipe.guidance_scale if guidance is None else guidance
    steps, schedule = steps or pipe.num_steps, schedule or pipe.schedule
    rewrite = pipe.rewrite_by_default if rewrite is None else rewrite
    settings = dict(model=str(model or "default"), frames=frames, height=height, width=width, fps=fps,
                    steps=steps, schedule=schedule, guidance=guidance, rewrite=rewrite)  # fmt: skip
    if sound is not None:
        settings["audio_model"] = str(audio_model or "default")

    def generate(prompt: str, seed: int) -> torch.Tensor:
        return pipe(prompt, num_frames=frames, height=height, width=width, fps=fps, num_steps=steps,
                    schedule=schedule, guidance_scale=guidance, seed=seed, rewrite=rewrite)  # fmt: skip

    with progress() as bar:
        task = bar.add_task("generating", total=None, status="")

        def report(i: int, n: int, ident: str) -> None:
            bar.update(task, completed=i, total=n, status=ident)

        summary = run_bench(
            items,
            generate,
            out,
            seeds=seeds,
            fps=fps,
            settings=settings,
            row_errors=row_errors,
            progress=report,
            image=frames == 1,
            sound=sound,
            sample_rate=sound.sample_rate if sound is not None else SAMPLE_RATE,
        )
    for r in summary.records:
        if r.status != "ok":
            console.print(f"[red]failed:[/] {r.id} seed {r.seed}: {r.error}", highlight=False, soft_wrap=True)
    typer.echo(f"{summary.generated} generated, {summary.skipped} already there, {summary.failed} failed, "
               f"{len(summary.row_errors)} bad rows; index: {out / 'index.json'}")  # fmt: skip
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def metrics(
    folder: Annotated[Path, typer.Argument(help="A `moviegen bench` output folder.")],
    encoder: Annotated[
        str, typer.Option(help="Joint text-video encoder: 'world' or a local CLIP folder.")
    ] = "world",
    out: Annotated[
        Path | None, typer.Option(help="Where to write the report (default FOLDER/metrics).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Also report this pipeline's validation loss ('default': the shipped one)."),
    ] = None,
    val: Annotated[
        str, typer.Option(help="Held-out set for --model: 'world' or a folder of MP4 + .txt.")
    ] = "world",
    val_clips: Annotated[int, typer.Option(help="Clips of the world's held-out split.")] = 64,
    audio_embedding: Annotated[
        Path | None, typer.Option(help="Audio: embedding folder for the FAD-style distance (default: the shipped one).")
    ] = None,
    audio_reference: Annotated[
        str, typer.Option(help="Audio: FAD reference, 'world' or a folder of audio/video files.")
    ] = "world",
    autoencoder: Annotated[
        Path | None, typer.Option(help="Audio: also score this AudioPipeline's autoencoder round trip on the audio.")
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP + " (for --model and a CLIP encoder)")] = "auto",
) -> None:
    """Text alignment, frame consistency and motion score per video and aggregated; tables, JSON, PNGs.
    Folders with sound (an Audio Bench run, ``moviegen eval audio --videos``, or any folder of audio files
    with ``--autoencoder``) get audio scores too: world synchrony / events / pitch / timbre / tempo where
    the truth is known, the FAD-style distance, the autoencoder's mel distance and SI-SDR."""
    from moviegen.devices import resolve_device
    from moviegen.eval import metrics as m
    from moviegen.eval.audio_bench import is_audio_folder
    from moviegen.files import check_output_dir

    if not 1 <= val_clips <= 100_000:
        raise MovieGenError(f"--val-clips must be in [1, 100000], got {val_clips}")
    if not folder.is_dir():
        raise MovieGenError(f"bench folder not found: {folder}")
    check_output_dir(out or folder / "metrics", "report folder")
    if autoencoder is not None or is_audio_folder(folder):
        _audio_metrics(folder, audio_embedding, audio_reference, autoencoder, out or folder / "metrics", device)
        if not (folder / "index.json").is_file():
            return
    dev = resolve_device(device)
    joint = m.load_encoder(encoder, device=str(dev))
    if (folder / "edit_index.json").is_file():
        _edit_metrics(folder, joint, out or folder / "metrics")
        return
    with progress() as bar:
        task = bar.add_task("scoring", total=None, status="")
        report = m.evaluate_folder(
            folder, joint, progress=lambda i, n: bar.update(task, completed=i, total=n)
        )
    if model is not None:
        videos, captions = m.held_out_world(val_clips) if val == "world" else m.held_out_folder(val)
        pipe = load_pipeline(None if model == "default" else model, device)
        report.validation_loss = m.validation_loss(pipe, videos, captions)
    for e in report.errors:
        console.print(f"[red]failed:[/] {e}", highlight=False, soft_wrap=True)
    written = m.write_report(report, out or folder / "metrics")
    typer.echo(m.format_table(report))
    typer.echo("wrote " + ", ".join(str(p) for p in written))
    if report.errors:
        raise typer.Exit(1)


def _audio_metrics(folder: Path, embedding: Path | None, reference: str, autoencoder: Path | None, out: Path,
                   device: str) -> None:  # fmt: skip
    """``moviegen metrics`` of the audio in a folder (:func:`moviegen.eval.audio_bench.evaluate_audio_folder`)."""
    import json

    from moviegen.eval.audio import load_audio_embedding
    from moviegen.eval.audio_bench import evaluate_audio_folder, format_audio_table, read_reference
    from moviegen.files import write_atomic

    judge = load_audio_embedding(embedding)
    ae = load_audio_model(autoencoder, device).autoencoder.cpu() if autoencoder is not None else None
    with progress() as bar:
        task = bar.add_task("scoring audio", total=None, status="")
        ref = read_reference(reference, judge.config.sample_rate)
        report = evaluate_audio_folder(folder, judge, ref, ae, progress=lambda i, n: bar.update(task, completed=i,
                                                                                                total=n))  # fmt: skip
    for e in report["errors"]:
        console.print(f"[red]failed:[/] {e}", highlight=False, soft_wrap=True)
    if not report["files"]:
        raise MovieGenError(f"no file with audio to score in {folder}")
    out.mkdir(parents=True, exist_ok=True)
    path = write_atomic(out / "audio_metrics.json", json.dumps(report, indent=1) + "\n")
    typer.echo(format_audio_table(report))
    typer.echo(f"wrote {path}")
    if report["errors"]:
        raise typer.Exit(1)


def _edit_metrics(folder: Path, joint, out: Path) -> None:
    """``moviegen metrics`` of an Edit Bench folder: ViCLIP_dir / ViCLIP_out analogues, world edit scores."""
    import json

    from moviegen.eval.edit_bench import evaluate_edit_folder, format_edit_table
    from moviegen.files import write_atomic

    with progress() as bar:
        task = bar.add_task("scoring edits", total=None, status="")
        report = evaluate_edit_folder(folder, joint, progress=lambda i, n: bar.update(task, completed=i, total=n))
    for e in report["errors"]:
        console.print(f"[red]failed:[/] {e}", highlight=False, soft_wrap=True)
    out.mkdir(parents=True, exist_ok=True)
    path = write_atomic(out / "edit_metrics.json", json.dumps(report, indent=1) + "\n")
    typer.echo(format_edit_table(report))
    typer.echo(f"wrote {path}")
    if report["errors"]:
        raise typer.Exit(1)


RANDOM_PIPELINES = {"tiny-random": "tiny"}


def check_steps(steps: int | None, flag: str = "--steps") -> None:
    """An Euler step count given on the command line: None (the model's own) or 1 … 10000."""
    if steps is not None and not 1 <= steps <= 10_000:
        raise MovieGenError(f"{flag} must be in [1, 10000], got {steps}")


def load_pipeline(model: str | None, device: str = "auto"):
    """A MovieGenPipeline from a folder, a shipped model's name (``world``, ``world-distilled``) or
    ``tiny-random`` (random weights, offline MiniLM text), moved to ``device`` (``auto``: CUDA when
    available). A folder of that name in the working directory wins over the name."""
    from moviegen.devices import resolve_device
    from moviegen.pipeline import DEFAULT_MODEL, SHIPPED_MODELS, MovieGenPipeline

    dev = resolve_device(device)
    if model in SHIPPED_MODELS and not Path(model).exists():
        if not (SHIPPED_MODELS[model] / "model_index.json").is_file():
            raise MovieGenError(f"the shipped model {model!r} is not in this install ({SHIPPED_MODELS[model]})")
        return MovieGenPipeline.from_pretrained(SHIPPED_MODELS[model]).to(dev)
    if model is None and (DEFAULT_MODEL / "model_index.json").is_file():
        return MovieGenPipeline.from_pretrained(DEFAULT_MODEL).to(dev)
    if model is None or (model in RANDOM_PIPELINES and not Path(model).exists()):
        name = model or "tiny-random"
        if model is None:
            console.print(f"[yellow]note:[/] no shipped model found: using '{name}' (untrained weights)")
        return MovieGenPipeline.from_presets(transformer=RANDOM_PIPELINES[name], tae="tiny").to(dev)
    return MovieGenPipeline.from_pretrained(model).to(dev)


def default_video_model() -> str | None:
    """``moviegen generate``'s text-to-video default: the shipped ``GENERATE_DEFAULT`` (the 8-step student) when
    it is in this install, else None (the world model)."""
    from moviegen.pipeline import GENERATE_DEFAULT, SHIPPED_MODELS

    shipped = SHIPPED_MODELS[GENERATE_DEFAULT] / "model_index.json"
    return GENERATE_DEFAULT if shipped.is_file() else None


def default_image_model() -> str | None:
    """The shipped image model's folder, if there is one (the default of ``moviegen image`` and of
    ``moviegen generate --frames 1``); else None (the world model)."""
    from moviegen.pipeline import DEFAULT_IMAGE_MODEL

    return str(DEFAULT_IMAGE_MODEL) if (DEFAULT_IMAGE_MODEL / "model_index.json").is_file() else None


def load_member(pipeline_class, shipped: Path, what: str, path: Path | None, device: str = "auto"):
    """A member's pipeline from ``path`` (default: its shipped folder ``shipped``) on ``device``; one error
    line naming ``what`` when nothing is shipped."""
    from moviegen.devices import resolve_device

    if path is None:
        if not (shipped / "model_index.json").is_file():
            raise MovieGenError(f"no shipped {what} found: pass an {pipeline_class.__name__} folder")
        path = shipped
    return pipeline_class.from_pretrained(path).to(resolve_device(device))


def load_personalized(path: Path | None, device: str = "auto"):
    """A PersonalizedPipeline from a folder (default: the shipped one) on ``device``."""
    from moviegen.personalize import DEFAULT_PERSONALIZED_MODEL, PersonalizedPipeline

    return load_member(PersonalizedPipeline, DEFAULT_PERSONALIZED_MODEL, "personalization model", path, device)


def load_upsampler(path: Path | None, device: str = "auto"):
    """An UpsamplerPipeline from a folder (default: the shipped one) on ``device``."""
    from moviegen.upsampler import DEFAULT_UPSAMPLER, UpsamplerPipeline

    return load_member(UpsamplerPipeline, DEFAULT_UPSAMPLER, "upsampler", path, device)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="Text prompt.")],
    out: Annotated[Path, typer.Option("--out", help="Output MP4 path (a PNG with --frames 1).")],
    model: Annotated[
        str | None,
        typer.Option(
            help="Pipeline folder, or a shipped model: world (50 steps) | world-distilled (8 steps) | "
            "tiny-random (default: world-distilled; the image model for --frames 1)."
        ),
    ] = None,  # fmt: skip
    frames: Annotated[int, typer.Option(help="Number of frames.")] = 16,
    height: Annotated[int, typer.Option(help="Height in pixels (multiple of 16).")] = 64,
    width: Annotated[int, typer.Option(help="Width in pixels (multiple of 16).")] = 64,
    fps: Annotated[
        int | None,
        typer.Option(help="Frame rate, also the FPS-N prompt prefix (default: the prompt's, else 16)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Euler steps (default: the model's own: 50, 8 for world-distilled).")
    ] = None,
    schedule: Annotated[
        str | None, typer.Option(help="linear-quadratic | linear (default: the model's own).")
    ] = None,
    guidance: Annotated[
        float | None, typer.Option(help="Guidance scale (default: the model's own, else 7.5).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    camera: Annotated[
        str | None,
        typer.Option(help="Camera motion, e.g. 'pan left' (or a 'Camera: pan left.' prompt prefix)."),
    ] = None,
    rewrite: Annotated[
        bool | None,
        typer.Option(
            "--rewrite/--no-rewrite",
            help="Rewrite the prompt into the model's caption style "
            "(default: on when the model has one; moviegen rewrite).",
        ),
    ] = None,  # fmt: skip
    rewriter: Annotated[
        str, typer.Option(help="Rewriter backend: template | openai | transformers.")
    ] = "template",
    rewriter_url: Annotated[str | None, typer.Option(help="openai rewriter: server base URL.")] = None,
    rewriter_model: Annotated[str | None, typer.Option(help="openai rewriter: model name.")] = None,
    rewriter_path: Annotated[
        Path | None, typer.Option(help="transformers rewriter: local LM folder.")
    ] = None,
    upsample: Annotated[
        bool, typer.Option("--upsample", help="Cascade: then upsample 2x with the spatial upsampler (§5).")
    ] = False,
    upsampler: Annotated[
        Path | None, typer.Option(help="UpsamplerPipeline folder for --upsample (default: the shipped one).")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="A face image (PNG/JPEG): generate a video of that person (PT2V, §5; default "
                     "model: the shipped personalization model)."),
    ] = None,  # fmt: skip
    audio: Annotated[
        bool, typer.Option("--audio", help="Cascade: then add sound with Movie Gen Audio (§7), muxed as AAC.")
    ] = False,
    audio_prompt: Annotated[
        str | None, typer.Option(help="With --audio: what it sounds like (default: the video prompt).")
    ] = None,
    music: Annotated[str | None, typer.Option(help='With --audio: a music prompt, e.g. "happy piano melody".')] = None,
    audio_model: Annotated[
        Path | None, typer.Option(help="With --audio: AudioPipeline folder (default: the shipped one).")
    ] = None,
    wav: Annotated[Path | None, typer.Option("--wav", help="With --audio: also write the sound as a WAV.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Generate a video from a text prompt and write it as an MP4 (``--upsample``: at twice the size;
    ``--reference FACE.png``: of the person in the image; ``--audio``: with sound)."""
    from moviegen.cascade import VideoRequest
    from moviegen.files import check_output_file

    VideoRequest(prompt, frames, height, width, fps, steps, schedule, guidance, seed, camera).validate()
    if reference is not None and (camera is not None or rewrite):
        raise MovieGenError("--camera and --rewrite are not available with --reference")
    if upsampler is not None and not upsample:
        raise MovieGenError("--upsampler is only used with --upsample")
    check_output_file(out, "output video")
    as_png = out.suffix.lower() == ".png"
    if as_png and frames != 1:
        raise MovieGenError(f"a PNG holds one frame: use --frames 1, or an .mp4 path for {frames} frames")
    sound = _cascade_sound(audio, audio_prompt, prompt, music, audio_model, wav, out, as_png, seed, device)
    request = VideoRequest(prompt, frames, height, width, fps, steps, schedule, guidance, seed, camera, rewrite)
    if reference is not None:
        from moviegen.personalize import read_reference

        image = read_reference(reference)
        pipe = load_personalized(Path(model) if model is not None else None, device)
        up = load_upsampler(upsampler, device) if upsample else None
        _generate_to_file(pipe, request, out, up, sound, wav, reference=image)
        return
    if model is None:
        model = default_image_model() if frames == 1 else default_video_model()
    pipe = load_pipeline(model, device)
    up = load_upsampler(upsampler, device) if upsample else None
    if rewriter != "template" or rewriter_url or rewriter_model or rewriter_path:
        from moviegen.rewrite import rewriter_from_options

        options = (rewriter, rewriter_url, rewriter_model, rewriter_path, pipe.style, str(pipe.device))
        pipe.rewriter = rewriter_from_options(*options)
        request = dataclasses.replace(request, rewrite=True if rewrite is None else rewrite)
    _generate_to_file(pipe, request, out, up, sound, wav)


def _cascade_sound(enabled: bool, audio_prompt: str | None, prompt: str, music: str | None, model: Path | None,
                   wav: Path | None, out: Path, as_png: bool, seed: int, device: str):  # fmt: skip
    """``generate --audio``: checks the audio options and loads the audio model before any sampling, and
    returns the cascade's :class:`~moviegen.cascade.Sound` stage; None without ``--audio``. The audio prompt
    defaults to the video prompt."""
    from moviegen.cascade import Sound

    options = (("--audio-prompt", audio_prompt), ("--music", music), ("--audio-model", model), ("--wav", wav))
    if not enabled:
        if given := [name for name, value in options if value is not None]:
            raise MovieGenError(f"{', '.join(given)} only apply with --audio")
        return None
    from moviegen.files import check_output_file

    if as_png:
        raise MovieGenError("--audio needs a video: write an .mp4, not a PNG")
    if wav is not None:
        check_output_file(wav, "output WAV")
        if wav.resolve() == out.resolve():
            raise MovieGenError("--wav must be another path than --out")
    return Sound(load_audio_model(model, device), audio_prompt or prompt, music, seed)


def bar_reporter(bar: Progress):
    """A cascade ``report(stage, step, total)`` drawing one progress bar per stage."""
    tasks: dict[str, int] = {}

    def report(stage: str, step: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, status="")
        bar.update(tasks[stage], completed=step, total=total)

    return report


def _generate_to_file(pipe, request, out: Path, up, sound=None, wav: Path | None = None, reference=None) -> None:
    """Check the request, sample (then upsample, then add sound), write an MP4 — or a PNG for one frame: the
    one path behind ``moviegen generate`` (``reference``: a face for the personalized model) and
    ``moviegen image`` (:mod:`moviegen.cascade`)."""
    from moviegen import cascade

    prepared = cascade.prepare(pipe, request, reference, up)
    if prepared is not None and prepared.rewritten:
        console.print(f"[cyan]rewritten prompt:[/] {prepared.encoded}", highlight=False, soft_wrap=True)
    for note in prepared.notes if prepared is not None else ():
        console.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    times: dict[str, float] = {}
    with progress() as bar:
        report = bar_reporter(bar)
        video, fps = cascade.sample(pipe, request, prepared, reference, up, report, times)
        cascade.write(video, fps, out, sound, report, wav, times)
    whose = " of the reference's person" if reference is not None else ""
    if out.suffix.lower() == ".png":
        typer.echo(f"wrote {out} ({video.shape[2]}x{video.shape[3]} image{whose})")
    else:
        with_sound = " with sound" if sound is not None else ""
        typer.echo(f"wrote {out} ({video.shape[1]} frames, {video.shape[2]}x{video.shape[3]}, {fps} fps{whose}"
                   f"{with_sound})")  # fmt: skip
    typer.echo("time per stage: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in times.items()))


@app.command()
def image(
    prompt: Annotated[str, typer.Argument(help="Text prompt.")],
    out: Annotated[Path, typer.Option("--out", help="Output PNG path.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="Pipeline folder, or 'tiny-random' (default: the shipped image model, else the world model)."
        ),
    ] = None,  # fmt: skip
    size: Annotated[
        int | None, typer.Option(help="Side in pixels, a multiple of 16 (default: the model's largest).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Euler steps.")] = 50,
    schedule: Annotated[str, typer.Option(help="linear-quadratic | linear")] = "linear-quadratic",
    guidance: Annotated[
        float | None, typer.Option(help="Guidance scale (default: the model's own, else 7.5).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    rewrite: Annotated[
        bool | None,
        typer.Option("--rewrite/--no-rewrite", help="Rewrite the prompt into the model's caption style."),
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Generate an image (a one-frame video: no FPS prefix) and write it as a PNG."""
    from moviegen.files import check_output_file
    from moviegen.pipeline import GenerationRequest

    GenerationRequest(prompt, 1, size or 16, size or 16, None, steps, schedule, guidance, seed).validate()
    if out.suffix.lower() != ".png":
        raise MovieGenError(f"moviegen image writes a PNG: give an .png path, not {out.name!r}")
    check_output_file(out, "output image")
    pipe = load_pipeline(model or default_image_model(), device)
    size = min(pipe.max_size) if size is None else size
    from moviegen.cascade import VideoRequest

    request = VideoRequest(prompt, 1, size, size, None, steps, schedule, guidance, seed, None, rewrite)
    _generate_to_file(pipe, request, out, None)


@app.command()
def upsample(
    src: Annotated[Path, typer.Argument(help="Input video file (sides: multiples of 16 / scale).")],
    out: Annotated[Path, typer.Option("--out", help="Output MP4 path.")],
    model: Annotated[
        Path | None,
        typer.Option(help="UpsamplerPipeline folder (default: the shipped one; moviegen train upsampler)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Euler steps (default: the model's, the paper's 20).")
    ] = None,
    window: Annotated[
        int | None, typer.Option(help="MultiDiffusion window in latent frames (default: the model's).")
    ] = None,
    overlap: Annotated[int | None, typer.Option(help="Window overlap in latent frames.")] = None,
    prompt: Annotated[str, typer.Option(help="Text conditioning (default: the null text).")] = "",
    color_fix: Annotated[
        float | None,
        typer.Option(
            help="Take colours below this blur sigma (px) from the input; 0 = off (default: model's)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    max_frames: Annotated[int | None, typer.Option(help="Read at most this many frames.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Upsample a video 2x with the spatial upsampler (paper §5) and write it as an MP4."""
    from moviegen.files import check_output_file
    from moviegen.video import read_video, write_video

    for name, value in (("--steps", steps), ("--window", window), ("--max-frames", max_frames)):
        if value is not None and value < 1:
            raise MovieGenError(f"{name} must be >= 1, got {value}")
    if steps is not None and steps > 10_000:
        raise MovieGenError(f"--steps must be at most 10000, got {steps}")
    check_output_file(out, "output video")
    pipe = load_upsampler(model, device)
    video, fps = read_video(src, max_frames=max_frames)
    pipe.output_size(video.shape[2], video.shape[3])  # size errors before any work
    total = steps or pipe.num_steps
    with progress() as bar:
        task = bar.add_task("upsampling", total=total, status="")
        result = pipe(video, prompt=prompt, seed=seed, num_steps=steps, window=window, overlap=overlap,
                      color_fix=color_fix,
                      callback=lambda i, n: bar.update(task, completed=i + 1))  # fmt: skip
    write_video(out, result, fps=fps)
    typer.echo(f"wrote {out} ({result.shape[1]} frames, {result.shape[2]}x{result.shape[3]}, {fps:g} fps)")


def _bench_sound(model: Path | None, fps: float, device: str):
    """An Audio Bench row's sound: ``sound(row, frames, seed)`` with the audio model's own defaults."""
    pipe = load_audio_model(model, device)

    def sound(row, frames: torch.Tensor, seed: int) -> torch.Tensor:
        return pipe(frames, row.audio_prompt, row.music_prompt, fps=fps, seed=seed)

    sound.sample_rate = pipe.sample_rate
    return sound


def _edit_bench(path: Path, out: Path, model, limit, seeds: int, steps, guidance, device: str) -> None:
    from moviegen.eval.edit_bench import read_edit_bench, run_edit_bench

    rows, row_errors = read_edit_bench(path)
    for e in row_errors:
        console.print(f"[yellow]{path}:[/] {e}", highlight=False, soft_wrap=True)
    rows = rows[:limit] if limit is not None else rows
    pipe = load_edit_model(Path(model) if model else None, device)
    steps = pipe.num_steps if steps is None else steps
    guidance = pipe.guidance_scale if guidance is None else guidance
    settings = dict(model=str(model or "default"), steps=steps, guidance=guidance)
    with progress() as bar:
        task = bar.add_task("editing", total=None, status="")
        summary = run_edit_bench(
            rows, lambda v, text, seed: pipe(v, text, seed=seed, num_steps=steps, guidance_scale=guidance),
            out, seeds=seeds, settings=settings, row_errors=row_errors,
            progress=lambda i, n, ident: bar.update(task, completed=i, total=n, status=ident),
        )  # fmt: skip
    for r in summary.records:
        if r.status != "ok":
            console.print(f"[red]failed:[/] {r.id} seed {r.seed}: {r.error}", highlight=False, soft_wrap=True)
    typer.echo(f"{summary.generated} edited, {summary.skipped} already there, {summary.failed} failed, "
               f"{len(summary.row_errors)} bad rows; index: {out / 'edit_index.json'}")  # fmt: skip
    if not summary.ok:
        raise typer.Exit(1)


def load_edit_model(path: Path | None, device: str = "auto"):
    """An EditPipeline from a folder (default: the shipped one) on ``device``."""
    from moviegen.edit import DEFAULT_EDIT_MODEL, EditPipeline

    return load_member(EditPipeline, DEFAULT_EDIT_MODEL, "Edit model", path, device)


@app.command()
def edit(
    src: Annotated[Path, typer.Argument(help="Input video file.")],
    instruction: Annotated[str, typer.Argument(help='The edit, e.g. "make the circle blue".')],
    out: Annotated[Path, typer.Option("--out", help="Output MP4 path.")],
    model: Annotated[
        Path | None, typer.Option(help="EditPipeline folder (default: the shipped one; moviegen train edit).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: the model's, 50).")] = None,
    guidance: Annotated[
        float | None, typer.Option(help="Instruction guidance scale (default: the model's own).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    max_frames: Annotated[int | None, typer.Option(help="Read at most this many frames.")] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Edit a video as an instruction says, with Movie Gen Edit (paper §6), and write it as an MP4."""
    from moviegen.files import check_output_file
    from moviegen.pipeline import check_guidance_scale
    from moviegen.video import read_video, write_video

    if not instruction.strip():
        raise MovieGenError("an edit needs an instruction (got an empty one)")
    check_steps(steps)
    if max_frames is not None and max_frames < 1:
        raise MovieGenError(f"--max-frames must be >= 1, got {max_frames}")
    if guidance is not None:
        check_guidance_scale(guidance, "--guidance")
    check_output_file(out, "output video")
    pipe = load_edit_model(model, device)
    video, fps = read_video(src, max_frames=max_frames)
    pipe.check_video(video)  # size errors before any work
    with progress() as bar:
        task = bar.add_task("editing", total=steps or pipe.num_steps, status="")
        result = pipe(video, instruction, seed=seed, num_steps=steps, guidance_scale=guidance,
                      callback=lambda i, n: bar.update(task, completed=i + 1))  # fmt: skip
    write_video(out, result, fps=fps)
    typer.echo(f"wrote {out} ({result.shape[1]} frames, {result.shape[2]}x{result.shape[3]}, {fps:g} fps)")


def load_audio_model(path: Path | None, device: str = "auto"):
    """An AudioPipeline from a folder (default: the shipped one) on ``device``."""
    from moviegen.audio import DEFAULT_AUDIO_MODEL, AudioPipeline

    return load_member(AudioPipeline, DEFAULT_AUDIO_MODEL, "audio model", path, device)


def _check_audio_options(steps: int | None, guidance: float | None, extension: str | None) -> None:
    from moviegen.audio import AudioPipeline
    from moviegen.pipeline import check_guidance_scale

    check_steps(steps, "--audio-steps")
    if guidance is not None:
        check_guidance_scale(guidance, "--audio-guidance")
    if extension is not None:
        AudioPipeline.check_extension(extension)


def _sound(pipe, video: torch.Tensor, fps: float, prompt: str, music: str | None, steps, guidance, seed: int,
           extension, bar: Progress) -> torch.Tensor:  # fmt: skip
    total = steps or pipe.num_steps
    task = bar.add_task("audio", total=None, status="")
    return pipe(video, prompt, music, fps=fps, num_steps=steps, guidance_scale=guidance, seed=seed,
                extension=extension, callback=lambda i, n: bar.update(task, completed=i + 1, total=n or total))


@app.command()
def audio(
    src: Annotated[Path, typer.Argument(help="Input video file (its audio, if any, is replaced).")],
    out: Annotated[Path, typer.Option("--out", help="Output MP4 path: the video with the generated audio.")],
    prompt: Annotated[str, typer.Option("--prompt", help='What it sounds like, e.g. "knocks as it bounces".')],
    music: Annotated[
        str | None, typer.Option(help='Music prompt, e.g. "piano music, 120 bpm, in C major, happy".')
    ] = None,
    wav: Annotated[Path | None, typer.Option("--wav", help="Also write the audio as a 48 kHz WAV.")] = None,
    model: Annotated[
        Path | None, typer.Option(help="AudioPipeline folder (default: the shipped one; moviegen train audio).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: the model's).")] = None,
    guidance: Annotated[float | None, typer.Option(help="Text guidance scale (default: the model's).")] = None,
    extension: Annotated[
        str | None,
        typer.Option(help="Long videos: triangular | uniform | independent | context (default: the model's)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Generate synchronized sound effects and music for a video with Movie Gen Audio (paper §7); the
    video stream is copied as is, the audio muxed as 48 kHz AAC."""
    from moviegen.audio_files import mux_audio, write_wav
    from moviegen.files import check_output_file
    from moviegen.video import read_video

    _check_audio_options(steps, guidance, extension)
    check_output_file(out, "output video")
    if wav is not None:
        check_output_file(wav, "output WAV")
    if out.resolve() == src.resolve() or (wav is not None and wav.resolve() in (src.resolve(), out.resolve())):
        raise MovieGenError("--out and --wav must be new paths, not the input video or each other")
    video, fps = read_video(src)
    pipe = load_audio_model(model, device)
    pipe.check_request(video, prompt, fps, None)
    with progress() as bar:
        sound = _sound(pipe, video, fps, prompt, music, steps, guidance, seed, extension, bar)
    mux_audio(src, sound, out, pipe.sample_rate)
    if wav is not None:
        write_wav(wav, sound, pipe.sample_rate)
    seconds = len(sound) / pipe.sample_rate
    typer.echo(f"wrote {out} ({video.shape[1]} frames, {seconds:.2f} s of {pipe.sample_rate} Hz audio)"
               + (f" and {wav}" if wav is not None else ""))  # fmt: skip


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default; others need --token).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    data: Annotated[Path, typer.Option(help="Folder of the job queue, uploads and results.")] = Path("moviegen-serve"),
    token: Annotated[
        str | None, typer.Option(help="Require 'Authorization: Bearer TOKEN' on the API (env MOVIEGEN_TOKEN).",
                                 envvar="MOVIEGEN_TOKEN")] = None,  # fmt: skip
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="NAME=DIR or a shipped name: a text-to-video model jobs may name (repeat); "
                     "the first is the default. Default: the shipped ones (world-distilled, world) and tiny-random."),
    ] = None,  # fmt: skip
    personalize_model: Annotated[Path | None, typer.Option(help="PT2V folder (default: the shipped one).")] = None,
    upsampler: Annotated[Path | None, typer.Option(help="Upsampler folder (default: the shipped one).")] = None,
    edit_model: Annotated[Path | None, typer.Option(help="Edit folder (default: the shipped one).")] = None,
    audio_model: Annotated[Path | None, typer.Option(help="Audio folder (default: the shipped one).")] = None,
    max_queue: Annotated[int, typer.Option(help="Jobs queued or running before new ones get 429.")] = 64,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload (MB).")] = 32,
    max_frames: Annotated[int, typer.Option(help="Most frames a job may ask for.")] = 128,
    max_side: Annotated[int, typer.Option(help="Largest height/width a job may ask for.")] = 512,
    max_steps: Annotated[int, typer.Option(help="Most Euler steps a job may ask for.")] = 250,
    device: Annotated[str, typer.Option(help=DEVICE_HELP + " (bf16 on CUDA)")] = "auto",
) -> None:
    """Serve the cast over HTTP: the job API (/v1/jobs, docs at /docs) and the web studio (/)."""
    import ipaddress

    import uvicorn

    from moviegen.devices import resolve_device
    from moviegen.serve.app import create_app
    from moviegen.serve.requests import Limits
    from moviegen.serve.worker import ModelPaths

    dev = str(resolve_device(device))
    from moviegen.pipeline import SHIPPED_MODELS
    from moviegen.serve.app import default_generators

    generators: dict[str, str] = {} if model else default_generators()
    for item in model or []:
        name, _, folder = item.partition("=")
        if name in (*SHIPPED_MODELS, "tiny-random") and not folder:
            generators[name] = name
            continue
        if not name or not folder:
            raise MovieGenError(f"--model takes NAME=DIR (or a shipped name: world, world-distilled), got {item!r}")
        if folder != "tiny-random" and not (Path(folder) / "model_index.json").is_file():
            raise MovieGenError(f"--model {name}: no pipeline folder at {folder}")
        generators[name] = folder
    for name, value, low in (("--port", port, 1), ("--max-queue", max_queue, 1), ("--max-frames", max_frames, 1),
                             ("--max-side", max_side, 16), ("--max-steps", max_steps, 1)):  # fmt: skip
        if value < low:
            raise MovieGenError(f"{name} must be >= {low}, got {value}")
    if not 0 < max_upload_mb <= 4096:
        raise MovieGenError(f"--max-upload-mb must be in (0, 4096], got {max_upload_mb}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and token is None:
        raise MovieGenError(f"--host {host} is reachable from other machines: give a --token")
    paths = ModelPaths(generators, next(iter(generators)), personalize_model, upsampler, edit_model, audio_model)
    limits = Limits(max_frames=max_frames, max_side=max_side, max_steps=max_steps,
                    max_upload_bytes=int(max_upload_mb * (1 << 20)), max_queue=max_queue)  # fmt: skip
    app_ = create_app(data, paths, limits, token, dev)
    typer.echo(f"moviegen serve on http://{host}:{port} (studio /, API docs /docs; data in {data}; device {dev})")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command()
def info(
    model: Annotated[str, typer.Option(help="Transformer preset: tiny, 5b or 30b.")] = "30b",
    frames: Annotated[int, typer.Option(help="Video frames.")] = 256,
    height: Annotated[int, typer.Option(help="Video height in pixels.")] = 576,
    width: Annotated[int, typer.Option(help="Video width in pixels.")] = 1008,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Size of a backbone preset and of its token sequence, computed on the meta device."""
    import json

    from moviegen.models.transformer import (
        MovieGenTransformer,
        TransformerConfig,
        count_parameters,
        num_tokens,
    )
    from moviegen.models.transformer import latent_shape as video_latent_shape

    config = TransformerConfig.preset(model)
    with torch.device("meta"):
        params = count_parameters(MovieGenTransformer(config))
    shape = video_latent_shape(frames, height, width, latent_channels=config.out_channels)
    report = {
        "params": params,
        "layers": config.num_layers,
        "dim": config.dim,
        "ffn_dim": config.ffn_dim,
        "heads": config.num_heads,
        "latent_shape": list(shape),
        "tokens": num_tokens(config, shape),
    }
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"Movie Gen Video '{model}': {params / 1e9:.2f}B parameters")
    for key, value in report.items():
        typer.echo(f"  {key}: {value}")


HEAVY_COMMANDS = ("plan", "cache", "train", "average", "curate", "rewrite", "humaneval")


def _register_commands() -> None:
    """Commands whose modules import torch.distributed, OpenCV or Ray (≈1–2 s): registered only when they may
    run, so ``moviegen generate`` starts fast."""
    from moviegen.curate.runner import curate_cli
    from moviegen.data.cache import cache_cli
    from moviegen.eval.humaneval import humaneval_app
    from moviegen.rewrite import rewrite_cli
    from moviegen.train.loop import average_cli, train_run_cli
    from moviegen.train.planner import plan_cli

    app.command("plan", help="Rank parallelism plans (FSDP/TP/SP/CP) with an analytic cost model.")(plan_cli)
    app.command("cache", help="Precompute TAE latents and text embeddings into a sharded cache.")(cache_cli)
    train_app.command("run", help="Train the backbone on a latent cache (single process or torchrun).")(
        train_run_cli
    )
    app.command("average", help="Average the weights of several exported models (model soup).")(average_cli)
    app.command("curate", help="Curate raw videos into a captioned, bucketed clip manifest.")(curate_cli)
    app.command("rewrite", help="Expand a short prompt into a detailed training-style caption.")(rewrite_cli)
    app.add_typer(humaneval_app, name="humaneval")


def main() -> None:
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if first is None or first in HEAVY_COMMANDS:
        _register_commands()
    flags_show_no_type()
    try:
        app()
    except MovieGenError as e:
        console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except OSError as e:  # the environment refused a file operation no check foresaw (disk full, ...)
        where = f": {e.filename}" if e.filename else ""
        console.print(f"[red]error:[/] {e.strerror or e}{where}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError)):
        console.print("[red]error:[/] out of memory: try a smaller size, batch or model", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
