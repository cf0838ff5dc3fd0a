"""Spatial upsampler quality (paper §5) on the built-in world: upsampler vs bicubic vs bilinear, one run.

1. **PSNR / SSIM** against the true large rendering (``moviegen.eval.upsampler.quality``), for held-out
   clips (the ``test`` split and every held-out composition) brought down to the small size twice: ``clean``
   (an area resize) and ``degraded`` (the recipe's degradation pipeline, seeds it never draws). The TAE
   round trip of the truth is printed as the ceiling of any latent upsampler decoded by that TAE.
2. **The cascade keeps content**: clips of the text-to-video model (every held-out composition and seen
   ones, as ``moviegen eval world`` prompts them), read by the world detector before and after upsampling.

    python benchmarks/upsampler_quality.py [--model DIR] [--base DIR] [--clips 24] [--steps 20]
        [--cascade 32] [--json OUT.json] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from moviegen.devices import resolve_device
from moviegen.eval import upsampler as ev
from moviegen.eval.world import eval_prompts
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline
from moviegen.upsampler import DEFAULT_UPSAMPLER, UpsamplerPipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_UPSAMPLER, help="UpsamplerPipeline folder")
    p.add_argument("--base", type=Path, default=DEFAULT_MODEL, help="text-to-video folder (the cascade)")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--steps", type=int, default=None, help="Euler steps (default: the model's)")
    p.add_argument("--cascade", type=int, default=32, help="text-to-video clips for the content check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--color-fix", type=float, default=None, help="sigma of the colour-fix row")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    up = UpsamplerPipeline.from_pretrained(args.model).to(device)
    size = 128
    report: dict = {"model": str(args.model), "clips": args.clips, "steps": args.steps or up.num_steps}
    start = time.perf_counter()
    fix = args.color_fix if args.color_fix is not None else (up.color_fix or 1.5)
    variants = {
        "upsampler": lambda v: up(v, seed=args.seed, num_steps=args.steps, color_fix=0.0),
        f"upsampler + colour fix {fix:g}": lambda v: up(
            v, seed=args.seed, num_steps=args.steps, color_fix=fix
        ),
    }
    for kind in ("clean", "degraded"):
        pairs = ev.held_out_pairs(args.clips, size, up.scale, degraded=kind == "degraded", seed=args.seed)
        report[kind] = ev.quality(variants, pairs, up.scale, tae=up.tae)
        print(f"{kind}: {time.perf_counter() - start:.0f} s", file=sys.stderr)

    if args.cascade:
        base = MovieGenPipeline.from_pretrained(args.base).to(device)
        prompts = [q for q in eval_prompts(num_seen=args.cascade) if q.kind != "camera"][: args.cascade]
        before = [base(q.prompt, fps=16, seed=args.seed) for q in prompts]
        report["cascade"] = {"clips": len(prompts)}
        for name, f in variants.items():
            report["cascade"][name] = ev.content_kept(before, [f(v) for v in before])
        report["cascade"]["bicubic"] = ev.content_kept(
            before, [ev.upsample_baseline(v, up.scale, "bicubic") for v in before]
        )
    report["seconds"] = time.perf_counter() - start

    print(f"upsampler {args.model} — {args.clips} held-out world clips at {size} px, "
          f"{report['steps']} Euler steps; PSNR dB / SSIM vs the true {size}-px rendering")  # fmt: skip
    print(f"{'method':<32}" + "".join(f"{k + ' PSNR':>16}{k + ' SSIM':>16}" for k in ("clean", "degraded")))
    for method in report["clean"]:
        cells = "".join(f"{report[k][method]['psnr']:>16.2f}{report[k][method]['ssim']:>16.4f}"
                        for k in ("clean", "degraded"))  # fmt: skip
        print(f"{method:<32}{cells}")
    for k in ("clean", "degraded"):
        for name in variants:
            gain = report[k][name]["psnr"] - report[k]["bicubic"]["psnr"]
            print(f"{name} − bicubic ({k}): {gain:+.2f} dB")
    if args.cascade:
        print(f"cascade ({report['cascade']['clips']} text-to-video clips): detector reads the same …")
        for name, r in report["cascade"].items():
            if name != "clips":
                print(f"  {name:<32} colour {r['color']:5.1f} %  shape {r['shape']:5.1f} %  "
                      f"motion {r['motion']:5.1f} %  all three {r['all']:5.1f} %")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
