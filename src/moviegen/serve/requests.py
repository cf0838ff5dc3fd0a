"""What a job request may be: the request model (its JSON schema is the API's), the service's bounds, and
the checks of a request and its uploads before it is queued (:func:`check_request`, :func:`sniff_upload`,
:func:`check_upload`). Everything here raises :class:`MovieGenError` with the line the API answers (422)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from moviegen.errors import MovieGenError

TASKS = ("generate", "edit", "upsample", "audio")
UPLOADS = {"reference": ("generate",), "source": ("edit", "upsample", "audio")}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (the service's bounds; ``moviegen serve`` options)."""

    max_prompt: int = 2000
    max_frames: int = 128
    max_side: int = 512
    max_steps: int = 250
    max_upload_bytes: int = 32 << 20
    max_queue: int = 64


class JobRequest(BaseModel):
    """A job: ``task`` and every option of the matching command (``moviegen generate`` / ``edit`` /
    ``upsample`` / ``audio``). Unknown keys and wrong types are refused (422)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    task: Literal["generate", "edit", "upsample", "audio"] = "generate"
    prompt: str = Field("", description="generate: the text prompt; edit: the instruction; audio: the sound")
    model: str | None = Field(None, max_length=64, description="generate: a model name from GET /v1/info")
    frames: int = Field(16, ge=1, description="generate: frames (1: a PNG image)")
    height: int = Field(64, ge=16, multiple_of=16)
    width: int = Field(64, ge=16, multiple_of=16)
    fps: int | None = Field(None, ge=1, le=120)
    steps: int | None = Field(None, ge=1, description="Euler steps (default: the model's own)")
    schedule: Literal["linear-quadratic", "linear"] | None = Field(None, description="default: the model's own")
    guidance: float | None = Field(None, ge=0, lt=1000)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    camera: str | None = Field(None, max_length=64, description='generate: a camera motion, e.g. "pan left"')
    rewrite: bool | None = None
    upsample: bool = Field(False, description="generate: then upsample 2x (the cascade)")
    audio: bool = Field(False, description="generate: then add sound (the cascade)")
    audio_prompt: str | None = Field(None, description="generate with audio: the sound (default: the prompt)")
    music: str | None = Field(None, description="audio: a music prompt")
    max_frames: int | None = Field(None, ge=1, description="edit / upsample / audio: read at most this many frames")


def check_request(req: JobRequest, limits: Limits, members: dict[str, bool], models: list[str],
                  files: set[str]) -> dict:  # fmt: skip
    """The request as the worker reads it, or a :class:`MovieGenError` saying what is wrong."""
    from moviegen.cascade import VideoRequest

    for name in ("prompt", "audio_prompt", "music"):
        text = getattr(req, name)
        if text is not None and len(text) > limits.max_prompt:
            raise MovieGenError(f"{name} is {len(text)} characters long (at most {limits.max_prompt})")
    for name, value, limit in (("frames", req.frames, limits.max_frames), ("height", req.height, limits.max_side),
                               ("width", req.width, limits.max_side), ("steps", req.steps, limits.max_steps),
                               ("max_frames", req.max_frames, limits.max_frames)):  # fmt: skip
        if value is not None and value > limit:
            raise MovieGenError(f"{name} is {value}: this server allows at most {limit}")
    for name, tasks in UPLOADS.items():
        if name in files and req.task not in tasks:
            raise MovieGenError(f"a {name} file is for the {' / '.join(tasks)} task, not {req.task}")
    values = req.model_dump()
    if req.task == "generate":
        if not req.prompt.strip():
            raise MovieGenError("a generate job needs a prompt")
        VideoRequest(req.prompt, req.frames, req.height, req.width, req.fps, req.steps, req.schedule,
                     req.guidance, req.seed, req.camera).validate()  # fmt: skip
        if req.model is not None and req.model not in models:
            raise MovieGenError(f"unknown model {req.model!r} (this server has {', '.join(models)})")
        wanted = [("reference", "reference" in files), ("upsample", req.upsample), ("audio", req.audio)]
        if req.audio and req.frames == 1:
            raise MovieGenError("audio needs a video: frames must be > 1")
        if "reference" in files and (req.camera is not None or req.rewrite or req.model is not None):
            raise MovieGenError("camera, rewrite and model do not apply with a reference face")
    else:
        if "source" not in files:
            raise MovieGenError(f"an {req.task} job needs a source video (a multipart 'source' file)")
        if req.task in ("edit", "audio") and not req.prompt.strip():
            raise MovieGenError(f"an {req.task} job needs a prompt ({'the instruction' if req.task == 'edit' else 'the sound'})")
        wanted = [(req.task, True)]
    if missing := [name for name, asked in wanted if asked and not members.get(name)]:
        raise MovieGenError(f"this server has no model for: {', '.join(missing)}")
    return values


def sniff_upload(head: bytes, name: str) -> None:
    """Uploads are what they claim: a PNG/JPEG reference, an MP4/MOV source (by their first bytes)."""
    if name == "reference" and not (head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff")):
        raise MovieGenError("the reference must be a PNG or JPEG image")
    if name == "source" and head[4:8] != b"ftyp":
        raise MovieGenError("the source must be an MP4 video")


def check_upload(name: str, path: Path) -> None:
    """Decode an upload once before queueing it: a corrupt file is a 422 now, not a failed job later."""
    if name == "reference":
        from moviegen.personalize import read_reference

        read_reference(path)
        return
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MovieGenError("the source has no video stream")
    except av.error.FFmpegError as e:
        raise MovieGenError(f"the source is not a readable video ({e})") from None
