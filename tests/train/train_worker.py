"""Helpers for the training-loop tests, and a CLI worker they launch as a subprocess.

As a script it registers the same CLI functions the lead wires into ``moviegen.cli``, on a Typer app of
its own, and runs them (single-process, or under ``python -m torch.distributed.run``)::

    python train_worker.py train run --config run.json [--resume] [--stage NAME]
    python train_worker.py average A B --out C
    python train_worker.py train run --config a.json --resume --then train run --config b.json

``--then`` separates commands run one after the other in the same process(es) (one torchrun start-up).

``MOVIEGEN_TEST_SLOW_AFTER=K`` makes every step after step K sleep ``MOVIEGEN_TEST_SLOW_S`` seconds, so a test
can SIGKILL the run after checkpoint K is on disk and before the run ends.

:func:`write_cache` writes a small latent cache folder in the on-disk format that
:class:`moviegen.data.cache.LatentCache` reads (manifest + safetensors shards), with random latents.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

VIDEO_SHAPE = (16, 2, 8, 8)  # 2×4×4 = 32 tokens: divisible by cp·tp up to 4
IMAGE_SHAPE = (16, 1, 8, 8)


def write_cache(
    path: Path,
    num_videos: int = 16,
    num_images: int = 8,
    seed: int = 0,
    dims: tuple[int, ...] = (32,),
    text_len: int = 5,
    shard_size: int = 8,
) -> Path:
    """A latent cache with ``num_videos`` items of VIDEO_SHAPE and ``num_images`` of IMAGE_SHAPE."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    items, shards, tensors = [], [], {}
    kinds = [("64x64-16f", VIDEO_SHAPE)] * num_videos + [("64x64-1f", IMAGE_SHAPE)] * num_images
    basis = torch.randn(4, *VIDEO_SHAPE, generator=g)
    for i, (bucket, shape) in enumerate(kinds):
        c = i % 4  # four "concepts": a learnable structure plus noise
        latent = (basis[c][:, : shape[1]] + 0.3 * torch.randn(shape, generator=g)).contiguous()
        tensors[f"{i}.latent"] = latent
        lengths = []
        for k, d in enumerate(dims):
            n = 1 + (i + k) % text_len
            hidden = torch.randn(n, d, generator=g)
            hidden[:, 0] = float(c)
            tensors[f"{i}.text{k}"] = hidden
            tensors[f"{i}.mask{k}"] = torch.ones(n, dtype=torch.bool)
            lengths.append(n)
        shard = i // shard_size
        items.append({"index": i, "shard": shard, "bucket": bucket, "caption": f"concept {c} item {i}",
                      "latent_shape": list(shape), "text_lengths": lengths})  # fmt: skip
        if (i + 1) % shard_size == 0 or i == len(kinds) - 1:
            name = f"shard-{shard:05d}.safetensors"
            save_file(tensors, str(path / name))
            shards.append(name)
            tensors = {}
    buckets: dict = {}
    for item in items:
        entry = buckets.setdefault(item["bucket"], {"latent_shape": item["latent_shape"], "count": 0})
        entry["count"] += 1
    manifest = {
        "format": "moviegen-latent-cache",
        "version": 1,
        "dtype": "float32",
        "shard_size": shard_size,
        "shards": shards,
        "num_items": len(items),
        "tae": {"config": None, "scaling_factor": 1.0, "shift_factor": 0.0, "normalised": True},
        "text": {"config": None, "num_encoders": len(dims), "dims": list(dims)},
        "buckets": buckets,
        "items": items,
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def make_app():
    import typer

    from moviegen.train.loop import average_cli, train_run_cli

    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    train_app = typer.Typer()
    train_app.command("run")(train_run_cli)
    app.add_typer(train_app, name="train")
    app.command("average")(average_cli)
    return app


def _slow_down() -> None:
    after = int(os.environ.get("MOVIEGEN_TEST_SLOW_AFTER", "0"))
    if not after:
        return
    from moviegen.train.loop import Trainer

    seconds = float(os.environ.get("MOVIEGEN_TEST_SLOW_S", "1.0"))
    original = Trainer.train_step

    def train_step(self):
        if self.step >= after:
            time.sleep(seconds)
        return original(self)

    Trainer.train_step = train_step


def main(argv: list[str]) -> int:
    from moviegen.errors import MovieGenError

    torch.set_num_threads(1)
    _slow_down()
    commands: list[list[str]] = [[]]
    for arg in argv:
        if arg == "--then":
            commands.append([])
        else:
            commands[-1].append(arg)
    app = make_app()
    for command in commands:
        try:
            app(command, standalone_mode=False)
        except MovieGenError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
