"""Training checkpoints (sharded, resumable, atomic), pretrained-folder export and model averaging.

Checkpoints
-----------
A checkpoint is a folder ``RUN/checkpoints/step-000123/`` written with ``torch.distributed.checkpoint``
(DCP): every rank writes its own shards, so FSDP/TP-sharded weights and optimizer state never have to be
gathered on one rank. The DCP state dict is

- ``model`` / ``optim``: :func:`~torch.distributed.checkpoint.state_dict.get_state_dict` of the module that
  holds everything trained (transformer + text projector) and its optimizer (sharded DTensors);
- ``train``: a JSON string with the replicated loop state (step, LR schedule, ...);
- ``rank<r>``: per-rank state: torch CPU (and CUDA) generator states, Python's ``random`` state and a JSON
  string for the rest (e.g. the data sampler position of this rank's data-parallel slice).

Atomic write: all ranks save into ``step-000123.tmp/``; after every rank has finished (a barrier), rank 0
writes a ``COMPLETE`` marker (JSON: step, world size, parallel plan, model config, file list with sizes and
optionally SHA-256) and only then renames the folder to ``step-000123/``. A crash at any point leaves either
a ``.tmp`` folder (ignored and later deleted) or a complete checkpoint. :func:`latest` finds the newest
complete one; :func:`verify_checkpoint` refuses, with a :class:`~moviegen.errors.MovieGenError`, one whose
marker is missing or corrupt, whose files are missing or have the wrong size (or hash), or that was written
by a different world size or parallel plan (the per-rank RNG and sampler state would not map onto other
ranks; resharding on resume is not supported [choice]).

``async_save=True`` stages the state to CPU memory and writes it in a background thread
(``dcp.async_save`` on a separate gloo group); the marker and rename happen when the next checkpoint is
requested or at :meth:`Checkpointer.wait`, so a checkpoint is never reported complete before its files are.

Export and averaging
--------------------
:func:`export_pretrained` gathers the full weights (collective) and writes, on rank 0, a folder that
``from_pretrained`` reads: ``transformer/`` always, ``text/`` (a TextConditioner folder) when the text
encoders are known, and ``tae/`` + ``model_index.json`` (a complete MovieGenPipeline) when a TAE folder
is given as well. :func:`average_checkpoints` is the paper's SFT "model soup": the uniform average of
several such folders.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.tensor import DTensor, Replicate
from torch.distributed.tensor.placement_types import _StridedShard

from moviegen import __version__
from moviegen.config import Config
from moviegen.errors import MovieGenError
from moviegen.files import check_output_dir, read_json, write_atomic
from moviegen.pretrained import CONFIG_NAME, WEIGHTS_NAME, atomic_dir, load_safetensors

MARKER = "COMPLETE"
CHECKPOINTS = "checkpoints"
FORMAT = "moviegen-train-checkpoint"
FORMAT_VERSION = 1
METADATA_FILE = ".metadata"  # written by DCP's FileSystemWriter
INDEX_NAME = "model_index.json"


# --------------------------------------------------------------------------------------------------------
# small helpers


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint: {value!r}")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def checkpoints_root(run_dir: str | Path) -> Path:
    """``RUN/checkpoints``; a path that already is a checkpoints folder is returned unchanged."""
    run_dir = Path(run_dir)
    return run_dir if run_dir.name == CHECKPOINTS else run_dir / CHECKPOINTS


def _parse_step(name: str) -> int | None:
    if not name.startswith("step-") or name.endswith(".tmp"):
        return None
    digits = name[len("step-") :]
    return int(digits) if digits.isdigit() else None


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Every finished (renamed, not ``.tmp``) checkpoint folder of a run, oldest first, complete or not."""
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = [(step, p) for p in root.iterdir() if p.is_dir() and (step := _parse_step(p.name)) is not None]
    return sorted(found)


