"""Wall time of `moviegen generate` from a cold process (what a user waits for), median of N runs.

Baseline measured in the same run: a bare `python -c "import torch"` process, so the table also shows
how much of the wait is interpreter + torch start-up.

    python benchmarks/generate_latency.py [--runs 5] [--prompt "a yellow square moving up"] [-- EXTRA ARGS]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--prompt", default="a yellow square moving up")
    p.add_argument("extra", nargs="*", help="extra arguments for moviegen generate")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.mp4")
        generate = [sys.executable, "-m", "moviegen.cli", "generate", args.prompt, "--out", out, *args.extra]
        baseline = [sys.executable, "-c", "import torch"]
        timed(generate)  # warm the page cache
        gen = [timed(generate) for _ in range(args.runs)]
        base = [timed(baseline) for _ in range(args.runs)]
    rows = [("python -c 'import torch' (baseline)", base), ("moviegen generate (default model)", gen)]
    print(f"{'command':<40}{'median s':>10}{'min s':>10}{'max s':>10}")
    for name, times in rows:
        print(f"{name:<40}{statistics.median(times):>10.2f}{min(times):>10.2f}{max(times):>10.2f}")
    print(f"ratio generate / baseline: {statistics.median(gen) / statistics.median(base):.2f}x")


if __name__ == "__main__":
    main()
