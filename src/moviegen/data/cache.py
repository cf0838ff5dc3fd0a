"""The on-disk latent cache: TAE latents and text-encoder states computed once (paper §3.5).

Movie Gen never runs the TAE or the frozen text encoders during backbone training: their outputs are
precomputed. :func:`build_cache` turns a captioned video collection into sharded safetensors files, and
:class:`LatentCache` serves them to the training loop.

**Input (DATA)**, read by :func:`read_data`:

* a folder of videos (``.mp4 .mov .mkv .webm .avi .m4v``, searched recursively, hidden files skipped)
  with sidecar captions: ``clip.json`` (``{"caption": ..., "fps": ..., "camera_motion": ...}``, fps and
  camera_motion optional) or else ``clip.txt`` (the caption);
* or a JSONL manifest, one ``{"path", "caption"[, "fps"][, "camera_motion"]}`` object per line (what the
  curation pipeline writes); relative paths are resolved against the manifest's folder.

Items without a caption are skipped and counted; unreadable videos, clips shorter than the grid's
shortest duration, bad sidecars/rows and captions that ``compose_prompt`` rejects are recorded in
``failures.jsonl``. None of them stops the build.

**Per item**: the clip is assigned a bucket (:meth:`BucketGrid.assign`), fitted to it
(:func:`fit_to_bucket`: its first ``frames`` frames, resized and centre-cropped), encoded by the TAE
(posterior mean, 32-frame encoder tiles) and normalised by :meth:`TAE.normalize` with the TAE config's
values, the scale the backbone trains on. The caption is composed with its frame rate
(``compose_prompt(caption, fps=round(fps))``, the paper's FPS control; fps from the sidecar/row, else
the file's) — except in a one-frame bucket: images carry no FPS prefix or camera label
(:func:`~moviegen.models.text.compose_clip_prompt`, the rule the pipeline follows too) — and each
frozen encoder's raw token states are stored, trimmed to the mask length (masks are
stored too, so fully masked ByT5 rows of prompts without quoted text are kept as length 0).

**Storage dtype** [choice]: float16 by default for latents and text states. Normalised latents have
about unit variance, where float16 keeps ~3 significant digits (bfloat16 only ~2) and halves the disk
and read bandwidth of float32; ``float32`` and ``bfloat16`` are options. A value that overflows float16
makes its item a failure rather than storing ``inf``.

**Layout** of the cache folder (written to a temporary sibling and renamed when complete, so a crash
never leaves a half-written cache)::

    manifest.json            see below
    failures.jsonl           one {"source", "reason", "error"} object per item not cached
    shard-00000.safetensors  items 0 .. shard_size-1: "{i}.latent" (C,T,H,W), "{i}.text{k}" (L_k,D_k),
    shard-00001.safetensors  "{i}.mask{k}" (L_k,) bool, for item index i and encoder k
    ...

``manifest.json``: ``format`` ("moviegen-latent-cache"), ``version`` (1), ``moviegen_version``,
``dtype``, ``shard_size``, ``shards`` (file names), ``num_items``, ``grid`` (BucketGrid dict), ``tae``
(``config`` dict, ``scaling_factor``, ``shift_factor``, ``normalised``: true; when the config has
``latents_mean``/``latents_std`` those per-channel values were applied, not the scalars), ``text`` (``config``
dict or null, ``num_encoders``, ``dims``), ``buckets`` (name → height, width, frames, latent_shape,
count), ``counts`` (inputs, cached, no_caption, failures) and ``items``: a list, in index order, of
``{index, shard, bucket, caption, prompt, fps, latent_shape, text_lengths, source}``.

**Reading**: :class:`LatentCache` opens shards lazily with ``safetensors.safe_open`` (memory-mapped) the
first time an item of the shard is read, so a rank reads only the shards it touches. Two ways to split
the data over data-parallel ranks:

* global bucketed batches: ``BucketBatchSampler(cache.buckets(), global_batch, seed, dp_rank, dp_size)``
  as a DataLoader ``batch_sampler`` over the cache with ``collate_fn=LatentCache.collate``; every rank
  reads the items of its slice of each global batch;
* shard-local: ``cache.shard_indices(rank, world)`` lists the items of the shards this rank owns (shard
  ``s`` belongs to rank ``s % world``), for a per-rank sampler over those items only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from moviegen import __version__
from moviegen.data.buckets import BucketGrid, fit_to_bucket
from moviegen.devices import DEVICE_HELP, resolve_device
from moviegen.errors import MovieGenError
from moviegen.models.text import compose_clip_prompt
from moviegen.pretrained import atomic_dir
from moviegen.video import read_video

CACHE_FORMAT = "moviegen-latent-cache"
CACHE_VERSION = 1
MANIFEST_NAME = "manifest.json"
FAILURES_NAME = "failures.jsonl"
SHARD_PATTERN = "shard-{:05d}.safetensors"
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
CAPTION_HOW = (
    'give them VIDEO.txt / VIDEO.json sidecars or "caption" fields, or curate them with '
    "`moviegen curate --captioner DIR`"
)
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called before each input item is read and once at the end."""


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class DataItem:
    """One captioned video to cache; ``fps`` overrides the file's frame rate in the FPS prompt prefix."""

    path: Path
    caption: str
    fps: float | None = None
    camera_motion: str | None = None


