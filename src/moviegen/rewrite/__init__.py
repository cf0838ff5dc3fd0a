"""Prompt rewriting: bring a user's prompt into the style of the captions the model was trained on.

Movie Gen (arXiv 2410.13720, §3.1.4 and §3.6) trains on captions of one style but is prompted with
whatever users type, so at inference a rewriter (an LLM in the paper) rewrites every prompt into the
training captions' style, in plain words. A model's pipeline names its caption style
(:mod:`moviegen.rewrite.style`), and the rewriter writes in it: it keeps what the user asked for and
never adds content.

:func:`rewrite_prompt` holds the rules every backend obeys: the ``FPS-<n>.`` / ``Camera: <label>.``
prefixes (:func:`moviegen.models.text.parse_prompt_prefix`) are split off and put back verbatim, the
backend sees only the description, and every quoted span (the visual text ByT5 reads) comes out verbatim;
a backend that drops or alters one gets it appended as ``with the text "..."``.

Backends (:func:`load_rewriter`):

* ``template`` (:class:`~moviegen.rewrite.template.TemplateRewriter`, default): offline, deterministic
  rules and an English lexicon, writing in the model's caption style;
* ``openai`` (:class:`~moviegen.rewrite.llm.OpenAIRewriter`): any OpenAI-compatible server;
* ``transformers`` (:class:`~moviegen.rewrite.llm.TransformersRewriter`): a local causal LM folder.

``moviegen rewrite PROMPT`` rewrites one prompt; ``moviegen rewrite --file PROMPTS.txt`` rewrites one
prompt per line in one process and writes JSONL.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Protocol, runtime_checkable

import typer

from moviegen.errors import MovieGenError
from moviegen.models.text import compose_prompt, parse_prompt_prefix
from moviegen.rewrite.llm import DEFAULT_SYSTEM_PROMPT, OpenAIRewriter, TransformersRewriter, system_prompt
from moviegen.rewrite.style import CaptionStyle, caption_style
from moviegen.rewrite.template import TemplateRewriter

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


# --- loading and the command line --------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_rewriter(name: str, style: CaptionStyle | None = None, **options: Any) -> Rewriter:
    """A rewriter backend by name (``template``, ``openai``, ``transformers``) writing in ``style``."""
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise MovieGenError(f"unknown rewriter {name!r} (choose from {', '.join(BACKENDS)})")
    try:
        if key == "template":
            return TemplateRewriter(style, **options)
        backend = OpenAIRewriter if key == "openai" else TransformersRewriter
        return backend(**options, system_prompt=system_prompt(style))
    except TypeError as e:
        raise MovieGenError(f"invalid options for the {key} rewriter: {_first_line(e)}") from None


def rewriter_from_options(
    backend: str = "template",
    url: str | None = None,
    model: str | None = None,
    path: str | Path | None = None,
    style: CaptionStyle | None = None,
    device: str = "cpu",
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
    options = {"openai": {"base_url": url, "model": model}, "transformers": {"path": path, "device": device}}
    return load_rewriter(key, style, **options.get(key, {}))


def style_from_option(value: str | None) -> CaptionStyle | None:
    """``--style``: a style name, ``none``, or a pipeline folder (its index's ``caption_style``)."""
    if value is None:
        from moviegen.pipeline import DEFAULT_MODEL

        value = str(DEFAULT_MODEL)
    if value.strip().lower() == "none":
        return None
    if Path(value).is_dir():
        from moviegen.pipeline import read_index

        return caption_style(read_index(value).get("caption_style"))
    return caption_style(value)


def rewrite_cli(
    prompt: Annotated[
        str | None, typer.Argument(help='Prompt, optionally with "FPS-8. Camera: pan left." prefixes.')
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Rewrite every line of this file; prints JSONL.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="With --file: write the JSONL here.")] = None,
    style: Annotated[
        str | None,
        typer.Option(
            help="Caption style: a pipeline folder, a style name (world) or none. Default: the "
            "shipped model's."
        ),
    ] = None,  # fmt: skip
    backend: Annotated[str, typer.Option(help="Rewriter: template | openai | transformers.")] = "template",
    url: Annotated[
        str | None, typer.Option(help="openai: server base URL, e.g. http://localhost:8000/v1.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="openai: model name.")] = None,
    path: Annotated[Path | None, typer.Option(help="transformers: local causal LM folder.")] = None,
    device: Annotated[str, typer.Option(help="transformers: auto | cpu | cuda[:N].")] = "auto",
) -> None:
    """Rewrite prompts into the style of a model's training captions (paper §3.6)."""
    from moviegen.devices import resolve_device
    from moviegen.files import check_output_file, write_atomic

    if (prompt is None) == (file is None):
        raise MovieGenError("give either a PROMPT or --file PROMPTS.txt")
    if out is not None and file is None:
        raise MovieGenError("--out goes with --file")
    if out is not None:
        check_output_file(out)
    lines = _read_prompt_lines(file) if file is not None else []
    dev = str(resolve_device(device)) if backend.strip().lower() == "transformers" else "cpu"
    rewriter = rewriter_from_options(backend, url, model, path, style_from_option(style), dev)
    if file is None:
        typer.echo(rewrite_prompt(prompt, rewriter))
        return
    rows, failed = [], 0
    for number, text in lines:
        try:
            rows.append({"line": number, "prompt": text, "rewritten": rewrite_prompt(text, rewriter)})
        except MovieGenError as e:
            failed += 1
            rows.append({"line": number, "prompt": text, "error": str(e)})
    jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if out is not None:
        write_atomic(out, jsonl)
        typer.echo(
            f"rewrote {len(rows) - failed} prompts into {out}" + (f", {failed} failed" if failed else "")
        )
    else:
        typer.echo(jsonl, nl=False)
    if failed:
        raise typer.Exit(1)


def _read_prompt_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines of a prompt file (``#`` comments skipped), with their line numbers."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MovieGenError(f"prompt file not found: {path}") from None
    except IsADirectoryError:
        raise MovieGenError(f"prompt file {path} is a directory") from None
    except UnicodeDecodeError:
        raise MovieGenError(f"prompt file is not UTF-8 text: {path}") from None
    lines = [
        (i, s.strip()) for i, s in enumerate(text.splitlines(), 1) if s.strip() and not s.startswith("#")
    ]
    if not lines:
        raise MovieGenError(f"no prompts in {path}")
    return lines


__all__ = [
    "BACKENDS",
    "DEFAULT_SYSTEM_PROMPT",
    "CaptionStyle",
    "OpenAIRewriter",
    "Rewriter",
    "TemplateRewriter",
    "TransformersRewriter",
    "caption_style",
    "load_rewriter",
    "rewrite_cli",
    "rewrite_prompt",
    "rewriter_from_options",
    "style_from_option",
    "system_prompt",
]
