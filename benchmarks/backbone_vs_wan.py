"""Training step (forward + backward) of the Movie Gen Video backbone vs diffusers' `WanTransformer3DModel` at equal
width, depth, heads and FFN FLOPs, on this CPU, with the CPU's measured float32 GEMM peak and each model's
fraction of it.

Equal work: the same latent (B, 16, T, H, W), patch (1, 2, 2), text of the same length and width; our SwiGLU
FFN has three d×f matrices and Wan's GELU FFN two, so Wan's ffn_dim is 1.5 f (equal FFN FLOPs); Wan's text
embedder maps text of width d (ours: the projector, outside the backbone, is not timed). FLOPs of a step are
the planner's for our backbone (3 × forward); the same count is used for Wan (its extra work — RoPE, the
time/text embedders — is small and is not credited, so its fraction is a slight underestimate).
GEMM peak: the median rate of a 2048³ float32 matmul with the same threads.

    python benchmarks/backbone_vs_wan.py [--dim 384] [--layers 4] [--heads 6] [--batch 2] [--iters 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def gemm_peak(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        runs.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(runs)


def step_seconds(step, iters: int) -> float:
    step()
    runs = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--latent", type=int, nargs=3, default=(4, 16, 16), help="T H W of the latent")
    p.add_argument("--text", type=int, default=64)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from diffusers import WanTransformer3DModel

    from moviegen.models.transformer import MovieGenTransformer, TransformerConfig, num_tokens
    from moviegen.train.planner import forward_flops

    torch.manual_seed(0)
    t_, h_, w_ = args.latent
    config = TransformerConfig(dim=args.dim, ffn_dim=args.ffn, num_layers=args.layers, num_heads=args.heads,
                               in_channels=16, out_channels=16, patch_size=(1, 2, 2), max_latent_frames=t_,
                               max_height_patches=h_ // 2, max_width_patches=w_ // 2, qk_norm=True)  # fmt: skip
    ours = MovieGenTransformer(config).train()
    for block in ours.blocks:  # the zero-initialised output projections would make backward trivial
        torch.nn.init.normal_(block.cross_attn.out.weight, std=0.02)
    wan = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=args.heads,
                                attention_head_dim=args.dim // args.heads, in_channels=16, out_channels=16,
                                text_dim=args.dim, ffn_dim=args.ffn * 3 // 2, num_layers=args.layers).train()  # fmt: skip
    x = torch.randn(args.batch, 16, t_, h_, w_)
    text = torch.randn(args.batch, args.text, args.dim)
    t = torch.rand(args.batch)

    def ours_step():
        ours(x, t, text).float().pow(2).mean().backward()

    def wan_step():
        wan(x, (t * 1000).long(), text, return_dict=False)[0].float().pow(2).mean().backward()

    peak = gemm_peak()
    tokens = num_tokens(config, (16, t_, h_, w_))
    flops = forward_flops(config, tokens, args.text).training * args.batch
    rows = {}
    for name, step in (("moviegen", ours_step), ("wan (diffusers)", wan_step)):
        seconds = step_seconds(step, args.iters)
        rows[name] = {"step_s": round(seconds, 4), "gflops_per_s": round(flops / seconds / 1e9, 2),
                      "fraction_of_gemm_peak": round(flops / seconds / peak, 3)}  # fmt: skip
    ratio = rows["wan (diffusers)"]["step_s"] / rows["moviegen"]["step_s"]
    params = {"moviegen": sum(p.numel() for p in ours.parameters()), "wan": sum(p.numel() for p in wan.parameters())}
    print(f"dim {args.dim}, {args.layers} layers, {args.heads} heads, FFN {args.ffn} (SwiGLU) / {args.ffn * 3 // 2} (GELU), "
          f"batch {args.batch} × {tokens} video tokens + {args.text} text; {torch.get_num_threads()} threads; "
          f"params {params}")  # fmt: skip
    print(f"float32 GEMM peak (2048³ matmul): {peak / 1e9:.1f} GFLOP/s; step = {flops / 1e9:.2f} GFLOP")
    print(f"{'backbone':<18}{'fwd+bwd s':>11}{'GFLOP/s':>10}{'of peak':>9}")
    for name, r in rows.items():
        print(f"{name:<18}{r['step_s']:>11.3f}{r['gflops_per_s']:>10.1f}{100 * r['fraction_of_gemm_peak']:>8.1f}%")
    print(f"moviegen / wan speed: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"latent": list(args.latent), "json": str(args.json)}, "gemm_peak": peak,
                                         "step_flops": flops, "rows": rows, "speed_ratio": ratio}, indent=1) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
