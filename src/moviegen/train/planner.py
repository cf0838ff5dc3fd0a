"""An analytic parallelism planner for training the Movie Gen Video backbone.

The paper trains with FSDP + tensor parallel (TP) + sequence parallel (SP) + context parallel (CP) and
activation checkpointing, and chose the per-stage layout with an analytic model of compute and
communication time that it does not publish [paper]. This module is our own such model: pure arithmetic
on the backbone's :class:`~moviegen.models.transformer.TransformerConfig` and a :class:`GPUSpec`, no torch
needed. It ranks every (TP, CP, activation-checkpointing) layout for a training stage by predicted step
time and says why the others do not fit. Tags: **[paper]** from Movie Gen; **[choice]** our assumption;
**[hw]** a vendor number. Everything below is exactly what the code computes.

Notation
--------
``d`` model width, ``f`` FFN width, ``h`` heads, ``Lyr`` layers, ``N`` video tokens per sample, ``Lt`` text
tokens per sample, ``G`` GPUs, ``B`` global batch (samples per optimizer step), ``tp``/``cp`` the TP/CP
degrees, ``dp = G / (tp·cp)`` the data-parallel size, ``m`` samples per micro-batch (1 by default [choice],
as the paper's 73K-token samples suggest), ``r`` the number of checkpointed (recomputed) layers.

Tokens
------
``N`` comes from :func:`~moviegen.models.transformer.latent_shape` (TAE: 8× down in T, H, W [paper]) and
:func:`~moviegen.models.transformer.num_tokens` (1×2×2 patches [paper]): 256 frames at 576×1008 →
32×36×63 = 72,576 tokens ("73K" [paper]); at 768×768 → 32×48×48 = 73,728. ``Lt = 640`` [choice]: 256
long-prompt MetaCLIP tokens [paper] + 256 UL2 tokens + 128 ByT5 tokens (the latter two our choice; the
paper concatenates the three encoders' outputs [paper]). Text encoders, the TAE (latents are precomputed
[paper]) and the data pipeline are not modelled.

Parameters (:func:`count_parameters`, equal to the real module's count)
-------------------------------------------------------------------------
Per layer: self-attention qkv + out ``4d²``; cross-attention q + kv + out ``4d²``; SwiGLU ``3·d·f``: these
"matrices" are what TP shards. Replicated across TP: the per-layer adaLN table ``6d``, the cross-attention
RMSNorm weight ``d`` (+ QK-norm weights if enabled). Outside the layers: patchify conv, the three positional
tables, the timestep MLP, the shared adaLN linear ``d·6d``, the final modulation and the head. For the
``30b`` preset that is 29.3B, of which 29.0B in layer matrices (paper: "30B").

FLOPs (:func:`forward_flops`) — one multiply-add = 2 FLOPs
---------------------------------------------------------
Forward, per sample, per layer:

- video-token projections ``2·N·(4d² + 2d² + 3·d·f)`` (self qkv+out, cross q+out, SwiGLU);
- text key/value projection of the cross-attention ``2·Lt·2d²``;
- bidirectional self-attention scores and values ``4·N²·d`` (i.e. ``4·N·d`` per token; no causal halving);
- cross-attention scores and values ``4·N·Lt·d``.

Plus patchify and head ``2·N·d·(C_in + C_out)·prod(patch)``. Norms, adaLN, SiLU and residuals are
memory-bound and folded into the efficiency factor below. Training ("model FLOPs", used for MFU) is
``3×`` forward (backward = 2× forward, the usual convention; FlashAttention's backward re-computes the
score matrix, which we also fold into the efficiency). Activation checkpointing re-runs the forward of each
checkpointed layer once more: "hardware FLOPs" = model FLOPs + ``r ×`` one layer's forward.

At 73K tokens attention dominates: ``4·N·d ≈ 1.8 GFLOP`` per token per layer against ``≈1.06 GFLOP`` for the
projections, so total training FLOPs are ≈ 2.4 × the familiar ``6·params·N`` (which only counts the
matrices). For a 256-token image with 640 text tokens it is ≈ 1.2 (the text K/V projection and the
cross-attention are then a quarter of the forward FLOPs); with no text it would drop below 1, since the
cross-attention K/V weights never touch the video tokens.

Compute time
------------
``t_compute = hardware FLOPs per GPU / (peak · efficiency)``: TP splits every matrix and the heads, CP splits
the queries, so each GPU does ``1/(tp·cp)`` of a micro-batch's FLOPs. ``efficiency = 0.6`` [choice] is the
achievable fraction of dense bf16 peak for large GEMMs and FlashAttention on H100 (well-tuned GEMMs reach
70–80%, FlashAttention-2/3 forward 50–75%, backward less), also covering the memory-bound ops; the CLI's
``--efficiency`` overrides it.

Memory per GPU (:class:`PlanEstimate.memory_breakdown_gb`; 1 GB = 1e9 bytes)
----------------------------------------------------------------------------
Model state, sharded by FSDP over the ``s`` ranks that hold the same TP shard: ``s = dp·cp`` by default
(CP ranks hold identical weights, so FSDP shards over them too [choice]; pass ``dp_shard`` for HSDP with
``s`` ranks per shard group and ``dp·cp/s`` replicas). With ``P_tp`` = layer matrices/tp + everything else
(replicated across TP):

- ``params``: a bf16 copy, ``2·P_tp/s``;
- ``grads``: fp32 (accumulated over micro-batches, reduce-scattered in fp32 for stability [choice]),
  ``4·P_tp/s``;
- ``optimizer``: AdamW fp32 master weights + 2 moments, ``12·P_tp/s`` (the optimizer is not stated by the
  paper; AdamW is our choice) — 18 bytes/parameter in all;
- ``fsdp_buffers``: unsharded working copies: two layers of bf16 weights (current + prefetched next) and
  one layer of unsharded fp32 gradients before its reduce-scatter, ``(2·2 + 4)·layer_params/tp``, plus the
  non-layer parameters and their gradients (``6 bytes`` each, held for the whole step).

Activations, saved for backward, in bf16, per token of the local sequence shard ``n = m·N/cp``, per
un-checkpointed layer (:func:`activation_bytes_per_token`; what autograd keeps for our ``Block``):

- self-attention sublayer ``16d``: RMSNorm input, norm output (for the adaLN scale gradient), modulated qkv
  input, q/k/v (6d), attention output (= out-projection input), out-projection output (for the gate);
- cross-attention sublayer ``8d``: RMSNorm input, q-projection input, q, attention output;
- FFN sublayer ``8d + 8f``: RMSNorm input, norm output, modulated input, w2 output (for the gate), and
  the ``f``-wide w1 output, w3 output, SiLU output and product (w2 input);

so ``32d + 8f`` bytes (Megatron-style counting, e.g. Korthikanti et al. 2022), all divided by ``tp``
(Megatron TP shards the ``f``-wide and per-head tensors, SP shards the ``d``-wide ones along the sequence
[paper: "FSDP + TP + SP + CP"]), plus the fp32 log-sum-exp of both attentions ``2·4·h/tp``, plus under CP
the K and V gathered from the other ``cp − 1`` ranks (kept for the attention backward) ``4d·(cp−1)/tp``,
plus per sample the cross-attention's text K/V ``4d·Lt/tp``. No ``N²`` term: FlashAttention keeps no score
matrix [choice: FlashAttention/cuDNN SDPA].

- A checkpointed layer keeps only its input, the SP-sharded residual stream: ``2d/tp`` bytes per local
  token [choice: full-block checkpointing, as ``TransformerConfig.gradient_checkpointing`` does].
- ``working``: while back-propagating, one recomputed layer's full activations (if any layer is
  checkpointed), two residual-stream gradients ``2·2d/tp`` per local token, and under CP the
  full-sequence dK, dV of the local heads before their reduce-scatter ``4d·m·N/tp``.
- ``overhead``: 6 GB [choice] for the CUDA context, NCCL buffers, cuBLAS/attention workspaces and allocator
  fragmentation.

Checkpointing is enumerated as ``off`` (``r = 0``), ``full`` (``r = Lyr``) and ``partial`` [choice, an
extension of the paper's "activation checkpointing"]: the fewest checkpointed layers that fit, which turns
memory headroom into less recompute (Megatron's ``--recompute-num-layers`` does the same).

Communication per micro-batch (bandwidth-only ring model; the tensors are ≥ tens of MB, latency ignored)
------------------------------------------------------------------------------------------------------
A ring all-gather or reduce-scatter of a tensor whose full size is ``S`` over ``k`` ranks moves
``(k−1)/k · S`` bytes through each GPU's link: ``t = (k−1)/k · S / bw``. ``bw`` is the per-GPU, per-direction
link bandwidth × ``link efficiency 0.8`` [choice; NCCL bus bandwidth on NVSwitch and RoCE is typically 75–90%
of the link]. Ranks are laid out TP innermost, then CP, then DP, ``gpus_per_node`` per node, so a group of
``k`` ranks at stride ``t`` is intra-node (NVLink) iff ``t·k ≤ gpus_per_node``, else inter-node (RoCE).

- TP/SP [paper: Megatron]: each of the 3 sublayers (self-attention, cross-attention, FFN) does an all-gather
  of its input and a reduce-scatter of its output in forward, the same two in backward, and two more when
  recomputed: ``(12·Lyr + 6·r)`` collectives of ``S = n·d·2`` bytes over ``tp`` ranks, always NVLink (TP ≤ one
  node). Not overlapped with compute [choice, conservative].
- CP [paper]: self-attention all-gathers K and V (Q stays local) in forward and re-gathers them when
  recomputed; backward reduce-scatters dK, dV; cross-attention is not context-parallel (text is short)
  [paper]. ``(2·Lyr + r)`` collectives of ``S = 4·m·N·d/tp`` bytes over ``cp`` ranks; NVLink iff
  ``tp·cp ≤ gpus_per_node``. Not overlapped [choice].
- FSDP: every micro-batch all-gathers the bf16 weights in forward and again in backward and reduce-scatters
  the fp32 gradients (FSDP2's default with ``reshard_after_forward``): ``S = 2·P_tp + 2·P_tp + 4·P_tp``
  over the ``s`` shard ranks (stride ``tp``). Prefetching hides it behind compute except for the first
  gather and last reduce-scatter: exposed = ``max((1 − 0.8)·t_fsdp, t_fsdp − 0.8·t_compute)`` [choice:
  overlap factor 0.8]. With HSDP, one fp32 all-reduce of the sharded gradients across replicas per step,
  ``2·(R−1)/R · 4·P_tp/s`` bytes, inter-node (unless the job fits one node), exposed.
- Optimizer step: memory-bound AdamW, ~30 bytes of HBM traffic per sharded parameter (read fp32 param,
  grad, m, v; write param, m, v and the bf16 copy) / HBM bandwidth.

Step time and MFU
-----------------
``step = micro_batches · (t_compute + t_tp + t_cp + exposed t_fsdp) + t_hsdp + t_optimizer`` with
``micro_batches = B / (dp·m)`` (gradient accumulation when above 1). ``MFU = model FLOPs per step /
(step · G · peak)`` (recompute not counted, as in the PaLM definition), so with full checkpointing MFU ≤
0.6·3/4 = 45%.

Feasibility (:attr:`PlanEstimate.reason` lists every failure)
------------------------------------------------------------
``tp`` must divide the heads, ``d`` and ``f`` and fit in one node (≤ ``gpus_per_node``, 8 on H100 [hw]);
``tp·cp`` must divide ``G`` and ``N`` (SP and CP shard the sequence); CP must leave at least 1024 tokens per
rank [choice: smaller shards make the K/V gather dominate, so CP is not "sensible"]; ``B`` must be divisible
by ``dp·m`` (at least one whole micro-batch per data-parallel replica); ``dp_shard`` must divide ``dp·cp``;
the memory above must fit the GPU.

Calibration against the paper's recipe (768 px stage: 30B, global batch 1536, TP4/CP2 [paper]): on
3072 H100s with these constants TP1/CP1 fails on batch arithmetic (dp = 3072 > 1536 samples) and on memory
(82 GB), and TP4/CP2 with 29 of 48 layers checkpointed ranks first, with TP2/CP2 and TP2/CP1 (partial
checkpointing) within 0.5%. The constants were set from hardware numbers and common practice, not fitted
to that answer, and the near-tie is real: at full checkpointing every layout does the same FLOPs, so the
ranking is decided by a few percent of communication and recompute. Over a grid of efficiency 0.5–0.7,
overhead 4–8 GB, link efficiency 0.7–0.9 and FSDP overlap 0.6–0.9, a TP4/CP≤2 layout stays in the top 3 in
56 of 81 settings; it drops to 4th–6th mainly when FSDP overlap is low (TP2/CP1 then wins).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from moviegen.errors import MovieGenError
from moviegen.models.transformer import TIMESTEP_FREQ_DIM, TransformerConfig, latent_shape, num_tokens

GB = 1e9

# ---- constants (see the module docstring) ----------------------------------------------------------
EFFICIENCY = 0.6  # achievable fraction of dense bf16 peak for GEMMs + attention [choice]
LINK_EFFICIENCY = 0.8  # achievable fraction of link bandwidth for NCCL collectives [choice]
FSDP_OVERLAP = 0.8  # fraction of FSDP communication hidden behind compute [choice]
OVERHEAD_GB = 6.0  # CUDA context, NCCL buffers, workspaces, fragmentation [choice]
TEXT_TOKENS = 256 + 256 + 128  # MetaCLIP (256, paper) + UL2 (256, choice) + ByT5 (128, choice)
MIN_CP_TOKENS = 1024  # fewest tokens per CP rank worth sharding [choice]
ACT_BYTES_PER_DIM = 32  # saved bf16 activation bytes per token per layer, per unit of d
ACT_BYTES_PER_FFN = 8  # ... per unit of the FFN width f
PARAM_BYTES = 2  # bf16 parameter copy
GRAD_BYTES = 4  # fp32 gradients (and fp32 reduce-scatter)
OPTIMIZER_BYTES = 12  # AdamW: fp32 master + exp_avg + exp_avg_sq
OPTIMIZER_TRAFFIC_BYTES = 30  # HBM bytes moved per sharded parameter by one AdamW step
SUBLAYERS = 3  # self-attention, cross-attention, FFN: each has its own TP/SP collectives
TP_DEGREES = (1, 2, 4, 8)
MAX_CP = 64


# ---- hardware ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPUSpec:
    """One accelerator: peak dense bf16 FLOP/s, memory, and per-GPU, per-direction link bandwidths.

    ``efficiency`` is the default achievable fraction of ``peak_flops`` (``plan(efficiency=...)`` overrides).
    """

    name: str
    peak_flops: float
    memory_gb: float
    intra_node_gbps: float  # GB/s per GPU per direction (NVLink/NVSwitch)
    inter_node_gbps: float  # GB/s per GPU per direction (one NIC per GPU)
    gpus_per_node: int
    hbm_gbps: float
    efficiency: float = EFFICIENCY

    def __post_init__(self) -> None:
        positive = ("peak_flops", "memory_gb", "intra_node_gbps", "inter_node_gbps", "hbm_gbps", "efficiency")
        for key in positive:
            if not getattr(self, key) > 0:
                raise MovieGenError(f"GPUSpec {self.name}: {key} must be > 0, got {getattr(self, key)!r}")
        if self.gpus_per_node < 1:
            raise MovieGenError(f"GPUSpec {self.name}: gpus_per_node must be >= 1")


GPUS: dict[str, GPUSpec] = {
    # H100 SXM [hw]: 989 TFLOP/s dense bf16, 80 GB HBM3 at 3.35 TB/s, NVLink 4 900 GB/s bidirectional, 8 per
    # NVSwitch node; 400 Gbps RoCE per GPU between nodes [paper: 400 Gbps RoCE, 8 GPUs/node].
    "h100-80gb": GPUSpec("h100-80gb", 989e12, 80.0, 450.0, 50.0, 8, 3350.0),
    # A100 SXM 80GB [hw]: 312 TFLOP/s bf16, 2.0 TB/s, NVLink 3 600 GB/s bidirectional, 200 Gbps HDR per GPU.
    "a100-80gb": GPUSpec("a100-80gb", 312e12, 80.0, 300.0, 25.0, 8, 2039.0),
    # H200 SXM [hw]: H100 compute and NVLink, 141 GB HBM3e at 4.8 TB/s; 400 Gbps per GPU assumed.
    "h200": GPUSpec("h200", 989e12, 141.0, 450.0, 50.0, 8, 4800.0),
}


def cpu_spec(peak_flops: float, memory_gb: float = 16.0, memory_gbps: float = 20.0) -> GPUSpec:
    """A single CPU "device" for comparing predictions with measured CPU steps.

    ``peak_flops`` should be the *measured* matmul throughput (e.g. a large ``torch.mm``), so the
    efficiency is 1.0; there is one device per node and no interconnect to speak of.
    """
    return GPUSpec("cpu", peak_flops, memory_gb, memory_gbps, memory_gbps, 1, memory_gbps, efficiency=1.0)


def get_gpu(gpu: str | GPUSpec) -> GPUSpec:
    if isinstance(gpu, GPUSpec):
        return gpu
    if gpu not in GPUS:
        raise MovieGenError(f"unknown GPU {gpu!r} (known: {', '.join(sorted(GPUS))})")
    return GPUS[gpu]


def _config(model: str | TransformerConfig) -> TransformerConfig:
    return model if isinstance(model, TransformerConfig) else TransformerConfig.preset(model)


# ---- model arithmetic -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamCount:
    """Parameters of the backbone: ``layer_matrices`` (per layer, TP-sharded) + ``layer_other`` per layer
    (replicated across TP) + ``outside`` (not in a layer)."""

    layer_matrices: int
    layer_other: int
    outside: int
    num_layers: int

    @property
    def per_layer(self) -> int:
        return self.layer_matrices + self.layer_other

    @property
    def total(self) -> int:
        return self.num_layers * self.per_layer + self.outside

    def tp_shard(self, tp: int) -> float:
        """Parameters one TP rank holds (before FSDP sharding)."""
        return self.num_layers * (self.layer_matrices / tp + self.layer_other) + self.outside

    def layer_tp_shard(self, tp: int) -> float:
        return self.layer_matrices / tp + self.layer_other


def count_parameters(config: TransformerConfig) -> ParamCount:
    """Closed-form parameter count of ``MovieGenTransformer(config)`` (tested against the module)."""
    d, f = config.dim, config.ffn_dim
    patch = math.prod(config.patch_size)
    matrices = 4 * d * d + 4 * d * d + 3 * d * f  # self qkv+out, cross q+kv+out, SwiGLU
    other = 6 * d + d + (4 * config.head_dim if config.qk_norm else 0)  # adaLN table, norm2, QK norms
    outside = (
        config.in_channels * patch * d + d  # patchify conv
        + (config.max_latent_frames + config.max_height_patches + config.max_width_patches) * d
        + TIMESTEP_FREQ_DIM * d + d + d * d + d  # timestep MLP
        + config.num_tasks * d
        + d * 6 * d + 6 * d  # shared adaLN linear
        + 2 * d  # final modulation
        + d * config.out_channels * patch + config.out_channels * patch  # head
    )  # fmt: skip
    return ParamCount(matrices, other, outside, config.num_layers)


@dataclass(frozen=True)
class FlopCount:
    """Forward FLOPs of one sample (see the module docstring)."""

    layer_matmul: float  # per layer: projections of video tokens + text K/V
    layer_attention: float  # per layer: self- and cross-attention scores and values
    outside: float  # patchify + head
    num_layers: int

    @property
    def layer(self) -> float:
        return self.layer_matmul + self.layer_attention

    @property
    def forward(self) -> float:
        return self.num_layers * self.layer + self.outside

    @property
    def training(self) -> float:
        """Model FLOPs of forward + backward (3× forward), without recompute."""
        return 3 * self.forward

    def hardware(self, recomputed_layers: int) -> float:
        """Training FLOPs including the re-run forward of ``recomputed_layers`` checkpointed layers."""
        return self.training + recomputed_layers * self.layer


def forward_flops(config: TransformerConfig, tokens: int, text_tokens: int = TEXT_TOKENS) -> FlopCount:
    d, f, n, lt = config.dim, config.ffn_dim, tokens, text_tokens
    patch = math.prod(config.patch_size)
    matmul = 2 * n * (4 * d * d + 2 * d * d + 3 * d * f) + 2 * lt * 2 * d * d
    attention = 4 * n * n * d + 4 * n * lt * d
    outside = 2 * n * d * (config.in_channels + config.out_channels) * patch
    return FlopCount(float(matmul), float(attention), float(outside), config.num_layers)


def activation_bytes_per_token(config: TransformerConfig, tp: int = 1, cp: int = 1) -> float:
    """Saved activation bytes per local token of one un-checkpointed layer (see the module docstring)."""
    d, f, h = config.dim, config.ffn_dim, config.num_heads
    return (ACT_BYTES_PER_DIM * d + ACT_BYTES_PER_FFN * f + 2 * 4 * h + 4 * d * (cp - 1)) / tp


def video_tokens(config: TransformerConfig, frames: int, height: int, width: int) -> int:
    """Backbone tokens of a ``frames``×``height``×``width`` video (TAE 8× down, then patchify)."""
    return num_tokens(config, latent_shape(frames, height, width, latent_channels=config.in_channels))


# ---- one layout -------------------------------------------------------------------------------------
@dataclass
class PlanEstimate:
    """The prediction for one layout. Times are per optimizer step; ``step_time_s`` and ``mfu`` are None
    for infeasible plans. ``reason`` is ``""`` when feasible, else every failed check joined by ``"; "``."""

    tp: int
    cp: int
    dp: int
    fsdp_shard: int
    act_ckpt: str  # "off" | "full" | "partial"
    recomputed_layers: int
    micro_batch: int
    micro_batches: int
    tokens: int
    feasible: bool
    reason: str
    memory_gb: float
    memory_breakdown_gb: dict[str, float]
    compute_s: float
    comm_s: dict[str, float]
    optimizer_s: float
    step_time_s: float | None
    mfu: float | None
    rank: int = 0
    num_layers: int = field(default=0, repr=False)

    @property
    def ckpt_label(self) -> str:
        if self.act_ckpt == "partial":
            return f"{self.recomputed_layers}/{self.num_layers}"
        return self.act_ckpt

    def to_dict(self) -> dict[str, Any]:
        r = lambda x: None if x is None else round(x, 4)  # noqa: E731
        return {
            "rank": self.rank,
            "tp": self.tp,
            "cp": self.cp,
            "dp": self.dp,
            "fsdp_shard": self.fsdp_shard,
            "act_ckpt": self.act_ckpt,
            "recomputed_layers": self.recomputed_layers,
            "micro_batch": self.micro_batch,
            "micro_batches": self.micro_batches,
            "tokens": self.tokens,
            "feasible": self.feasible,
            "reason": self.reason,
            "memory_gb": r(self.memory_gb),
            "memory_breakdown_gb": {k: r(v) for k, v in self.memory_breakdown_gb.items()},
            "step_time_s": r(self.step_time_s),
            "mfu": r(self.mfu),
            "compute_s": r(self.compute_s),
            "comm_s": {k: r(v) for k, v in self.comm_s.items()},
            "optimizer_s": r(self.optimizer_s),
        }


def _ring_time(nbytes: float, ranks: int, gbps: float) -> float:
    """Seconds for a ring all-gather / reduce-scatter of a ``nbytes`` (full-size) tensor over ``ranks``."""
    if ranks <= 1:
        return 0.0
    return (ranks - 1) / ranks * nbytes / (gbps * GB * LINK_EFFICIENCY)


def estimate(
    config: str | TransformerConfig,
    *,
    gpus: int,
    gpu: str | GPUSpec,
    tokens: int,
    global_batch: int,
    tp: int = 1,
    cp: int = 1,
    act_ckpt: bool | int = True,
    dp_shard: int | None = None,
    micro_batch: int = 1,
    text_tokens: int = TEXT_TOKENS,
    efficiency: float | None = None,
    overhead_gb: float = OVERHEAD_GB,
) -> PlanEstimate:
    """Predict memory and step time of one layout.

    ``act_ckpt``: True checkpoints every layer, False none, an int that many layers. ``dp_shard``: the
    FSDP shard-group size (None: all ``dp·cp`` ranks; smaller values are HSDP).
    """
    config = _config(config)
    gpu = get_gpu(gpu)
    for name, value in (("gpus", gpus), ("tokens", tokens), ("global_batch", global_batch), ("tp", tp),
                        ("cp", cp), ("micro_batch", micro_batch)):  # fmt: skip
        if not (isinstance(value, int) and value > 0):
            raise MovieGenError(f"{name} must be a positive integer, got {value!r}")
    if text_tokens < 0:
        raise MovieGenError(f"text_tokens must be >= 0, got {text_tokens}")
    eff = gpu.efficiency if efficiency is None else efficiency
    if not 0 < eff <= 1:
        raise MovieGenError(f"efficiency must be in (0, 1], got {eff}")
    layers = config.num_layers
    r = layers if act_ckpt is True else 0 if act_ckpt is False else int(act_ckpt)
    if not 0 <= r <= layers:
        raise MovieGenError(f"act_ckpt: recomputed layers must be in [0, {layers}], got {r}")
    mode = "full" if r == layers else "off" if r == 0 else "partial"

    reasons: list[str] = []
    d, n_tok = config.dim, tokens
    if tp > gpu.gpus_per_node:
        reasons.append(f"TP={tp} spans nodes ({gpu.gpus_per_node} GPUs per node)")
    for what, size in (("heads", config.num_heads), ("dim", d), ("ffn_dim", config.ffn_dim)):
        if size % tp:
            reasons.append(f"TP={tp} does not divide {what}={size}")
    if tp * cp > gpus or gpus % (tp * cp):
        reasons.append(f"TP·CP={tp * cp} does not divide {gpus} GPUs")
    if n_tok % (tp * cp):
        reasons.append(f"TP·CP={tp * cp} does not divide {n_tok} tokens")
    if cp > 1 and n_tok / cp < MIN_CP_TOKENS:
        reasons.append(f"CP={cp} leaves {n_tok // cp} tokens per rank (< {MIN_CP_TOKENS})")
    dp = max(1, gpus // (tp * cp))
    if global_batch % (dp * micro_batch):
        per = global_batch / dp
        reasons.append(
            f"global batch {global_batch} not divisible by DP={dp}"
            + (f"×micro-batch {micro_batch}" if micro_batch > 1 else "")
            + f" ({per:g} samples per replica)"
        )
    micro_batches = max(1, math.ceil(global_batch / (dp * micro_batch)))
    group = dp * cp
    s = group if dp_shard is None else dp_shard
    if dp_shard is not None and (dp_shard < 1 or group % dp_shard):
        reasons.append(f"dp_shard={dp_shard} does not divide DP·CP={group}")
        s = max(1, min(s, group))
    replicas = max(1, group // s)

    # memory
    pc = count_parameters(config)
    p_tp = pc.tp_shard(tp)
    layer_tp = pc.layer_tp_shard(tp)
    n_loc = micro_batch * n_tok / cp
    act = activation_bytes_per_token(config, tp, cp)
    text_kv = micro_batch * text_tokens * 4 * d / tp
    kept_layer = n_loc * act + text_kv
    mem = {
        "params": PARAM_BYTES * p_tp / s,
        "grads": GRAD_BYTES * p_tp / s,
        "optimizer": OPTIMIZER_BYTES * p_tp / s,
        "fsdp_buffers": (2 * PARAM_BYTES + GRAD_BYTES) * layer_tp + (PARAM_BYTES + GRAD_BYTES) * pc.outside,
        "activations": (layers - r) * kept_layer + r * n_loc * 2 * d / tp,
        "working": (kept_layer if r else 0.0)
        + n_loc * 2 * 2 * d / tp
        + (micro_batch * n_tok * 4 * d / tp if cp > 1 else 0.0),
        "overhead": overhead_gb * GB,
    }
    mem_gb = {k: v / GB for k, v in mem.items()}
    memory_gb = sum(mem_gb.values())
    if memory_gb > gpu.memory_gb:
        reasons.append(f"needs {memory_gb:.1f} GB > {gpu.memory_gb:g} GB per GPU")

    # time per micro-batch
    flops = forward_flops(config, n_tok, text_tokens)
    peak = gpu.peak_flops
    compute = micro_batch * flops.hardware(r) / (tp * cp) / (peak * eff)
    intra, inter = gpu.intra_node_gbps, gpu.inter_node_gbps
    tp_coll = (4 * SUBLAYERS * layers + 2 * SUBLAYERS * r) if tp > 1 else 0
    t_tp = tp_coll * _ring_time(n_loc * d * 2, tp, intra)
    cp_bw = intra if tp * cp <= gpu.gpus_per_node else inter
    t_cp = (2 * layers + r) * _ring_time(micro_batch * n_tok * 4 * d / tp, cp, cp_bw) if cp > 1 else 0.0
    fsdp_bw = intra if tp * s <= gpu.gpus_per_node else inter
    t_fsdp = _ring_time((2 * PARAM_BYTES + GRAD_BYTES) * p_tp, s, fsdp_bw)
    fsdp_exposed = max((1 - FSDP_OVERLAP) * t_fsdp, t_fsdp - FSDP_OVERLAP * compute)
    hsdp_bw = intra if gpus <= gpu.gpus_per_node else inter
    t_hsdp = 2 * _ring_time(GRAD_BYTES * p_tp / s, replicas, hsdp_bw)
    t_opt = OPTIMIZER_TRAFFIC_BYTES * p_tp / s / (gpu.hbm_gbps * GB)
    step = micro_batches * (compute + t_tp + t_cp + fsdp_exposed) + t_hsdp + t_opt
    model_flops = global_batch * flops.training
    feasible = not reasons
    return PlanEstimate(
        tp=tp,
        cp=cp,
        dp=dp,
        fsdp_shard=s,
        act_ckpt=mode,
        recomputed_layers=r,
        micro_batch=micro_batch,
        micro_batches=micro_batches,
        tokens=n_tok,
        feasible=feasible,
        reason="; ".join(reasons),
        memory_gb=memory_gb,
        memory_breakdown_gb=mem_gb,
        compute_s=micro_batches * compute,
        comm_s={
            "tp": micro_batches * t_tp,
            "cp": micro_batches * t_cp,
            "fsdp": micro_batches * t_fsdp,
            "fsdp_exposed": micro_batches * fsdp_exposed,
            "hsdp_allreduce": t_hsdp,
        },
        optimizer_s=t_opt,
        step_time_s=step if feasible else None,
        mfu=model_flops / (step * gpus * peak) if feasible else None,
        num_layers=layers,
    )


# ---- enumeration ------------------------------------------------------------------------------------
def _fewest_checkpointed(layers: int, capacity_gb: float, memory_gb_of) -> int | None:
    """Smallest r in [1, layers) whose memory fits, or None (memory falls as r grows)."""
    return next((r for r in range(1, layers) if memory_gb_of(r) <= capacity_gb), None)


def plan(
    model_config: str | TransformerConfig,
    gpus: int,
    gpu: str | GPUSpec,
    frames: int,
    height: int,
    width: int,
    global_batch: int,
    *,
    text_tokens: int = TEXT_TOKENS,
    efficiency: float | None = None,
    micro_batch: int = 1,
    dp_shard: int | None = None,
    max_cp: int = MAX_CP,
    overhead_gb: float = OVERHEAD_GB,
) -> list[PlanEstimate]:
    """Every (TP, CP, checkpointing) layout for one training stage, best first.

    TP ∈ {1, 2, 4, 8}; CP ∈ {1, 2, 4, …} up to ``max_cp`` and ``gpus / tp``; checkpointing ``off``,
    ``full`` and, when it helps, ``partial`` (the fewest checkpointed layers that fit). Feasible plans come
    first, fastest first; then the infeasible ones, smallest memory first, each with its ``reason``.
    """
    config = _config(model_config)
    gpu = get_gpu(gpu)
    tokens = video_tokens(config, frames, height, width)
    common = dict(gpus=gpus, gpu=gpu, tokens=tokens, global_batch=global_batch, text_tokens=text_tokens,
                  efficiency=efficiency, micro_batch=micro_batch, dp_shard=dp_shard,
                  overhead_gb=overhead_gb)  # fmt: skip
    out: list[PlanEstimate] = []
    for tp in TP_DEGREES:
        cp = 1
        while cp <= max(1, min(max_cp, gpus // tp)):
            off = estimate(config, tp=tp, cp=cp, act_ckpt=False, **common)
            full = estimate(config, tp=tp, cp=cp, act_ckpt=True, **common)
            out += [off, full]
            if not off.feasible:

                def memory_gb_of(r: int, tp: int = tp, cp: int = cp) -> float:
                    return estimate(config, tp=tp, cp=cp, act_ckpt=r, **common).memory_gb

                r = _fewest_checkpointed(config.num_layers, gpu.memory_gb, memory_gb_of)
                if r is not None:
                    out.append(estimate(config, tp=tp, cp=cp, act_ckpt=r, **common))
            cp *= 2
    out.sort(key=lambda p: (0, p.step_time_s, p.memory_gb) if p.feasible else (1, p.memory_gb, 0.0))
    for i, p in enumerate(out, 1):
        p.rank = i
    return out


def predict_step_time(
    config: str | TransformerConfig,
    *,
    frames: int,
    height: int,
    width: int,
    batch_size: int,
    gpu: str | GPUSpec,
    gpus: int = 1,
    tp: int = 1,
    cp: int = 1,
    act_ckpt: bool | int | None = None,
    text_tokens: int = TEXT_TOKENS,
    efficiency: float | None = None,
) -> float:
    """Predicted seconds for one optimizer step of ``batch_size`` samples (one micro-batch per replica).

    Meant for checking the model against a measured step, e.g. the ``tiny`` preset on CPU with
    ``gpu=cpu_spec(measured_matmul_flops)``. ``act_ckpt=None`` follows ``config.gradient_checkpointing``.
    Raises MovieGenError when the layout is infeasible.
    """
    config = _config(config)
    ckpt = config.gradient_checkpointing if act_ckpt is None else act_ckpt
    dp = max(1, gpus // (tp * cp))
    est = estimate(
        config, gpus=gpus, gpu=gpu, tokens=video_tokens(config, frames, height, width),
        global_batch=batch_size, tp=tp, cp=cp, act_ckpt=ckpt, micro_batch=max(1, batch_size // dp),
        text_tokens=text_tokens, efficiency=efficiency,
    )  # fmt: skip
    if est.step_time_s is None:
        raise MovieGenError(f"infeasible layout: {est.reason}")
    return est.step_time_s


# ---- CLI --------------------------------------------------------------------------------------------
TABLE_COLUMNS = ("rank", "TP", "CP", "DP", "act-ckpt", "mem/GPU GB", "step s", "MFU %", "feasible / reason")


def _table(plans: list[PlanEstimate], title: str):
    from rich.table import Table

    caption = "act-ckpt: off | full | k/L = k of L layers checkpointed (recomputed in backward)"
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for name in TABLE_COLUMNS:
        table.add_column(name, justify="left" if name in ("act-ckpt", "feasible / reason") else "right")
    for p in plans:
        table.add_row(
            str(p.rank),
            str(p.tp),
            str(p.cp),
            str(p.dp),
            p.ckpt_label,
            f"{p.memory_gb:.1f}",
            "-" if p.step_time_s is None else f"{p.step_time_s:.2f}",
            "-" if p.mfu is None else f"{100 * p.mfu:.1f}",
            "yes" if p.feasible else p.reason,
        )
    return table


def plan_cli(
    model: Annotated[str, typer.Option(help="Transformer preset: tiny, 5b or 30b.")] = "30b",
    gpus: Annotated[int, typer.Option(help="Number of GPUs.")] = 3072,
    gpu: Annotated[str, typer.Option(help=f"GPU type: {', '.join(GPUS)}.")] = "h100-80gb",
    frames: Annotated[int, typer.Option(help="Video frames per sample (1 = image).")] = 256,
    height: Annotated[int, typer.Option(help="Height in pixels (multiple of 16).")] = 768,
    width: Annotated[int, typer.Option(help="Width in pixels (multiple of 16).")] = 768,
    global_batch: Annotated[int, typer.Option(help="Samples per optimizer step.")] = 1536,
    text_tokens: Annotated[int, typer.Option(help="Text tokens per sample (cross-attention).")] = TEXT_TOKENS,
    efficiency: Annotated[
        float | None, typer.Option(help="Achievable fraction of peak FLOP/s (default 0.6).")
    ] = None,
    micro_batch: Annotated[int, typer.Option(help="Samples per micro-batch per replica.")] = 1,
    top: Annotated[int, typer.Option(help="Show the best K plans (0: all).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of plans.")] = False,
) -> None:
    """Rank TP × CP × activation-checkpointing layouts for training the backbone (analytic model)."""
    for name, value in (("--gpus", gpus), ("--frames", frames), ("--height", height), ("--width", width),
                        ("--global-batch", global_batch), ("--micro-batch", micro_batch)):  # fmt: skip
        if value <= 0:
            raise MovieGenError(f"{name} must be positive, got {value}")
    if top < 0 or text_tokens < 0:
        raise MovieGenError("--top and --text-tokens must be >= 0")
    if height % 16 or width % 16:
        raise MovieGenError(f"--height and --width must be multiples of 16, got {height}x{width}")
    if efficiency is not None and not 0 < efficiency <= 1:
        raise MovieGenError(f"--efficiency must be in (0, 1], got {efficiency}")
    config = TransformerConfig.preset(model)
    spec = get_gpu(gpu)
    plans = plan(config, gpus, spec, frames, height, width, global_batch, text_tokens=text_tokens,
                 efficiency=efficiency, micro_batch=micro_batch)  # fmt: skip
    shown = plans[:top] if top else plans
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in shown], indent=2))
        return
    from rich.console import Console

    params = count_parameters(config).total
    tokens = plans[0].tokens
    tflops = forward_flops(config, tokens, text_tokens).training / 1e12
    title = (
        f"{model}: {params / 1e9:.1f}B params, {frames} frames {height}x{width} -> {tokens:,} tokens, "
        f"{tflops:,.0f} TFLOP/sample; batch {global_batch} on {gpus} x {spec.name}"
    )
    console = Console(width=None if sys.stdout.isatty() else 180)
    console.print(_table(shown, title))
    feasible = sum(p.feasible for p in plans)
    typer.echo(f"{feasible} of {len(plans)} layouts feasible; showing {len(shown)}.")


__all__ = [
    "GPUS",
    "FlopCount",
    "GPUSpec",
    "ParamCount",
    "PlanEstimate",
    "TABLE_COLUMNS",
    "activation_bytes_per_token",
    "count_parameters",
    "cpu_spec",
    "estimate",
    "forward_flops",
    "get_gpu",
    "plan",
    "plan_cli",
    "predict_step_time",
    "video_tokens",
]
