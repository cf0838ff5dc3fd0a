"""The GPU benchmark script skips cleanly without CUDA and its code runs (on the CPU, ``--device cpu``)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_block_mfu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would measure it")
def test_gpu_block_benchmark_skips_without_cuda():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("skipped: no CUDA device")


def test_gpu_block_benchmark_code_runs_on_the_cpu(tmp_path):
    out = tmp_path / "mfu.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--model", "tiny", "--tokens", "64",
                           "--text", "8", "--iters", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [(r["mode"], r["pass"]) for r in report["rows"]] == [("eager", "forward"), ("eager", "fwd+bwd")]
    assert all(r["ms"] > 0 and r["mfu"] is None for r in report["rows"])  # no GPU peak on a CPU
