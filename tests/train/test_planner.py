"""The analytic parallelism planner: arithmetic checked against the real module, the paper's layout, CLI."""

import dataclasses
import json

import pytest
import torch
import typer
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from moviegen.errors import MovieGenError
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig
from moviegen.models.transformer import count_parameters as module_parameters
from moviegen.train.planner import (
    GPUS,
    TABLE_COLUMNS,
    count_parameters,
    cpu_spec,
    estimate,
    forward_flops,
    plan,
    plan_cli,
    predict_step_time,
    video_tokens,
)

PAPER_768 = dict(model_config="30b", gpus=3072, gpu="h100-80gb", frames=256, height=768, width=768,
                 global_batch=1536)  # fmt: skip


@pytest.fixture(scope="module")
def paper_plans():
    return plan(**PAPER_768)


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    app.command("plan")(plan_cli)
    return app


def run(app, *args):
    return CliRunner().invoke(app, ["plan", *map(str, args)])


# ---- arithmetic against the real module ---------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        TransformerConfig.preset("tiny"),
        TransformerConfig.preset("tiny", qk_norm=True, num_tasks=3, in_channels=32, patch_size=(1, 2, 2)),
        TransformerConfig.preset("5b"),
        TransformerConfig.preset("30b"),
    ],
    ids=["tiny", "tiny-variant", "5b", "30b"],
)
def test_parameter_count_matches_the_module(config):
    with torch.device("meta"):
        expected = module_parameters(MovieGenTransformer(config))
    assert count_parameters(config).total == expected


def test_30b_is_about_30b_parameters_mostly_in_tp_sharded_matrices():
    pc = count_parameters(TransformerConfig.preset("30b"))
    assert 28e9 < pc.total < 31e9
    assert pc.num_layers * pc.layer_matrices / pc.total > 0.98


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threading only adds overhead on a shared 2-core box
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("ckpt", [False, True])
def test_flops_match_torch_flop_counter_on_tiny(ckpt, one_thread):
    """Forward, training (fwd + bwd) and recompute FLOPs equal what torch's FlopCounterMode counts."""
    config = TransformerConfig.preset("tiny", gradient_checkpointing=ckpt)
    model = MovieGenTransformer(config).train()
    x, t, text = torch.randn(1, 16, 4, 16, 16), torch.rand(1), torch.randn(1, 20, config.dim)
    flops = forward_flops(config, tokens=4 * 8 * 8, text_tokens=20)
    with sdpa_kernel(SDPBackend.MATH):  # the math backend runs attention as counted bmm's
        with FlopCounterMode(display=False) as fwd, torch.no_grad():
            model(x, t, text)
        with FlopCounterMode(display=False) as train:
            model(x, t, text).square().mean().backward()
    assert fwd.get_total_flops() == pytest.approx(flops.forward, rel=0.01)
    expected = flops.hardware(config.num_layers if ckpt else 0)
    assert train.get_total_flops() == pytest.approx(expected, rel=0.01)


def test_30b_flops_at_73k_tokens_are_within_sanity_bounds():
    config = TransformerConfig.preset("30b")
    n = video_tokens(config, 256, 576, 1008)
    assert n == 72_576  # 32 × 36 × 63, the paper's "73K"
    params = count_parameters(config).total
    flops = forward_flops(config, n)
    six_pn = 6 * params * n
    attention = 12 * config.num_layers * n * n * config.dim  # bidirectional attention, fwd + bwd
    assert six_pn <= flops.training <= (six_pn + attention) * 1.02
    # at 73K tokens attention outweighs the projections: 2–3× the 6·P·N rule, not ≤ 2×
    assert 2.0 < flops.training / six_pn < 3.0
    # full activation checkpointing adds one forward of every layer: ~4/3 of the model FLOPs
    assert flops.hardware(config.num_layers) / flops.training == pytest.approx(4 / 3, rel=0.01)


# ---- the paper's 768 px stage (Table 3: TP4 / CP2) -----------------------------------------------------
def test_paper_768px_stage_rejects_tp1_cp1_and_ranks_tp4_cp2_near_the_top(paper_plans):
    tp1cp1 = [p for p in paper_plans if p.tp == 1 and p.cp == 1]
    assert tp1cp1 and not any(p.feasible for p in tp1cp1)
    assert all("not divisible by DP=3072" in p.reason for p in tp1cp1)
    assert all(p.step_time_s is None and p.mfu is None for p in tp1cp1)
    top3 = paper_plans[:3]
    assert all(p.feasible for p in top3)
    assert any(p.tp == 4 and p.cp <= 2 for p in top3), [(p.tp, p.cp, p.ckpt_label) for p in top3]
    best = paper_plans[0]
    assert 0.3 < best.mfu < 0.6 * 0.75 + 0.01 and best.memory_gb <= 80
    assert best.dp * best.tp * best.cp == 3072 and best.micro_batches * best.dp == 1536


