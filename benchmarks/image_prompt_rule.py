"""Images from a text-to-video model: the one FPS rule for images vs the old FPS-16 prefix, one run.

Every colour × shape pair of the built-in world (``moviegen.eval.image``), in the world's caption form and
in paraphrases no caption uses, generated as one-frame videos by the same model with two prompt
encodings: the rule (no ``FPS-n`` prefix for one frame, as the world captions its training images) and
what the pipeline did before (``FPS-16.`` in front). Scored by the world detector (colour, shape, both).

    python benchmarks/image_prompt_rule.py [--model DIR] [--seeds 2] [--size PX] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from moviegen.eval.image import PHRASINGS, image_prompts, score_images
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--size", type=int, default=None, help="image side (default: the model's largest)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    pipe = MovieGenPipeline.from_pretrained(args.model)
    size = args.size or min(pipe.max_size)

    def generate(rule: str):
        def run(prompt, seed):
            frames = 1 if rule == "no FPS prefix (the rule)" else None
            prepared = pipe.prepare_prompt(prompt.prompt, num_frames=frames)
            return pipe(prepared, num_frames=1, height=size, width=size, seed=seed)

        return run

    report = {"model": str(args.model), "size": size, "seeds": args.seeds}
    start = time.perf_counter()
    for rule in ("no FPS prefix (the rule)", "FPS-16 prefix (before)"):
        for phrasing in PHRASINGS:
            report[f"{phrasing}, {rule}"] = score_images(generate(rule), image_prompts(phrasing), args.seeds)
    report["seconds"] = time.perf_counter() - start
    print(f"{args.model}: {size}x{size} images, {args.seeds} seeds, world detector")
    print(f"{'prompts, encoding':<44}{'images':>8}{'colour %':>10}{'shape %':>10}{'both %':>10}")
    for name, r in report.items():
        if isinstance(r, dict):
            print(f"{name:<44}{r['images']:>8}{r['color']:>10.1f}{r['shape']:>10.1f}{r['both']:>10.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
