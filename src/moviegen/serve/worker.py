"""The service's worker: one thread that takes jobs from the queue in order, keeps the models it loaded,
and runs each job through :mod:`moviegen.cascade` (the path of the commands), writing the result into the
results folder atomically.

Tasks (``request["task"]``):

- ``generate``: text → video (or a PNG for one frame); with an uploaded ``reference`` face, the personalized
  model (PT2V, §5); ``upsample`` / ``audio`` add the cascade's upsampler (§5) and sound (§7) stages;
- ``edit``: the uploaded ``source`` video edited as ``prompt`` says (Movie Gen Edit, §6);
- ``upsample``: the uploaded ``source`` video upsampled 2× (§5);
- ``audio``: sound for the uploaded ``source`` video from ``prompt`` (and ``music``), muxed as AAC (§7).

One worker runs one job at a time: the models fill the device, and a second job beside the first would
only slow both. Cancelling is checked after every Euler step.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from moviegen import cascade
from moviegen.errors import MovieGenError
from moviegen.serve.jobs import Job, JobStore


PROGRESS_EVERY = 0.1  # seconds between progress writes inside a stage (a small model's step is milliseconds)


class Cancelled(Exception):
    """Raised inside a job's progress callback when its cancel was asked."""


@dataclass(frozen=True)
class ModelPaths:
    """Where the worker loads each member from. ``generators`` maps the names a request may give in
    ``model`` to what ``moviegen generate --model`` takes: a pipeline folder or a shipped name (``world``,
    ``world-distilled``, ``tiny-random``); the members' None means their shipped model."""

    generators: dict[str, str]
    default_generator: str = "world"
    personalize: Path | None = None
    upsampler: Path | None = None
    edit: Path | None = None
    audio: Path | None = None

    def members(self) -> dict[str, bool]:
        """Which members can run here: a folder was given, or one is shipped."""
        from moviegen.audio import DEFAULT_AUDIO_MODEL
        from moviegen.edit import DEFAULT_EDIT_MODEL
        from moviegen.personalize import DEFAULT_PERSONALIZED_MODEL
        from moviegen.upsampler import DEFAULT_UPSAMPLER

        def there(given: Path | None, shipped: Path) -> bool:
            return ((given or shipped) / "model_index.json").is_file()

        return {
            "reference": there(self.personalize, DEFAULT_PERSONALIZED_MODEL),
            "upsample": there(self.upsampler, DEFAULT_UPSAMPLER),
            "edit": there(self.edit, DEFAULT_EDIT_MODEL),
            "audio": there(self.audio, DEFAULT_AUDIO_MODEL),
        }


class Models:
    """The loaded models, kept for the next job (loading is seconds; a job can be less)."""

    def __init__(self, paths: ModelPaths, device: str = "auto"):
        self.paths, self.device = paths, device
        self._loaded: dict[tuple[str, str], object] = {}

    def _get(self, kind: str, name: str, load):
        key = (kind, name)
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]

    def generator(self, name: str | None, frames: int):
        from moviegen.cli import default_image_model, load_pipeline

        name = name or self.paths.default_generator
        if name not in self.paths.generators:
            raise MovieGenError(f"unknown model {name!r} (this server has {', '.join(self.paths.generators)})")
        folder = self.paths.generators[name]
        if folder == "world" and frames == 1:
            folder = default_image_model() or folder  # as `moviegen generate --frames 1`
        return self._get("generator", f"{name}:{folder}", lambda: load_pipeline(folder, self.device))

    def member(self, kind: str):
        from moviegen import cli

        loaders = {
            "personalize": lambda: cli.load_personalized(self.paths.personalize, self.device),
            "upsampler": lambda: cli.load_upsampler(self.paths.upsampler, self.device),
            "edit": lambda: cli.load_edit_model(self.paths.edit, self.device),
            "audio": lambda: cli.load_audio_model(self.paths.audio, self.device),
        }
        return self._get(kind, "", loaders[kind])


def result_name(job: Job) -> str:
    """The result's file name in the results folder: ``<id>.png`` for one generated frame, else ``.mp4``."""
    r = job.request
    image = job.task == "generate" and r.get("frames") == 1 and not r.get("audio")
    return f"{job.id}.png" if image else f"{job.id}.mp4"


