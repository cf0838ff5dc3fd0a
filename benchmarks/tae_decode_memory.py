"""Peak memory of TAE decoding as the video grows: untiled vs tiled (paper §3.1.1 temporal tiling).

Each measurement runs in a fresh process so ``ru_maxrss`` is that decode's peak. Modes:
``untiled`` decodes all latent frames at once; ``tiled`` uses 4-latent windows with 2-latent overlap
into one output tensor; ``streamed`` consumes the same windows chunk by chunk (as ``moviegen tae
roundtrip`` does when writing an MP4) so nothing grows with the video.

    python benchmarks/tae_decode_memory.py [--size 128] [--frames 32 64 128 256] [--preset tiny]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(frames: int, size: int, mode: str, preset: str) -> dict:
    import torch

    from moviegen.models.tae import TAE, TAEConfig

    torch.manual_seed(0)
    tae = TAE(TAEConfig.preset(preset)).eval()
    latent = torch.randn(1, tae.config.latent_channels, frames // 8, size // 8, size // 8)
    base = rss_mb()
    start = time.perf_counter()
    with torch.inference_mode():
        if mode == "untiled":
            out = tae.decode(latent, tile_latents=None)
            checksum = float(out.mean())
        elif mode == "tiled":
            out = tae.decode(latent, tile_latents=4, overlap_latents=2)
            checksum = float(out.mean())
        else:
            checksum = sum(float(c.sum()) for c in tae.decode_chunks(latent, None, 4, 2)) / (
                3 * frames * size**2
            )
    return dict(peak_mb=rss_mb(), base_mb=base, seconds=time.perf_counter() - start, checksum=checksum)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--modes", nargs="+", default=["untiled", "tiled", "streamed"])
    p.add_argument("--worker", nargs=2, metavar=("FRAMES", "MODE"))
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.size, args.worker[1], args.preset)))
        return

    results: dict[tuple[str, int], dict] = {}
    for mode in args.modes:
        for frames in args.frames:
            cmd = [sys.executable, __file__, "--worker", str(frames), mode, "--size", str(args.size)]
            cmd += ["--preset", args.preset]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results[mode, frames] = json.loads(out.strip().splitlines()[-1])

    print(
        f"TAE decode peak RSS (MB), preset {args.preset}, {args.size}x{args.size} px, fresh process per cell"
    )
    print(f"{'frames':>8} " + " ".join(f"{m:>22}" for m in args.modes))
    for frames in args.frames:
        cells = []
        for m in args.modes:
            r = results[m, frames]
            cells.append(f"{r['peak_mb']:8.0f} (+{r['peak_mb'] - r['base_mb']:5.0f}) {r['seconds']:5.1f}s")
        print(f"{frames:>8} " + " ".join(f"{c:>22}" for c in cells))
    lo, hi = args.frames[0], args.frames[-1]
    print(f"\npeak RSS ratio {hi} vs {lo} frames (baseline: the same mode at {lo} frames):")
    for m in args.modes:
        print(f"  {m:>9}: {results[m, hi]['peak_mb'] / results[m, lo]['peak_mb']:.3f}x")
    for frames in args.frames:
        sums = {m: results[m, frames]["checksum"] for m in args.modes}
        print(f"  mean pixel at {frames} frames: " + ", ".join(f"{m} {v:+.5f}" for m, v in sums.items()))


if __name__ == "__main__":
    main()
