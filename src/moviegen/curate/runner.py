"""The curation runner: sources → per-source stages in parallel → global stages → manifest.

``moviegen curate SRC --out DIR [--config FILE] [--workers N] [--ray [ADDRESS]] [--cut-clips]``

**Phase 1, per source** (parallel): probe/decode → scenes → visual → motion → camera → captions →
embedding (:func:`process_source`, a pure function of the source and the config). Local runs use a pool
of ``--workers`` processes (default: the CPU count); ``--ray`` runs the same function on Ray Data
(``ray.init()`` on this machine, or the cluster at ADDRESS; there ``moviegen`` must be installed on the
workers, and with ``--cut-clips`` OUT must be on storage they share). Each finished source is written
atomically to ``DIR/sources/<key>.json`` by the driver as soon as it arrives.

**Phase 2, global** (driver): near-duplicate removal → buckets → subsets (concepts, landscape/portrait
mix, subset levels) → clusters and weights, over all sources sorted by path.

**Phase 3, optional** ``--cut-clips``: each kept clip is re-encoded to ``DIR/clips/<clip_id>.mp4``
(H.264, atomic) and ``DIR/curated.jsonl`` lists them as ``{path, caption, fps, camera_motion, clip_id,
bucket, weight, subset_level}`` rows — the input ``moviegen cache`` (``build_cache``) reads.

**Outputs**: ``manifest.parquet`` (one row per clip, columns = :class:`moviegen.curate.record.Clip`'s
fields + ``kept`` + ``reason``; one row with ``clip_index = -1`` per unreadable source), ``summary.json``
(per stage: clips in, clips out, seconds of work), ``config.json``.

**Resumable**: a rerun with the same config skips every source that has a result file, so a killed run
(even ``kill -9``) loses at most the sources in flight and the final manifest is identical to that of an
uninterrupted run: every output is written to a temporary file and renamed, and every stage is
deterministic (fixed seeds, one thread per worker). A different config in the same DIR is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import tempfile
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated, Any

import typer

from moviegen.curate.config import CurateConfig
from moviegen.curate.record import NEEDS_CAPTION, Clip, clip_id, source_key
from moviegen.devices import DEVICE_HELP
from moviegen.errors import MovieGenError
from moviegen.files import check_output_dir, write_atomic

MANIFEST_NAME = "manifest.parquet"
SUMMARY_NAME = "summary.json"
CONFIG_NAME = "config.json"
CURATED_NAME = "curated.jsonl"
SOURCES_DIR = "sources"
CLIPS_DIR = "clips"
MAX_RAY_BLOCKS = 1024
SOURCE_STAGES = ("probe", "decode", "scenes", "visual", "motion", "camera", "captions", "embed")
GLOBAL_STAGES = ("dedup", "buckets", "subsets", "clusters", "cut")

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``."""


# ------------------------------------------------------------------------------------------ workers


class Resources:
    """Models a worker loads once per process: OCR, aesthetic scorer, CLIP embedder, captioner."""

    def __init__(self, config: CurateConfig):
        self.config = config

    def preload(self) -> None:
        """Load every configured model now (outside the stage timings)."""
        for name in ("text_detector", "aesthetic", "encoder", "captioner"):
            getattr(self, name)

    @functools.cached_property
    def text_detector(self) -> Any:
        if not self.config.ocr:
            return None
        from moviegen.curate.visual import TextDetector

        return TextDetector(self.config.ocr_max_side)

    @functools.cached_property
    def aesthetic(self) -> Any:
        if not self.config.aesthetic_model:
            return None
        from moviegen.curate.vision import CLIPAestheticScorer

        return CLIPAestheticScorer(self.config.aesthetic_model, self.config.device)

    @functools.cached_property
    def encoder(self) -> Any:
        if not self.config.embedding_model:
            return None
        from moviegen.curate.vision import CLIPImageEncoder

        return CLIPImageEncoder(self.config.embedding_model, self.config.device)

    @functools.cached_property
    def captioner(self) -> Any:
        if not self.config.captioner:
            return None
        from moviegen.curate.captions import VLMCaptioner

        cfg = self.config
        return VLMCaptioner(cfg.captioner, cfg.caption_prompt, cfg.caption_max_tokens, cfg.device)


_RESOURCES: dict[str, Resources] = {}


