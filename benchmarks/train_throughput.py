"""Training throughput of the tiny backbone on CPU: 1 process vs 2 and 4 data-parallel ranks (torchrun, gloo),
and the analytic planner's predicted step time against the measured one.

Every run trains the same tiny model on the same synthetic latent cache with the same global batch
(strong scaling; FSDP over ``dp_shard`` = world size), one intra-op thread per process. Reported per world
size: the median tokens/s and step time over the steps after warm-up, and the ratio to one process. The
planner line compares :func:`moviegen.train.planner.predict_step_time` for the single-process run, with a
``cpu_spec`` whose peak is a measured one-thread float32 matmul rate, against the measured median step.

    python benchmarks/train_throughput.py [--steps 12] [--global-batch 8] [--worlds 1 2 4]

Process start-up is excluded (only the logged per-step times count). On a machine with fewer cores than
ranks the ranks share cores, which the table shows as a ratio below the rank count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

LATENT = (16, 4, 16, 16)  # 4 latent frames of 16×16 → 4·8·8 = 256 tokens per sample
TEXT_LEN, TEXT_DIM = 16, 64
WARMUP_STEPS = 3


def write_cache(path: Path, items: int = 32) -> Path:
    """A synthetic latent cache in the on-disk format LatentCache reads (one bucket, random latents)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    tensors = {}
    records = []
    for i in range(items):
        tensors[f"{i}.latent"] = torch.randn(LATENT, generator=g)
        tensors[f"{i}.text0"] = torch.randn(TEXT_LEN, TEXT_DIM, generator=g)
        tensors[f"{i}.mask0"] = torch.ones(TEXT_LEN, dtype=torch.bool)
        records.append({"index": i, "shard": 0, "bucket": "128x128-32f", "caption": f"item {i}",
                        "latent_shape": list(LATENT)})  # fmt: skip
    save_file(tensors, str(path / "shard-00000.safetensors"))
    manifest = {
        "format": "moviegen-latent-cache", "version": 1, "shards": ["shard-00000.safetensors"],
        "num_items": items, "text": {"config": None, "num_encoders": 1, "dims": [TEXT_DIM]},
        "buckets": {"128x128-32f": {"latent_shape": list(LATENT), "count": items}}, "items": records,
    }  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def config_dict(cache: Path, run_dir: Path, steps: int, global_batch: int) -> dict:
    return {
        "model": "tiny",
        "model_overrides": {"max_latent_frames": LATENT[1], "max_height_patches": 8, "max_width_patches": 8},
        "cache": str(cache),
        "run_dir": str(run_dir),
        "global_batch": global_batch,
        "steps": steps,
        "lr": 1e-4,
        "image_video_ratio": [0, 1],
        "ckpt_every": 0,
        "log_every": 0,
        "export_dir": "none",
        "keep_checkpoints": 1,
    }


def worker(config_path: str) -> None:
    """One rank of a benchmark run (also the single-process run)."""
    from moviegen.train.loop import load_train_config, train

    torch.set_num_threads(1)
    train(load_train_config(config_path), log=lambda _m: None)


def matmul_flops(n: int = 1024, repeats: int = 10) -> float:
    """Measured one-thread float32 matmul FLOP/s (the CPU "peak" for the planner)."""
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def run(world: int, root: Path, cache: Path, steps: int, global_batch: int) -> list[dict]:
    run_dir = root / f"world{world}"
    cfg = root / f"world{world}.json"
    cfg.write_text(json.dumps(config_dict(cache, run_dir, steps, global_batch)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    me = str(Path(__file__).resolve())
    if world == 1:
        cmd = [sys.executable, me, "--worker", str(cfg)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
               me, "--worker", str(cfg)]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker)
        return

    from moviegen.models.transformer import TransformerConfig
    from moviegen.train.planner import cpu_spec, predict_step_time

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = write_cache(root / "cache")
        results = {}
        for world in args.worlds:
            records = run(world, root, cache, args.steps, args.global_batch)[WARMUP_STEPS:]
            results[world] = (
                statistics.median(r["tokens_per_s"] for r in records),
                statistics.median(r["step_time_s"] for r in records),
            )
    base = results.get(1, next(iter(results.values())))[0]
    print(f"tiny backbone, latent {list(LATENT)} (256 tokens/sample), global batch {args.global_batch}, "
          f"{os.cpu_count()} CPU cores, 1 thread per rank")  # fmt: skip
    print(f"{'ranks':>6}{'tokens/s':>12}{'step s':>10}{'vs 1 rank':>11}")
    for world, (tps, step) in results.items():
        print(f"{world:>6}{tps:>12.0f}{step:>10.3f}{tps / base:>10.2f}x")

    if 1 in results:
        peak = matmul_flops()
        config = TransformerConfig.preset(
            "tiny", max_latent_frames=LATENT[1], max_height_patches=8, max_width_patches=8
        )
        frames, height, width = LATENT[1] * 8, LATENT[2] * 8, LATENT[3] * 8
        predicted = predict_step_time(
            config, frames=frames, height=height, width=width, batch_size=args.global_batch,
            gpu=cpu_spec(peak), text_tokens=TEXT_LEN,
        )  # fmt: skip
        measured = results[1][1]
        print(f"planner (cpu_spec, measured matmul peak {peak / 1e9:.1f} GFLOP/s): predicted step "
              f"{predicted:.3f} s, measured {measured:.3f} s, "
              f"measured/predicted {measured / predicted:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
