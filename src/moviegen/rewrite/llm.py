"""LLM rewriters (paper §3.6): any OpenAI-compatible server, or a local causal LM folder.

Both are told to bring the prompt into the style of the training captions and to add nothing the user
did not ask for; :func:`system_prompt` adds the model's own caption vocabulary and examples when its
pipeline names a :class:`~moviegen.rewrite.style.CaptionStyle`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from moviegen.errors import MovieGenError
from moviegen.rewrite.style import CaptionStyle

DEFAULT_SYSTEM_PROMPT = (
    "You rewrite prompts for a text-to-video model into the style of the captions it was trained on. "
    "Keep everything the user asked for and add nothing they did not say: no new objects, colours, motion, "
    "setting, lighting or camera directions. Use plain, everyday words, no jargon and no flowery language. "
    "Keep every piece of text in double quotes exactly as written, quotes included. Reply with the caption "
    "only: no preamble, no labels, no lists."
)
"""The rewriter instructions of the LLM backends (paper §3.1.4, §3.6: the style of the training captions)."""


def system_prompt(style: CaptionStyle | None = None) -> str:
    """:data:`DEFAULT_SYSTEM_PROMPT`, plus the words and examples of ``style``'s captions when given."""
    if style is None:
        return DEFAULT_SYSTEM_PROMPT
    vocabulary = (
        f" The model's captions use only these words. Colours: {', '.join(style.colors)}. Shapes: "
        f"{', '.join(style.shapes.values())}. Motions: {', '.join(style.motions.values())}. Subjects: "
        f"{', '.join(p[0] for p in style.subjects.values())}. Map the user's words to these when they mean "
        "the same; leave out what none of them can say."
    )
    examples = " Example captions: " + " | ".join(style.examples) if style.examples else ""
    return DEFAULT_SYSTEM_PROMPT + vocabulary + examples


# --- OpenAI-compatible backend ---------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _chat(system_prompt: str, prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": prompt}]


class OpenAIRewriter:
    """An LLM behind any OpenAI-compatible ``POST {base_url}/chat/completions`` (paper §3.6).

    Uses ``urllib`` only. ``api_key`` defaults to the ``OPENAI_API_KEY`` environment variable and is
    sent as a bearer token when set. Decoding is greedy (``temperature`` 0) for repeatable rewrites.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 30,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ):
        if not isinstance(base_url, str) or not re.match(r"https?://", base_url):
            raise MovieGenError(f"the rewriter URL must start with http:// or https://, got {base_url!r}")
        if not model:
            raise MovieGenError("the openai rewriter needs a model name")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.timeout, self.system_prompt = model, timeout, system_prompt
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")

    def rewrite(self, prompt: str) -> str:
        messages = _chat(self.system_prompt, prompt)
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            body = e.read(300).decode("utf-8", "replace").strip()
            detail = f": {body.splitlines()[0]}" if body else ""
            raise MovieGenError(
                f"rewriter server {self.url} answered HTTP {e.code} {e.reason}{detail}"
            ) from None
        except (http.client.HTTPException, OSError) as e:  # refused, unreachable, timed out, cut off
            reason = getattr(e, "reason", e)
            raise MovieGenError(f"cannot reach rewriter server {self.url}: {_first_line(reason)}") from None
        except ValueError as e:  # JSON or UTF-8 decoding
            raise MovieGenError(f"rewriter server {self.url} sent invalid JSON: {_first_line(e)}") from None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            raise MovieGenError(f"rewriter server {self.url} sent no choices[0].message.content")
        return content.strip()


# --- local transformers backend ----------------------------------------------------------------------


class TransformersRewriter:
    """A local causal LM folder (``transformers``), prompted with the chat template when the tokenizer
    has one, else a plain instruction prompt; greedy decoding; the first line of the answer (paper §3.6).
    """

    def __init__(
        self,
        path: str | Path,
        max_new_tokens: int = 96,
        device: str = "cpu",
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ):
        self.path = Path(path)
        if not self.path.is_dir():
            raise MovieGenError(f"rewriter model folder not found: {self.path}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise MovieGenError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(str(self.path), local_files_only=True)
            self.model.to(device).eval()
        except Exception as e:  # OSError, ValueError, KeyError, ... on bad folders
            raise MovieGenError(f"cannot load rewriter model from {self.path}: {_first_line(e)}") from None
        self.max_new_tokens, self.device = max_new_tokens, device
        self.system_prompt = system_prompt

    def _input_text(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = _chat(self.system_prompt, prompt)
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{self.system_prompt}\n\nPrompt: {prompt}\nCaption:"

    def rewrite(self, prompt: str) -> str:
        import torch

        batch = self.tokenizer(self._input_text(prompt), return_tensors="pt", add_special_tokens=False)
        batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        try:
            with torch.inference_mode():
                out = self.model.generate(
                    **batch, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad
                )
        except Exception as e:  # e.g. a prompt longer than the model's context
            raise MovieGenError(f"rewriter model {self.path} failed: {_first_line(e)}") from None
        answer = self.tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        return next((line.strip() for line in answer.splitlines() if line.strip()), "")