def _resources(config: CurateConfig) -> Resources:
    key = config.to_json()
    if key not in _RESOURCES:
        _RESOURCES.clear()
        _RESOURCES[key] = Resources(config)
    return _RESOURCES[key]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One compute thread (OpenCV, torch) while a source is processed: per-core throughput, determinism."""
    import cv2
    import torch

    cv_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv_threads)
        torch.set_num_threads(torch_threads)


def _error(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"error: {type(e).__name__}: {lines[0][:200] if lines else ''}".strip()


def process_source(item: dict[str, Any], config: CurateConfig) -> dict[str, Any]:
    """Every per-source stage for one source ``{"source", "caption"}``; never raises for a bad file.

    Returns ``{"source", "clips": [manifest rows], "cuts": [seconds], "timings": {stage: seconds},
    "counts": {stage: [in, out]}}``. An unexpected error in a stage drops the clips it was processing
    with ``"error: ..."`` as that stage's reason instead of stopping the run.
    """
    from moviegen.curate import camera, captions, content, motion, probe, scenes, visual

    source = str(item["source"])
    timings = dict.fromkeys(SOURCE_STAGES, 0.0)
    counts = {stage: [0, 0] for stage in SOURCE_STAGES}
    resources = _resources(config)
    resources.preload()

    def timed(stage: str, drop_stage: str, fn: Callable[[], Any], clip: Clip) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        except MovieGenError:
            raise
        except Exception as e:  # a bug or a pathological file must not stop the whole run
            return clip.drop(drop_stage, _error(e))
        finally:
            timings[stage] += time.perf_counter() - start

    def count(stage: str, before: Clip, after: Clip) -> None:
        counts[stage][0] += before.kept
        counts[stage][1] += after.kept

    cuts: list[float] = []
    with _one_thread():
        record = Clip(clip_id(source, -1), source)
        probed = timed("probe", "probe", lambda: probe.probe(record), record)
        count("probe", record, probed)
        frames = None
        decoded = probed
        if probed.kept:
            result = timed("decode", "probe", lambda: probe.decode(probed, config), probed)
            decoded, frames = result if isinstance(result, tuple) else (result, None)
            count("decode", probed, decoded)
        if frames is None:
            return {
                "source": source,
                "clips": [decoded.to_row()],
                "cuts": [],
                "timings": timings,
                "counts": counts,
            }
        start = time.perf_counter()
        try:
            clips, cuts = scenes.split(decoded, frames, config)
        except MovieGenError:
            raise
        except Exception as e:
            clips = [decoded.drop("scenes", _error(e))]
        timings["scenes"] += time.perf_counter() - start
        counts["scenes"] = [1, sum(c.kept for c in clips)]
        sidecar = item.get("caption")
        steps: list[tuple[str, str, Callable[[Clip, Any], Clip]]] = [
            (
                "visual",
                "visual",
                lambda c, w: visual.visual(c, w, config, resources.text_detector, resources.aesthetic),
            ),
            ("motion", "motion", lambda c, w: motion.motion(c, w, config)),
            ("camera", "motion", lambda c, w: camera.camera(c, w, config)),
            (
                "captions",
                "captions",
                lambda c, w: captions.captions(c, w, config, sidecar, resources.captioner),
            ),
            (
                "embed",
                "content",
                lambda c, w: content.embed(c, w, config.embedding_frames, resources.encoder),
            ),
        ]
        out = []
        for clip in clips:
            window = (
                frames.window(clip.start_frame, clip.end_frame) if clip.start_frame is not None else frames
            )
            for stage, drop_stage, fn in steps:
                if not clip.kept:
                    break
                before = clip
                clip = timed(stage, drop_stage, functools.partial(fn, clip, window), clip)
                count(stage, before, clip)
            out.append(clip.to_row())
    return {"source": source, "clips": out, "cuts": cuts, "timings": timings, "counts": counts}


def _process_json(config_json: str, item: dict[str, Any]) -> str:
    return json.dumps(process_source(item, _config_from_json(config_json)))


@functools.lru_cache(maxsize=4)
def _config_from_json(text: str) -> CurateConfig:
    data = json.loads(text)
    data.pop("_class_name", None)
    return CurateConfig.from_dict(data)


def cut_source(task: dict[str, Any]) -> dict[str, Any]:
    """Re-encode the kept clips of one source: ``task = {source, fps, out, clips: [[id, start, end]]}``."""
    import av
    import torch

    from moviegen.video import VideoWriter

    out = Path(task["out"])
    todo = [c for c in task["clips"] if not (out / f"{c[0]}.mp4").is_file()]
    if not todo:
        return {"source": task["source"], "written": 0, "error": None}
    writers: dict[str, VideoWriter] = {}
    ranges = {c[0]: (c[1], c[2]) for c in todo}
    last = max(e for _, e in ranges.values())
    written, error = 0, None
    try:
        with _one_thread(), av.open(task["source"]) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for i, frame in enumerate(container.decode(stream)):
                if i >= last:
                    break
                for cid, (start, end) in ranges.items():
                    if start <= i < end:
                        if cid not in writers:
                            writers[cid] = VideoWriter(out / f"{cid}.mp4", fps=float(task["fps"])).__enter__()
                        array = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[:, None]
                        writers[cid].write(array.float() / 127.5 - 1.0)
                        if i == end - 1:
                            writers.pop(cid).__exit__(None, None, None)
                            written += 1
    except Exception as e:  # the clip files not written are left out of curated.jsonl
        error = _error(e)
    finally:
        for writer in writers.values():  # unfinished clips: their temporary files are removed
            writer.__exit__(MovieGenError, MovieGenError("incomplete clip"), None)
    return {"source": task["source"], "written": written, "error": error}


def _cut_json(task: dict[str, Any]) -> str:
    return json.dumps(cut_source(task))


# ---------------------------------------------------------------------------------------- executors


class LocalPool:
    """``workers`` spawned processes (created on first use, reused by every phase), or this process."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def map(self, fn: Callable[[Any], str], items: list[Any]) -> Iterator[str]:
        """``fn`` over the items; results in completion order."""
        if self.workers <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
            return
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        futures = [self.pool.submit(fn, item) for item in items]
        for future in as_completed(futures):
            yield future.result()


