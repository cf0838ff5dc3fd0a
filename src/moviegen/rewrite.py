"""Prompt rewriting: expand short user prompts into the detailed captions the model was trained on.

Movie Gen (arXiv 2410.13720, §3.1.4 and §3.6) trains on long, dense captions but is prompted with short
user text, so at inference a rewriter (an LLM in the paper) expands the prompt into a detailed,
structured caption in plain, accessible words. The paper notes that over-detailed motion descriptions
caused artefacts, so a rewrite keeps motion to a short clause.

:func:`rewrite_prompt` holds the rules every backend obeys: the ``FPS-<n>.`` / ``Camera: <label>.``
prefixes (:func:`moviegen.models.text.parse_prompt_prefix`) are split off and put back verbatim, the
backend sees only the description, and every quoted span (the visual text ByT5 reads) comes out verbatim;
a backend that drops or alters one gets it appended as ``with the text "..."``.

Backends (:func:`load_rewriter`):

* ``template`` (:class:`TemplateRewriter`, default): offline, deterministic rules for the built-in world;
* ``openai`` (:class:`OpenAIRewriter`): any OpenAI-compatible ``/chat/completions`` server;
* ``transformers`` (:class:`TransformersRewriter`): a local causal LM folder, greedy decoding.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Protocol, runtime_checkable

import typer

from moviegen.data.world import COLORS, MOTION_PHRASES, PHOTOS
from moviegen.errors import MovieGenError
from moviegen.models.text import compose_prompt, parse_prompt_prefix

DEFAULT_SYSTEM_PROMPT = (
    "You rewrite short prompts for a text-to-video model into the kind of caption it was trained on. "
    "Write one detailed, structured paragraph: first the main subject and how it looks, then what it does, "
    "then the setting, lighting and framing. Use plain, everyday words, with no jargon and no flowery "
    "language. Describe motion in one short, simple clause at most; do not over-describe movement. "
    "Do not add camera directions. Keep every piece of text in double quotes exactly as written, quotes "
    "included. Reply with the caption only: no preamble, no labels, no lists."
)
"""The rewriter instructions of the LLM backends, following the paper's guidance (§3.1.4, §3.6)."""

BACKENDS = ("template", "openai", "transformers")


@runtime_checkable
class Rewriter(Protocol):
    """A prompt rewriter: a prefix-free description in, a detailed caption out (paper §3.6)."""

    def rewrite(self, prompt: str) -> str: ...


# --- the invariants every backend obeys --------------------------------------------------------------

_QUOTED = re.compile(r'"[^"]*"|“[^”]*”')


def _quoted_spans(text: str) -> list[str]:
    """Non-empty quoted spans, quote marks included (the units ByT5 reads, see ``quoted_text``)."""
    return [s for s in _QUOTED.findall(text) if len(s) > 2]


def _split_prefixes(text: str) -> tuple[int | None, str | None, str]:
    """Take every leading FPS/camera prefix off a backend's reply; the first of each kind wins."""
    fps = camera = None
    text = text.strip()
    while text:
        f, c, rest = parse_prompt_prefix(text + " \0")  # the sentinel lets a bare "Camera: zoom in." match
        rest = rest[:-1].strip()
        if rest == text:
            break
        fps, camera, text = fps or f, camera or c, rest
    return fps, camera, text


def _keep_quotes(text: str, spans: list[str]) -> str:
    """Unquote spans the input did not have, then append the input spans the reply lost."""
    wanted = Counter(spans)
    if text[:1] == text[-1:] == '"' and '"' not in text[1:-1] and len(text) > 1 and text not in wanted:
        text = text[1:-1].strip()  # a whole reply wrapped in quotes is not visual text
    text = _QUOTED.sub(lambda m: m.group(0) if wanted[m.group(0)] else m.group(0)[1:-1], text)
    present, lost = Counter(_quoted_spans(text)), []
    for span in spans:
        if present[span]:
            present[span] -= 1
        else:
            lost.append(span)
    if not lost:
        return text
    return f"{text.rstrip(' .')}, with the text {' and '.join(lost)}."


