"""MFU of one Movie Gen Video backbone block on a GPU: the 5B config (paper §3.1.2 scaled: our `5b` preset), one
block at ≥ 16K video tokens plus 256 text tokens, bf16, flash SDPA, eager and `torch.compile`, forward and
forward+backward.

Baseline measured in the same run: the same block in eager mode (the compiled rows give the ratio to it).
FLOPs per block are the planner's (:func:`moviegen.train.planner.forward_flops` for one layer: the matmuls of
self-attention, cross-attention and the SwiGLU FFN plus the attention score/value products); a training step
is 3× the forward. Peak: the device's dense bf16 rate (H100 SXM 989 TFLOP/s, H200 the same, A100 312), or
``--peak-tflops``.

On a machine without CUDA it prints why it skipped and exits 0. ``--device cpu`` runs the same code on the CPU
in float32 with the math SDPA and no compile (for checking the script with a small ``--model tiny``; its
numbers are not the GPU's).

    python benchmarks/gpu_block_mfu.py [--tokens 16384] [--text 256] [--model 5b] [--iters 20] [--json OUT]
                                       [--device cuda|cpu] [--no-compile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def timed(fn, iters: int, device: torch.device, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` over ``iters`` runs (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            start = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="5b")
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--text", type=int, default=256)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--peak-tflops", type=float, default=0.0)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--json", type=Path)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device here (this benchmark measures the GPU path: bf16, flash SDPA, compile)")
        return 0
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from moviegen.models.transformer import Block, TransformerConfig
    from moviegen.train.loop import known_peak_flops
    from moviegen.train.planner import forward_flops

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    dtype = torch.bfloat16 if gpu else torch.float32
    config = TransformerConfig.preset(args.model)
    peak = args.peak_tflops * 1e12 or known_peak_flops(device)
    flops = forward_flops(config, args.tokens, args.text)
    per_block = flops.layer  # one layer: its matmuls and attention products
    torch.manual_seed(0)
    block = Block(config).to(device, dtype)
    torch.nn.init.normal_(block.modulation, std=0.02)
    d = config.dim
    x = torch.randn(1, args.tokens, d, device=device, dtype=dtype, requires_grad=True)
    pos = torch.zeros(1, 1, d, device=device, dtype=dtype)
    mod = torch.randn(1, 6, d, device=device, dtype=dtype) * 0.02
    text = torch.randn(1, args.text, d, device=device, dtype=dtype)

    def forward(module):
        return lambda: module(x, pos, mod, text, None, None)

    def train_step(module):
        def step():
            module(x, pos, mod, text, None, None).float().pow(2).mean().backward()

        return step

    rows = []
    compile_it = gpu and not args.no_compile
    modules = [("eager", block)] + ([("compiled", torch.compile(block))] if compile_it else [])
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION) if gpu else contextlib.nullcontext():
        for name, module in modules:
            with torch.no_grad():
                fwd_ms = timed(forward(module), args.iters, device)
            step_ms = timed(train_step(module), args.iters, device)
            for kind, ms, work in (("forward", fwd_ms, per_block), ("fwd+bwd", step_ms, 3 * per_block)):
                tflops = work / (ms / 1e3) / 1e12
                rows.append({"mode": name, "pass": kind, "ms": round(ms, 3), "tflops": round(tflops, 1),
                             "mfu": round(tflops * 1e12 / peak, 4) if peak else None})  # fmt: skip
    where = torch.cuda.get_device_name(device) if gpu else "CPU (a check of the script, not a GPU number)"
    print(f"{where}: one '{args.model}' block (dim {d}, FFN {config.ffn_dim}, "
          f"{config.num_heads} heads), {args.tokens} video + {args.text} text tokens, {'bf16, flash SDPA' if gpu else 'float32'}; "
          f"{per_block / 1e12:.2f} TFLOP per forward; peak {peak / 1e12:.0f} TFLOP/s")  # fmt: skip
    print(f"{'mode':<10}{'pass':<10}{'ms':>10}{'TFLOP/s':>10}{'MFU':>8}")
    eager = {r["pass"]: r["ms"] for r in rows if r["mode"] == "eager"}
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{r['mode']:<10}{r['pass']:<10}{r['ms']:>10.2f}{r['tflops']:>10.1f}{mfu:>8}"
              f"   ({eager[r['pass']] / r['ms']:.2f}x eager)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"device": where, "model": args.model, "tokens": args.tokens,
                                         "text": args.text, "rows": rows}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
