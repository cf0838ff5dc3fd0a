"""Benchmark runner: generate a prompt set with fixed seeds into a folder of MP4s and an index (paper §3.6).

Prompt files, read by :func:`read_prompts`:

* ``.txt``: one prompt per line (``#`` starts a comment line);
* ``.csv``: Movie Gen Video Bench, header ``prompt,concept,motion_level``; ``concept`` is multi-label,
  comma-separated inside the (quoted) field; ``motion_level`` is ``low``, ``medium`` or ``high``;
* ``.jsonl``: Movie Gen Audio Bench, one object per line with ``id, video_prompt, audio_prompt`` and an
  optional ``music_prompt``: the video prompt drives video generation, the audio and music prompts
  the video's sound (Movie Gen Audio, muxed into the MP4). ``id`` is an
  integer in the published ``MovieGenAudioBenchSfx*.jsonl`` files (0–537, with gaps) or a string; it is
  kept as given (``7`` → ``7_s0.mp4``, index id ``"7"``).

A bad row (malformed CSV, unknown column, empty prompt, bad JSON) is reported with its line number and
skipped; the run goes on and the exit status says that something failed.

Output folder: ``{id}_s{seed}.mp4`` (images, ``--frames 1``: ``.png``) per (prompt, seed), ``index.json``
(one record per video: id, prompt, concepts, motion_level, seed, file, time_s, status, error), the same
table as ``index.parquet``, and
``run.json`` (generation settings and row errors). The index is rewritten atomically after every video, so
an interrupted run resumes where it stopped; a rerun skips every video already written. Rerunning into a
folder made with other generation settings is refused rather than mixing two runs.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import Tensor

from moviegen.audio_files import SAMPLE_RATE
from moviegen.errors import MovieGenError
from moviegen.files import write_atomic

MOTION_LEVELS = ("low", "medium", "high")
CSV_COLUMNS = ("prompt", "concept", "motion_level")
AUDIO_KEYS = ("id", "video_prompt", "audio_prompt", "music_prompt")
AUDIO_REQUIRED = ("id", "video_prompt", "audio_prompt")


@dataclass(frozen=True)
class BenchPrompt:
    id: str
    prompt: str
    concepts: tuple[str, ...] = ()
    motion_level: str | None = None
    audio_prompt: str | None = None
    music_prompt: str | None = None


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def read_prompts(path: str | Path) -> tuple[list[BenchPrompt], list[RowError]]:
    """Parse a ``.txt``, ``.csv`` or ``.jsonl`` prompt file into prompts and per-row errors."""
    path = Path(path)
    if not path.is_file():
        raise MovieGenError(f"prompt file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise MovieGenError(f"prompt file is not UTF-8 text: {path}") from None
    readers = {".txt": _read_txt, ".csv": _read_csv, ".jsonl": _read_jsonl}
    if path.suffix.lower() not in readers:
        raise MovieGenError(f"unknown prompt file type {path.suffix!r} (use .txt, .csv or .jsonl)")
    prompts, errors = readers[path.suffix.lower()](text)
    if not prompts and not errors:
        raise MovieGenError(f"no prompts in {path}")
    return prompts, errors


def _read_txt(text: str) -> tuple[list[BenchPrompt], list[RowError]]:
    prompts, errors = [], []
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("#"):
            continue
        if not line.strip():
            errors.append(RowError(n, "empty prompt"))
            continue
        prompts.append(BenchPrompt(f"{n:04d}", line.strip()))
    return prompts, errors


def _read_csv(text: str) -> tuple[list[BenchPrompt], list[RowError]]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return [], []
    header = [h.strip().lower() for h in rows[0]]
    errors = []
    if "prompt" not in header:
        raise MovieGenError(f"CSV header must have a 'prompt' column (got {', '.join(header) or 'nothing'})")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        errors.append(
            RowError(1, f"unknown column(s) {', '.join(unknown)} ignored (known: {', '.join(CSV_COLUMNS)})")
        )
    prompts = []
    for n, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            errors.append(RowError(n, f"expected {len(header)} fields, got {len(row)}"))
            continue
        record = dict(zip(header, (cell.strip() for cell in row), strict=True))
        if not record["prompt"]:
            errors.append(RowError(n, "empty prompt"))
            continue
        level = record.get("motion_level", "").lower() or None
        if level is not None and level not in MOTION_LEVELS:
            errors.append(RowError(n, f"motion_level {level!r} is not one of {', '.join(MOTION_LEVELS)}"))
            continue
        concepts = tuple(c.strip().lower() for c in record.get("concept", "").split(",") if c.strip())
        prompts.append(BenchPrompt(f"{n - 1:04d}", record["prompt"], concepts, level))
    return prompts, errors


def _read_jsonl(text: str) -> tuple[list[BenchPrompt], list[RowError]]:
    prompts, errors, seen = [], [], set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(RowError(n, f"not valid JSON ({e.msg})"))
            continue
        if not isinstance(record, dict):
            errors.append(RowError(n, "expected a JSON object"))
            continue
        unknown = sorted(set(record) - set(AUDIO_KEYS))
        missing = [k for k in AUDIO_REQUIRED if record.get(k) is None or not str(record[k]).strip()]
        if unknown or missing:
            what = [f"unknown key(s) {', '.join(unknown)}"] if unknown else []
            what += [f"missing or empty {', '.join(missing)}"] if missing else []
            errors.append(RowError(n, "; ".join(what)))
            continue
        ident = record["id"]
        if isinstance(ident, bool) or not isinstance(ident, int | str):
            errors.append(RowError(n, f"id must be an integer or a string, got {ident!r}"))
            continue
        texts = [k for k in AUDIO_KEYS[1:] if record.get(k) is not None and not isinstance(record[k], str)]
        if texts:
            errors.append(RowError(n, f"{', '.join(texts)} must be text"))
            continue
        ident = _safe_id(str(ident))
        if ident in seen:
            errors.append(RowError(n, f"duplicate id {record['id']!r}"))
            continue
        seen.add(ident)
        prompts.append(
            BenchPrompt(
                ident,
                record["video_prompt"].strip(),
                (),
                None,
                record["audio_prompt"].strip(),
                (record.get("music_prompt") or "").strip() or None,
            )
        )
    return prompts, errors


def _safe_id(value: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in value.strip())
    return cleaned.strip(".") or "_"


# ------------------------------------------------------------------------------------------------ runner


@dataclass
class BenchRecord:
    id: str
    prompt: str
    seed: int
    file: str
    concepts: list[str] = field(default_factory=list)
    motion_level: str | None = None
    time_s: float = 0.0
    status: str = "ok"
    error: str | None = None
    audio_prompt: str | None = None
    music_prompt: str | None = None


@dataclass
class BenchSummary:
    generated: int
    skipped: int
    failed: int
    row_errors: list[RowError]
    records: list[BenchRecord]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.row_errors


def load_index(folder: str | Path) -> list[BenchRecord]:
    """The records of a bench output folder (``index.json``)."""
    path = Path(folder) / "index.json"
    if not path.is_file():
        raise MovieGenError(f"no bench index in {folder} (expected {path.name}; run `moviegen bench` first)")
    try:
        rows = json.loads(path.read_text())
        return [BenchRecord(**row) for row in rows]
    except (json.JSONDecodeError, TypeError) as e:
        raise MovieGenError(f"corrupt bench index {path}: {e}") from None


def _write_index(out: Path, records: Iterable[BenchRecord]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [asdict(r) for r in sorted(records, key=lambda r: (r.id, r.seed))]
    write_atomic(out / "index.json", (json.dumps(rows, indent=1) + "\n").encode())
    sink = io.BytesIO()
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("prompt", pa.string()),
            ("seed", pa.int64()),
            ("file", pa.string()),
            ("concepts", pa.list_(pa.string())),
            ("motion_level", pa.string()),
            ("time_s", pa.float64()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("audio_prompt", pa.string()),
            ("music_prompt", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    write_atomic(out / "index.parquet", sink.getvalue())


def run_bench(
    prompts: list[BenchPrompt],
    generate: Callable[[str, int], Tensor],
    out: str | Path,
    *,
    seeds: int = 1,
    fps: float = 16,
    settings: dict | None = None,
    row_errors: list[RowError] = (),
    progress: Callable[[int, int, str], None] | None = None,
    image: bool = False,
    sound: Callable[[BenchPrompt, Tensor, int], Tensor] | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> BenchSummary:
    """Generate ``generate(prompt, seed)`` for every prompt and seed ``0..seeds-1`` into ``out``
    (``image``: one-frame outputs written as ``{id}_s{seed}.png``). With ``sound`` (Movie Gen Audio
    Bench rows), ``sound(row, frames, seed)`` makes each video's audio at ``sample_rate``, muxed into its
    MP4 as AAC.

    ``settings`` (model, sampler, size, ...) is stored in ``run.json``; a rerun with different settings
    into the same folder is refused, a rerun with the same ones skips every video already written.
    """
    from moviegen.audio_files import write_video_with_audio
    from moviegen.video import write_image, write_video

    if seeds < 1:
        raise MovieGenError(f"--seeds must be at least 1 (got {seeds})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(settings or {}, seeds=seeds)
    run_path = out / "run.json"
    if run_path.is_file():
        try:
            previous = json.loads(run_path.read_text()).get("settings", {})
        except json.JSONDecodeError:
            raise MovieGenError(f"corrupt {run_path}; remove it or use another --out folder") from None
        changed = sorted(
            k for k in set(previous) | set(settings) if k != "seeds" and previous.get(k) != settings.get(k)
        )
        if changed:
            raise MovieGenError(
                f"{out} holds a bench run with other settings ({', '.join(changed)}); use another --out"
            )
    done: dict[tuple[str, int], BenchRecord] = {}
    if (out / "index.json").is_file():
        done = {(r.id, r.seed): r for r in load_index(out) if r.status == "ok" and (out / r.file).is_file()}
    write_atomic(
        run_path,
        (
            json.dumps({"settings": settings, "row_errors": [str(e) for e in row_errors]}, indent=1) + "\n"
        ).encode(),
    )
    jobs = [(p, s) for p in prompts for s in range(seeds)]
    records = dict(done)
    generated = skipped = failed = 0
    for i, (p, seed) in enumerate(jobs):
        key = (p.id, seed)
        if key in done and done[key].prompt == p.prompt:
            skipped += 1
        else:
            name = f"{p.id}_s{seed}.png" if image else f"{p.id}_s{seed}.mp4"
            record = BenchRecord(p.id, p.prompt, seed, name, list(p.concepts), p.motion_level,
                                 audio_prompt=p.audio_prompt, music_prompt=p.music_prompt)  # fmt: skip
            start = time.perf_counter()
            try:
                frames = generate(p.prompt, seed)
                if image:
                    write_image(out / name, frames)
                elif sound is not None:
                    write_video_with_audio(out / name, frames, fps, sound(p, frames, seed), sample_rate)
                else:
                    write_video(out / name, frames, fps=fps)
                generated += 1
            except MovieGenError as e:
                record.status, record.error = "error", str(e)
                failed += 1
            record.time_s = round(time.perf_counter() - start, 3)
            records[key] = record
            _write_index(out, records.values())
        if progress is not None:
            progress(i + 1, len(jobs), p.id)
    if not jobs or (skipped == len(jobs) and not (out / "index.parquet").is_file()):
        _write_index(out, records.values())
    return BenchSummary(
        generated, skipped, failed, list(row_errors), sorted(records.values(), key=lambda r: (r.id, r.seed))
    )
