"""MultiDiffusion windows of the spatial upsampler (paper §5): seams and peak memory on long videos.

1. **Seams**: a 256-frame world rendering (``moviegen.eval.upsampler.long_clip``: an object moving back
   and forth, so every window sees motion) is upsampled twice — MultiDiffusion (the model's window and
   overlap: velocities of overlapping windows averaged at every step) and the ablation, independent
   windows concatenated (overlap 0). For each, the mean frame difference across the frames where the
   independent windows meet, divided by that at the other latent-frame boundaries (inside windows), and
   divided by that at every other frame pair. 1.0 = seams invisible. The truth rendered large and its TAE
   round trip are the references (the TAE's own temporal tiles leave a pattern of their own); with the
   colour fix on (the model's default) and off.
2. **Peak memory**: the whole ``UpsamplerPipeline`` call at 32 and 256 frames, each in a fresh process
   (``ru_maxrss``, the process's peak resident memory including the loaded model), and their ratio.

    python benchmarks/upsampler_windows.py [--model DIR] [--frames 256] [--steps 20] [--memory 32 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from moviegen.upsampler import DEFAULT_UPSAMPLER


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def memory_worker(model: Path, frames: int, steps: int | None) -> dict:
    """One upsampling call: the process's peak RSS, and the call's own peak (RSS sampled every 2 ms on a
    thread) over the RSS just before it."""
    import torch

    from moviegen.eval.upsampler import long_clip
    from moviegen.upsampler import UpsamplerPipeline

    torch.manual_seed(0)
    up = UpsamplerPipeline.from_pretrained(model)
    video = long_clip(frames, 64)
    before = current_rss_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], current_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    out = up(video, num_steps=steps)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return dict(peak_mb=rss_mb(), before_mb=before, call_peak_mb=max(peak[0], current_rss_mb()),
                seconds=seconds, frames=out.shape[1])  # fmt: skip


def seams(model: Path, frames: int, steps: int | None) -> dict:
    import torch

    from moviegen.eval import upsampler as ev
    from moviegen.upsampler import UpsamplerPipeline

    up = UpsamplerPipeline.from_pretrained(model)
    video = ev.long_clip(frames, 64)
    compression = up.tae.compression
    at = ev.seam_frames(frames, up.window, compression)
    inside = ev.latent_boundaries(frames, compression, exclude=at)
    rows = {}
    runs = [("multidiffusion", up.overlap, None), ("independent windows", 0, None)]
    if up.color_fix:
        runs += [("multidiffusion, no colour fix", up.overlap, 0.0), ("independent, no colour fix", 0, 0.0)]
    for name, overlap, color_fix in runs:
        start = time.perf_counter()
        out = up(video, num_steps=steps, overlap=overlap, color_fix=color_fix)
        rows[name] = dict(
            overlap=overlap,
            vs_inside_boundaries=ev.seam_ratio(out, at, inside),
            vs_all_other_pairs=ev.seam_ratio(out, at),
            seconds=time.perf_counter() - start,
        )
    truth = ev.long_clip(frames, 64 * up.scale)
    rows["truth (rendered large)"] = dict(
        overlap=None,
        vs_inside_boundaries=ev.seam_ratio(truth, at, inside),
        vs_all_other_pairs=ev.seam_ratio(truth, at),
        seconds=0.0,
    )
    with torch.inference_mode():
        roundtrip = up.tae.decode(up.tae.encode(truth[None]), num_frames=frames)[0].clamp(-1, 1)
    rows["TAE round trip of the truth"] = dict(
        overlap=None,
        vs_inside_boundaries=ev.seam_ratio(roundtrip, at, inside),
        vs_all_other_pairs=ev.seam_ratio(roundtrip, at),
        seconds=0.0,
    )
    return dict(window=up.window, seams=len(at), rows=rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_UPSAMPLER)
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--memory", type=int, nargs="*", default=[32, 256])
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(memory_worker(args.model, args.worker, args.steps)))
        return
    report = {"seams": seams(args.model, args.frames, args.steps), "memory": {}}
    for frames in args.memory:
        cmd = [sys.executable, __file__, "--worker", str(frames), "--model", str(args.model)]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        report["memory"][frames] = json.loads(out.strip().splitlines()[-1])

    s = report["seams"]
    print(
        f"seams: {args.frames} frames at 64 -> 128 px, window {s['window']} latent frames, {s['seams']} seams"
    )
    print(f"{'':<32}{'overlap':>8}{'seam / inside':>16}{'seam / rest':>14}{'seconds':>10}")
    for name, r in s["rows"].items():
        ov = "-" if r["overlap"] is None else r["overlap"]
        print(
            f"{name:<32}{ov:>8}{r['vs_inside_boundaries']:>16.3f}{r['vs_all_other_pairs']:>14.3f}{r['seconds']:>10.1f}"
        )
    if report["memory"]:
        print("memory (MB), fresh process per length: process peak RSS; call peak over the RSS before it")
        for frames, r in report["memory"].items():
            grown = r["call_peak_mb"] - r["before_mb"]
            print(f"  {frames:>5} frames: process peak {r['peak_mb']:7.0f}, call {r['before_mb']:7.0f} -> "
                  f"{r['call_peak_mb']:7.0f} (+{grown:5.0f}), {r['seconds']:6.1f} s")  # fmt: skip
        lo, hi = report["memory"][args.memory[0]], report["memory"][args.memory[-1]]
        process = hi["peak_mb"] / lo["peak_mb"]
        call = hi["call_peak_mb"] / lo["call_peak_mb"]
        print(f"  ratio {args.memory[-1]} vs {args.memory[0]} frames: process peak {process:.3f}x, "
              f"call peak {call:.3f}x")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