def _probe_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when nothing listens at a ``host:port`` / ``ray://host:port`` address."""
    import socket

    hostport = address.split("://", 1)[-1]
    if address == "auto" or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise MovieGenError(f"Ray address {address!r}: the port must be a number in 1-65535")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise MovieGenError(f"cannot reach Ray at {address}: {e.strerror or e}") from None


class RaySession:
    """``ray.init()`` on entry (local, or the cluster at ``address``) unless Ray is running already."""

    def __init__(self, address: str | None, workers: int | None):
        self.address, self.workers = address, workers
        self.started = False

    def __enter__(self) -> RaySession:
        try:
            import ray
            import ray.data
        except ImportError as e:
            raise MovieGenError(f"--ray needs Ray Data (pip install 'ray[data]'): {e}") from None
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            if self.address:
                kwargs["address"] = self.address
            elif self.workers:
                kwargs["num_cpus"] = self.workers
            try:
                ray.init(**kwargs)
            except Exception as e:  # ConnectionError, RuntimeError, ...
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise MovieGenError(
                    f"cannot start or reach Ray ({self.address or 'local'}): {first}"
                ) from None
            self.started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        with contextlib.suppress(AttributeError):
            ctx.print_on_execution_start = False
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            import ray

            ray.shutdown()

    def map(self, fn: Callable[[Any], str], items: list[Any]) -> Iterator[str]:
        """Each item in its own block, ``fn`` on Ray Data workers; results stream back as they finish."""
        import ray.data

        if not items:
            return
        rows = [{"item": json.dumps(item)} for item in items]
        # small blocks: results stream back (and are recorded) as soon as each block is done
        dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_RAY_BLOCKS))
        dataset = dataset.map(_RayCall(fn), num_cpus=1)
        for row in dataset.iter_rows():
            yield row["result"]


class _RayCall:
    def __init__(self, fn: Callable[[Any], str]):
        self.fn = fn

    def __call__(self, row: dict[str, Any]) -> dict[str, str]:
        return {"result": self.fn(json.loads(row["item"]))}


# -------------------------------------------------------------------------------------------- files


def manifest_schema() -> Any:
    """The pyarrow schema of ``manifest.parquet``: Clip's fields, then ``kept`` and ``reason``."""
    import pyarrow as pa

    kinds = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    hints = typing.get_type_hints(Clip)
    fields = []
    for f in dataclasses.fields(Clip):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        base = args[0]
        kind = pa.list_(pa.float32()) if typing.get_origin(base) is list else kinds[base]
        fields.append(pa.field(f.name, kind))
    fields += [pa.field("kept", pa.bool_()), pa.field("reason", pa.string())]
    return pa.schema(fields)


