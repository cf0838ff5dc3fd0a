"""Flow matching: the training path and loss, timestep sampling, inference schedules and the Euler sampler.

Paper §3.1.1 (conditional flow matching with the optimal-transport path) and §3.1.6 (inference):

- path ``x_t = t·x1 + (1 − (1 − σmin)·t)·x0`` with x0 ~ N(0, I) noise, x1 data, σmin = 1e-5; t = 0 is noise
  and t = 1 is data;
- target velocity ``v = dx_t/dt = x1 − (1 − σmin)·x0``, loss = MSE(u(x_t, P, t), v);
- t ~ logit-normal(0, 1) in training;
- inference integrates dx/dt = u from t = 0 to 1 with first-order Euler steps on the linear-quadratic
  schedule, with classifier-free guidance ``u = u_uncond + s·(u_cond − u_uncond)``, s = 7.5.

The unconditional ("null text") branch is the same text tokens with an all-False mask: the backbone's
cross-attention then contributes exactly zero. Text dropout in training (:func:`drop_text`) produces the
same null text, so the two match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from moviegen.errors import MovieGenError

SIGMA_MIN = 1e-5
TEXT_DROPOUT = 0.1  # our choice: the paper does not state its text-dropout rate (0.1–0.2 is common)
GUIDANCE_SCALE = 7.5  # the paper's classifier-free guidance scale (§3.1.6)


def _expand(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample time (B,) (or a scalar) over x of shape (B, ...)."""
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    if t.ndim == 0:
        return t
    if t.shape != x.shape[:1]:
        raise MovieGenError(f"t must have shape ({x.shape[0]},) to match the batch, got {tuple(t.shape)}")
    return t.view(-1, *([1] * (x.ndim - 1)))


def interpolate(
    x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float, sigma_min: float = SIGMA_MIN
) -> torch.Tensor:
    """The point ``x_t = t·x1 + (1 − (1 − σmin)·t)·x0`` on the path from noise x0 to data x1."""
    t = _expand(t, x1)
    return t * x1 + (1 - (1 - sigma_min) * t) * x0


