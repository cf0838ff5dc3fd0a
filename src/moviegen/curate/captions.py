"""Stage 7, captions: a pluggable captioner, else the source's sidecar caption; the camera-motion prefix.

* With ``captioner`` set to a local folder, :class:`VLMCaptioner` loads a transformers vision-language
  model from it (``AutoProcessor`` + ``AutoModelForImageTextToText``: BLIP, LLaVA, Qwen-VL, ...) and
  captions the clip's middle analysis frame, greedily, with ``caption_prompt`` (through the processor's
  chat template when it has one). The paper's LLaMA3-Video captioner is not public; any local VLM
  folder plugs in here. An empty generation falls back to the sidecar caption.
* Otherwise the caption is the source's sidecar (``video.txt`` / ``video.json`` beside the file, or the
  JSONL row, read by :func:`moviegen.data.cache.read_data`); every clip of the source shares it.

``caption_source`` says which (``vlm`` / ``sidecar``). A clip without any caption is kept and marked
``caption_source = "needs_caption"`` (caption it later with a captioner or sidecars); with
``require_caption`` it is dropped (``no_caption``). ``prompt`` is the caption as the model will see it,
composed by :func:`moviegen.models.text.compose_prompt` with the clip's frame rate and — when the camera
stage's confidence is ≥ ``camera_prefix_confidence`` — its camera-motion label (the paper prefixes
high-confidence labels); a caption that cannot be composed (it already carries a prefix) is dropped
(``bad_caption``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from moviegen.curate.config import CurateConfig
from moviegen.curate.record import NEEDS_CAPTION, Clip, Frames
from moviegen.errors import MovieGenError
from moviegen.models.text import compose_prompt


class Captioner(Protocol):
    def caption(self, images: list[np.ndarray]) -> str: ...


class VLMCaptioner:
    """A transformers vision-language model from a local folder, captioning one frame per clip."""

    def __init__(self, path: str | Path, prompt: str = "", max_new_tokens: int = 60, device: str = "cpu"):
        from moviegen.curate.vision import _quiet_transformers

        self.path = Path(path)
        if not self.path.is_dir():
            raise MovieGenError(f"captioner folder not found: {self.path}")
        _quiet_transformers()
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(self.path)
            self.model = AutoModelForImageTextToText.from_pretrained(self.path)
        except Exception as e:  # transformers raises many types on a broken folder
            raise MovieGenError(f"cannot load a vision-language model from {self.path}: {e}") from None
        self.device = torch.device(device)
        self.model.eval().requires_grad_(False).to(self.device)
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens

    def _text(self) -> str | None:
        template = getattr(self.processor, "chat_template", None)
        if template:
            content = [
                {"type": "image"},
                {"type": "text", "text": self.prompt or "Describe this video frame."},
            ]
            messages = [{"role": "user", "content": content}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        return self.prompt or None

    def caption(self, images: list[np.ndarray]) -> str:
        from PIL import Image

        image = Image.fromarray(images[len(images) // 2])
        text = self._text()
        kwargs = {"images": [image], "return_tensors": "pt"}
        if text is not None:
            kwargs["text"] = [text]
        inputs = self.processor(**kwargs).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        ids = inputs.get("input_ids")
        if ids is not None and out.shape[1] > ids.shape[1] and torch.equal(out[:, : ids.shape[1]], ids):
            out = out[:, ids.shape[1] :]  # decoder-only models echo the prompt
        return self.processor.batch_decode(out, skip_special_tokens=True)[0].strip()


def captions(
    clip: Clip,
    frames: Frames,
    config: CurateConfig,
    sidecar: str | None = None,
    captioner: Captioner | None = None,
) -> Clip:
    """Caption a kept clip and compose its prompt (see the module docstring)."""
    if not clip.kept:
        return clip
    caption, source = None, None
    if captioner is not None and len(frames):
        text = " ".join(captioner.caption(list(frames.rgb)).split())
        if text:
            caption, source = text, "vlm"
    if caption is None and sidecar and sidecar.strip():
        caption, source = " ".join(sidecar.split()), "sidecar"
    if caption is None:
        if config.require_caption:
            return clip.drop("captions", "no_caption")
        return dataclasses.replace(clip, caption_source=NEEDS_CAPTION)
    label = clip.camera_motion if (clip.camera_confidence or 0.0) >= config.camera_prefix_confidence else None
    clip = dataclasses.replace(clip, caption=caption, caption_source=source)
    try:
        prompt = compose_prompt(caption, fps=max(1, round(clip.fps or 1)), camera_motion=label)
    except MovieGenError:
        return clip.drop("captions", "bad_caption")
    return dataclasses.replace(clip, prompt=prompt)


def camera_prefix(clip: Clip, config: CurateConfig) -> str | None:
    """The camera label prefixed to this clip's caption, or None (low confidence)."""
    if (clip.camera_confidence or 0.0) >= config.camera_prefix_confidence:
        return clip.camera_motion
    return None
