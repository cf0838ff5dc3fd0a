"""One generation of the cast, from a request to a file: the path shared by the commands
(``moviegen generate`` / ``image``) and the service (``moviegen serve``).

The paper's cascade (§5, §7): the text-to-video model — or the personalized one when a reference face is
given — samples at its own size, the spatial upsampler doubles it, Movie Gen Audio adds sound. Here that is
:func:`prepare` (every check before any work), :func:`sample` (the video stages) and :func:`write` (the
sound stage, then an MP4, or a PNG for one frame). Progress goes to ``report(stage, step, total)`` after each
Euler step of each stage; the stage names are :func:`stages`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from moviegen.errors import MovieGenError
from moviegen.models.text import merge_prompt_controls
from moviegen.pipeline import DEFAULT_FPS, GenerationRequest, PreparedPrompt

Report = Callable[[str, int, int], None]


@dataclass(frozen=True)
class VideoRequest:
    """What ``moviegen generate`` takes, less the output path and the models."""

    prompt: str
    frames: int = 16
    height: int = 64
    width: int = 64
    fps: int | None = None
    steps: int | None = None  # None: the model's own (50; a distilled model's few)
    schedule: str | None = None  # None: the model's own
    guidance: float | None = None
    seed: int = 0
    camera: str | None = None
    rewrite: bool | None = None

    def validate(self) -> None:
        steps = 50 if self.steps is None else self.steps
        schedule = "linear-quadratic" if self.schedule is None else self.schedule
        GenerationRequest(self.prompt, self.frames, self.height, self.width, self.fps, steps, schedule, self.guidance,
                          self.seed, self.camera).validate()  # fmt: skip


def stages(upsample: bool = False, audio: bool = False) -> list[str]:
    """The cascade's stage names, in order."""
    return ["sampling"] + ["upsampling"] * upsample + ["audio"] * audio


def prepare(pipe, request: VideoRequest, reference: Tensor | None = None, upsampler=None) -> PreparedPrompt | None:
    """Check everything before any sampling: the request against the model (sizes, frames), the reference
    face (found, not too small), the upsampler's output size. Returns the prompt as the text-to-video model
    will encode it (None for the personalized model, which encodes the prompt itself)."""
    request.validate()
    if reference is not None:
        if request.camera is not None or request.rewrite:
            raise MovieGenError("camera motion and prompt rewriting are not available with a reference face")
        pipe.check_reference(reference)
        pipe._check_fits(request.frames, pipe.latent_shape(request.frames, request.height, request.width))
    else:
        r = request
        pipe.check_request(r.prompt, r.frames, r.height, r.width, r.fps, r.steps, r.schedule, r.guidance, r.seed,
                           r.camera)  # fmt: skip
    if upsampler is not None:
        upsampler.output_size(request.height, request.width)
    if reference is not None:
        return None
    return pipe.prepare_prompt(request.prompt, request.fps, request.camera, request.rewrite, request.frames)


def _stage(report: Report | None, name: str):
    return None if report is None else (lambda i, n: report(name, i + 1, n))


@contextmanager
def _timed(times: dict[str, float] | None, name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        if times is not None:
            times[name] = times.get(name, 0.0) + time.perf_counter() - start


def sample(pipe, request: VideoRequest, prepared: PreparedPrompt | None, reference: Tensor | None = None,
           upsampler=None, report: Report | None = None, times: dict[str, float] | None = None,
           ) -> tuple[Tensor, int]:  # fmt: skip
    """The video stages: sample (then upsample). Returns frames ``(3, T, H, W)`` in [-1, 1] and their rate;
    ``times`` gets each stage's wall time in seconds."""
    with _timed(times, "sampling"):
        video, fps = _sample(pipe, request, prepared, reference, report)
    if upsampler is not None:
        with _timed(times, "upsampling"):
            video = upsampler(video, seed=request.seed, callback=_stage(report, "upsampling"))
    return video, fps


def _sample(pipe, request: VideoRequest, prepared: PreparedPrompt | None, reference: Tensor | None,
            report: Report | None) -> tuple[Tensor, int]:  # fmt: skip
    r = request
    if reference is not None:
        video = pipe(r.prompt, reference, num_frames=r.frames, height=r.height, width=r.width, fps=r.fps,
                     num_steps=r.steps, schedule=r.schedule, guidance_scale=r.guidance, seed=r.seed,
                     callback=_stage(report, "sampling"))  # fmt: skip
        fps = merge_prompt_controls(r.prompt, r.fps, None)[1] or DEFAULT_FPS
    else:
        video = pipe(prepared, num_frames=r.frames, height=r.height, width=r.width, num_steps=r.steps,
                     schedule=r.schedule, guidance_scale=r.guidance, seed=r.seed,
                     callback=_stage(report, "sampling"))  # fmt: skip
        fps = prepared.fps
    return video, fps


@dataclass(frozen=True)
class Sound:
    """The audio stage of a cascade: the audio model and what it is asked for."""

    pipe: object  # an AudioPipeline
    prompt: str
    music: str | None = None
    seed: int = 0
    steps: int | None = None  # None: the audio model's own
    guidance: float | None = None

    def __call__(self, video: Tensor, fps: float, report: Report | None = None) -> Tensor:
        return self.pipe(video, self.prompt, self.music, fps=fps, seed=self.seed, num_steps=self.steps,
                         guidance_scale=self.guidance, callback=_stage(report, "audio"))  # fmt: skip

    def check(self, video: Tensor, fps: float) -> None:
        self.pipe.check_request(video, self.prompt, fps, None)


def write(video: Tensor, fps: float, out: Path, sound: Sound | None = None, report: Report | None = None,
          wav: Path | None = None, times: dict[str, float] | None = None) -> Path:  # fmt: skip
    """Write ``video`` as an MP4 (with the cascade's sound muxed in as AAC, and also as ``wav`` when given), or
    as a PNG when ``out`` ends in ``.png`` (one frame). Atomic: nothing is left at ``out`` on failure.
    ``times`` gets the sound stage's and the writing's wall time."""
    from moviegen.video import write_image, write_video

    if out.suffix.lower() == ".png":
        if sound is not None:
            raise MovieGenError("sound needs a video: write an .mp4, not a PNG")
        with _timed(times, "writing"):
            return write_image(out, video)
    if sound is None:
        with _timed(times, "writing"):
            return write_video(out, video, fps=fps)
    from moviegen.audio_files import write_video_with_audio, write_wav

    sound.check(video, fps)
    with _timed(times, "audio"):
        waveform = sound(video, fps, report)
    with _timed(times, "writing"):
        if wav is not None:
            write_wav(wav, waveform, sound.pipe.sample_rate)
        return write_video_with_audio(out, video, fps, waveform, sound.pipe.sample_rate)
