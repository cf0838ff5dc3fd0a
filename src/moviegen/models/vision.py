"""The reference-image encoder of personalization (PT2V, paper §5): a CLIP vision tower + a projector.

The paper encodes the reference face with the long-prompt MetaCLIP vision tower and projects its tokens
to the model width; they are concatenated to the text tokens for cross-attention. Here:

* :class:`CLIPVisionTower` is a plain-PyTorch CLIP ViT that reads a transformers ``CLIPVisionModel``
  (or ``CLIPModel``) folder: ``config.json`` (``vision_config`` for a full CLIP) and ``model.safetensors``
  with transformers' key names, and computes the same hidden states (tested against transformers).
  Pre-LN ViT: patch conv (no bias) + class token + learned positions → ``pre_layrnorm`` → N × [LN →
  attention → add, LN → MLP (quick-GELU or GELU) → add]; the tokens are the last layer's states after
  ``post_layernorm`` (all 1 + P of them, not only the pooled one: the face's layout is in the patches).
  Reading it ourselves avoids importing transformers (seconds) when sampling.
* :class:`ReferenceEncoder` = tower + ``Linear(hidden, model_dim)`` + ``LayerNorm`` (the text projector's
  form), the Linear zero-initialised so a fresh encoder adds zero-valued context tokens. Images come in
  as (B, 3, H, W) in [-1, 1], are resized to the tower's size and normalised with its mean and std.

Folder (``save_pretrained``): ``vision/`` (the tower, transformers layout), ``config.json``
(``model_dim``, ``image_mean``, ``image_std``) and ``model.safetensors`` (the projector).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moviegen.errors import MovieGenError
from moviegen.pretrained import CONFIG_NAME, WEIGHTS_NAME, atomic_dir, load_safetensors

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREFIX = "vision_model."  # transformers 4 writes it (and CLIPModel's vision half has it); 5 does not


@dataclass(frozen=True)
class VisionConfig:
    """The fields of transformers' ``CLIPVisionConfig`` this tower uses."""

    hidden_size: int = 96
    intermediate_size: int = 192
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    image_size: int = 32
    patch_size: int = 4
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, data: dict) -> VisionConfig:
        data = data.get("vision_config", data)
        if data.get("model_type", "clip_vision_model") not in ("clip_vision_model", "clip"):
            raise MovieGenError(f"not a CLIP vision config (model_type {data.get('model_type')!r})")
        if data.get("hidden_act", "quick_gelu") not in ("quick_gelu", "gelu"):
            raise MovieGenError(f"unsupported CLIP activation {data.get('hidden_act')!r}")
        fields = cls.__dataclass_fields__
        config = cls(**{k: data[k] for k in fields if k in data})
        if config.hidden_size % config.num_attention_heads or config.image_size % config.patch_size:
            raise MovieGenError("CLIP vision config: hidden_size / heads or image_size / patch_size not whole")
        return config

    def to_dict(self) -> dict:
        return {"model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"], **self.__dict__}


