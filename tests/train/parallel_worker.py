"""Multi-process checks for moviegen.train.parallel, run by tests/train/test_parallel.py as

    python -m torch.distributed.run --standalone --nproc_per_node=4 parallel_worker.py OUT.json

on CPU with gloo. One launch runs everything (process start-up dominates on a small machine):

- parity: 3 AdamW steps of flow-matching training for several 4-rank plans against single-process training
  on the same global batch (rank 0 runs the reference);
- context-parallel self-attention against full attention, forward and backward, on 2 and 4 ranks;
- the errors parallelize / build_mesh / the forward raise for impossible layouts.

Rank 0 writes the results as JSON to OUT.json; the test asserts on them.
"""

from __future__ import annotations

import json
import sys
import time
import traceback

import torch
import torch.distributed as dist

from moviegen.errors import MovieGenError
from moviegen.flow import flow_matching_loss
from moviegen.models.transformer import Attention, MovieGenTransformer, TransformerConfig
from moviegen.train.parallel import (
    ParallelPlan,
    apply_context_parallel_attention,
    build_mesh,
    data_parallel_mesh,
    data_parallel_rank_and_size,
    full_state_dict,
    load_full_state_dict,
    parallelize,
)

BATCH = 4  # global batch: one sample per rank at dp = 4
LATENT = (16, 2, 8, 8)  # (C, T, H, W) -> 2×4×4 = 32 tokens, divisible by cp·tp = 4
TEXT_LEN = 6
STEPS = 3
LR = 1e-3
PLANS = {
    "dp_shard=4": ParallelPlan(dp_shard=4),
    "dp_shard=2,tp=2": ParallelPlan(dp_shard=2, tp=2),
    "dp_shard=2,cp=2": ParallelPlan(dp_shard=2, cp=2),
    "tp=2,cp=2": ParallelPlan(tp=2, cp=2),
    "dp_replicate=2,cp=2,ac": ParallelPlan(dp_replicate=2, cp=2, activation_checkpointing=True),
    "dp_replicate=2,tp=2,ac": ParallelPlan(dp_replicate=2, tp=2, activation_checkpointing=True),
}


def config() -> TransformerConfig:
    return TransformerConfig.preset("tiny", dim=64, num_heads=4, qk_norm=True)


def make_data():
    """The global batch and every step's t and noise, drawn identically on every rank."""
    g = torch.Generator().manual_seed(1234)
    x1 = torch.randn(BATCH, *LATENT, generator=g)
    text = torch.randn(BATCH, TEXT_LEN, config().dim, generator=g)
    mask = torch.ones(BATCH, TEXT_LEN, dtype=torch.bool)
    mask[1, 4:] = False  # padding
    mask[2] = False  # null text (classifier-free guidance branch)
    steps = [(torch.rand(BATCH, generator=g), torch.randn(BATCH, *LATENT, generator=g)) for _ in range(STEPS)]
    return x1, text, mask, steps


def initial_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = MovieGenTransformer(config())
    # Non-zero gates/head (so every parameter gets a gradient from the first step), non-trivial QK norms.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.any():
                p.normal_(std=0.02)
            elif name.endswith(("q_norm.weight", "k_norm.weight")):
                p.normal_(mean=1.0, std=0.1)
    return {k: v.clone() for k, v in model.state_dict().items()}