def rewrite_prompt(prompt: str, rewriter: Rewriter) -> str:
    """Rewrite ``prompt`` with ``rewriter``, keeping its prefixes and quoted text verbatim (paper §3.6).

    The backend gets the description only. A camera prefix the backend writes itself (the template
    turns "the camera pans left" into ``Camera: pan left.``) is used when the input has none; the
    input's own prefixes always win, and an FPS prefix from the backend is dropped (the frame rate is
    the user's control, never the rewriter's).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise MovieGenError("the prompt is empty")
    if not _split_prefixes(prompt)[2]:
        raise MovieGenError(f"the prompt has no description after its prefix: {prompt.strip()!r}")
    fps, camera, description = parse_prompt_prefix(prompt)
    description = description.strip()
    reply = rewriter.rewrite(description)
    if not isinstance(reply, str):
        raise MovieGenError(f"the rewriter returned {type(reply).__name__}, not text")
    _, reply_camera, text = _split_prefixes(reply)
    if not text.strip(' "'):
        raise MovieGenError("the rewriter returned an empty prompt")
    text = _keep_quotes(text, _quoted_spans(description))
    return compose_prompt(text, fps, camera or reply_camera)


def rewrite_for_generation(prompt: str, camera: str | None, rewriter: Rewriter) -> tuple[str, str | None]:
    """``(description, camera)`` for ``MovieGenPipeline``: the rewritten prompt without its prefixes.

    ``camera`` (e.g. ``generate --camera``) wins over a camera label the rewrite found; an ``FPS-``
    prefix in the prompt is refused, since the pipeline writes it from its ``fps`` argument.
    """
    if isinstance(prompt, str) and prompt.strip() and parse_prompt_prefix(prompt)[0] is not None:
        raise MovieGenError("give the frame rate with --fps, not as an FPS- prefix in the prompt")
    _, found, description = parse_prompt_prefix(rewrite_prompt(prompt, rewriter))
    return description, camera if camera is not None else found


# --- template backend ------------------------------------------------------------------------------

SCENE = "The scene is clearly visible, with natural lighting."
"""The generic scene sentence of :class:`TemplateRewriter` for prompts outside the world; it says nothing
about the camera, which the ``Camera:`` prefix controls."""

_SHAPE_SYNONYMS = {
    "circle": ("circle", "ball", "disc", "disk", "dot", "sphere", "orb"),
    "square": ("square", "box", "block", "cube"),
    "triangle": ("triangle", "wedge"),
}
_MOTION_SYNONYMS = {
    "left": ("left", "leftward", "leftwards"),
    "right": ("right", "rightward", "rightwards"),
    "up": ("up", "upward", "upwards", "rising", "rises", "ascending", "climbing", "climbs"),
    "down": ("down", "downward", "downwards", "falling", "falls", "dropping", "drops", "sinking", "sinks"),
    "still": ("still", "stationary", "motionless", "unmoving", "resting", "rests", "staying", "stays"),
}
_FILLER_WORDS = (
    "a an the one single is it that which video clip of to toward towards across screen frame slowly "
    "steadily smoothly in place moving moves move travels travelling traveling travel sliding slides "
    "slide going goes drifting drifts gliding glides heading heads rolling rolls"
)
_FILLERS = frozenset(_FILLER_WORDS.split())
_WORD_TO_SHAPE = {w: s for s, words in _SHAPE_SYNONYMS.items() for w in words}
_WORD_TO_MOTION = {w: m for m, words in _MOTION_SYNONYMS.items() for w in words}
_PHOTO_KEYWORDS = {"astronaut": "astronaut", "coffee": "coffee", "cat": "chelsea", "kitten": "chelsea",
                   "rocket": "rocket", "cells": "immunohistochemistry"}  # fmt: skip
_BACKDROP = re.compile(
    r",?\s*\b(?:(?:on|against|over)\s+(?:a\s+|the\s+)?(?:plain\s+)?(?:dark|black)(?:\s+(?:background|backdrop))?"
    r"|(?:a\s+|the\s+)?(?:plain\s+)?(?:dark|black)\s+(?:background|backdrop))\b"
)
_ARTICLE = re.compile(r"^(?:an?|the)\s+")
_LEAD_IN = re.compile(r"^(?:a\s+)?(?:video|clip|footage)\s+of\s+", re.I)

_CAMERA_VERBS = (  # (pattern, label template, needs the word "camera" in the prompt)
    (r"pan(?:s|ning|ned)?\s+(?:to\s+the\s+)?(left|right)", "pan {}", False),
    (r"tilt(?:s|ing|ed)?\s+(up|down)(?:wards?)?", "tilt {}", False),
    (r"zoom(?:s|ing|ed)?\s+(in|out)", "zoom {}", False),
    (r"(?:static|still|fixed|steady|locked)\s+camera|camera\s+(?:is\s+|stays\s+|remains\s+)?"
     r"(?:static|still|fixed|steady)", "static", False),
    (r"(?:shaky|handheld|hand-held)\s+camera|camera\s+(?:is\s+)?(?:shaky|shaking|shakes)", "shaky", False),
    (r"roll(?:s|ing|ed)?\s+(clockwise|counterclockwise)", "roll {}", True),
    (r"truck(?:s|ing|ed)?\s+(?:to\s+the\s+)?(left|right)", "truck {}", True),
    (r"pedestal(?:s|ing|ed)?\s+(up|down)", "pedestal {}", True),
    (r"doll(?:y|ies|ying|ied)\s+(in|out)", "dolly {}", True),
)  # fmt: skip


def _take_camera(text: str) -> tuple[str | None, str]:
    """Find a camera-motion phrase, return ``(label, text without it)``; ``(None, text)`` if none."""
    for pattern, label, needs_camera in _CAMERA_VERBS:
        if needs_camera and not re.search(r"\bcamera\b", text, re.I):
            continue
        clause = (r"(?:(?:,\s*|\s+)(?:with|while|as|and)\s+)?(?:,\s*)?"
                  rf"(?:the\s+|a\s+)?(?:camera\s+)?(?:is\s+)?(?:slowly\s+)?\b(?:{pattern})\b")  # fmt: skip
        match = re.search(clause, text, re.I)
        if match is None:
            continue
        end = match.end()
        if not text[: match.start()].strip():  # a leading clause also takes "over a cat"'s preposition
            lead = re.match(r"\s*(?:across|over|on|onto|to|toward|towards|around|at)\b", text[end:], re.I)
            end += lead.end() if lead else 0
        rest = (text[: match.start()] + " " + text[end:]).strip(" ,;.")
        rest = re.sub(r"\s+([,.;])", r"\1", re.sub(r"\s+", " ", rest))
        if re.search(r"\w", rest):
            return label.format(match.group(1).lower() if match.groups() else ""), rest
    return None, text


class TemplateRewriter:
    """Offline, deterministic rule-based rewriter for the built-in world (paper §3.6, template stand-in).

    * **Object prompts** (one world shape word, synonyms like ball/box/block included, at most one world
      colour and one motion, and nothing else but filler words) become the world's own caption form with
      its canonical words: ``a red circle moving to the left on a dark background``. The expansion is
      canonicalisation plus the scene phrase; motion stays one short clause, and a prompt without motion
      gets none [choice: don't invent motion, the paper warns against over-describing it].
    * **Photo prompts** ("a cat", "astronaut", any world photo phrasing) keep the world's phrasing and get
      ``Camera: static.`` when no camera motion is named, as every world camera clip is captioned.
    * **Camera phrases** anywhere ("the camera pans left", "zooming in", "static camera") become the
      ``Camera: <label>.`` prefix the model was trained with (§3.1.4), and are removed from the text.
    * **Anything else** (unknown words, plurals, quoted text, which the world never shows) gets a generic
      but deterministic expansion: ``A video of {prompt}.`` plus :data:`SCENE`. The user's words, quotes
      included, are kept as typed.

    Rewriting an output again returns it unchanged.
    """

    def rewrite(self, prompt: str) -> str:
        text = " ".join(prompt.split())
        if text.endswith(SCENE):
            return text
        camera, text = _take_camera(text)
        if not re.search('["“”]', text):
            if obj := self._object(text):
                return compose_prompt(obj, camera_motion=camera)
            if photo := self._photo(text):
                return compose_prompt(photo, camera_motion=camera or "static")
        return compose_prompt(self._generic(text), camera_motion=camera)

    @staticmethod
    def _object(text: str) -> str | None:
        words = re.findall(r"[a-z0-9'-]+", _BACKDROP.sub(" ", text.lower().replace("not moving", "still")))
        shapes = [_WORD_TO_SHAPE[w] for w in words if w in _WORD_TO_SHAPE]
        colors = {w for w in words if w in COLORS}
        motions = {_WORD_TO_MOTION[w] for w in words if w in _WORD_TO_MOTION}
        known = _WORD_TO_SHAPE.keys() | COLORS.keys() | _WORD_TO_MOTION.keys() | _FILLERS
        if len(shapes) != 1 or len(colors) > 1 or len(motions) > 1 or not set(words) <= known:
            return None
        color = f"{colors.pop()} " if colors else ""
        motion = f" {MOTION_PHRASES[motions.pop()][0]}" if motions else ""
        return f"a {color}{shapes[0]}{motion} on a dark background"

    @staticmethod
    def _photo(text: str) -> str | None:
        key = _ARTICLE.sub("", _LEAD_IN.sub("", text.lower()).strip(" .,;!"))
        phrase = next((p for ps in PHOTOS.values() for p in ps if key == _ARTICLE.sub("", p)), None)
        photo = _PHOTO_KEYWORDS.get(key)
        return phrase or (PHOTOS[photo][0] if photo else None)

    @staticmethod
    def _generic(text: str) -> str:
        body = _LEAD_IN.sub("", text).rstrip(" .,;")
        first, _, rest = body.partition(" ")
        if first in ("A", "An", "The"):
            body = f"{first.lower()} {rest}".strip()
        return f"A video of {body}. {SCENE}"


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

    def __init__(self, path: str | Path, max_new_tokens: int = 96, device: str = "cpu"):
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
        self.system_prompt = DEFAULT_SYSTEM_PROMPT

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


# --- loading and the command line --------------------------------------------------------------------


def load_rewriter(name: str, **options: Any) -> Rewriter:
    """A rewriter backend by name: ``template``, ``openai`` or ``transformers``; options go to its class."""
    classes = {"template": TemplateRewriter, "openai": OpenAIRewriter, "transformers": TransformersRewriter}
    key = str(name).strip().lower()
    if key not in classes:
        raise MovieGenError(f"unknown rewriter {name!r} (choose from {', '.join(BACKENDS)})")
    try:
        return classes[key](**options)
    except TypeError as e:
        raise MovieGenError(f"invalid options for the {key} rewriter: {_first_line(e)}") from None


def rewriter_from_options(
    backend: str = "template",
    url: str | None = None,
    model: str | None = None,
    path: str | Path | None = None,
) -> Rewriter:
    """The rewriter for command-line options: ``openai`` needs url and model, ``transformers`` a path."""
    key = str(backend).strip().lower()
    given = {"url": url, "model": model, "path": path}
    needed = {"template": (), "openai": ("url", "model"), "transformers": ("path",)}.get(key)
    if needed is None:
        raise MovieGenError(f"unknown rewriter {backend!r} (choose from {', '.join(BACKENDS)})")
    if missing := [f"--{n}" for n in needed if given[n] is None]:
        raise MovieGenError(f"the {key} rewriter needs {' and '.join(missing)}")
    if extra := [f"--{n}" for n, v in given.items() if v is not None and n not in needed]:
        raise MovieGenError(f"{', '.join(extra)} not used by the {key} rewriter")
    options = {"openai": {"base_url": url, "model": model}, "transformers": {"path": path}}.get(key, {})
    return load_rewriter(key, **options)


def rewrite_cli(
    prompt: Annotated[
        str, typer.Argument(help='Prompt, optionally with "FPS-8. Camera: pan left." prefixes.')
    ],
    backend: Annotated[str, typer.Option(help="Rewriter: template | openai | transformers.")] = "template",
    url: Annotated[
        str | None, typer.Option(help="openai: server base URL, e.g. http://localhost:8000/v1.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="openai: model name.")] = None,
    path: Annotated[Path | None, typer.Option(help="transformers: local causal LM folder.")] = None,
) -> None:
    """Expand a short prompt into a detailed caption like the training captions (paper §3.6)."""
    typer.echo(rewrite_prompt(prompt, rewriter_from_options(backend, url, model, path)))


__all__ = [
    "BACKENDS",
    "DEFAULT_SYSTEM_PROMPT",
    "SCENE",
    "OpenAIRewriter",
    "Rewriter",
    "TemplateRewriter",
    "TransformersRewriter",
    "load_rewriter",
    "rewrite_cli",
    "rewrite_for_generation",
    "rewrite_prompt",
    "rewriter_from_options",
]