def test_ranking_is_feasible_first_then_by_step_time(paper_plans):
    flags = [p.feasible for p in paper_plans]
    assert flags == sorted(flags, reverse=True)
    times = [p.step_time_s for p in paper_plans if p.feasible]
    assert times == sorted(times)
    assert [p.rank for p in paper_plans] == list(range(1, len(paper_plans) + 1))
    assert all(p.reason == "" for p in paper_plans if p.feasible)
    assert all(p.reason for p in paper_plans if not p.feasible)


def test_no_checkpointing_does_not_fit_a_73k_sequence_on_few_gpus(paper_plans):
    off = [p for p in paper_plans if p.act_ckpt == "off" and p.tp * p.cp <= 8]
    assert off and all("GB > 80 GB per GPU" in p.reason for p in off)


# ---- monotonicity -----------------------------------------------------------------------------------
def _mem(**kw):
    args = dict(config="30b", gpus=3072, gpu="h100-80gb", tokens=73_728, global_batch=1536)
    return estimate(**{**args, **kw}).memory_gb


def test_memory_decreases_as_tp_cp_and_dp_shard_grow():
    assert _mem(tp=1) > _mem(tp=2) > _mem(tp=4) > _mem(tp=8)
    assert _mem(cp=1) > _mem(cp=2) > _mem(cp=4) > _mem(cp=8)
    assert _mem(tp=2, dp_shard=8) > _mem(tp=2, dp_shard=64) > _mem(tp=2, dp_shard=1536)
    assert _mem(tp=2, act_ckpt=False) > _mem(tp=2, act_ckpt=24) > _mem(tp=2, act_ckpt=True)


def test_more_gpus_never_slow_the_best_plan_down():
    best = []
    for gpus in (384, 768, 1536, 3072, 6144):
        feasible = [p for p in plan(**{**PAPER_768, "gpus": gpus}) if p.feasible]
        best.append(feasible[0].step_time_s)
    assert best == sorted(best, reverse=True)
    assert best[0] / best[-1] > 10


def test_memory_breakdown_adds_up_and_state_is_18_bytes_per_parameter():
    est = estimate("30b", gpus=8, gpu="h200", tokens=4096, global_batch=8, dp_shard=1, act_ckpt=True)
    assert est.memory_gb == pytest.approx(sum(est.memory_breakdown_gb.values()))
    state = sum(est.memory_breakdown_gb[k] for k in ("params", "grads", "optimizer"))
    assert state == pytest.approx(18 * count_parameters(TransformerConfig.preset("30b")).total / 1e9)
    assert "needs" in est.reason and est.fsdp_shard == 1


# ---- infeasibility reasons ----------------------------------------------------------------------------
def test_infeasible_reasons_are_explained():
    tiny = estimate("tiny", gpus=8, gpu="h100-80gb", tokens=512, global_batch=8, tp=8)
    assert not tiny.feasible and "TP=8 does not divide heads=4" in tiny.reason
    cross = estimate("30b", gpus=64, gpu="h100-80gb", tokens=73_728, global_batch=64, tp=16)
    assert "TP=16 spans nodes" in cross.reason
    image = estimate("30b", gpus=64, gpu="h100-80gb", tokens=256, global_batch=64, cp=2)
    assert "CP=2 leaves 128 tokens per rank" in image.reason
    odd = estimate("30b", gpus=24, gpu="h100-80gb", tokens=73_728, global_batch=24, tp=4, cp=4)
    assert "TP·CP=16 does not divide 24 GPUs" in odd.reason
    batch = estimate("30b", gpus=3072, gpu="h100-80gb", tokens=73_728, global_batch=1000, tp=4, cp=2)
    assert "global batch 1000 not divisible by DP=384" in batch.reason
    hsdp = estimate("30b", gpus=3072, gpu="h100-80gb", tokens=73_728, global_batch=1536, tp=4, dp_shard=7)
    assert "dp_shard=7 does not divide" in hsdp.reason
    with pytest.raises(MovieGenError, match="gpus must be a positive integer"):
        estimate("30b", gpus=0, gpu="h100-80gb", tokens=10, global_batch=1)


