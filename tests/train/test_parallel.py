"""moviegen.train.parallel: plan/mesh validation in-process; FSDP2/TP/SP/CP parity on 4 CPU ranks (gloo).

The multi-process part runs ``parallel_worker.py`` once under torchrun (process start-up dominates on a small
machine) and checks its JSON report: see that file for what each rank does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from moviegen.errors import MovieGenError
from moviegen.models.transformer import TransformerConfig
from moviegen.train.parallel import (
    ParallelPlan,
    build_mesh,
    check_parallel_config,
    check_sequence_length,
    mixed_precision_policy,
)

WORKER = Path(__file__).with_name("parallel_worker.py")
PLANS = [
    "dp_shard=4",
    "dp_shard=2,tp=2",
    "dp_shard=2,cp=2",
    "tp=2,cp=2",
    "dp_replicate=2,cp=2,ac",  # HSDP over (dp_replicate, dp_shard·cp) + activation checkpointing
    "dp_replicate=2,tp=2,ac",  # HSDP over (dp_replicate, dp_shard) + TP + activation checkpointing
]
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-5


# ---------------------------------------------------------------------------------------------------------
# in-process


def test_plan_validates_sizes():
    for bad in (dict(tp=0), dict(cp=-1), dict(dp_replicate=0), dict(dp_shard=0), dict(dp_shard=-2)):
        with pytest.raises(MovieGenError):
            ParallelPlan(**bad)
    with pytest.raises(MovieGenError, match="unknown config key"):
        ParallelPlan.from_dict({"pp": 2})
    plan = ParallelPlan(dp_shard=-1, cp=2, tp=2, activation_checkpointing=True)
    assert plan.world_size is None
    assert plan.resolve(8).dp_shard == 2 and plan.resolve(8).world_size == 8
    data = json.loads(plan.to_json())
    assert data.pop("_class_name") == "ParallelPlan" and ParallelPlan.from_dict(data) == plan
    with pytest.raises(MovieGenError, match="not divisible"):
        plan.resolve(6)
    with pytest.raises(MovieGenError, match="world size is 8"):
        ParallelPlan(dp_shard=3, tp=2).resolve(8)


def test_build_mesh_rejects_wrong_world_size(monkeypatch):
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(MovieGenError, match=r"= 4 ranks, but the world size is 1"):
        build_mesh(ParallelPlan(dp_shard=2, tp=2), "cpu")


def test_tp_must_divide_heads_and_ffn():
    config = TransformerConfig.preset("tiny", num_heads=4, ffn_dim=128)
    check_parallel_config(config, tp=4, cp=3)
    with pytest.raises(MovieGenError, match="tp=3 does not divide num_heads=4"):
        check_parallel_config(config, tp=3)
    with pytest.raises(MovieGenError, match="ffn_dim"):
        check_parallel_config(TransformerConfig.preset("tiny", num_heads=4, ffn_dim=130), tp=4)


def test_sequence_must_divide_cp_and_tp():
    check_sequence_length(32, cp=2, tp=2)
    with pytest.raises(MovieGenError, match="not divisible by cp=4"):
        check_sequence_length(9, cp=4)
    with pytest.raises(MovieGenError, match="cp·tp=4"):
        check_sequence_length(6, cp=2, tp=2)


def test_mixed_precision_by_device():
    cuda = mixed_precision_policy(ParallelPlan(), "cuda")
    assert (cuda.param_dtype, cuda.reduce_dtype) == (torch.bfloat16, torch.float32)
    for policy in (mixed_precision_policy(ParallelPlan(), "cpu"),
                   mixed_precision_policy(ParallelPlan(mixed_precision=False), "cuda")):  # fmt: skip
        assert (policy.param_dtype, policy.reduce_dtype) == (torch.float32, torch.float32)


# ---------------------------------------------------------------------------------------------------------
# 4 ranks under torchrun


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("parallel") / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=4",
        str(WORKER),
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    result = json.loads(out.read_text()) if out.exists() else {}
    if proc.returncode != 0 or "exception" in result:
        pytest.fail(
            f"parallel worker failed (exit {proc.returncode}):\n{result.get('exception', '')}\n"
            f"{proc.stderr[-4000:]}"
        )
    return result


def test_worker_ran_every_plan(report):
    assert sorted(report["plans"]) == sorted(PLANS)


@pytest.mark.parametrize("plan", PLANS)
def test_parity_with_single_process(report, plan):
    r = report["plans"][plan]
    assert r["keys_match"] and r["plain_tensors"] and r["state_on_expected_ranks"]
    assert r["max_rel_loss_diff"] <= LOSS_RTOL, (r["losses"], r["ref_losses"])
    assert r["max_weight_diff"] <= WEIGHT_ATOL
    # the check has teeth: three steps moved the weights far more than the tolerance
    assert r["max_weight_change"] > 100 * WEIGHT_ATOL


@pytest.mark.parametrize("world", ["2", "4"])
def test_context_parallel_attention_matches_full(report, world):
    r = report["cp_attention"][world]
    assert r["out"] <= 1e-5
    assert r["input_grad"] <= 1e-5
    assert r["weight_grad"] <= 1e-4


def test_clear_errors_under_torchrun(report):
    errors = report["errors"]
    assert "tp=3 = 3 ranks, but the world size is 4" in errors["world_size"]
    assert "tp=4 does not divide num_heads=2" in errors["heads"]
    assert "9 video tokens is not divisible by cp=4" in errors["sequence"]
