"""Movie Gen Image on the built-in world (issue 16), one run: held-out compositions before and after quality
tuning, and the image decoder vs the TAE.

1. **Compositions**: the colour × shape pairs the image recipe held out
   (``moviegen.train.image.HELD_OUT_PAIRS``) and all pairs, in the world's caption form and in
   paraphrases no caption uses (``moviegen.eval.image``), generated at 128 px and read by the world
   detector — for the model after quality tuning (the shipped one), before it (the recipe's fine-tuning
   export with the same image decoder), and the shipped model decoded by the base TAE instead.
2. **Round trips**: PSNR / SSIM of held-out world images at 128 px through the image decoder and through
   the base TAE (same encoder).
3. ``--grid PNG``: one image per held-out pair (caption form), seed 0, from the shipped model.

    python benchmarks/image_quality.py [--model DIR] [--finetune RUN_EXPORT] [--base DIR] [--seeds 2]
        [--grid docs/image_grid.png] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from moviegen.data.world import World, WorldConfig
from moviegen.eval.image import image_prompts, score_images
from moviegen.eval.reconstruction import psnr, ssim
from moviegen.models.tae import TAE
from moviegen.models.text import TextConditioner
from moviegen.models.transformer import MovieGenTransformer
from moviegen.pipeline import DEFAULT_IMAGE_MODEL, DEFAULT_MODEL, MovieGenPipeline
from moviegen.train.image import HELD_OUT_PAIRS
from moviegen.video import write_image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_IMAGE_MODEL)
    p.add_argument("--finetune", type=Path, default=None, help="the recipe's run_finetune/export folder")
    p.add_argument("--base", type=Path, default=DEFAULT_MODEL, help="whose TAE is the comparison")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--grid", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    shipped = MovieGenPipeline.from_pretrained(args.model)
    base_tae = TAE.from_pretrained(args.base / "tae").eval()
    models = {"after quality tuning (shipped)": shipped}
    if args.finetune is not None:
        text = TextConditioner.from_pretrained(args.finetune / "text")
        transformer = MovieGenTransformer.from_pretrained(args.finetune / "transformer")
        models["before quality tuning"] = MovieGenPipeline(
            text, transformer, shipped.tae, shipped.guidance_scale, shipped.caption_style
        )
    models["shipped, decoded by the base TAE"] = MovieGenPipeline(
        shipped.text, shipped.transformer, base_tae, shipped.guidance_scale, shipped.caption_style
    )
    held = set(HELD_OUT_PAIRS)
    report: dict = {
        "size": args.size,
        "seeds": args.seeds,
        "held_out_pairs": [list(x) for x in HELD_OUT_PAIRS],
    }
    start = time.perf_counter()
    for name, pipe in models.items():

        def generate(prompt, seed, pipe=pipe):
            return pipe(prompt.prompt, num_frames=1, height=args.size, width=args.size, seed=seed)

        for phrasing in ("captions", "paraphrases"):
            prompts = image_prompts(phrasing)
            held_prompts = [q for q in prompts if (q.truth["color"], q.truth["shape"]) in held]
            report[f"{name} | held-out pairs, {phrasing}"] = score_images(generate, held_prompts, args.seeds)
            if phrasing == "captions":
                report[f"{name} | all pairs, captions"] = score_images(generate, prompts, args.seeds)
    world = World(WorldConfig(size=args.size, frames=1), seed=0)
    images = [world.image("test", i).video for i in range(48)]
    for name, tae in (("image decoder", shipped.tae), ("base TAE", base_tae)):
        with torch.inference_mode():
            outs = [tae.decode(tae.encode(x[None]), num_frames=1)[0].clamp(-1, 1) for x in images]
        report[f"round trip: {name}"] = {
            "psnr": sum(psnr(o, x) for o, x in zip(outs, images, strict=True)) / len(images),
            "ssim": sum(ssim(o[:, 0], x[:, 0]) for o, x in zip(outs, images, strict=True)) / len(images),
        }
    report["seconds"] = time.perf_counter() - start
    print(f"{args.model}: {args.size}x{args.size}, {args.seeds} seeds; held-out pairs: {len(HELD_OUT_PAIRS)}")
    print(f"{'model | prompts':<70}{'images':>8}{'colour %':>10}{'shape %':>10}{'both %':>10}")
    for name, r in report.items():
        if isinstance(r, dict) and "images" in r:
            print(f"{name:<70}{r['images']:>8}{r['color']:>10.1f}{r['shape']:>10.1f}{r['both']:>10.1f}")
    for name in ("image decoder", "base TAE"):
        r = report[f"round trip: {name}"]
        print(
            f"round trip of 48 held-out world images, {name}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}"
        )
    if args.grid is not None:
        tiles = [shipped(f"a {c} {s}", num_frames=1, height=args.size, width=args.size, seed=0)[:, 0]
                 for c, s in HELD_OUT_PAIRS]  # fmt: skip
        cols = 4
        tiles += [torch.ones_like(tiles[0])] * (-len(tiles) % cols)
        rows = [torch.cat(tiles[i : i + cols], 2) for i in range(0, len(tiles), cols)]
        write_image(args.grid, torch.cat(rows, 1))
        print(f"wrote {args.grid}: " + ", ".join(f"a {c} {s}" for c, s in HELD_OUT_PAIRS))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