def write_manifest(path: Path, clips: list[Clip]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = manifest_schema()
    rows = [c.to_row() for c in clips]
    table = pa.Table.from_pylist(rows, schema=schema)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_manifest(path: str | Path) -> list[Clip]:
    """The clips of a ``manifest.parquet``."""
    import pyarrow.parquet as pq

    return [Clip.from_row(row) for row in pq.read_table(path).to_pylist()]


# ------------------------------------------------------------------------------------------- driver


def list_sources(src: str | Path) -> list[dict[str, Any]]:
    """``[{source, caption}]`` of a folder, a JSONL list or one video file, sorted by path.

    Folders and JSONL lists are read by :func:`moviegen.data.cache.read_data` (same extensions, same
    sidecars); videos without a caption are sources too (their clips need a captioner), and a source
    whose sidecar is broken is curated without its caption. Paths are made absolute.
    """
    from moviegen.data.cache import _read_sidecar, read_data

    src = Path(src).absolute()
    if not src.exists():
        raise MovieGenError(f"source not found: {src}")
    if src.is_file() and src.suffix.lower() not in (".jsonl", ".ndjson"):
        try:
            caption = _read_sidecar(src)[0]
        except (MovieGenError, OSError):
            caption = None
        return [{"source": str(src), "caption": caption}]
    data = read_data(src)
    items = {str(i.path): {"source": str(i.path), "caption": i.caption} for i in data.items}
    for path in data.no_caption:
        items.setdefault(str(path), {"source": str(path), "caption": None})
    for failure in data.failures:
        path = failure["source"]
        if src.is_dir() and Path(path).is_file():
            items.setdefault(str(path), {"source": str(path), "caption": None})
    return [items[k] for k in sorted(items)]


def _prepare_out(out: Path, config: CurateConfig) -> None:
    if out.exists() and not out.is_dir():
        raise MovieGenError(f"--out {out} exists and is not a folder")
    saved = out / CONFIG_NAME
    if saved.is_file():
        try:
            previous = json.loads(saved.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise MovieGenError(f"{saved} is unreadable: {e}") from None
        previous.pop("device", None)
        if previous != {k: v for k, v in json.loads(config.to_json()).items() if k != "device"}:
            raise MovieGenError(
                f"{out} holds a curation run with a different config: rerun with the same config to resume, "
                "or choose another --out"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise MovieGenError(f"refusing to write into {out}: it is not empty and holds no curation run")
    (out / SOURCES_DIR).mkdir(parents=True, exist_ok=True)
    for folder in (out, out / SOURCES_DIR, out / CLIPS_DIR):  # temporary files of a killed run
        if folder.is_dir():
            for leftover in folder.glob(".*"):
                if leftover.is_file():
                    leftover.unlink()
    if not saved.is_file():
        write_atomic(saved, config.to_json() + "\n")


def _load_results(out: Path, sources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    results = {}
    for item in sources:
        path = out / SOURCES_DIR / f"{source_key(item['source'])}.json"
        if path.is_file():
            try:
                result = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # unreadable: process again
            if result.get("source") == item["source"]:
                results[item["source"]] = result
    return results


def _stage_row(stage: str, clips_in: int, clips_out: int, seconds: float) -> dict[str, Any]:
    return {"stage": stage, "in": int(clips_in), "out": int(clips_out), "seconds": round(float(seconds), 4)}


def curate(
    src: str | Path,
    out: str | Path,
    config: CurateConfig | None = None,
    workers: int | None = None,
    ray: bool = False,
    ray_address: str | None = None,
    cut_clips: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Curate ``src`` into ``out`` (see the module docstring); return the summary dict."""
    from moviegen.curate import content, subsets

    config = config or CurateConfig()
    out = Path(out)
    if workers is not None and workers < 1:
        raise MovieGenError(f"--workers must be >= 1, got {workers}")
    if ray_address and not ray:
        raise MovieGenError("a Ray address needs --ray")
    workers = workers or os.cpu_count() or 1
    for key in ("captioner", "embedding_model", "aesthetic_model", "concepts_file"):
        path = getattr(config, key)
        if path is not None and not Path(path).exists():
            raise MovieGenError(f"{key} {path} does not exist (models load from local folders only)")
    check_output_dir(out, "--out")
    if ray_address:  # before OUT is made: ray.init waits without end on a silent address
        _probe_ray_address(ray_address)
    sources = list_sources(src)
    _prepare_out(out, config)
    results = _load_results(out, sources)
    todo = [item for item in sources if item["source"] not in results]
    resumed = len(results)
    config_json = config.to_json()
    started = time.perf_counter()

    with contextlib.ExitStack() as stack:
        if ray:
            executor: LocalPool | RaySession = stack.enter_context(
                RaySession(ray_address, workers if not ray_address else None)
            )
        else:
            executor = stack.enter_context(LocalPool(workers))
        run = executor.map
        done = len(results)
        if progress:
            progress("sources", done, len(sources))
        for text in run(functools.partial(_process_json, config_json), todo):
            result = json.loads(text)
            write_atomic(out / SOURCES_DIR / f"{source_key(result['source'])}.json", json.dumps(result))
            results[result["source"]] = result
            done += 1
            if progress:
                progress("sources", done, len(sources))
        phase1 = time.perf_counter() - started

        ordered = [results[item["source"]] for item in sources]
        clips = [Clip.from_row(row) for result in ordered for row in result["clips"]]
        summary: list[dict[str, Any]] = []
        for stage in SOURCE_STAGES:
            seconds = sum(r["timings"].get(stage, 0.0) for r in ordered)
            ins = sum(r["counts"][stage][0] for r in ordered)
            outs = sum(r["counts"][stage][1] for r in ordered)
            summary.append(_stage_row(stage, ins, outs, seconds))

        def global_stage(name: str, fn: Callable[[list[Clip]], list[Clip]]) -> None:
            nonlocal clips
            before = sum(c.kept for c in clips)
            start = time.perf_counter()
            clips = fn(clips)
            summary.append(_stage_row(name, before, sum(c.kept for c in clips), time.perf_counter() - start))

        global_stage("dedup", lambda cs: content.deduplicate(cs, config.dedup_threshold))
        global_stage("buckets", lambda cs: subsets.assign_buckets(cs, config.bucket_grid()))
        global_stage("subsets", lambda cs: subsets.subsets(cs, config))
        global_stage("clusters", lambda cs: content.cluster(cs, config.clusters, config.seed))

        if cut_clips:
            clips_dir = out / CLIPS_DIR
            clips_dir.mkdir(exist_ok=True)
            tasks: dict[str, dict[str, Any]] = {}
            for c in clips:
                if c.kept:
                    task = tasks.setdefault(
                        c.source, {"source": c.source, "fps": c.fps, "out": str(clips_dir), "clips": []}
                    )
                    task["clips"].append([c.clip_id, c.start_frame, c.end_frame])
            start = time.perf_counter()
            if progress:
                progress("clips", 0, len(tasks))
            for done, _ in enumerate(run(_cut_json, list(tasks.values())), 1):
                if progress:
                    progress("clips", done, len(tasks))
            clips = [
                dataclasses.replace(c, clip_path=f"{CLIPS_DIR}/{c.clip_id}.mp4")
                if c.kept and (clips_dir / f"{c.clip_id}.mp4").is_file()
                else c
                for c in clips
            ]
            kept = sum(c.kept for c in clips)
            summary.append(_stage_row("cut", kept, kept, time.perf_counter() - start))

    write_manifest(out / MANIFEST_NAME, clips)
    if cut_clips:
        write_atomic(
            out / CURATED_NAME, "".join(json.dumps(row) + "\n" for row in curated_rows(clips, config))
        )
    kept = [c for c in clips if c.kept]
    report = {
        "sources": len(sources),
        "resumed_sources": resumed,
        "failed_sources": sum(1 for c in clips if c.clip_index < 0),
        "clips": sum(1 for c in clips if c.clip_index >= 0),
        "kept": len(kept),
        "needs_caption": sum(1 for c in kept if c.caption_source == NEEDS_CAPTION),
        "kept_seconds": round(sum(c.duration_s or 0.0 for c in kept), 3),
        "source_seconds": round(sum(_source_seconds(r) for r in ordered), 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "phase1_wall_seconds": round(phase1, 3),
        "workers": workers,
        "ray": bool(ray),
        "reasons": _reason_counts(clips),
        "stages": summary,
    }
    write_atomic(out / SUMMARY_NAME, json.dumps(report, indent=1) + "\n")
    return report


def _source_seconds(result: dict[str, Any]) -> float:
    for row in result["clips"]:
        if row.get("source_duration_s"):
            return float(row["source_duration_s"])
    return 0.0


def _reason_counts(clips: Iterable[Clip]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in clips:
        if c.reason is not None:
            key = c.reason.split(": ", 1)[0] if ": " in c.reason.split(":", 1)[1] else c.reason
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def curated_rows(clips: Iterable[Clip], config: CurateConfig) -> list[dict[str, Any]]:
    """The ``curated.jsonl`` rows of the kept, cut clips (the input of ``build_cache``)."""
    from moviegen.curate.captions import camera_prefix

    rows = []
    for c in clips:
        if not c.kept or c.clip_path is None:
            continue
        row: dict[str, Any] = {"path": c.clip_path}
        if c.caption:
            row["caption"] = c.caption
        row["caption_source"] = c.caption_source
        row["fps"] = c.fps
        label = camera_prefix(c, config)
        if label:
            row["camera_motion"] = label
        row.update(clip_id=c.clip_id, bucket=c.bucket, weight=c.weight, subset_level=c.subset_level)
        rows.append(row)
    return rows


def format_summary(report: dict[str, Any]) -> str:
    """The per-stage table printed at the end of a run."""
    lines = [f"{'stage':<10}{'in':>7}{'out':>7}{'seconds':>10}"]
    for row in report["stages"]:
        lines.append(f"{row['stage']:<10}{row['in']:>7}{row['out']:>7}{row['seconds']:>10.2f}")
    lines.append(
        f"kept {report['kept']} of {report['clips']} clip(s) ({report['kept_seconds']:.1f} s) from "
        f"{report['sources']} source(s), {report['failed_sources']} unreadable; "
        f"{report['wall_seconds']:.1f} s wall"
    )
    if report["reasons"]:
        lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in report["reasons"].items()))
    if report.get("needs_caption"):
        lines.append(
            f"{report['needs_caption']} kept clip(s) have no caption (caption_source needs_caption): "
            "caption them with --captioner DIR (a local vision-language model folder) or with VIDEO.txt / "
            "VIDEO.json sidecars beside the sources and rerun into a new --out; `moviegen cache` skips them; "
            'set "require_caption": true in --config to drop them instead'
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI


def curate_cli(
    src: Annotated[
        Path,
        typer.Argument(help="A folder of videos (.txt/.json caption sidecars), a JSONL list, or one video."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (manifest.parquet, summary.json, ...).")],
    address: Annotated[
        str | None,
        typer.Argument(
            help="With --ray: the Ray cluster address (default: start Ray on this machine).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="JSON file of CurateConfig overrides (thresholds per stage)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Parallel worker processes (default: the CPU count).")
    ] = None,
    ray: Annotated[
        bool, typer.Option("--ray", help="Run the stages on Ray Data: local Ray, or the cluster at ADDRESS.")
    ] = False,
    cut_clips: Annotated[
        bool,
        typer.Option(
            "--cut-clips", help="Write the kept clips to OUT/clips/ and OUT/curated.jsonl (for `cache`)."
        ),
    ] = False,
    captioner: Annotated[
        Path | None,
        typer.Option(
            "--captioner",
            help="A local vision-language model folder to caption the clips (default: sidecars only; "
            "clips without a caption are kept and marked needs_caption).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help=f"{DEVICE_HELP} For the embedder, scorer, captioner.")] = "auto",
) -> None:
    """Curate raw videos into a bucketed, captioned clip manifest (resumable; local or Ray)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from moviegen.devices import resolve_device

    cfg = CurateConfig.from_json(config) if config is not None else CurateConfig()
    overrides = {"device": str(resolve_device(device))}
    if captioner is not None:
        overrides["captioner"] = str(captioner)
    cfg = dataclasses.replace(cfg, **overrides)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"curating {phase}", total=total)
            bar.update(tasks[phase], completed=done, total=total)

        report = curate(
            src,
            out,
            cfg,
            workers=workers,
            ray=ray,
            ray_address=address,
            cut_clips=cut_clips,
            progress=progress,
        )
    typer.echo(format_summary(report))
    typer.echo(f"manifest → {out / MANIFEST_NAME}" + (f", clips → {out / CURATED_NAME}" if cut_clips else ""))


def main() -> None:
    """``python -m moviegen.curate``: the curate command on its own."""
    import sys

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(curate_cli)
    try:
        app()
    except MovieGenError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