def run_job(job: Job, models: Models, results: Path, report) -> str:
    """Run one job; returns its result file's name (inside ``results``). Errors are
    :class:`MovieGenError` with the one line the API shows."""
    from moviegen.video import read_video, write_video

    r, uploads = job.request, job.uploads
    out = results / result_name(job)
    if job.task == "generate":
        request = cascade.VideoRequest(r["prompt"], r["frames"], r["height"], r["width"], r.get("fps"), r.get("steps"),
                                       r.get("schedule"), r.get("guidance"), r["seed"], r.get("camera"),
                                       r.get("rewrite"))  # fmt: skip
        reference = None
        if "reference" in uploads:
            from moviegen.personalize import read_reference

            reference = read_reference(uploads["reference"])
            pipe = models.member("personalize")
        else:
            pipe = models.generator(r.get("model"), request.frames)
        up = models.member("upsampler") if r.get("upsample") else None
        sound = None
        if r.get("audio"):
            sound = cascade.Sound(models.member("audio"), r.get("audio_prompt") or r["prompt"], r.get("music"), r["seed"])
        prepared = cascade.prepare(pipe, request, reference, up)
        video, fps = cascade.sample(pipe, request, prepared, reference, up, report)
        cascade.write(video, fps, out, sound, report)
        return out.name
    video, fps = read_video(uploads["source"], max_frames=r.get("max_frames"))
    if job.task == "edit":
        pipe = models.member("edit")
        pipe.check_video(video)
        result = pipe(video, r["prompt"], seed=r["seed"], num_steps=r.get("steps"), guidance_scale=r.get("guidance"),
                      callback=lambda i, n: report("editing", i + 1, n))  # fmt: skip
        write_video(out, result, fps=fps)
    elif job.task == "upsample":
        pipe = models.member("upsampler")
        pipe.output_size(video.shape[2], video.shape[3])
        result = pipe(video, prompt=r.get("prompt") or "", seed=r["seed"], num_steps=r.get("steps"),
                      callback=lambda i, n: report("upsampling", i + 1, n))  # fmt: skip
        write_video(out, result, fps=fps)
    elif job.task == "audio":
        sound = cascade.Sound(models.member("audio"), r["prompt"], r.get("music"), r["seed"], r.get("steps"),
                              r.get("guidance"))  # fmt: skip
        cascade.write(video, fps, out, sound, report)
    else:
        raise MovieGenError(f"unknown task {job.task!r}")
    return out.name


def job_stages(job: Job) -> list[str]:
    """The stages a job's progress goes through (the studio draws one bar over all of them)."""
    r = job.request
    if job.task == "generate":
        return cascade.stages(bool(r.get("upsample")), bool(r.get("audio")))
    return {"edit": ["editing"], "upsample": ["upsampling"], "audio": ["audio"]}[job.task]


class Worker(threading.Thread):
    """Takes the oldest queued job, runs it, records the result; waits on the store when the queue is
    empty. ``stop()`` ends it after the job at hand (whose cancel it asks for)."""

    def __init__(self, store: JobStore, models: Models, results: Path):
        super().__init__(name="moviegen-worker", daemon=True)
        self.store, self.models, self.results = store, models, Path(results)
        self.results.mkdir(parents=True, exist_ok=True)
        self._stopping = threading.Event()
        self.current: str | None = None

    def stop(self) -> None:
        self._stopping.set()
        with self.store.changed:
            self.store.changed.notify_all()

    def run(self) -> None:
        while not self._stopping.is_set():
            job = self.store.claim()
            if job is None:
                self.store.wait(1.0)
                continue
            self.current = job.id
            try:
                self._run(job)
            finally:
                self.current = None

    def _run(self, job: Job) -> None:
        self.store.set_stages(job.id, job_stages(job))

        last = {"stage": None, "time": 0.0}

        def report(stage: str, step: int, total: int) -> None:
            """Progress is written (a durable transaction) at a new stage, a stage's last step and at most every
            PROGRESS_EVERY seconds between; a cancel is read after every step."""
            now = time.monotonic()
            if stage != last["stage"] or step == total or now - last["time"] >= PROGRESS_EVERY:
                last.update(stage=stage, time=now)
                cancel = self.store.progress(job.id, stage, step, total)
            else:
                cancel = self.store.cancel_asked(job.id)
            if cancel or self._stopping.is_set():
                raise Cancelled

        try:
            with torch.inference_mode():
                name = run_job(job, self.models, self.results, report)
        except Cancelled:
            if self._stopping.is_set() and not self.store.get(job.id).cancel:
                return  # the server is stopping: the job stays running and is requeued at the next start
            self.store.finish(job.id, "cancelled")
        except MovieGenError as e:
            self.store.finish(job.id, "failed", error=str(e))
        except (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError)):
            self.store.finish(job.id, "failed", error="out of memory: try a smaller size or fewer frames")
        except Exception as e:  # a bug: the job fails with its message, the worker goes on
            traceback.print_exc()
            self.store.finish(job.id, "failed", error=f"internal error: {type(e).__name__}: {e}")
        else:
            self.store.finish(job.id, "done", result=name)