@dataclass
class DataSource:
    """The items of a DATA folder/manifest, plus what was skipped (no caption) or unreadable."""

    items: list[DataItem]
    no_caption: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


def _failure(source: Any, reason: str, error: str) -> dict[str, str]:
    return {"source": str(source), "reason": reason, "error": error}


def _item_fields(row: Any, where: str) -> tuple[str | None, float | None, str | None]:
    """Validate the optional caption / fps / camera_motion fields of a sidecar or manifest row."""
    if not isinstance(row, dict):
        raise MovieGenError(f"{where}: expected a JSON object, got {type(row).__name__}")
    caption = row.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise MovieGenError(f"{where}: caption must be a string")
    fps = row.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0):
        raise MovieGenError(f"{where}: fps must be a positive number, got {fps!r}")
    camera = row.get("camera_motion")
    if camera is not None and not isinstance(camera, str):
        raise MovieGenError(f"{where}: camera_motion must be a string")
    caption = caption.strip() if caption else None
    return caption or None, None if fps is None else float(fps), camera


def _read_sidecar(video: Path) -> tuple[str | None, float | None, str | None]:
    meta, txt = video.with_suffix(".json"), video.with_suffix(".txt")
    if meta.is_file():
        try:
            row = json.loads(meta.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MovieGenError(f"{meta.name} is not valid JSON: {e}") from None
        return _item_fields(row, meta.name)
    if txt.is_file():
        try:
            caption = txt.read_text().strip()
        except UnicodeDecodeError as e:
            raise MovieGenError(f"{txt.name} is not UTF-8 text: {e}") from None
        return caption or None, None, None
    return None, None, None


def read_data(data: str | Path) -> DataSource:
    """Read a DATA folder (videos + ``.json``/``.txt`` sidecars) or a JSONL manifest."""
    data = Path(data)
    source = DataSource([])
    if data.is_dir():
        videos = sorted(
            p
            for p in data.rglob("*")
            if p.suffix.lower() in VIDEO_EXTENSIONS
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(data).parts)
        )
        for video in videos:
            try:
                caption, fps, camera = _read_sidecar(video)
            except (MovieGenError, OSError) as e:
                source.failures.append(_failure(video, "bad_sidecar", str(e)))
                continue
            if caption is None:
                source.no_caption.append(str(video))
            else:
                source.items.append(DataItem(video, caption, fps, camera))
        return source
    if not data.is_file():
        raise MovieGenError(f"data not found: {data}")
    if data.suffix.lower() not in (".jsonl", ".ndjson"):
        raise MovieGenError(f"DATA must be a folder of videos or a .jsonl manifest, got {data}")
    try:
        lines = data.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise MovieGenError(f"cannot read manifest {data}: {e}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{data}:{number}"
        try:
            row = json.loads(line)
            caption, fps, camera = _item_fields(row, where)
            path = row.get("path")
            if not isinstance(path, str) or not path:
                raise MovieGenError(f'{where}: every row needs a "path" string')
        except json.JSONDecodeError as e:
            source.failures.append(_failure(where, "bad_row", f"{where}: invalid JSON: {e}"))
            continue
        except MovieGenError as e:
            source.failures.append(_failure(where, "bad_row", str(e)))
            continue
        video = Path(path) if Path(path).is_absolute() else data.parent / path
        if caption is None:
            source.no_caption.append(str(video))
        else:
            source.items.append(DataItem(video, caption, fps, camera))
    return source


# ---------------------------------------------------------------------------------------------- build


class _ShardWriter:
    """Collects item tensors and writes ``shard_size`` items per safetensors file."""

    def __init__(self, folder: Path, shard_size: int):
        self.folder, self.shard_size = folder, shard_size
        self.tensors: dict[str, Tensor] = {}
        self.count = 0
        self.shards: list[str] = []

    def add(self, tensors: dict[str, Tensor]) -> tuple[int, int]:
        index = self.count
        for key, value in tensors.items():
            self.tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
        self.count += 1
        if self.count % self.shard_size == 0:
            self.flush()
        return index, index // self.shard_size

    def flush(self) -> None:
        if not self.tensors:
            return
        name = SHARD_PATTERN.format(len(self.shards))
        save_file(self.tensors, str(self.folder / name), metadata={"format": "pt", "cache": CACHE_FORMAT})
        self.shards.append(name)
        self.tensors = {}


@dataclass
class _Pending:
    item: DataItem
    video: Tensor
    prompt: str
    fps: int


def _module_device(module: Any) -> torch.device:
    try:
        return next(module.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _config_dict(obj: Any) -> dict | None:
    config = getattr(obj, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else None


def _check_out(out: Path) -> None:
    """Refuse to replace a folder that is not a latent cache (atomic_dir would delete it)."""
    if out.exists() and not out.is_dir():
        raise MovieGenError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise MovieGenError(f"refusing to overwrite {out}: it is not empty and holds no latent cache")


def _manifest_head(dtype: torch.dtype, shard_size: int, shards: list[str], count: int) -> dict[str, Any]:
    """The first keys of every cache manifest: format, versions, storage and shard layout."""
    return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "moviegen_version": __version__,
            "dtype": str(dtype).removeprefix("torch."), "shard_size": shard_size, "shards": shards,
            "num_items": count}  # fmt: skip


def build_cache(
    items: Sequence[DataItem] | DataSource | str | Path,
    tae: Any,
    text: Any,
    out: str | Path,
    grid: BucketGrid,
    shard_size: int = 256,
    batch_size: int = 4,
    progress: Progress | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Encode captioned videos into a sharded latent cache folder at ``out``; return its path.

    ``items``: :class:`DataItem` s, a :class:`DataSource`, or a DATA folder / JSONL path. ``tae`` is a
    :class:`~moviegen.models.tae.TAE` (its device is used), ``text`` anything with
    ``encode_raw(prompts) -> [(hidden (B,L,D), mask (B,L)), ...]`` (a ``TextConditioner``). Clips of the
    same bucket are encoded ``batch_size`` at a time. Raises MovieGenError when no item could be cached.
    """
    source = read_data(items) if isinstance(items, (str, Path)) else items
    if not isinstance(source, DataSource):
        source = DataSource(list(source))
    for label, value in (("shard_size", shard_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MovieGenError(f"{label} must be a positive integer, got {value!r}")
    if dtype not in DTYPES.values():
        raise MovieGenError(f"cache dtype must be one of {', '.join(DTYPES)}, got {dtype}")
    out = Path(out)
    _check_out(out)
    cfg = tae.config
    device = _module_device(tae)
    max_frames = max(grid.durations)
    failures = list(source.failures)
    failures += [
        _failure(s, "no_caption", "no caption (.json/.txt sidecar or manifest field)")
        for s in source.no_caption
    ]
    records: list[dict[str, Any]] = []
    encoder_dims: list[int] | None = None
    total = len(source.items)

    with atomic_dir(out) as tmp:
        writer = _ShardWriter(tmp, shard_size)
        pending: dict[str, list[_Pending]] = {}

        def encode(bucket_name: str) -> None:
            nonlocal encoder_dims
            batch = pending.pop(bucket_name)
            videos = torch.stack([p.video for p in batch]).to(device)
            with torch.inference_mode():
                latents = tae.normalize(tae.encode(videos).float())
                raw = text.encode_raw([p.prompt for p in batch])
            encoder_dims = [int(hidden.shape[-1]) for hidden, _ in raw]
            for j, entry in enumerate(batch):
                tensors = {"latent": latents[j].to(dtype)}
                lengths = []
                for k, (hidden, mask) in enumerate(raw):
                    row = mask[j].bool()
                    length = int(row.nonzero().max()) + 1 if bool(row.any()) else 0
                    tensors[f"text{k}"] = hidden[j, :length].float().to(dtype)
                    tensors[f"mask{k}"] = row[:length]
                    lengths.append(length)
                bad = [
                    k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())
                ]
                if bad:
                    error = f"non-finite values in {', '.join(bad)} as {dtype} (try --dtype float32)"
                    failures.append(_failure(entry.item.path, "non_finite", error))
                    continue
                index, shard = writer.add(tensors)
                records.append(
                    {
                        "index": index,
                        "shard": shard,
                        "bucket": bucket_name,
                        "caption": entry.item.caption,
                        "prompt": entry.prompt,
                        "fps": entry.fps,
                        "latent_shape": list(latents.shape[1:]),
                        "text_lengths": lengths,
                        "source": str(entry.item.path),
                    }
                )

        for done, item in enumerate(source.items, 1):
            if progress is not None:
                progress(done - 1, total)
            try:
                video, file_fps = read_video(item.path, max_frames=max_frames)
            except MovieGenError as e:
                failures.append(_failure(item.path, "unreadable", str(e)))
                continue
            bucket = grid.assign(video.shape[2], video.shape[3], video.shape[1])
            if bucket is None:
                error = f"{video.shape[1]} frames, the shortest bucket needs {min(grid.durations)}"
                failures.append(_failure(item.path, "too_short", error))
                continue
            fps = max(1, round(item.fps if item.fps is not None else file_fps))
            try:
                prompt = compose_clip_prompt(item.caption, bucket.frames, fps, item.camera_motion)
            except MovieGenError as e:
                failures.append(_failure(item.path, "bad_caption", str(e)))
                continue
            queue = pending.setdefault(bucket.name, [])
            queue.append(_Pending(item, fit_to_bucket(video, bucket), prompt, fps))
            del video
            if len(queue) >= batch_size:
                encode(bucket.name)
            elif sum(len(q) for q in pending.values()) >= 2 * batch_size:
                # bound the memory of partly filled buckets: encode the fullest one now
                encode(max(pending, key=lambda name: len(pending[name])))
        for name in list(pending):
            encode(name)
        writer.flush()
        if progress is not None:
            progress(total, total)

        if not records:
            if source.no_caption and len(source.no_caption) == len(failures):
                raise MovieGenError(
                    f"nothing to cache: all {len(source.no_caption)} video(s) lack a caption; {CAPTION_HOW}"
                )
            first = failures[0]["error"] if failures else "the data holds no videos"
            raise MovieGenError(f"no item could be cached ({len(failures)} failures; first: {first})")
        buckets: dict[str, dict[str, Any]] = {}
        for record in records:
            b = grid.bucket(record["bucket"])
            entry = buckets.setdefault(
                b.name,
                {
                    "height": b.height,
                    "width": b.width,
                    "frames": b.frames,
                    "latent_shape": record["latent_shape"],
                },
            )
            entry["count"] = entry.get("count", 0) + 1
        manifest = {
            **_manifest_head(dtype, shard_size, writer.shards, len(records)),
            "grid": grid.to_dict(),
            "tae": {
                "config": _config_dict(tae),
                "scaling_factor": float(cfg.scaling_factor),
                "shift_factor": float(cfg.shift_factor),
                "normalised": True,
            },
            "text": {
                "config": _config_dict(text),
                "num_encoders": len(encoder_dims or []),
                "dims": encoder_dims,
            },
            "buckets": dict(sorted(buckets.items())),
            "counts": {
                "inputs": total + len(source.no_caption) + len(source.failures),
                "cached": len(records),
                "no_caption": len(source.no_caption),
                "failures": len(failures) - len(source.no_caption),
            },
            "items": records,
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / FAILURES_NAME).write_text("".join(json.dumps(f) + "\n" for f in failures))
    return out


def write_cache(
    items: Iterable[CacheItem],
    out: str | Path,
    *,
    text_config: dict | None = None,
    tae_config: dict | None = None,
    shard_size: int = 256,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write already-encoded samples as a latent cache folder (atomically), readable by :class:`LatentCache`.

    For recipes that make their own samples (the spatial upsampler's pairs of a target latent and a
    conditioning latent): each item's latent, text states (trimmed to their masks) and named ``tensors``
    are stored; the manifest lists every item's tensor names under ``tensors``.
    """
    if dtype not in DTYPES.values():
        raise MovieGenError(f"cache dtype must be one of {', '.join(DTYPES)}, got {dtype}")
    out = Path(out)
    _check_out(out)
    records: list[dict[str, Any]] = []
    buckets: dict[str, dict[str, Any]] = {}
    dims: list[int] = []
    with atomic_dir(out) as tmp:
        writer = _ShardWriter(tmp, shard_size)
        for item in items:
            tensors = {"latent": item.latent.to(dtype)}
            lengths = []
            for k, (hidden, mask) in enumerate(item.text):
                length = int(mask.nonzero().max()) + 1 if bool(mask.any()) else 0
                tensors[f"text{k}"] = hidden[:length].float().to(dtype)
                tensors[f"mask{k}"] = mask[:length].bool()
                lengths.append(length)
            dims = [int(hidden.shape[-1]) for hidden, _ in item.text]
            for name, value in item.tensors.items():
                if name in tensors or name.startswith(("text", "mask")) or not name.isidentifier():
                    raise MovieGenError(f"write_cache: {name!r} is not a usable tensor name")
                tensors[name] = value.to(dtype)
            if not all(bool(v.isfinite().all()) for v in tensors.values() if v.is_floating_point()):
                raise MovieGenError(f"write_cache: item {len(records)} has non-finite values as {dtype}")
            index, shard = writer.add(tensors)
            shape = list(item.latent.shape)
            records.append({"index": index, "shard": shard, "bucket": item.bucket, "caption": item.caption,
                            "prompt": item.caption, "latent_shape": shape, "text_lengths": lengths,
                            "source": "", "tensors": sorted(item.tensors)})  # fmt: skip
            entry = buckets.setdefault(item.bucket, {"latent_shape": shape, "count": 0})
            entry["count"] += 1
        writer.flush()
        if not records:
            raise MovieGenError("write_cache: no items to write")
        manifest = {
            **_manifest_head(dtype, shard_size, writer.shards, len(records)),
            "tae": {"config": tae_config, "normalised": True},
            "text": {"config": text_config, "num_encoders": len(dims), "dims": dims},
            "buckets": dict(sorted(buckets.items())),
            "counts": {"inputs": len(records), "cached": len(records), "no_caption": 0, "failures": 0},
            "items": records,
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / FAILURES_NAME).write_text("")
    return out


# ---------------------------------------------------------------------------------------------- read


@dataclass
class CacheItem:
    """One cached sample: normalised latent (C,T,H,W) float32 and each encoder's (hidden (L,D), mask (L,)).

    ``tensors`` holds the sample's other named tensors, e.g. ``cond``: the conditioning latent
    (C', T, H, W) of a post-trained variant (the spatial upsampler's upsampled low-resolution video), which
    the trainer concatenates after the noisy latent (:func:`moviegen.flow.with_condition`).
    """

    latent: Tensor
    text: list[tuple[Tensor, Tensor]]
    caption: str
    bucket: str = ""
    index: int = -1
    tensors: dict[str, Tensor] = field(default_factory=dict)


def text_states(text, prompt: str) -> list[tuple[Tensor, Tensor]]:
    """A :class:`CacheItem`'s ``text`` for one prompt: each frozen encoder's raw states of a
    :class:`~moviegen.models.text.TextConditioner`, cut to the prompt's real tokens, float32."""
    states = []
    with torch.inference_mode():
        for hidden, mask in text.encode_raw([prompt]):
            n = int(mask[0].sum())
            states.append((hidden[0, :n].float(), mask[0, :n]))
    return states


def collate_tensors(items: Sequence[CacheItem]) -> dict[str, Tensor]:
    """Stack the named tensors every item of a batch holds (all items must hold the same names)."""
    names = {tuple(sorted(it.tensors)) for it in items}
    if len(names) > 1:
        raise MovieGenError(f"a batch mixes items with different named tensors: {sorted(names)}")
    return {name: torch.stack([it.tensors[name] for it in items]) for name in (names.pop() if names else ())}


class MemoryCache:
    """A latent cache held in memory, with :class:`LatentCache`'s reading interface.

    For recipes that compute their latents in the same process (the world recipes): ``items`` are
    :class:`CacheItem` s with normalised latents; ``manifest`` carries what the trainer reads from a
    cache's manifest (``text.config`` for exporting a pipeline).
    """

    def __init__(self, items: Sequence[CacheItem], manifest: dict[str, Any] | None = None):
        if not items:
            raise MovieGenError("an in-memory latent cache needs at least one item")
        self.items = list(items)
        self.manifest = manifest or {}
        self.path = Path("<memory>")
        self.num_encoders = len(self.items[0].text)

    def __len__(self) -> int:
        return len(self.items)

    def buckets(self) -> list[str]:
        return [item.bucket for item in self.items]

    def get(self, i: int) -> CacheItem:
        return self.items[i]

    __getitem__ = get
    collate = staticmethod(lambda items: LatentCache.collate(items))


class LatentCache:
    """A built cache folder, read lazily shard by shard; also a map-style Dataset (``cache[i]``).

    ``opened_shards`` lists the shard numbers this process has opened, in order.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise MovieGenError(f"latent cache folder not found: {self.path}")
        manifest_path = self.path / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise MovieGenError(f"{self.path} is not a latent cache (no {MANIFEST_NAME})") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MovieGenError(f"corrupt latent cache manifest {manifest_path}: {e}") from None
        self.manifest = manifest
        self.items = self._validate(manifest, manifest_path)
        self.shards: list[str] = manifest["shards"]
        self.num_encoders: int = manifest["text"]["num_encoders"]
        self.opened_shards: list[int] = []
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()

    @staticmethod
    def _validate(manifest: Any, where: Path) -> list[dict[str, Any]]:
        def bad(message: str) -> MovieGenError:
            return MovieGenError(f"corrupt latent cache manifest {where}: {message}")

        if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
            raise bad(f"not a {CACHE_FORMAT} manifest")
        if manifest.get("version") != CACHE_VERSION:
            raise MovieGenError(
                f"{where}: unsupported cache version {manifest.get('version')!r} (expected {CACHE_VERSION})"
            )
        items, shards = manifest.get("items"), manifest.get("shards")
        if not isinstance(items, list) or not isinstance(shards, list):
            raise bad("items and shards must be lists")
        text = manifest.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("num_encoders"), int):
            raise bad("missing text.num_encoders")
        for i, item in enumerate(items):
            if (
                not isinstance(item, dict)
                or item.get("index") != i
                or not isinstance(item.get("shard"), int)
                or not 0 <= item["shard"] < len(shards)
                or not isinstance(item.get("bucket"), str)
                or not isinstance(item.get("caption"), str)
            ):
                raise bad(f"item {i} is malformed")
        return items

    def __len__(self) -> int:
        return len(self.items)

    def buckets(self) -> list[str]:
        """The bucket name of every item, in index order (for :class:`BucketBatchSampler`)."""
        return [item["bucket"] for item in self.items]

    def shard_indices(self, rank: int, world: int) -> list[int]:
        """Items of the shards owned by ``rank`` (shard ``s`` belongs to rank ``s % world``)."""
        if isinstance(world, bool) or not isinstance(world, int) or world < 1:
            raise MovieGenError(f"world must be a positive integer, got {world!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
            raise MovieGenError(f"rank must be in [0, {world}), got {rank!r}")
        return [i for i, item in enumerate(self.items) if item["shard"] % world == rank]

    def _shard(self, number: int) -> Any:
        if os.getpid() != self._pid:  # a forked DataLoader worker: open its own handles
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(number)
        if handle is None:
            path = self.path / self.shards[number]
            if not path.is_file():
                raise MovieGenError(f"latent cache shard missing: {path}")
            try:
                handle = safe_open(str(path), framework="pt")
            except (SafetensorError, OSError) as e:
                raise MovieGenError(f"corrupt latent cache shard {path}: {e}") from None
            self._handles[number] = handle
            self.opened_shards.append(number)
        return handle

    def get(self, i: int) -> CacheItem:
        """Item ``i``: its latent as float32 ``(C, T, H, W)`` and its text states as float32/bool."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"latent cache index {i} out of range ({len(self)} items)")
        i = i % len(self)
        meta = self.items[i]
        handle = self._shard(meta["shard"])
        try:
            latent = handle.get_tensor(f"{i}.latent").float()
            text = [
                (handle.get_tensor(f"{i}.text{k}").float(), handle.get_tensor(f"{i}.mask{k}").bool())
                for k in range(self.num_encoders)
            ]
            tensors = {name: handle.get_tensor(f"{i}.{name}").float() for name in meta.get("tensors", [])}
        except (SafetensorError, OSError, KeyError) as e:
            shard = self.path / self.shards[meta["shard"]]
            raise MovieGenError(f"corrupt latent cache shard {shard}: item {i}: {e}") from None
        if "latent_shape" in meta and list(latent.shape) != list(meta["latent_shape"]):
            raise MovieGenError(
                f"latent cache item {i} has shape {list(latent.shape)}, manifest says {meta['latent_shape']}"
            )
        return CacheItem(latent, text, meta["caption"], meta["bucket"], i, tensors)

    __getitem__ = get

    @staticmethod
    def collate(items: Sequence[CacheItem]) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Stack latents ``(B, C, T, H, W)``; pad each encoder's states to ``(B, Lmax, D)``/``(B, Lmax)``.

        Padding is zeros with mask False; ``Lmax`` is at least 1 so a batch of fully masked rows keeps a
        non-empty, fully masked sequence. All items must share a latent shape (one bucket).
        """
        if not items:
            raise MovieGenError("cannot collate an empty batch")
        shapes = {tuple(it.latent.shape) for it in items}
        if len(shapes) > 1:
            raise MovieGenError(f"a batch mixes latent shapes {sorted(shapes)}: draw batches from one bucket")
        latents = torch.stack([it.latent for it in items])
        text = []
        for k in range(len(items[0].text)):
            states = [it.text[k] for it in items]
            length = max(1, max(h.shape[0] for h, _ in states))
            dim = states[0][0].shape[-1]
            hidden = torch.zeros(len(items), length, dim, dtype=states[0][0].dtype)
            mask = torch.zeros(len(items), length, dtype=torch.bool)
            for b, (h, m) in enumerate(states):
                hidden[b, : h.shape[0]] = h
                mask[b, : m.shape[0]] = m
            text.append((hidden, mask))
        return latents, text

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers under spawn: handles don't pickle
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state


# ------------------------------------------------------------------------------------------------ CLI


def _load_components(tae: Path | None, text: str | None, pipeline: Path | None) -> tuple[Any, Any, str]:
    import moviegen.pipeline as pipeline_module
    from moviegen.models.tae import TAE
    from moviegen.models.text import TextConditioner, default_text_conditioner

    default = pipeline_module.DEFAULT_MODEL
    if (
        pipeline is None
        and (tae is None or text is None)
        and (default / pipeline_module.INDEX_NAME).is_file()
    ):
        pipeline = default
    if pipeline is not None:
        if not (pipeline / pipeline_module.INDEX_NAME).is_file():
            raise MovieGenError(
                f"{pipeline} is not a MovieGenPipeline folder (no {pipeline_module.INDEX_NAME})"
            )
        tae = tae or pipeline / "tae"
        text = text or str(pipeline / "text")
    if tae is None:
        raise MovieGenError("no TAE: pass --pipeline DIR or --tae DIR (no shipped model was found)")
    if text is None:
        raise MovieGenError("no text encoders: pass --pipeline DIR, --text DIR or --text minilm")
    tae_model = TAE.from_pretrained(tae).eval()
    if text == "minilm" and not Path(text).exists():
        conditioner = default_text_conditioner(64)  # the projector width is irrelevant here
    else:
        conditioner = TextConditioner.from_pretrained(text)
    return tae_model, conditioner.eval(), f"TAE {tae}, text {text}"


def cache_cli(
    data: Annotated[
        Path, typer.Argument(help="A folder of videos with .json/.txt caption sidecars, or a JSONL manifest.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output cache folder.")],
    tae: Annotated[Path | None, typer.Option("--tae", help="TAE folder (overrides the pipeline's).")] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", help="TextConditioner folder, or 'minilm' (overrides the pipeline's)."),
    ] = None,
    pipeline: Annotated[
        Path | None, typer.Option("--pipeline", help="MovieGenPipeline folder (default: the shipped model).")
    ] = None,
    grid: Annotated[str, typer.Option(help="Bucket grid: tiny, paper-256 or paper-768.")] = "paper-256",
    shard_size: Annotated[int, typer.Option(help="Items per shard file.")] = 256,
    batch_size: Annotated[int, typer.Option(help="Clips per TAE / text-encoder batch.")] = 4,
    dtype: Annotated[str, typer.Option(help="Storage dtype: float16, bfloat16 or float32.")] = "float16",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
) -> None:
    """Precompute TAE latents and text-encoder states of captioned videos into a sharded cache."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if shard_size < 1 or batch_size < 1:
        raise MovieGenError("--shard-size and --batch-size must be positive")
    if dtype not in DTYPES:
        raise MovieGenError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    bucket_grid = BucketGrid.preset(grid)
    if not data.exists():
        raise MovieGenError(f"data not found: {data}")
    _check_out(out)
    source = read_data(data)
    model, conditioner, what = _load_components(tae, text, pipeline)
    device = resolve_device(device)
    try:
        model.to(device)
        conditioner.to(device)
    except (RuntimeError, AssertionError) as e:
        raise MovieGenError(f"cannot use device {device!r}: {str(e).splitlines()[0]}") from None
    if source.no_caption:
        typer.echo(
            f"warning: skipping {len(source.no_caption)} of "
            f"{len(source.no_caption) + len(source.items)} video(s) without a caption; {CAPTION_HOW}",
            err=True,
        )
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("caching", total=len(source.items))
        build_cache(
            source,
            model,
            conditioner,
            out,
            bucket_grid,
            shard_size=shard_size,
            batch_size=batch_size,
            progress=lambda done, total: bar.update(task, completed=done),
            dtype=DTYPES[dtype],
        )
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    counts = manifest["counts"]
    typer.echo(f"cached {counts['cached']} clip(s) in {len(manifest['shards'])} shard(s) → {out} ({what})")
    typer.echo(f"{'bucket':<16}{'clips':>8}  latent shape")
    for name, bucket in manifest["buckets"].items():
        typer.echo(f"{name:<16}{bucket['count']:>8}  {bucket['latent_shape']}")
    typer.echo(f"skipped without caption: {counts['no_caption']}")
    typer.echo(
        f"failures: {counts['failures']}" + (f" (see {out / FAILURES_NAME})" if counts["failures"] else "")
    )
    failures = [json.loads(line) for line in (out / FAILURES_NAME).read_text().splitlines()]
    for failure in [f for f in failures if f["reason"] != "no_caption"][:10]:
        typer.echo(f"  {failure['reason']}: {failure['error']}")


__all__ = [
    "CacheItem",
    "DataItem",
    "DataSource",
    "LatentCache",
    "build_cache",
    "cache_cli",
    "read_data",
]
