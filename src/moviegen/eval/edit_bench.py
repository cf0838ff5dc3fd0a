"""The Edit Bench runner and its metrics (paper §6): ``moviegen bench --edit FILE.jsonl`` and ``moviegen
metrics`` on its output.

**File format** (the paper's Movie Gen Edit Bench — 192 videos × 6 tasks = 1152 samples — is not public;
this is its shape): JSON Lines, one object per sample with

* ``id`` — an integer or a string, unique in the file;
* ``video`` — the source video's path, relative to the JSONL file's folder (or absolute);
* ``instruction`` — the edit instruction;
* ``source_caption`` / ``target_caption`` — captions of the input and of the wanted output;
* optionally ``task`` (a label that groups the report) and ``world`` (``{"scene": ..., "edit": ...}``, written
  by :func:`export_world_bench`: a built-in world sample, which the metrics score with the detector).

A bad row (bad JSON, a missing or unknown key, an empty instruction, a duplicate id) is reported with its
line number and skipped; the run goes on and the exit status says that something failed.

**Output folder**: ``{id}_s{seed}.mp4`` per (sample, seed), ``edit_index.json`` (one record per output:
the row's fields, seed, file, time_s, status, error; rewritten atomically after every video, so a rerun
resumes and skips what is done) and ``run.json`` (settings; a rerun with other settings is refused).

**Metrics** (:func:`evaluate_edit_folder`): ViCLIP_dir — cos(E(out) − E(src), E(target caption) −
E(source caption)) — and ViCLIP_out — cos(E(out), E(target caption)) — under a joint encoder (a local
CLIP folder, or the world's detector encoder), and for world samples edit accuracy, preservation and PSNR
against the exact edited clip (:func:`moviegen.eval.edit.score_edit`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from moviegen.errors import MovieGenError
from moviegen.eval.bench import RowError, _safe_id
from moviegen.files import write_atomic

EDIT_KEYS = ("id", "video", "instruction", "source_caption", "target_caption")
OPTIONAL_KEYS = ("task", "world")
INDEX_NAME = "edit_index.json"


@dataclass(frozen=True)
class EditRow:
    id: str
    video: str  # resolved path
    instruction: str
    source_caption: str
    target_caption: str
    task: str = ""
    world: dict | None = None


def read_edit_bench(path: str | Path) -> tuple[list[EditRow], list[RowError]]:
    """The rows of an Edit Bench JSONL file and the errors of the rows that were skipped."""
    path = Path(path)
    if not path.is_file():
        raise MovieGenError(f"Edit Bench file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MovieGenError(f"cannot read Edit Bench file {path}: {e}") from None
    rows, errors, seen = [], [], set()
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(RowError(line_no, f"bad JSON: {e.msg}"))
            continue
        if not isinstance(data, dict):
            errors.append(RowError(line_no, "a row must be a JSON object"))
            continue
        missing = [k for k in EDIT_KEYS if k not in data]
        unknown = sorted(set(data) - set(EDIT_KEYS) - set(OPTIONAL_KEYS))
        if missing or unknown:
            what = [f"missing {', '.join(missing)}"] * bool(missing) + [
                f"unknown {', '.join(unknown)}"
            ] * bool(unknown)
            errors.append(RowError(line_no, "; ".join(what) + f" (keys: {', '.join(EDIT_KEYS)})"))
            continue
        ident = data["id"]
        if isinstance(ident, bool) or not isinstance(ident, int | str) or not str(ident).strip():
            errors.append(RowError(line_no, f"id must be an integer or a non-empty string, got {ident!r}"))
            continue
        ident = _safe_id(str(ident))
        strings = {k: data[k] for k in EDIT_KEYS[1:]}
        bad = [k for k, v in strings.items() if not isinstance(v, str)]
        if bad or not strings["instruction"].strip() or not strings["video"].strip():
            errors.append(
                RowError(line_no, "video and instruction must be non-empty strings, captions strings")
            )
            continue
        if ident in seen:
            errors.append(RowError(line_no, f"duplicate id {ident!r}"))
            continue
        world = data.get("world")
        if world is not None and not (isinstance(world, dict) and {"scene", "edit"} <= set(world)):
            errors.append(RowError(line_no, "world must be an object with scene and edit"))
            continue
        seen.add(ident)
        video = Path(strings["video"])
        rows.append(EditRow(ident, str(video if video.is_absolute() else path.parent / video),
                            strings["instruction"].strip(), strings["source_caption"], strings["target_caption"],
                            str(data.get("task", "")), world))  # fmt: skip
    return rows, errors


@dataclass
class EditRecord:
    id: str
    video: str
    instruction: str
    source_caption: str
    target_caption: str
    task: str
    world: dict | None
    seed: int
    file: str
    time_s: float = 0.0
    status: str = "ok"
    error: str | None = None


def load_edit_index(folder: str | Path) -> list[EditRecord]:
    path = Path(folder) / INDEX_NAME
    if not path.is_file():
        raise MovieGenError(f"no Edit Bench index in {folder} (expected {INDEX_NAME})")
    try:
        return [EditRecord(**row) for row in json.loads(path.read_text())]
    except (json.JSONDecodeError, TypeError) as e:
        raise MovieGenError(f"corrupt Edit Bench index {path}: {e}") from None


def _write_index(out: Path, records) -> None:
    rows = [asdict(r) for r in sorted(records, key=lambda r: (r.id, r.seed))]
    write_atomic(out / INDEX_NAME, (json.dumps(rows, indent=1) + "\n").encode())


@dataclass
class EditBenchSummary:
    generated: int
    skipped: int
    failed: int
    row_errors: list[RowError]
    records: list[EditRecord]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.row_errors


def run_edit_bench(
    rows: list[EditRow],
    edit: Callable[[Tensor, str, int], Tensor],
    out: str | Path,
    *,
    seeds: int = 1,
    settings: dict | None = None,
    row_errors: list[RowError] = (),
    progress: Callable[[int, int, str], None] | None = None,
) -> EditBenchSummary:
    """``edit(source video, instruction, seed)`` for every row and seed into ``out`` (module docstring)."""
    from moviegen.video import read_video, write_video

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
        changed = sorted(k for k in set(previous) | set(settings)
                         if k != "seeds" and previous.get(k) != settings.get(k))  # fmt: skip
        if changed:
            raise MovieGenError(
                f"{out} holds a bench run with other settings ({', '.join(changed)}); use another --out"
            )
    done = {}
    if (out / INDEX_NAME).is_file():
        done = {
            (r.id, r.seed): r for r in load_edit_index(out) if r.status == "ok" and (out / r.file).is_file()
        }
    write_atomic(run_path, (json.dumps({"settings": settings, "row_errors": [str(e) for e in row_errors]},
                                       indent=1) + "\n").encode())  # fmt: skip
    jobs = [(r, s) for r in rows for s in range(seeds)]
    records = dict(done)
    generated = skipped = failed = 0
    for i, (row, seed) in enumerate(jobs):
        key = (row.id, seed)
        if key in done and done[key].instruction == row.instruction:
            skipped += 1
        else:
            name = f"{row.id}_s{seed}.mp4"
            record = EditRecord(row.id, row.video, row.instruction, row.source_caption, row.target_caption,
                                row.task, row.world, seed, name)  # fmt: skip
            start = time.perf_counter()
            try:
                video, fps = read_video(row.video)
                write_video(out / name, edit(video, row.instruction, seed), fps=fps)
                generated += 1
            except MovieGenError as e:
                record.status, record.error = "error", str(e)
                failed += 1
            record.time_s = round(time.perf_counter() - start, 3)
            records[key] = record
            _write_index(out, records.values())
        if progress is not None:
            progress(i + 1, len(jobs), row.id)
    if not jobs or not (out / INDEX_NAME).is_file():
        _write_index(out, records.values())
    return EditBenchSummary(generated, skipped, failed, list(row_errors),
                            sorted(records.values(), key=lambda r: (r.id, r.seed)))  # fmt: skip


def export_world_bench(
    folder: str | Path, per_task: int = 24, phrasing: str = "train", seed: int = 0
) -> Path:
    """Write the world's held-out Edit Bench as a file of this format: ``sources/*.mp4`` and
    ``edit_bench.jsonl`` (with the ``task`` and ``world`` fields). Returns the JSONL path."""
    from moviegen.data.edits import edit_to_dict, scene_to_dict
    from moviegen.eval.edit import bench_cases
    from moviegen.pretrained import atomic_dir
    from moviegen.video import write_video

    folder = Path(folder)
    cases = bench_cases(per_task=per_task, phrasing=phrasing, seed=seed)
    with atomic_dir(folder) as tmp:
        (tmp / "sources").mkdir()
        lines = []
        for case in cases:
            write_video(tmp / "sources" / f"{case.id}.mp4", case.video, fps=16)
            lines.append(json.dumps({"id": case.id, "video": f"sources/{case.id}.mp4", "instruction": case.instruction,
                                     "source_caption": case.source_caption, "target_caption": case.target_caption,
                                     "task": case.task, "world": {"scene": scene_to_dict(case.scene),
                                                                  "edit": edit_to_dict(case.edit)}}))  # fmt: skip
        (tmp / "edit_bench.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "edit_bench.jsonl"


def evaluate_edit_folder(
    folder: str | Path, encoder, progress: Callable[[int, int], None] | None = None
) -> dict:
    """ViCLIP_dir / ViCLIP_out of every output of an Edit Bench folder (and, for world rows, edit accuracy,
    preservation and PSNR); per row, per task and overall. Unreadable outputs are reported per row."""
    from moviegen.data.edits import edit_from_dict, scene_from_dict
    from moviegen.eval.edit import score_edit
    from moviegen.eval.metrics import viclip_dir, viclip_out
    from moviegen.video import read_video

    folder = Path(folder)
    records = load_edit_index(folder)
    rows, errors = [], []
    for i, r in enumerate(records):
        label = f"{r.id} seed {r.seed} ({r.file})"
        if r.status != "ok":
            errors.append(f"{label}: not generated: {r.error}")
        else:
            try:
                source = read_video(r.video)[0]
                output = read_video(folder / r.file)[0]
                row = {"id": r.id, "seed": r.seed, "task": r.task or "all", "instruction": r.instruction,
                       "viclip_dir": viclip_dir(encoder, source, output, r.source_caption, r.target_caption),
                       "viclip_out": viclip_out(encoder, output, r.target_caption)}  # fmt: skip
                if r.world:
                    scene, edit = scene_from_dict(r.world["scene"]), edit_from_dict(r.world["edit"])
                    row |= score_edit(scene, edit, output)
                rows.append(row)
            except MovieGenError as e:
                errors.append(f"{label}: {e}")
        if progress is not None:
            progress(i + 1, len(records))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["task"], []).append(row)
    if rows:
        groups["all"] = rows

    def summary(group: list[dict]) -> dict[str, float]:
        out = {"n": float(len(group))}
        for key in ("viclip_dir", "viclip_out", "psnr"):
            values = [g[key] for g in group if key in g]
            if values:
                out[key] = float(np.mean(values))
        for key in ("edit", "preserve"):
            values = [g[key] for g in group if key in g]
            if values:
                out[key] = 100 * float(np.mean(values))
        return out

    return {"encoder": encoder.name, "aggregate": {k: summary(v) for k, v in groups.items()},
            "per_video": rows, "errors": errors}  # fmt: skip


def format_edit_table(report: dict) -> str:
    keys = ("n", "viclip_dir", "viclip_out", "edit", "preserve", "psnr")
    lines = [f"{'task':<12}" + "".join(f"{k:>12}" for k in keys)]
    for task, row in report["aggregate"].items():
        lines.append(f"{task:<12}" + "".join(f"{row[k]:>12.3f}" if k in row else f"{'-':>12}" for k in keys))
    return "\n".join(lines)