def train(model, x1, text, mask, steps, dp_group=None, dp_size=1) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    losses = []
    for t, noise in steps:
        loss = flow_matching_loss(model, x1, text, mask, t=t, noise=noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = loss.detach().clone()
        if dp_group is not None:
            dist.all_reduce(value, group=dp_group)
        losses.append(value.item() / dp_size)
    return losses


def run_plan(name, plan, init, data, reference):
    x1, text, mask, steps = data
    mesh = build_mesh(plan, "cpu")
    torch.manual_seed(99)  # a different init, overwritten by load_full_state_dict below
    model = parallelize(MovieGenTransformer(config()), mesh, plan)
    load_full_state_dict(model, init)
    rank, size = data_parallel_rank_and_size(mesh)
    n = BATCH // size
    part = slice(rank * n, (rank + 1) * n)
    local_steps = [(t[part], noise[part]) for t, noise in steps]
    start = time.perf_counter()
    losses = train(
        model, x1[part], text[part], mask[part], local_steps, data_parallel_mesh(mesh).get_group(), size
    )
    seconds = time.perf_counter() - start
    rank0_only = "tp" in name  # exercise both ways of gathering (every rank / rank 0 only)
    state = full_state_dict(model, rank0_only=rank0_only)
    sizes = [None] * dist.get_world_size()
    dist.all_gather_object(sizes, len(state))
    if dist.get_rank() != 0:
        return None
    ref_losses, ref_state = reference
    return {
        "losses": losses,
        "ref_losses": ref_losses,
        "max_rel_loss_diff": max(abs(a - b) / abs(b) for a, b in zip(losses, ref_losses, strict=True)),
        "keys_match": sorted(state) == sorted(ref_state),
        "state_on_expected_ranks": all(n == 0 for n in sizes[1:])
        if rank0_only
        else all(n == len(state) for n in sizes),
        "max_weight_diff": max((state[k] - ref_state[k]).abs().max().item() for k in ref_state),
        "max_weight_change": max((ref_state[k] - init[k]).abs().max().item() for k in ref_state),
        "plain_tensors": all(type(v) is torch.Tensor for v in state.values()),
        "train_seconds": seconds,
    }


def cp_attention(world: int) -> dict:
    """One self-attention with CP over groups of `world` ranks vs the full computation, fwd + bwd."""
    ranks = list(range(dist.get_world_size()))
    groups = [dist.new_group(ranks[i : i + world]) for i in range(0, len(ranks), world)]
    group = groups[dist.get_rank() // world]
    torch.manual_seed(5)
    cfg = TransformerConfig.preset("tiny", qk_norm=True)
    ref = Attention(cfg, cross=False)
    for p in ref.parameters():  # non-trivial QK-norm weights
        torch.nn.init.normal_(p, mean=1.0 if p.ndim == 1 else 0.0, std=0.1)
    attn = Attention(cfg, cross=False)
    attn.load_state_dict(ref.state_dict())
    apply_context_parallel_attention(attn, group)
    x = torch.randn(2, 16, cfg.dim)
    w = torch.randn(2, 16, cfg.dim)  # a fixed cotangent
    x_ref = x.clone().requires_grad_()
    (ref(x_ref) * w).sum().backward()

    n, r = 16 // world, dist.get_rank(group)
    chunk = slice(r * n, (r + 1) * n)
    x_loc = x[:, chunk].clone().requires_grad_()
    y_loc = attn(x_loc)
    (y_loc * w[:, chunk]).sum().backward()
    out_diff = (y_loc - ref(x)[:, chunk]).abs().max().item()
    in_grad_diff = (x_loc.grad - x_ref.grad[:, chunk]).abs().max().item()
    weight_grad_diff = 0.0
    for (_, p), (_, q) in zip(attn.named_parameters(), ref.named_parameters(), strict=True):
        g = p.grad.clone()
        dist.all_reduce(g, group=group)  # each rank holds its part of the weight gradient
        weight_grad_diff = max(weight_grad_diff, (g - q.grad).abs().max().item())
    diffs = torch.tensor([out_diff, in_grad_diff, weight_grad_diff], dtype=torch.float64)
    dist.all_reduce(diffs, op=dist.ReduceOp.MAX)  # worst rank
    return dict(zip(("out", "input_grad", "weight_grad"), diffs.tolist(), strict=True))


def expect_error(fn) -> str | None:
    try:
        fn()
    except MovieGenError as e:
        return str(e)
    return None


def errors() -> dict:
    out = {}
    out["world_size"] = expect_error(lambda: build_mesh(ParallelPlan(tp=3), "cpu"))

    def heads():
        plan = ParallelPlan(tp=4)
        parallelize(
            MovieGenTransformer(TransformerConfig.preset("tiny", num_heads=2)), build_mesh(plan, "cpu")
        )

    out["heads"] = expect_error(heads)

    def sequence():
        plan = ParallelPlan(cp=4)
        model = parallelize(MovieGenTransformer(config()), build_mesh(plan, "cpu"), plan)
        x = torch.randn(1, 16, 1, 6, 6)  # 9 tokens
        model(x, torch.rand(1), torch.randn(1, 3, config().dim))

    out["sequence"] = expect_error(sequence)
    return out


def main(out_path: str) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    results: dict = {"plans": {}, "cp_attention": {}, "errors": {}}
    try:
        init = initial_state()
        data = make_data()
        reference = None
        if rank == 0:
            model = MovieGenTransformer(config())
            model.load_state_dict(init)
            start = time.perf_counter()
            losses = train(model, *data)
            results["reference_seconds"] = time.perf_counter() - start
            reference = (losses, {k: v.detach().clone() for k, v in model.state_dict().items()})
        for name, plan in PLANS.items():
            results["plans"][name] = run_plan(name, plan, init, data, reference)
        for world in (2, 4):
            results["cp_attention"][str(world)] = cp_attention(world)
        results["errors"] = errors()
    except Exception:
        results["exception"] = traceback.format_exc()
        print(f"rank {rank}:\n{results['exception']}", file=sys.stderr, flush=True)
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(results, f, indent=1)
        raise
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
