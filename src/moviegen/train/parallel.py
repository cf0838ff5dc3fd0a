"""Parallelism for training the Movie Gen Video backbone: FSDP2 + TP + SP + CP (paper §3.1.6).

A separate pass over a plain :class:`~moviegen.models.transformer.MovieGenTransformer`, in the torchtitan
style: the model code knows nothing about parallelism; :func:`parallelize` rewires it in place with DTensor
parallel styles, module hooks and FSDP2. Order (as in torchtitan): TP/SP → CP → activation checkpointing →
``torch.compile`` → FSDP2, then the hooks that split and gather the sequence around the block stack.

Mesh: ``("dp_replicate", "dp_shard", "cp", "tp")`` (:func:`build_mesh`). Data-parallel ranks are
dp_replicate × dp_shard (:func:`data_parallel_rank_and_size`, :func:`data_parallel_mesh`): each loads its own
slice of the global batch; the cp and tp ranks of one data-parallel rank see the same samples.

Tensor parallel + sequence parallel (Megatron style). Inside each block, attention ``q``/``kv``/``qkv`` and
SwiGLU ``w1``/``w3`` are column-parallel, attention ``out`` and ``w2`` row-parallel with a reduce-scatter
onto the sequence dim; the norms, adaLN modulation, gates and residuals run on sequence shards, so the
residual stream between blocks is a ``Shard(1)`` DTensor on the tp mesh (each rank holds 1/tp of the
tokens). Every block parameter is a DTensor on the tp mesh (the per-block adaLN table and the
cross-attention norm weight are replicated), so DTensor all-reduces their partial gradients. Each rank's
attention runs its own ``num_heads / tp`` heads (the pass sets ``Attention.num_heads`` to the local count).

Fused projections: ``qkv`` is one ``Linear(d, 3d)`` whose weight rows are ``[q; k; v]``, and the
cross-attention ``kv`` is ``[k; v]``. A plain ``Shard(0)`` would hand rank 0 all of q and part of k. We
register them as ``_StridedShard(0, split_factor=3)`` (``2`` for kv) DTensors instead: the rows are
first split in 3 (q, k, v) and each third is split over tp, so rank r holds ``[q_r; k_r; v_r]`` — exactly
the rows of its own heads — and ``chunk(3)`` in the unchanged forward yields this rank's q, k and v. The
full tensor (``full_tensor()``, the gathered state dict) keeps the unsharded ``[q; k; v]`` layout. FSDP
shards these two weights on dim 1: a dim-0 FSDP shard on top of the strided one is not a layout DTensor can
describe (gathered weights came out permuted).

Context parallel. The video tokens are split over ``cp`` (then over ``tp`` for SP) by a forward pre-hook
on the first block and gathered back by a forward hook on the last one; the positional embedding (added at
every block input) is split the same way, once per forward. Self-attention keeps its queries local and
all-gathers keys and values over cp right before ``F.scaled_dot_product_attention`` (intercepted by a
``TorchFunctionMode`` around each self-attention's forward; the pass swaps the module's class for a
subclass that enters it); the backward of that all-gather is a reduce-scatter. Cross-attention is untouched
(the text is replicated). Every cp rank computes the same loss after the final gather; the gather's
backward is a reduce-scatter, so the cp ranks' gradients sum to cp × the true gradient, and FSDP, which
shards over dp_shard × cp (cp ranks hold identical weights), averages them back to the right one.

Data parallel. FSDP2 ``fully_shard`` per block and on the root over dp_shard × cp flattened
(:func:`fsdp_mesh`; HSDP over ``(dp_replicate, dp_shard·cp)`` when dp_replicate > 1), with bf16 parameters
and fp32 gradient reduction on CUDA and fp32 throughout on CPU. Gradients are averaged over data-parallel
ranks, so each rank should use the mean loss over its own equal-sized slice of the global batch.
:func:`full_state_dict` / :func:`load_full_state_dict` convert to and from the plain model's state dict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_module, distribute_tensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)
from torch.distributed.tensor.placement_types import _StridedShard
from torch.overrides import TorchFunctionMode

from moviegen.config import Config, require
from moviegen.errors import MovieGenError
from moviegen.models.transformer import Attention, MovieGenTransformer, TransformerConfig

MESH_DIMS = ("dp_replicate", "dp_shard", "cp", "tp")


@dataclass(frozen=True)
class ParallelPlan(Config):
    """Parallel degrees and options. ``dp_shard = -1`` takes whatever the world size leaves over.

    ``mixed_precision``: FSDP2 keeps fp32 master weights and computes in bf16 with fp32 gradient reduction
    on CUDA; on CPU (tests) everything stays fp32 whatever this says.
    """

    dp_replicate: int = 1
    dp_shard: int = 1
    cp: int = 1
    tp: int = 1
    activation_checkpointing: bool = False
    compile: bool = False
    mixed_precision: bool = True

    PRESETS: ClassVar[dict] = {"single": {}, "fsdp": {"dp_shard": -1}}

    def validate(self) -> None:
        for key in ("dp_replicate", "cp", "tp"):
            value = getattr(self, key)
            require(
                isinstance(value, int) and value >= 1, "ParallelPlan", f"{key} must be >= 1, got {value!r}"
            )
        require(
            isinstance(self.dp_shard, int) and (self.dp_shard >= 1 or self.dp_shard == -1),
            "ParallelPlan",
            f"dp_shard must be >= 1 or -1 (fill the rest), got {self.dp_shard!r}",
        )

    @property
    def world_size(self) -> int | None:
        """Number of ranks the plan needs (None while dp_shard is -1)."""
        return None if self.dp_shard == -1 else self.dp_replicate * self.dp_shard * self.cp * self.tp

    def resolve(self, world_size: int) -> ParallelPlan:
        """The plan with ``dp_shard = -1`` filled in for ``world_size`` ranks; checks the product."""
        rest = self.dp_replicate * self.cp * self.tp
        dp_shard = self.dp_shard
        if dp_shard == -1:
            if world_size % rest:
                raise MovieGenError(
                    f"world size {world_size} is not divisible by dp_replicate·cp·tp = {rest} "
                    f"(dp_shard=-1 cannot fill the rest)"
                )
            dp_shard = world_size // rest
        if rest * dp_shard != world_size:
            raise MovieGenError(
                f"parallel plan dp_replicate={self.dp_replicate} × dp_shard={dp_shard} × cp={self.cp} × "
                f"tp={self.tp} = {rest * dp_shard} ranks, but the world size is {world_size}"
            )
        return ParallelPlan.from_dict({**self.to_dict(), "dp_shard": dp_shard})


def mixed_precision_policy(plan: ParallelPlan, device_type: str):
    """FSDP2 policy: bf16 params / fp32 reduce on CUDA when ``plan.mixed_precision``, else fp32."""
    if plan.mixed_precision and device_type == "cuda":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def _flat(mesh: DeviceMesh, names: tuple[str, ...], flat_name: str) -> DeviceMesh:
    """``mesh[names]`` flattened to one dim called ``flat_name`` (idempotent: later calls return the same
    mesh; slicing a flattened dim from the root mesh is deprecated, so we never do that)."""
    return mesh[names]._flatten(flat_name)


def data_parallel_mesh(mesh: DeviceMesh) -> DeviceMesh:
    """The 1-D mesh of data-parallel ranks (dp_replicate × dp_shard), e.g. to average the loss for logging."""
    return _flat(mesh, ("dp_replicate", "dp_shard"), "dp")


def fsdp_mesh(mesh: DeviceMesh) -> DeviceMesh:
    """What FSDP2 shards over: dp_shard × cp flattened (cp ranks hold identical weights), 1-D; 2-D
    ``(dp_replicate, dp_shard·cp)`` for HSDP when dp_replicate > 1."""
    rep, shard, cp = (mesh[name].size() for name in ("dp_replicate", "dp_shard", "cp"))
    if rep == 1:
        return _flat(mesh, ("dp_shard", "cp"), "dp_shard_cp")
    if cp == 1:
        return mesh["dp_replicate", "dp_shard"]
    dp_all = _flat(mesh, ("dp_replicate", "dp_shard", "cp"), "dp_replicate_shard_cp")
    return dp_all._unflatten(0, (rep, shard * cp), ("hsdp_replicate", "hsdp_shard"))


def build_mesh(plan: ParallelPlan, device_type: str) -> DeviceMesh:
    """The 4-D device mesh ``("dp_replicate", "dp_shard", "cp", "tp")`` for ``plan`` over all ranks.

    Initialises the default process group (NCCL on CUDA, gloo on CPU) if needed. Raises
    :class:`MovieGenError` when the plan's product is not the world size.
    """
    world = _world_size()
    plan = plan.resolve(world)
    if not dist.is_initialized():
        if device_type == "cuda" and "LOCAL_RANK" in os.environ:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    mesh = init_device_mesh(
        device_type, (plan.dp_replicate, plan.dp_shard, plan.cp, plan.tp), mesh_dim_names=MESH_DIMS
    )
    return mesh


def data_parallel_rank_and_size(mesh: DeviceMesh) -> tuple[int, int]:
    """(rank, size) among data-parallel ranks (dp_replicate × dp_shard): which slice of the batch to load."""
    rep, shard = mesh["dp_replicate"], mesh["dp_shard"]
    return rep.get_local_rank() * shard.size() + shard.get_local_rank(), rep.size() * shard.size()


def check_parallel_config(config: TransformerConfig, tp: int = 1, cp: int = 1) -> None:
    """Raise :class:`MovieGenError` when the backbone cannot be split ``tp`` ways (cp needs nothing here)."""
    if tp < 1 or cp < 1:
        raise MovieGenError(f"tp and cp must be >= 1, got tp={tp}, cp={cp}")
    if config.num_heads % tp:
        raise MovieGenError(f"tensor parallel degree tp={tp} does not divide num_heads={config.num_heads}")
    if config.ffn_dim % tp:
        raise MovieGenError(f"tensor parallel degree tp={tp} does not divide ffn_dim={config.ffn_dim}")


def check_sequence_length(seq_len: int, cp: int = 1, tp: int = 1) -> None:
    """Raise :class:`MovieGenError` unless ``seq_len`` splits evenly over cp (and cp·tp with SP on)."""
    if seq_len % cp:
        raise MovieGenError(f"sequence of {seq_len} video tokens is not divisible by cp={cp}")
    if seq_len % (cp * tp):
        raise MovieGenError(
            f"sequence of {seq_len} video tokens is not divisible by cp·tp={cp * tp} "
            f"(sequence parallelism shards each cp chunk over tp={tp})"
        )


# --------------------------------------------------------------------------------------------------------
# collectives with autograd


# all_gather_single / reduce_scatter_single replace the *_tensor names in recent torch (same semantics)
_all_gather_single = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
_reduce_scatter_single = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)


class _AllGatherSeq(torch.autograd.Function):
    """All-gather along ``dim`` over ``group`` (rank order); backward reduce-scatters (sums) the gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, group: dist.ProcessGroup) -> torch.Tensor:
        ctx.dim, ctx.group = dim, group
        world = dist.get_world_size(group)
        x = x.contiguous()
        out = x.new_empty((world * x.shape[0], *x.shape[1:]))  # rank-major (gloo wants the flat form)
        _all_gather_single(out, x, group=group)
        return torch.cat(out.chunk(world), dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        world = dist.get_world_size(ctx.group)
        chunks = torch.cat(grad.chunk(world, dim=ctx.dim))  # rank-major again
        out = grad.new_empty((chunks.shape[0] // world, *chunks.shape[1:]))
        _reduce_scatter_single(out, chunks, op=dist.ReduceOp.SUM, group=ctx.group)
        return out, None, None


def all_gather_seq(x: torch.Tensor, group: dist.ProcessGroup, dim: int = 1) -> torch.Tensor:
    """Concatenate every rank's ``x`` along ``dim`` (rank order); the gradient is reduce-scattered back."""
    if dist.get_world_size(group) == 1:
        return x
    return _AllGatherSeq.apply(x, dim % x.ndim, group)


def _local_chunk(x: torch.Tensor, group: dist.ProcessGroup, dim: int = 1) -> torch.Tensor:
    """This rank's contiguous chunk of ``x`` along ``dim`` (backward: zeros elsewhere)."""
    world = dist.get_world_size(group)
    if world == 1:
        return x
    n = x.shape[dim] // world
    return x.narrow(dim, dist.get_rank(group) * n, n)


class KVAllGatherMode(TorchFunctionMode):
    """Context-parallel attention: ``F.scaled_dot_product_attention`` with keys and values all-gathered.

    Under this mode, q, k, v of shape (B, heads, N_local, head_dim) hold this rank's contiguous chunk of the
    sequence; k and v are all-gathered along the token dim over ``group`` (their gradients reduce-scattered
    back), q stays local, so the output is this rank's chunk of full attention. Only the self-attention runs
    under it (cross-attention keys are text, replicated on every rank).
    """

    def __init__(self, group: dist.ProcessGroup):
        super().__init__()
        self.group = group

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is F.scaled_dot_product_attention:
            args = list(args)
            if kwargs.get("attn_mask") is not None or (len(args) > 3 and args[3] is not None):
                raise MovieGenError("context-parallel self-attention does not support an attention mask")
            for i, name in ((1, "key"), (2, "value")):
                if len(args) > i:
                    args[i] = all_gather_seq(args[i], self.group, dim=-2)
                else:
                    kwargs[name] = all_gather_seq(kwargs[name], self.group, dim=-2)
        return func(*args, **kwargs)


class _ContextParallelAttention:
    """Mixin put in front of an attention module's class: its forward runs under :class:`KVAllGatherMode`."""

    cp_group: dist.ProcessGroup

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with KVAllGatherMode(self.cp_group):
            return super().forward(*args, **kwargs)  # type: ignore[misc]


def apply_context_parallel_attention(attn: Attention, group: dist.ProcessGroup) -> None:
    """Make a self-attention module context-parallel over ``group`` (see :class:`KVAllGatherMode`).

    Swaps the instance's class for a subclass whose forward wraps the original one (as FSDP2 does); the
    parameters and state-dict keys are unchanged and ``isinstance(attn, Attention)`` still holds.
    """
    if attn.cross:
        raise MovieGenError("context parallelism applies to self-attention only")
    cls = type(attn)
    if not issubclass(cls, _ContextParallelAttention):
        attn.__class__ = type(f"ContextParallel{cls.__name__}", (_ContextParallelAttention, cls), {})
    attn.cp_group = group


# --------------------------------------------------------------------------------------------------------
# tensor parallel


class _FusedColwiseParallel(ColwiseParallel):
    """Column-parallel for a Linear whose output rows are ``chunks`` stacked projections ([q; k; v]).

    The weight becomes a ``_StridedShard(0, split_factor=chunks)`` DTensor: rank r holds row block r of each
    projection, so ``output.chunk(chunks, -1)`` gives this rank's heads of every projection, while the
    full tensor keeps the original layout.
    """

    def __init__(self, chunks: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.chunks = chunks

    def _partition_linear_fn(self, name, module, device_mesh):
        for pname, param in module.named_parameters():
            placement = _StridedShard(0, split_factor=self.chunks)
            dist_param = nn.Parameter(
                distribute_tensor(param, device_mesh, [placement], src_data_rank=self.src_data_rank),
                requires_grad=param.requires_grad,
            )
            module.register_parameter(pname, dist_param)

    @staticmethod
    def _fused_output_fn(chunks, mod, outputs, device_mesh):
        # keep the strided layout: the local columns are [q_r, k_r, v_r] (a plain Shard(-1) would mix them)
        want = (_StridedShard(outputs.ndim - 1, split_factor=chunks),)
        if outputs.placements != want:
            outputs = outputs.redistribute(placements=want)
        return outputs.to_local()

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        if not isinstance(module, nn.Linear):
            raise MovieGenError(f"fused column-parallel expects an nn.Linear, got {type(module).__name__}")
        return distribute_module(
            module,
            device_mesh,
            self._partition_linear_fn,
            partial(self._prepare_input_fn, self.input_layouts, self.desired_input_layouts),
            partial(self._fused_output_fn, self.chunks),
        )


class _BlockTensorParallel(ParallelStyle):
    """Block inputs for sequence parallelism: the block runs on DTensors of the tp mesh.

    Replicates the block's own adaLN table as a DTensor. Of the inputs ``(x, pos, mod, text, mask,
    has_text)``, x and pos are ``Shard(1)`` DTensors (this rank's sequence shard, made by
    :class:`_SequenceSharding`; x is the previous block's output) and mod, text and has_text become
    ``Replicate()`` DTensors; the boolean mask stays a plain tensor (it only reaches the local attention).
    The output, the residual stream, stays a ``Shard(1)`` DTensor.
    """

    _LAYOUTS = (Shard(1), Shard(1), Replicate(), Replicate(), None, Replicate())

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        table = module.modulation
        module.register_parameter(
            "modulation",
            nn.Parameter(distribute_tensor(table.data, device_mesh, [Replicate()]), table.requires_grad),
        )

        def to_dtensor(arg: Any, layout: Shard | Replicate | None) -> Any:
            if layout is None or not isinstance(arg, torch.Tensor) or isinstance(arg, DTensor):
                return arg  # None (no mask / has_text), the boolean mask, or already a DTensor
            return DTensor.from_local(arg, device_mesh, (layout,), run_check=False)

        def pre_hook(_mod, args):
            layouts = self._LAYOUTS[: len(args)]
            return tuple(to_dtensor(a, p) for a, p in zip(args, layouts, strict=True))

        module.register_forward_pre_hook(pre_hook)
        return module


def apply_tensor_parallel(model: MovieGenTransformer, tp_mesh: DeviceMesh) -> None:
    """Megatron TP + SP on every block (see the module docstring). Outside the blocks nothing changes."""
    tp = tp_mesh.size()
    for block in model.blocks:
        colwise = ColwiseParallel()
        rowwise_seq = RowwiseParallel(output_layouts=Shard(1), use_local_output=False)
        plan: dict[str, ParallelStyle] = {
            "norm1": SequenceParallel(),
            "attn": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
            "attn.qkv": _FusedColwiseParallel(3),
            "attn.out": rowwise_seq,
            "norm2": SequenceParallel(),
            "cross_attn": PrepareModuleInput(
                input_layouts=(Shard(1), Replicate(), None),
                desired_input_layouts=(Replicate(), Replicate(), None),
            ),
            "cross_attn.q": colwise,
            "cross_attn.kv": _FusedColwiseParallel(2),
            "cross_attn.out": rowwise_seq,
            "norm3": SequenceParallel(),
            "ffn": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
            "ffn.w1": colwise,
            "ffn.w3": colwise,
            "ffn.w2": rowwise_seq,
        }
        if model.config.qk_norm:
            # QK-norm weights act on local heads (B, heads/tp, N, head_dim): replicated, sharded on heads.
            for attn in ("attn", "cross_attn"):
                for norm in ("q_norm", "k_norm"):
                    plan[f"{attn}.{norm}"] = SequenceParallel(sequence_dim=1, use_local_output=True)
        parallelize_module(block, tp_mesh, plan)
        parallelize_module(block, tp_mesh, _BlockTensorParallel())
        for attn in (block.attn, block.cross_attn):
            attn.num_heads = attn.num_heads // tp


# --------------------------------------------------------------------------------------------------------
# sequence sharding around the block stack (CP, and SP's split over tp)


class _SequenceSharding:
    """Forward hooks that shard the token sequence over cp then tp before the blocks and gather it after.

    The split happens in a pre-hook of the first block (for the hidden states and the positional
    embedding, whose sharded copy is reused by the later blocks), the gather in a hook of the last block.
    Gradient conventions: over tp every rank holds the same loss, so the split's backward all-gathers and
    the gather's backward keeps the local chunk (DTensor redistribute); over cp the gather's backward
    reduce-scatters and the split's backward zero-pads (see the module docstring).
    """

    def __init__(self, mesh: DeviceMesh):
        self.cp_mesh, self.tp_mesh = mesh["cp"], mesh["tp"]
        self.cp, self.tp = self.cp_mesh.size(), self.tp_mesh.size()
        self.cp_group = self.cp_mesh.get_group()
        self._pos_src: torch.Tensor | None = None
        self._pos_local: torch.Tensor | None = None

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """Full sequence → this rank's chunk: a local tensor, or a ``Shard(1)`` DTensor on tp when tp > 1."""
        x = _local_chunk(x, self.cp_group, dim=1)
        if self.tp > 1:
            x = DTensor.from_local(x, self.tp_mesh, (Replicate(),), run_check=False)
            x = x.redistribute(self.tp_mesh, (Shard(1),))
        return x

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`split`: back to the full sequence as a plain tensor."""
        if isinstance(x, DTensor):
            x = x.redistribute(self.tp_mesh, (Replicate(),)).to_local()
        return all_gather_seq(x, self.cp_group, dim=1)

    def _pos(self, pos: torch.Tensor) -> torch.Tensor:
        if pos is not self._pos_src:
            self._pos_src, self._pos_local = pos, self.split(pos)
        return self._pos_local

    def first_pre_hook(self, _mod, args):
        h, pos, *rest = args
        check_sequence_length(h.shape[1], self.cp, self.tp)
        self._pos_src = None
        return (self.split(h), self._pos(pos), *rest)

    def pre_hook(self, _mod, args):
        h, pos, *rest = args
        return (h, self._pos(pos), *rest)

    def last_hook(self, _mod, _args, output):
        self._pos_src = self._pos_local = None
        return self.gather(output)

    def install(self, blocks: nn.ModuleList) -> None:
        for i, block in enumerate(blocks):
            hook = self.first_pre_hook if i == 0 else self.pre_hook
            block.register_forward_pre_hook(hook, prepend=True)
        blocks[-1].register_forward_hook(self.last_hook)


# --------------------------------------------------------------------------------------------------------
# the pass


def _fsdp_placement(param: nn.Parameter) -> Shard | None:
    """FSDP shards the fused q/k/v weights on their input dim: a dim-0 FSDP shard on top of the strided TP
    shard is not a layout DTensor can describe (the gathered full tensor would come out permuted)."""
    if isinstance(param, DTensor) and any(isinstance(p, _StridedShard) for p in param.placements):
        return Shard(1)
    return None


def parallelize(
    model: MovieGenTransformer, mesh: DeviceMesh, plan: ParallelPlan | None = None
) -> MovieGenTransformer:
    """Apply TP/SP, CP, activation checkpointing, compile and FSDP2 to ``model`` in place; returns it.

    ``mesh`` comes from :func:`build_mesh`; ``plan`` supplies the options (degrees are read off the mesh).
    Every rank must hold the same (full, unsharded) weights beforehand, e.g. same seed or a loaded
    checkpoint. Raises :class:`MovieGenError` when the model cannot be split as asked.
    """
    if not isinstance(model, MovieGenTransformer):
        raise MovieGenError(f"parallelize expects a MovieGenTransformer, got {type(model).__name__}")
    if isinstance(model, FSDPModule):
        raise MovieGenError("this model has already been parallelized")
    if tuple(mesh.mesh_dim_names or ()) != MESH_DIMS:
        raise MovieGenError(f"mesh dims must be {MESH_DIMS}, got {mesh.mesh_dim_names}")
    sizes = dict(zip(MESH_DIMS, mesh.shape, strict=True))
    plan = plan or ParallelPlan(**sizes)
    for key, size in sizes.items():
        wanted = getattr(plan, key)
        if wanted != -1 and wanted != size:
            raise MovieGenError(f"plan says {key}={wanted} but the mesh has {key}={size}")
    tp, cp = sizes["tp"], sizes["cp"]
    check_parallel_config(model.config, tp=tp, cp=cp)

    # 1. tensor + sequence parallel
    if tp > 1:
        apply_tensor_parallel(model, mesh["tp"])
    # 2. context parallel: K/V all-gather in self-attention
    if cp > 1:
        for block in model.blocks:
            apply_context_parallel_attention(block.attn, mesh["cp"].get_group())
    # 3. activation checkpointing (unless the model already checkpoints its blocks itself)
    if plan.activation_checkpointing and not model.config.gradient_checkpointing:
        for i, block in enumerate(model.blocks):
            model.blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)
    # 4. compile each block in place (keeps parameter names)
    if plan.compile:
        for block in model.blocks:
            block.compile()
    # 5. FSDP2 over dp_shard × cp (HSDP with dp_replicate)
    dp_mesh = fsdp_mesh(mesh)
    mp = mixed_precision_policy(plan, mesh.device_type)
    last = len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        fully_shard(
            block,
            mesh=dp_mesh,
            mp_policy=mp,
            reshard_after_forward=i < last,
            shard_placement_fn=_fsdp_placement,
        )
    fully_shard(model, mesh=dp_mesh, mp_policy=mp)
    # Sequence split/gather around the block stack. Installed last: on the outermost per-block modules (so
    # activation-checkpoint recomputation does not re-run them), the split before FSDP's pre-forward and the
    # gather after FSDP's post-forward (FSDP then sees the block's own output, not a view of a gather).
    if tp > 1 or cp > 1:
        _SequenceSharding(mesh).install(model.blocks)
    return model


# --------------------------------------------------------------------------------------------------------
# state dicts


def full_state_dict(model: nn.Module, rank0_only: bool = False) -> dict[str, torch.Tensor]:
    """The unsharded state dict of a parallelized model as plain CPU tensors, keyed like the plain model.

    Collective: every rank must call it. With ``rank0_only`` the other ranks get an empty dict.
    """
    options = StateDictOptions(full_state_dict=True, cpu_offload=rank0_only)
    state = get_model_state_dict(model, options=options)
    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu() for k, v in state.items()}


def load_full_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a full (unsharded) state dict, e.g. from ``MovieGenTransformer.state_dict()``, into a
    parallelized model; every rank passes the same tensors. Collective."""
    options = StateDictOptions(full_state_dict=True, strict=True)
    set_model_state_dict(model, dict(state_dict), options=options)  # it rewrites the dict's values


__all__ = [
    "MESH_DIMS",
    "KVAllGatherMode",
    "ParallelPlan",
    "all_gather_seq",
    "apply_context_parallel_attention",
    "apply_tensor_parallel",
    "build_mesh",
    "check_parallel_config",
    "check_sequence_length",
    "data_parallel_mesh",
    "data_parallel_rank_and_size",
    "fsdp_mesh",
    "full_state_dict",
    "load_full_state_dict",
    "mixed_precision_policy",
    "parallelize",
]
