"""Sampling with the text keys/values cached once per run vs recomputed at every step (issue 21).

`flow.sample` computes every block's cross-attention keys and values of the text once
(`MovieGenTransformer.text_cache`) and skips the unconditional branch's cross-attention (null text: its output is
exactly zero); the baseline, measured in the same run on the same model and inputs, is `cache_text=False`.
The shipped world model's backbone, classifier-free guidance on (two branches per step), text of 256 and 64
tokens, the world's 16×64×64 clip (32 video tokens) and, with its positional tables grown (speed only), a
32×128×128 clip (256 video tokens).
The two samples are checked to be equal.

    python benchmarks/text_cache.py [--steps 20] [--repeats 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from moviegen import flow
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline, schedule_times


def per_step_ms(model, x, text, mask, times, cache: bool, repeats: int) -> tuple[float, torch.Tensor]:
    runs, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = flow.sample(model, x, text, mask, times, 2.0, cache_text=cache)
        runs.append(1e3 * (time.perf_counter() - start) / (len(times) - 1))
    return statistics.median(runs), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.manual_seed(0)
    pipe = MovieGenPipeline.from_pretrained(DEFAULT_MODEL)
    model = pipe.transformer.eval()
    times = schedule_times("linear-quadratic", args.steps)
    rows = []
    print(f"world backbone: dim {model.config.dim}, {model.config.num_layers} layers; guidance on; "
          f"{args.steps} steps, median of {args.repeats}")  # fmt: skip
    print(f"{'video':<16}{'text':>6}{'recompute ms/step':>20}{'cached ms/step':>16}{'speed-up':>10}")
    with torch.inference_mode():
        for frames, size in ((16, 64), (32, 128)):
            shape = pipe.latent_shape(frames, size, size)
            model.expand_positions(max(shape[1], model.config.max_latent_frames), max(shape[2] // 2, 4), max(shape[3] // 2, 4))
            x = torch.randn(1, *shape)
            for length in (256, 64):
                text = torch.randn(1, length, model.config.dim)
                mask = torch.ones(1, length, dtype=torch.bool)
                base, a = per_step_ms(model, x, text, mask, times, False, args.repeats)
                cached, b = per_step_ms(model, x, text, mask, times, True, args.repeats)
                assert torch.allclose(a, b, atol=1e-5), "cached and recomputed samples differ"
                row = {"video": f"{frames}x{size}x{size}", "text_tokens": length, "recompute_ms": round(base, 2),
                       "cached_ms": round(cached, 2), "speedup": round(base / cached, 2)}  # fmt: skip
                rows.append(row)
                print(f"{row['video']:<16}{length:>6}{base:>20.2f}{cached:>16.2f}{base / cached:>9.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