def latest(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run that has its ``COMPLETE`` marker, or None (``.tmp`` folders are never
    considered). Use :func:`verify_checkpoint` before loading it (the trainer does)."""
    for _, path in reversed(list_checkpoints(run_dir)):
        if (path / MARKER).is_file():
            return path
    return None


def read_marker(path: str | Path) -> dict[str, Any]:
    """The ``COMPLETE`` marker of a checkpoint folder; MovieGenError when it is missing or unreadable."""
    path = Path(path)
    if not path.is_dir():
        raise MovieGenError(f"checkpoint folder not found: {path}")
    if path.name.endswith(".tmp"):
        raise MovieGenError(f"checkpoint {path} is an unfinished save (.tmp folder); it cannot be loaded")
    marker = path / MARKER
    if not marker.is_file():
        raise MovieGenError(
            f"checkpoint {path} is incomplete: its {MARKER} marker is missing (the save was interrupted or "
            f"the folder was modified); delete it or resume from an earlier checkpoint"
        )
    try:
        data = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MovieGenError(f"checkpoint {path}: the {MARKER} marker is corrupt ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise MovieGenError(f"checkpoint {path}: {MARKER} is not a {FORMAT} marker")
    return data


def verify_checkpoint(
    path: str | Path,
    world_size: int | None = None,
    plan: dict[str, Any] | None = None,
    check_hashes: bool = True,
) -> dict[str, Any]:
    """Check a checkpoint folder before loading it; return its marker.

    Refuses (MovieGenError, naming the problem) a missing or corrupt marker, a listed file that is missing,
    has the wrong size or (when recorded and ``check_hashes``) the wrong SHA-256, a missing DCP metadata
    file, and a different world size or parallel plan than the given ones.
    """
    path = Path(path)
    marker = read_marker(path)
    files: dict[str, dict[str, Any]] = marker["files"]
    if METADATA_FILE not in files:
        raise MovieGenError(f"checkpoint {path}: no DCP {METADATA_FILE} file is listed in {MARKER}")
    for name, info in sorted(files.items()):
        file = path / name
        if not file.is_file():
            raise MovieGenError(f"checkpoint {path} is corrupt: file {name} is missing")
        size = file.stat().st_size
        if size != info.get("size"):
            raise MovieGenError(
                f"checkpoint {path} is corrupt: file {name} has {size} bytes, expected {info.get('size')} "
                f"(truncated or overwritten)"
            )
        if check_hashes and info.get("sha256") and _sha256(file) != info["sha256"]:
            raise MovieGenError(f"checkpoint {path} is corrupt: file {name} fails its SHA-256 check")
    if world_size is not None and marker.get("world_size") != world_size:
        raise MovieGenError(
            f"checkpoint {path} was written by {marker.get('world_size')} ranks but this run has "
            f"{world_size}; "
            f"resume with the same number of ranks (or start a new run with init_from={str(path)!r})"
        )
    if plan is not None and marker.get("plan") != plan:
        raise MovieGenError(
            f"checkpoint {path} was written with parallel plan {marker.get('plan')} but this run uses "
            f"{plan}; "
            f"resume with the same plan (or start a new run with init_from={str(path)!r})"
        )
    return marker


# --------------------------------------------------------------------------------------------------------
# RNG state of this process


def rng_state() -> dict[str, Any]:
    """This process's generator states: torch CPU, CUDA (current device) and Python's ``random``."""
    state: dict[str, Any] = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state()
    state["python"] = json.dumps(random.getstate())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch_cuda"])
    if "python" in state:
        version, internal, gauss = json.loads(state["python"])
        random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------------------------------------
# strided (fused q/k/v) tensor-parallel shards


def _is_strided(value: Any) -> bool:
    return isinstance(value, DTensor) and any(isinstance(p, _StridedShard) for p in value.placements)


def _unstride(tree: Any) -> list[tuple[dict, Any, DTensor]]:
    """Replace every DTensor with a ``_StridedShard`` placement in a nested state dict by a copy that is
    replicated on that mesh dim instead; returns ``(parent, key, original)`` for :func:`_restride`.

    DCP describes a shard by offsets and sizes and cannot express the strided layout of the fused q/k/v
    weights (see :mod:`moviegen.train.parallel`): its planner reports overlapping chunks. The replicated
    copy is an ordinary layout (DCP writes it once per tp group) in the canonical ``[q; k; v]`` row order.
    """
    swaps: list[tuple[dict, Any, DTensor]] = []

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if _is_strided(value):
                placements = [Replicate() if isinstance(p, _StridedShard) else p for p in value.placements]
                node[key] = value.detach().redistribute(value.device_mesh, placements)
                swaps.append((node, key, value))
            else:
                walk(value)

    walk(tree)
    return swaps


def _restride(swaps: list[tuple[dict, Any, DTensor]]) -> None:
    """Copy loaded replicated values back into the original strided tensors and put those back."""
    with torch.no_grad():
        for node, key, original in swaps:
            loaded = node[key].redistribute(original.device_mesh, original.placements)
            original.copy_(loaded)
            node[key] = original


# --------------------------------------------------------------------------------------------------------
# the checkpointer


class Checkpointer:
    """Saves and loads the sharded training state of one run (see the module docstring).

    ``module`` holds every trained parameter (e.g. a container of the parallelized transformer and the
    text projector); ``optimizer`` optimizes exactly those. ``plan`` (a JSON-able dict) and the world size
    are recorded and must match on load. ``meta`` is stored in the marker (e.g. the model config).
    """

    def __init__(
        self,
        run_dir: str | Path,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        plan: dict[str, Any] | None = None,
        keep: int = 3,
        async_save: bool = False,
        checksums: bool = False,
        meta: dict[str, Any] | None = None,
    ):
        self.root = checkpoints_root(run_dir)
        self.module, self.optimizer = module, optimizer
        self.plan = dict(plan or {})
        self.keep = keep
        self.async_save = async_save
        self.checksums = checksums
        self.meta = dict(meta or {})
        self.rank, self.world_size = _rank(), _world()
        self._pending: tuple[Any, int, Path, Path] | None = None
        self._async_group = None
        if async_save and dist.is_available() and dist.is_initialized():
            self._async_group = dist.new_group(backend="gloo")  # DCP's collectives off the training group

    # -- state dicts

    def _state_dict(self, train_state: dict[str, Any], rank_state: dict[str, Any]) -> dict[str, Any]:
        model_sd, optim_sd = get_state_dict(self.module, self.optimizer)
        rank_entry = {**rng_state(), "state": _dumps(rank_state)}
        return {
            "model": model_sd,
            "optim": optim_sd,
            "train": _dumps(train_state),
            f"rank{self.rank}": rank_entry,
        }

    def _dcp_state(self, train_state: dict[str, Any], rank_state: dict[str, Any]):
        state = self._state_dict(train_state, rank_state)
        swaps = _unstride(state["model"]) + _unstride(state["optim"])
        return state, swaps

    # -- saving

    def save(self, step: int, train_state: dict[str, Any], rank_state: dict[str, Any]) -> Path:
        """Write the checkpoint of ``step`` (collective). Returns the final folder (written once complete)."""
        self.wait()
        final = self.root / step_name(step)
        tmp = final.with_name(final.name + ".tmp")
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
        _barrier()
        state, _ = self._dcp_state(copy.deepcopy(train_state), copy.deepcopy(rank_state))
        if self.async_save:
            future = dcp.async_save(state, checkpoint_id=str(tmp), process_group=self._async_group)
            future = getattr(future, "upload_completion", future)
            self._pending = (future, step, tmp, final)
        else:
            dcp.save(state, checkpoint_id=str(tmp))
            self._finalize(step, tmp, final)
        return final

    def wait(self) -> None:
        """Finish a pending asynchronous save (collective: every rank calls it at the same point)."""
        if self._pending is None:
            return
        future, step, tmp, final = self._pending
        self._pending = None
        future.result()
        self._finalize(step, tmp, final)

    def _finalize(self, step: int, tmp: Path, final: Path) -> None:
        _barrier()  # every rank's shards are on disk
        if self.rank == 0:
            files = {}
            for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
                info: dict[str, Any] = {"size": file.stat().st_size}
                if self.checksums:
                    info["sha256"] = _sha256(file)
                files[file.relative_to(tmp).as_posix()] = info
            if METADATA_FILE not in files:
                raise MovieGenError(f"DCP wrote no {METADATA_FILE} in {tmp}")
            marker = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "moviegen_version": __version__,
                "step": step,
                "world_size": self.world_size,
                "plan": self.plan,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "files": files,
                **self.meta,
            }
            write_atomic(tmp / MARKER, json.dumps(marker, indent=1, default=_json_default) + "\n")
            if final.exists():  # a stale folder of the same step (e.g. re-running after a resume)
                shutil.rmtree(final)
            tmp.rename(final)
            _fsync_dir(self.root)
            self._prune(keep_step=step)
        _barrier()

    def _prune(self, keep_step: int) -> None:
        for path in self.root.glob("step-*.tmp"):
            if path.name != step_name(keep_step) + ".tmp":
                shutil.rmtree(path, ignore_errors=True)
        if self.keep <= 0:
            return
        complete = [(s, p) for s, p in list_checkpoints(self.root) if (p / MARKER).is_file()]
        for _, path in complete[: -self.keep]:
            shutil.rmtree(path, ignore_errors=True)

    # -- loading

    def load(self, path: str | Path) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """Verify and load a checkpoint into the module, optimizer and RNGs (collective).

        Returns ``(step, train_state, rank_state)`` as given to :meth:`save`.
        """
        self.wait()
        path = Path(path)
        marker = verify_checkpoint(path, self.world_size, self.plan)
        state, swaps = self._dcp_state({}, {})
        try:
            dcp.load(state, checkpoint_id=str(path))
        except Exception as e:  # DCP raises CheckpointException / RuntimeError / KeyError on bad data
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MovieGenError(f"cannot load checkpoint {path}: {first}") from e
        _restride(swaps)
        set_state_dict(
            self.module, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
        )
        rank_entry = state[f"rank{self.rank}"]
        set_rng_state(rank_entry)
        return int(marker["step"]), json.loads(state["train"]), json.loads(rank_entry["state"])

    def close(self, wait: bool = True) -> None:
        if wait:
            self.wait()
        self._pending = None
        if self._async_group is not None:
            dist.destroy_process_group(self._async_group)
            self._async_group = None


def load_checkpoint_weights(path: str | Path, prefix: str = "model") -> dict[str, torch.Tensor]:
    """The full (unsharded) tensors under ``prefix`` of a verified checkpoint, on CPU, keyed without the
    prefix (e.g. to start a new run from another run's checkpoint). Collective when a process group is up.
    """
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    path = Path(path)
    verify_checkpoint(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = _load_state_dict_from_keys({prefix}, checkpoint_id=str(path))
    flat: dict[str, torch.Tensor] = {}

    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(value, torch.Tensor):
            flat[name] = value.detach().cpu()

    walk(loaded.get(prefix, {}), "")
    if not flat:
        raise MovieGenError(f"checkpoint {path} holds no '{prefix}' weights")
    return flat


# --------------------------------------------------------------------------------------------------------
# export to from_pretrained folders


def gather_full_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict of a (possibly FSDP/TP-sharded) module as plain CPU tensors on rank 0 (other
    ranks get ``{}``). Collective when a process group is up."""
    if not (dist.is_available() and dist.is_initialized()):
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(module, options=options)
    out = {}
    for k, v in state.items():
        full = v.full_tensor() if hasattr(v, "full_tensor") else v
        out[k] = full.detach().cpu()
    return out if _rank() == 0 else {}


def _save_folder(folder: Path, config: Config, state: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(config.to_json() + "\n")
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})


def text_conditioner_config(
    text_dir: str | Path | None, dims: tuple[int, ...], model_dim: int
) -> tuple[Any | None, Path | None]:
    """The TextConditionerConfig that goes with a projector of input widths ``dims``.

    From ``text_dir`` (a TextConditioner folder, or a pipeline folder with ``text/``) when given; else the
    packaged MiniLM default when ``dims == (384,)``; else ``(None, None)`` (unknown encoders).
    """
    from moviegen.models.text import TextConditionerConfig

    if text_dir:
        text_dir = Path(text_dir)
        if (text_dir / INDEX_NAME).is_file():
            text_dir = text_dir / "text"
        config = TextConditionerConfig.from_json(text_dir / CONFIG_NAME)
        if tuple(config.dims) != tuple(dims):
            raise MovieGenError(
                f"text encoders in {text_dir} have widths {list(config.dims)} but the trained projector "
                f"expects {list(dims)}"
            )
        return TextConditionerConfig.from_dict({**config.to_dict(), "model_dim": model_dim}), text_dir
    if tuple(dims) == (384,):
        return TextConditionerConfig(
            kinds=("minilm",), dims=(384,), max_lengths=(256,), model_dim=model_dim
        ), None
    return None, None


def export_pretrained(
    model: nn.Module,
    text_projector: nn.Module | None,
    out: str | Path,
    *,
    tae_dir: str | Path | None = None,
    text_dir: str | Path | None = None,
) -> Path | None:
    """Write the trained weights as ``from_pretrained`` folders under ``out`` (collective; rank 0 writes).

    - ``out/transformer/``: a :class:`~moviegen.models.transformer.MovieGenTransformer` folder (always);
    - ``out/text/``: a :class:`~moviegen.models.text.TextConditioner` folder: the projector weights and the
      encoder config (and encoder copies) from ``text_dir``, or the packaged MiniLM for 384-wide encodings;
      with unknown encoders the projector goes to ``out/text_projector/`` instead;
    - with ``tae_dir`` (a TAE folder, or a pipeline folder with ``tae/``) and known text encoders, also
      ``out/tae/`` and ``model_index.json``: a complete :class:`~moviegen.pipeline.MovieGenPipeline`.

    Returns ``out`` on rank 0 and None elsewhere. The folder is replaced atomically.
    """
    from moviegen.models.transformer import TransformerConfig

    state = gather_full_state(model)
    proj = gather_full_state(text_projector) if text_projector is not None else None
    out = Path(out)
    if _rank() != 0:
        _barrier()
        return None
    try:
        config = model.config
        if not isinstance(config, TransformerConfig):
            raise MovieGenError(f"export_pretrained: {type(model).__name__} has no TransformerConfig")
        with atomic_dir(out) as tmp:
            _save_folder(tmp / "transformer", config, state)
            text_ok = False
            if proj is not None:
                n = len({k.split(".")[1] for k in proj if k.startswith("projections.")})
                dims = tuple(int(proj[f"projections.{i}.0.weight"].shape[1]) for i in range(n))
                text_config, source = text_conditioner_config(text_dir, dims, config.dim)
                if text_config is None:
                    folder = tmp / "text_projector"
                    folder.mkdir()
                    save_file({k: v.contiguous() for k, v in proj.items()}, str(folder / WEIGHTS_NAME))
                    meta = {"dims": list(dims), "model_dim": config.dim}
                    (folder / "projector.json").write_text(json.dumps(meta, indent=2) + "\n")
                else:
                    _save_folder(tmp / "text", text_config, {f"projector.{k}": v for k, v in proj.items()})
                    if source is not None and (source / "encoders").is_dir():
                        shutil.copytree(source / "encoders", tmp / "text" / "encoders")
                    text_ok = True
            if tae_dir:
                tae_dir = Path(tae_dir)
                if (tae_dir / INDEX_NAME).is_file():
                    tae_dir = tae_dir / "tae"
                if not (tae_dir / CONFIG_NAME).is_file():
                    raise MovieGenError(f"TAE folder not found: {tae_dir}")
                shutil.copytree(tae_dir, tmp / "tae")
                if text_ok:
                    index = {
                        "_class_name": "MovieGenPipeline",
                        "moviegen_version": __version__,
                        "text": "TextConditioner",
                        "transformer": "MovieGenTransformer",
                        "tae": "TAE",
                    }
                    (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    finally:
        _barrier()
    return out


def export_reference_encoder(encoder: nn.Module, out: str | Path) -> Path | None:
    """Write a (possibly sharded) :class:`~moviegen.models.vision.ReferenceEncoder` as its
    ``from_pretrained`` folder (collective; rank 0 writes; replaced atomically)."""
    from moviegen.models.vision import CLIPVisionTower, ReferenceEncoder

    state = gather_full_state(encoder)
    if _rank() != 0:
        _barrier()
        return None
    try:
        fresh = ReferenceEncoder(CLIPVisionTower(encoder.tower.config), encoder.model_dim,
                                 encoder.mean.flatten().tolist(), encoder.std.flatten().tolist())  # fmt: skip
        fresh.load_state_dict(state)
        fresh.save_pretrained(out)
    finally:
        _barrier()
    return Path(out)


# --------------------------------------------------------------------------------------------------------
# model averaging (SFT model soup)


def _load_json(path: Path) -> dict[str, Any]:
    """A config to compare across folders: the version and the weights' own checksums left out."""
    data = read_json(path)
    if isinstance(data, dict):
        data.pop("moviegen_version", None)
        data.pop("weights_sha256", None)
    return data


def _weight_files(folder: Path) -> list[str]:
    """Relative paths of the weights to average: ``model.safetensors`` at the top or in a component folder
    (the frozen encoder copies under ``encoders/`` are taken from the first folder)."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob(WEIGHTS_NAME)
        if "encoders" not in p.relative_to(folder).parts
    )


def average_checkpoints(paths: list[str | Path], out: str | Path) -> Path:
    """Uniform average of several ``from_pretrained`` folders' weights (the paper's SFT model averaging).

    Accepts transformer folders or whole pipeline folders (every component's weights are averaged; frozen
    parts such as the TAE average to themselves). All folders must have the same layout, configs, tensor
    names and shapes, else MovieGenError. Averages in float64 and casts back to each tensor's dtype.
    Everything that is not averaged (configs, text-encoder copies) comes from the first folder.
    """
    folders = [Path(p) for p in paths]
    if len(folders) < 2:
        raise MovieGenError(f"averaging needs at least two folders, got {len(folders)}")
    check_output_dir(out)
    for folder in folders:
        if not folder.is_dir():
            raise MovieGenError(f"model folder not found: {folder}")
    first = folders[0]
    names = _weight_files(first)
    if not names:
        raise MovieGenError(f"{first} holds no {WEIGHTS_NAME} to average")
    configs = sorted(
        p.relative_to(first).as_posix()
        for p in first.rglob("*.json")
        if "encoders" not in p.relative_to(first).parts
    )
    for folder in folders[1:]:
        if _weight_files(folder) != names:
            raise MovieGenError(f"{folder} does not have the same components as {first}")
        for rel in configs:
            if _load_json(folder / rel) != _load_json(first / rel):
                raise MovieGenError(
                    f"cannot average {first} and {folder}: {rel} differs (averaging needs identical configs)"
                )
    averaged: dict[str, dict[str, torch.Tensor]] = {}
    for rel in names:
        states = [load_safetensors(folder / rel) for folder in folders]
        ref = states[0]
        for folder, state in zip(folders[1:], states[1:], strict=True):
            if sorted(state) != sorted(ref):
                raise MovieGenError(
                    f"cannot average: {folder / rel} has different tensor names than {first / rel}"
                )
            for k, v in state.items():
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    raise MovieGenError(f"cannot average: {k} in {folder / rel} holds NaN or inf values")
                if v.shape != ref[k].shape:
                    raise MovieGenError(
                        f"cannot average: {k} in {folder / rel} has shape {tuple(v.shape)}, "
                        f"{first / rel} has {tuple(ref[k].shape)}"
                    )
        mean = {}
        for k, v in ref.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise MovieGenError(f"cannot average: {k} in {first / rel} holds NaN or inf values")
            if v.is_floating_point():
                total = torch.zeros(v.shape, dtype=torch.float64)
                for state in states:
                    total += state[k].double()
                mean[k] = (total / len(states)).to(v.dtype)
            else:
                if any(not torch.equal(state[k], v) for state in states):
                    raise MovieGenError(
                        f"cannot average: integer tensor {k} in {rel} differs between folders"
                    )
                mean[k] = v
        averaged[rel] = mean
    out = Path(out)
    with atomic_dir(out) as tmp:
        for item in first.iterdir():
            dest = tmp / item.name
            if item.is_dir():
                shutil.copytree(item, dest, ignore=shutil.ignore_patterns(WEIGHTS_NAME))
            elif item.name != WEIGHTS_NAME:
                shutil.copy2(item, dest)
        for enc in first.rglob("encoders"):  # frozen encoder copies: take them whole from the first folder
            if enc.is_dir():
                dest = tmp / enc.relative_to(first)
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(enc, dest)
        for rel, state in averaged.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            save_file(
                {k: v.contiguous() for k, v in state.items()}, str(tmp / rel), metadata={"format": "pt"}
            )
        index_path = tmp / "model_index.json"
        if index_path.is_file():  # a pipeline: its weight checksums are the averaged files'
            from moviegen.pipeline import file_sha256

            index = read_json(index_path)
            if isinstance(index, dict) and "weights_sha256" in index:
                index["weights_sha256"] = {rel: file_sha256(tmp / rel) for rel in sorted(averaged)}
                index_path.write_text(json.dumps(index, indent=2) + "\n")
    return out


__all__ = [
    "CHECKPOINTS",
    "MARKER",
    "Checkpointer",
    "average_checkpoints",
    "checkpoints_root",
    "export_pretrained",
    "gather_full_state",
    "latest",
    "list_checkpoints",
    "load_checkpoint_weights",
    "read_marker",
    "rng_state",
    "set_rng_state",
    "step_name",
    "text_conditioner_config",
    "verify_checkpoint",
]