def test_gpu_presets_and_the_a100_is_slower():
    assert {"h100-80gb", "a100-80gb", "h200"} <= set(GPUS)
    h100 = [p for p in plan(**PAPER_768) if p.feasible][0]
    a100 = [p for p in plan(**{**PAPER_768, "gpu": "a100-80gb"}) if p.feasible][0]
    assert a100.step_time_s > 2.5 * h100.step_time_s
    with pytest.raises(MovieGenError, match="unknown GPU"):
        plan(**{**PAPER_768, "gpu": "tpu"})


# ---- CPU prediction ----------------------------------------------------------------------------------
def test_predict_step_time_on_a_cpu_spec_is_flops_over_peak():
    config = TransformerConfig.preset("tiny")
    slow = predict_step_time(config, frames=16, height=64, width=64, batch_size=2, gpu=cpu_spec(1e10))
    fast = predict_step_time(config, frames=16, height=64, width=64, batch_size=2, gpu=cpu_spec(2e10))
    flops = forward_flops(config, video_tokens(config, 16, 64, 64))
    # compute = 2 samples × training FLOPs / peak; the rest (the AdamW step) does not depend on the peak
    assert slow - fast == pytest.approx(2 * flops.training / 1e10 / 2, rel=1e-6)
    assert slow == pytest.approx(2 * flops.training / 1e10, rel=0.02)
    ckpt = dataclasses.replace(config, gradient_checkpointing=True)
    with_ckpt = predict_step_time(ckpt, frames=16, height=64, width=64, batch_size=2, gpu=cpu_spec(1e10))
    assert with_ckpt > slow
    with pytest.raises(MovieGenError, match="infeasible layout"):
        predict_step_time(config, frames=16, height=64, width=64, batch_size=1, gpu=cpu_spec(1e10), tp=8)


# ---- CLI ---------------------------------------------------------------------------------------------
JSON_KEYS = {
    "rank", "tp", "cp", "dp", "fsdp_shard", "act_ckpt", "recomputed_layers", "micro_batch", "micro_batches",
    "tokens", "feasible", "reason", "memory_gb", "memory_breakdown_gb", "step_time_s", "mfu", "compute_s",
    "comm_s", "optimizer_s",
}  # fmt: skip
CLI_768 = ("--model", "30b", "--gpus", 3072, "--gpu", "h100-80gb", "--frames", 256, "--height", 768,
           "--width", 768, "--global-batch", 1536)  # fmt: skip


def test_cli_json_output(app):
    result = run(app, *CLI_768, "--json", "--top", 0)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and len(rows) > 20
    for row in rows:
        assert set(row) == JSON_KEYS
        assert set(row["memory_breakdown_gb"]) == {
            "params", "grads", "optimizer", "fsdp_buffers", "activations", "working", "overhead"
        }  # fmt: skip
        assert set(row["comm_s"]) == {"tp", "cp", "fsdp", "fsdp_exposed", "hsdp_allreduce"}
        assert row["act_ckpt"] in {"off", "full", "partial"}
        assert (row["step_time_s"] is None) == (not row["feasible"]) == bool(row["reason"])
    assert any(r["tp"] == 4 and r["cp"] <= 2 for r in rows[:3])
    assert json.loads(run(app, *CLI_768, "--json", "--top", 3).stdout) == rows[:3]


def test_cli_table_output(app):
    result = run(app, *CLI_768, "--top", 0)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for header in TABLE_COLUMNS:
        assert header in out
    assert "73,728 tokens" in out and "3072 x h100-80gb" in out
    assert "yes" in out and "not divisible by DP=3072" in out
    assert "layouts feasible" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model", "40b"), "unknown TransformerConfig preset"),
        (("--gpu", "h300"), "unknown GPU"),
        (("--gpus", 0), "--gpus must be positive"),
        (("--global-batch", -1), "--global-batch must be positive"),
        (("--height", 760), "multiples of 16"),
        (("--efficiency", 1.5), "--efficiency"),
    ],
)
def test_cli_rejects_bad_input(app, args, message):
    result = run(app, *args)
    assert isinstance(result.exception, MovieGenError)
    assert message in str(result.exception)