def velocity_target(x0: torch.Tensor, x1: torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """The regression target ``v = x1 − (1 − σmin)·x0`` (the time derivative of :func:`interpolate`)."""
    return x1 - (1 - sigma_min) * x0


def sample_timesteps(
    n: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    location: float = 0.0,
) -> torch.Tensor:
    """n training times from the logit-normal(location, 1) distribution: sigmoid of N(location, 1).

    The paper uses location 0. A negative location moves training mass towards the noisy end (t → 0),
    where the sampler decides the layout and motion of a clip (SD3's timestep shift, in the other
    direction; our option, used by the world recipe).
    """
    return torch.sigmoid(torch.randn(n, generator=generator, device=device) + location)


def with_condition(x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """The model input: the latent, with a conditioning latent (same B, T, H, W) after it on the channels."""
    if cond is None:
        return x
    if cond.shape[0] != x.shape[0] or cond.shape[2:] != x.shape[2:]:
        raise MovieGenError(
            f"conditioning latent {tuple(cond.shape)} does not match the latent {tuple(x.shape)} "
            "(batch, frames, height and width must agree)"
        )
    return torch.cat([x, cond.to(x.dtype)], dim=1)


def flow_matching_loss(
    model: Callable[..., torch.Tensor],
    x1: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor | None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    t_location: float = 0.0,
    frame_diff_weight: float = 0.0,
    cond: torch.Tensor | None = None,
    **model_kwargs: Any,
) -> torch.Tensor:
    """Scalar flow-matching MSE of ``model(x_t, t, text, text_mask, **model_kwargs)`` against the velocity.

    ``cond`` (B, C', T, H, W), when given, is a conditioning latent concatenated after x_t on the channels
    (the variants' input, :meth:`MovieGenTransformer.from_base`); it is never noised.

    x1 is a batch of clean latents (B, C, T, H, W); t (B,) and noise (like x1) are drawn when not given
    (t from logit-normal(``t_location``, 1)). The MSE is computed in float32.

    ``frame_diff_weight`` λ > 0 adds λ·MSE of the error's difference between consecutive latent frames
    (our option, not the paper's). The loss stays a positive-definite quadratic form of the error, so its
    minimiser is still the conditional expected velocity E[v | x_t, text]; only which errors a finite
    model fixes first changes: motion lives in the frame-to-frame difference, a small part of the plain
    MSE.
    """
    if t is None:
        t = sample_timesteps(x1.shape[0], generator=generator, device=x1.device, location=t_location)
    if noise is None:
        noise = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    if noise.shape != x1.shape:
        raise MovieGenError(f"noise shape {tuple(noise.shape)} does not match the data {tuple(x1.shape)}")
    x_t = with_condition(interpolate(noise, x1, t), cond)
    error = model(x_t, t, text, text_mask, **model_kwargs).float() - velocity_target(noise, x1).float()
    loss = error.pow(2).mean()
    if frame_diff_weight > 0 and error.shape[2] > 1:
        loss = loss + frame_diff_weight * (error[:, :, 1:] - error[:, :, :-1]).pow(2).mean()
    return loss


def drop_text(
    text_mask: torch.Tensor, p: float = TEXT_DROPOUT, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Text dropout for classifier-free guidance: each row's mask becomes all-False with probability p."""
    if not 0.0 <= p <= 1.0:
        raise MovieGenError(f"text dropout probability must be in [0, 1], got {p}")
    keep = torch.rand(text_mask.shape[0], generator=generator, device=text_mask.device) >= p
    return text_mask & keep[:, None]


def linear(num_steps: int) -> torch.Tensor:
    """``num_steps + 1`` evenly spaced times 0, 1/S, …, 1 (float64)."""
    if num_steps < 1:
        raise MovieGenError(f"num_steps must be >= 1, got {num_steps}")
    return torch.arange(num_steps + 1, dtype=torch.float64) / num_steps


def linear_quadratic_schedule(num_steps: int = 50, emulated_steps: int = 250) -> torch.Tensor:
    """The paper's linear-quadratic schedule: ``num_steps`` steps emulating an ``emulated_steps`` linear one.

    With S = num_steps, N = emulated_steps, k = S // 2 and m = S − k, the times are

    - t_i = i / N for i = 0 … k (the first k steps of the N-step linear schedule), then
    - t_{k+j} = k/N + j/N + c·j² for j = 1 … m, with c = (1 − (k + m)/N) / m², so t_S = 1 exactly.

    The quadratic part has slope 1/N per step at the join (step sizes 1/N + c·(2j − 1) grow linearly), and
    c ≥ 0 exactly when N ≥ S. For S = 50, N = 250 the tail is 0.10528, 0.11312, 0.12352, …, 0.86912,
    0.93328, 1.0. With N = S this is the plain linear schedule. Returns S + 1 increasing float64 times.
    """
    if num_steps < 1:
        raise MovieGenError(f"num_steps must be >= 1, got {num_steps}")
    if emulated_steps < num_steps:
        raise MovieGenError(f"emulated_steps ({emulated_steps}) must be >= num_steps ({num_steps})")
    k = num_steps // 2
    m = num_steps - k
    n = emulated_steps
    c = (1.0 - (k + m) / n) / m**2
    head = torch.arange(k + 1, dtype=torch.float64) / n
    j = torch.arange(1, m + 1, dtype=torch.float64)
    tail = k / n + j / n + c * j**2
    tail[-1] = 1.0
    return torch.cat([head, tail])


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start frames of MultiDiffusion windows of ``window`` latent frames overlapping by ``overlap``.

    Windows step by ``window − overlap``; the last one is aligned to the end, so every frame is covered
    and no window sticks out. One window when the clip fits in it.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise MovieGenError(f"window must be a positive number of latent frames, got {window!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < window:
        raise MovieGenError(f"overlap must be in [0, window = {window}), got {overlap!r}")
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, window - overlap))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


WINDOW_WEIGHTS = ("uniform", "triangular")


def window_weights_for(span: int, kind: str = "uniform") -> torch.Tensor:
    """Per-frame fusion weights of one MultiDiffusion window of ``span`` frames: all ones (``uniform``), or
    ``triangular``: ``min(j + 1, span − j)`` for frame j, rising linearly from the edges to the centre."""
    if kind not in WINDOW_WEIGHTS:
        raise MovieGenError(f"unknown window weights {kind!r} (choose from {', '.join(WINDOW_WEIGHTS)})")
    if kind == "uniform":
        return torch.ones(span)
    j = torch.arange(span, dtype=torch.float32)
    return torch.minimum(j + 1, span - j)


def _repeat_kwargs(kwargs: dict[str, Any], batch: int) -> dict[str, Any]:
    """Duplicate per-sample tensor kwargs (first dim = batch) for the batched unconditional branch."""
    return {
        k: torch.cat([v, v]) if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == batch else v
        for k, v in kwargs.items()
    }


@torch.no_grad()
def sample(
    model: Callable[..., torch.Tensor],
    noise: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor | None,
    times: torch.Tensor,
    guidance_scale: float = GUIDANCE_SCALE,
    null_text_mask: torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
    cond: torch.Tensor | None = None,
    context: tuple[torch.Tensor, torch.Tensor] | None = None,
    window: int | None = None,
    overlap: int = 0,
    window_weights: str = "uniform",
    null_cond: torch.Tensor | None = None,
    cache_text: bool = True,
    **model_kwargs: Any,
) -> torch.Tensor:
    """Euler-integrate dx/dt = u(x, t) from ``times[0]`` (noise) to ``times[-1]`` (data); returns x1.

    The text (and context) tokens are the same at every step: with ``cache_text`` and a model that has
    ``text_cache`` (:meth:`MovieGenTransformer.text_cache`), every block's cross-attention keys and values are
    computed once for the run, and the unconditional branch's cross-attention (null text: its output is
    exactly zero) is skipped; the result is the same as without the cache.

    Classifier-free guidance: ``u = u_uncond + s·(u_cond − u_uncond)``. The unconditional branch uses the
    same text with ``null_text_mask`` (default all-False: null text) and runs in the same batched forward as
    the conditional one; with ``guidance_scale == 1`` it is skipped. Tensor ``model_kwargs`` whose first dim
    is the batch (e.g. ``task``) are repeated for the unconditional half. ``callback(i, num_steps)`` is called
    after step i (0-based) finishes. Runs under ``torch.no_grad``; deterministic for fixed inputs.

    Conditioning that rides along every step, in both guidance branches (guidance is on the text):

    - ``cond`` (B, C', T, H, W): a conditioning latent concatenated after x on the channels (the spatial
      upsampler's upsampled video, Edit's source video), :func:`with_condition`;
    - ``context`` (tokens (B, L', dim), mask (B, L')): extra context tokens appended to the text tokens for
      cross-attention (personalization's reference-image tokens).

    **MultiDiffusion** (paper §5, Bar-Tal et al. 2023): with ``window`` the latent frames are covered by
    windows of ``window`` frames overlapping by ``overlap`` (:func:`window_starts`); at every step the model
    runs on each window (seeing it as a clip of its own, positions from 0) and each frame's velocity is the
    average of the velocities of the windows that cover it. The Euler update then uses the fused velocity,
    so overlapping windows agree at every step. ``overlap = 0`` samples independent windows side by side
    (the ablation). Memory grows with the window, not the clip. ``window_weights`` ``"triangular"`` weights
    each window's velocity by :func:`window_weights_for` (highest at its centre, small at its edges) instead of
    a plain average: Movie Gen Audio's extension (paper §7), where a window's edge frames see least context.
    ``null_cond`` (the shape of ``cond``) is the unconditional branch's conditioning (default: ``cond``
    itself), so guidance can steer towards the condition as well as the text (Movie Gen Audio's video
    features).
    """
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.ndim != 1 or times.numel() < 2:
        raise MovieGenError(f"times must be a 1-D schedule of >= 2 values, got shape {tuple(times.shape)}")
    b = noise.shape[0]
    if text_mask is None:
        text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
    if cond is not None:
        with_condition(noise, cond)  # checks the shapes once, before any step
    guided = guidance_scale != 1.0
    if guided:
        if null_text_mask is None:
            null_text_mask = torch.zeros_like(text_mask)
        text_in = torch.cat([text, text])
        mask_in = torch.cat([text_mask, null_text_mask])
        kwargs_in = _repeat_kwargs(model_kwargs, b)
    else:
        text_in, mask_in, kwargs_in = text, text_mask, model_kwargs
    if context is not None:
        tokens, ctx_mask = context
        repeat = 2 if guided else 1
        text_in = torch.cat([text_in, tokens.repeat(repeat, 1, 1).to(text_in.dtype)], dim=1)
        mask_in = torch.cat([mask_in, ctx_mask.repeat(repeat, 1)], dim=1)

    if null_cond is not None and (cond is None or null_cond.shape != cond.shape):
        raise MovieGenError("null_cond needs a cond of the same shape")
    if cache_text and hasattr(model, "text_cache"):
        kwargs_in = kwargs_in | {"text_cache": model.text_cache(text_in, mask_in)}

    def velocity(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, null: torch.Tensor | None) -> torch.Tensor:
        inp = with_condition(x, cond)
        if not guided:
            return model(inp, t, text_in, mask_in, **kwargs_in)
        inp_null = inp if null is None else with_condition(x, null)
        both = model(torch.cat([inp, inp_null]), torch.cat([t, t]), text_in, mask_in, **kwargs_in)
        u_cond, u_uncond = both.chunk(2)
        return u_uncond + guidance_scale * (u_cond - u_uncond)

    frames = noise.shape[2]
    starts = window_starts(frames, window, overlap) if window is not None else [0]
    span = frames if window is None else min(window, frames)
    weight = window_weights_for(span, window_weights).to(noise.device, noise.dtype)
    x = noise
    num_steps = times.numel() - 1
    for i in range(num_steps):
        t = torch.full((b,), float(times[i]), device=noise.device, dtype=torch.float32)
        dt = float(times[i + 1] - times[i])
        if len(starts) == 1:
            u = velocity(x, t, cond, null_cond).to(x.dtype)
        else:
            u = torch.zeros_like(x)
            count = torch.zeros(frames, device=x.device, dtype=x.dtype)
            for s in starts:
                part = None if cond is None else cond[:, :, s : s + span]
                null = None if null_cond is None else null_cond[:, :, s : s + span]
                v = velocity(x[:, :, s : s + span], t, part, null).to(x.dtype)
                u[:, :, s : s + span] += v * weight.view(1, 1, -1, *([1] * (x.ndim - 3)))
                count[s : s + span] += weight
            u = u / count.view(1, 1, -1, *([1] * (x.ndim - 3)))
        x = x + dt * u
        if callback is not None:
            callback(i, num_steps)
    return x
