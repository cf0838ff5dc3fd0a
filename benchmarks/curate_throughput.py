"""Curation throughput on 720p input: clip-seconds per core-second per stage, and 1 → 2 worker speed-up.

A synthetic 720p corpus (``moviegen.curate.synthetic``: camera motions over textured worlds, one scene
cut per source, caption sidecars, H.264) is curated with the default (paper) config and ``--cut-clips``:

* with 1 worker, in this process: every per-source stage runs single-threaded, so its measured seconds
  are core-seconds; "clip-s in" is the video duration that entered the stage (whole sources for
  probe/decode/scenes, the clips still kept for the later ones);
* then with 1 and 2 worker processes (spawned, model start-up included) into fresh folders: wall time
  and speed-up.

    python benchmarks/curate_throughput.py [--sources 4] [--seconds 12] [--fps 24] [--copies 1] [--keep DIR]

``--copies N`` adds N − 1 byte copies of every source (more per-source work to spread over workers
without rendering more; the copies are processed in full, then dropped as duplicates).

Numbers depend on the machine's load: the table prints the load average seen before the runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from moviegen.curate.config import CurateConfig
from moviegen.curate.record import DROP_STAGES
from moviegen.curate.runner import curate, read_manifest
from moviegen.curate.synthetic import MOTIONS, Shot, render, write_clip

# the drop stage whose reason tells that a clip never reached the timed stage
REACHED_AFTER = {
    "visual": "scenes",
    "motion": "visual",
    "camera": "motion",
    "captions": "motion",
    "embed": "captions",
}


def make_720p(folder: Path, sources: int, seconds: float, fps: float, height: int, width: int) -> float:
    motions = [m for m in MOTIONS if m != "static"]
    folder.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i in range(sources):
        first = round(seconds * 0.5, 2)
        shots = [
            Shot(first, motions[(2 * i) % len(motions)], seed=100 + 2 * i),
            Shot(seconds - first, motions[(2 * i + 1) % len(motions)], seed=101 + 2 * i),
        ]
        for shot in shots:
            if shot.motion.startswith("roll"):
                shot.speed = 6.0
        frames = render(shots, height, width, fps)
        write_clip(folder / f"source{i:03d}.mp4", frames, fps)
        (folder / f"source{i:03d}.txt").write_text(f"synthetic source {i}")
        total += len(frames) / fps
    return total


def stage_table(out: Path, summary: dict) -> list[tuple[str, float, float]]:
    clips = [c for c in read_manifest(out / "manifest.parquet") if c.clip_index >= 0]
    source_seconds = summary["source_seconds"]
    order = {stage: k for k, stage in enumerate(DROP_STAGES)}

    def reached(clip, stage: str) -> bool:
        reason = clip.reason
        return reason is None or order[reason.split(":", 1)[0]] > order[REACHED_AFTER[stage]]

    rows = []
    for row in summary["stages"]:
        stage, seconds = row["stage"], row["seconds"]
        if stage in ("probe", "decode", "scenes"):
            clip_seconds = source_seconds
        elif stage in REACHED_AFTER:
            clip_seconds = sum(c.duration_s for c in clips if reached(c, stage))
        elif stage == "cut":
            clip_seconds = summary["kept_seconds"]
        else:  # global stages work on the clip table
            clip_seconds = sum(
                c.duration_s for c in clips if c.reason is None or c.reason.startswith("content")
            )
        rows.append((stage, clip_seconds, seconds))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", type=int, default=4)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--copies", type=int, default=1, help="each source N times (as separate files)")
    p.add_argument("--keep", type=Path, default=None, help="keep the corpus and outputs in this folder")
    args = p.parse_args()
    root_ctx = tempfile.TemporaryDirectory() if args.keep is None else None
    root = Path(root_ctx.name) if root_ctx else args.keep
    try:
        corpus = root / "corpus"
        start = time.perf_counter()
        if not corpus.is_dir():
            seconds = make_720p(corpus, args.sources, args.seconds, args.fps, args.height, args.width)
            size = f"{args.width}x{args.height}, {args.fps:g} fps"
            took = time.perf_counter() - start
            print(f"rendered {args.sources} sources at {size}: {seconds:g} s of video, {took:.0f} s")
        for copy in range(1, args.copies):
            for video in sorted(corpus.glob("source*.mp4")):
                if "-copy" not in video.stem:
                    target = video.with_name(f"{video.stem}-copy{copy}.mp4")
                    if not target.exists():
                        shutil.copyfile(video, target)
                        shutil.copyfile(video.with_suffix(".txt"), target.with_suffix(".txt"))
        config = CurateConfig()
        load = os.getloadavg()[0]
        print(f"cpu count {os.cpu_count()}, load average {load:.2f} before the runs")

        # 1. per-stage core-seconds: one worker in this process (single-threaded stages)
        out = root / "in-process"
        summary = curate(corpus, out, config, workers=1, cut_clips=True)
        rows = stage_table(out, summary)
        print(f"\n{'stage':<10}{'clip-s in':>11}{'core-s':>9}{'clip-s/core-s':>15}")
        for stage, clip_seconds, seconds in rows:
            rate = clip_seconds / seconds if seconds > 0 else float("inf")
            print(f"{stage:<10}{clip_seconds:>11.1f}{seconds:>9.2f}{rate:>15.1f}")
        source_seconds = summary["source_seconds"]
        without_cut = sum(s for stage, _, s in rows if stage != "cut")
        with_cut = sum(s for _, _, s in rows)
        print(f"{'total':<10}{source_seconds:>11.1f}{without_cut:>9.2f}{source_seconds / without_cut:>15.2f}"
              "   (source seconds, without --cut-clips)")  # fmt: skip
        print(f"{'total+cut':<10}{source_seconds:>11.1f}{with_cut:>9.2f}{source_seconds / with_cut:>15.2f}"
              "   (with --cut-clips re-encoding the kept clips)")  # fmt: skip
        print(f"kept {summary['kept']} of {summary['clips']} clips ({summary['kept_seconds']:.1f} s)")

        # 2. 1 → 2 worker processes, wall clock (spawn + model loading included)
        print(f"\n{'workers':<10}{'wall s':>9}{'phase-1 s':>11}{'source-s/wall-s':>17}{'speed-up':>10}")
        base = None
        for workers in (1, 2):
            target = root / f"workers-{workers}"
            t0 = time.perf_counter()
            run = curate(corpus, target, config, workers=workers, cut_clips=True)
            wall = time.perf_counter() - t0
            base = base or wall
            rate, phase1 = source_seconds / wall, run["phase1_wall_seconds"]
            print(f"{workers:<10}{wall:>9.2f}{phase1:>11.2f}{rate:>17.2f}{base / wall:>10.2f}")
    finally:
        if root_ctx:
            root_ctx.cleanup()


if __name__ == "__main__":
    main()