class _Layer(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        d = c.hidden_size
        self.heads = c.num_attention_heads
        self.layer_norm1 = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.layer_norm2 = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, c.intermediate_size), nn.Linear(c.intermediate_size, d)
        self.quick = c.hidden_act == "quick_gelu"

    def forward(self, x: Tensor) -> Tensor:
        h = self.layer_norm1(x)
        q, k, v = (p(h).unflatten(-1, (self.heads, -1)).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        x = x + self.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
        h = self.fc1(self.layer_norm2(x))
        h = h * torch.sigmoid(1.702 * h) if self.quick else F.gelu(h)
        return x + self.fc2(h)


class CLIPVisionTower(nn.Module):
    """CLIP ViT: pixels (B, 3, S, S), already normalised → tokens (B, 1 + (S/p)², hidden)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = c = config
        d, n = c.hidden_size, (c.image_size // c.patch_size) ** 2 + 1
        self.class_embedding = nn.Parameter(torch.randn(d) * 0.02)
        self.patch_embedding = nn.Conv2d(3, d, c.patch_size, c.patch_size, bias=False)
        self.position_embedding = nn.Embedding(n, d)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        self.pre_layrnorm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))
        self.post_layernorm = nn.LayerNorm(d, eps=c.layer_norm_eps)

    def forward(self, pixels: Tensor) -> Tensor:
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1).to(x.dtype), x], dim=1)
        x = self.pre_layrnorm(x + self.position_embedding.weight.to(x.dtype))
        for layer in self.layers:
            x = layer(x)
        return self.post_layernorm(x)

    # transformers' key names (without PREFIX) ↔ ours
    @staticmethod
    def _hf_key(key: str) -> str:
        key = key.replace("layers.", "encoder.layers.")
        for part in ("q_proj", "k_proj", "v_proj", "out_proj"):
            key = key.replace(f".{part}.", f".self_attn.{part}.")
        for part in ("fc1", "fc2"):
            key = key.replace(f".{part}.", f".mlp.{part}.")
        if key.startswith(("class_embedding", "patch_embedding", "position_embedding")):
            key = "embeddings." + key
        return key

    def save_pretrained(self, path: Path, dtype: torch.dtype | None = None) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=1) + "\n")
        state = {self._hf_key(k): (v.to(dtype) if dtype else v).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> CLIPVisionTower:
        path = Path(path)
        if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
            raise MovieGenError(f"{path}: not a CLIP vision folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            config = VisionConfig.from_dict(json.loads((path / CONFIG_NAME).read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise MovieGenError(f"{path / CONFIG_NAME}: {e}") from None
        tower = cls(config)
        state = {k.removeprefix(PREFIX): v for k, v in load_safetensors(path / WEIGHTS_NAME).items()}
        ours = {}
        for key in tower.state_dict():
            hf = cls._hf_key(key)
            if hf not in state:
                raise MovieGenError(f"{path / WEIGHTS_NAME}: missing {hf} (a CLIP vision model of another layout?)")
            ours[key] = state[hf].float()
        try:
            tower.load_state_dict(ours)
        except RuntimeError as e:
            raise MovieGenError(f"{path / WEIGHTS_NAME} does not fit its config: {e}") from None
        return tower


def _image_stats(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std from a transformers ``preprocessor_config.json`` if the folder has one, else CLIP's."""
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        data = json.loads(pre.read_text())
        return tuple(data.get("image_mean", CLIP_MEAN)), tuple(data.get("image_std", CLIP_STD))
    return CLIP_MEAN, CLIP_STD


class ReferenceEncoder(nn.Module):
    """Reference images (B, 3, H, W) in [-1, 1] → context tokens (B, 1 + P, model_dim)."""

    def __init__(self, tower: CLIPVisionTower, model_dim: int, image_mean=CLIP_MEAN, image_std=CLIP_STD):
        super().__init__()
        self.tower, self.model_dim = tower, model_dim
        self.projection = nn.Sequential(nn.Linear(tower.config.hidden_size, model_dim), nn.LayerNorm(model_dim))
        nn.init.zeros_(self.projection[0].weight)
        nn.init.zeros_(self.projection[0].bias)
        self.register_buffer("mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        return self.tower.config.image_size

    def pixels(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [-1, 1] → the tower's input: resized to its size, normalised (float32)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise MovieGenError(f"reference images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        s = self.image_size
        x = (images.float() + 1) / 2
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, images: Tensor) -> Tensor:
        x = self.pixels(images).to(self.projection[0].weight.dtype)
        return self.projection(self.tower(x))

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        from safetensors.torch import save_file

        with atomic_dir(path) as tmp:
            self.tower.save_pretrained(tmp / "vision", dtype)
            config = {"model_dim": self.model_dim, "image_mean": self.mean.flatten().tolist(),
                      "image_std": self.std.flatten().tolist()}  # fmt: skip
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1) + "\n")
            state = {k: (v.to(dtype) if dtype else v).contiguous() for k, v in self.projection.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME))
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ReferenceEncoder:
        path = Path(path)
        if not (path / CONFIG_NAME).is_file() or not (path / "vision").is_dir():
            raise MovieGenError(f"{path}: not a reference-encoder folder (needs {CONFIG_NAME} and vision/)")
        config = json.loads((path / CONFIG_NAME).read_text())
        encoder = cls(CLIPVisionTower.from_pretrained(path / "vision"), int(config["model_dim"]),
                      config.get("image_mean", CLIP_MEAN), config.get("image_std", CLIP_STD))  # fmt: skip
        state = {k: v.float() for k, v in load_safetensors(path / WEIGHTS_NAME).items()}
        try:
            encoder.projection.load_state_dict(state)
        except RuntimeError as e:
            raise MovieGenError(f"{path / WEIGHTS_NAME}: {e}") from None
        return encoder

    @classmethod
    def from_vision_folder(cls, path: str | Path, model_dim: int) -> ReferenceEncoder:
        """A fresh encoder (zero projector) on a CLIP vision tower from a local transformers folder."""
        path = Path(path)
        mean, std = _image_stats(path)
        return cls(CLIPVisionTower.from_pretrained(path), model_dim, mean, std)
