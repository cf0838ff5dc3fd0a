"""Optional models loaded from local folders: a CLIP image encoder and a CLIP-based aesthetic predictor.

Nothing here downloads: a path must be a folder written by transformers' ``save_pretrained`` (a CLIP
vision model — ``CLIPVisionModelWithProjection`` or a full ``CLIPModel`` — with its image processor).

* :class:`CLIPImageEncoder` — L2-normalised image embeddings; the content stage uses it instead of the
  perceptual embedding when ``embedding_model`` is set.
* :class:`CLIPAestheticScorer` — a CLIP image encoder plus a head in ``aesthetic_head.safetensors`` in the
  same folder: a chain of linear layers applied, without activations, to the normalised embedding (the
  layout of the LAION "improved aesthetic predictor": keys ``<prefix>.<n>.weight`` / ``.bias``, applied
  in increasing ``n``; dropout layers hold no weights). Used as the visual stage's aesthetic score when
  ``aesthetic_model`` is set.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from moviegen.errors import MovieGenError

HEAD_NAME = "aesthetic_head.safetensors"


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


class CLIPImageEncoder:
    """L2-normalised CLIP image embeddings of RGB uint8 frames, from a local folder."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.path = Path(path)
        if not self.path.is_dir():
            raise MovieGenError(f"CLIP model folder not found: {self.path}")
        _quiet_transformers()
        from transformers import AutoImageProcessor, CLIPModel, CLIPVisionModelWithProjection

        try:
            self.processor = AutoImageProcessor.from_pretrained(self.path)
            try:
                self.model = CLIPVisionModelWithProjection.from_pretrained(self.path)
            except (ValueError, OSError, KeyError):
                self.model = CLIPModel.from_pretrained(self.path)
        except Exception as e:  # transformers raises many types on a broken folder
            raise MovieGenError(f"cannot load a CLIP image model from {self.path}: {e}") from None
        self.device = torch.device(device)
        self.model.eval().requires_grad_(False).to(self.device)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """``(N, D)`` float32 unit vectors of ``N`` RGB ``(H, W, 3)`` uint8 images."""
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            if hasattr(self.model, "get_image_features"):
                out = self.model.get_image_features(pixel_values=pixels)
                feats = out if isinstance(out, torch.Tensor) else out.pooler_output
            else:
                feats = self.model(pixel_values=pixels).image_embeds
        feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy().astype(np.float32)


class CLIPAestheticScorer:
    """Aesthetic score of frames: a linear-chain head over normalised CLIP image embeddings."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        from moviegen.pretrained import load_safetensors

        self.encoder = CLIPImageEncoder(path, device)
        head = Path(path) / HEAD_NAME
        if not head.is_file():
            raise MovieGenError(f"aesthetic model {path} has no {HEAD_NAME}")
        state = load_safetensors(head)
        layers: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in state.items():
            match = re.search(r"(\d+)\.(weight|bias)$", key)
            if not match:
                raise MovieGenError(f"{head}: unexpected key {key!r} (expected <n>.weight / <n>.bias)")
            layers.setdefault(int(match.group(1)), {})[match.group(2)] = value.float()
        self.layers = [(layers[n]["weight"], layers[n].get("bias")) for n in sorted(layers)]
        if not self.layers or any(w.dim() != 2 for w, _ in self.layers):
            raise MovieGenError(f"{head}: expected 2-D linear weights")

    def score(self, images: list[np.ndarray]) -> float:
        """The mean head output over the images."""
        x = torch.from_numpy(self.encoder.embed(images))
        try:
            for weight, bias in self.layers:
                x = x @ weight.T + (0 if bias is None else bias)
        except RuntimeError as e:
            raise MovieGenError(f"aesthetic head does not fit the CLIP embedding: {e}") from None
        return float(x.mean())
