"""Aspect-ratio × duration buckets and the bucketed batch sampler (paper §3.2).

Movie Gen trains on videos of several aspect ratios and lengths. Clips are grouped into **buckets**
(5 aspect ratios × 5 durations in the paper) and every sample of a bucket has exactly the same pixel
size and frame count, hence the same latent shape, so that a batch drawn from one bucket stacks into one
tensor without padding.

* :class:`Bucket` is one (height, width, frames) cell; its latent shape follows the TAE:
  ``(16, ceil(frames / 8), height / 8, width / 8)``.
* :class:`BucketGrid` is a config (presets ``paper-768``, ``paper-256``, ``tiny``) with
  :meth:`BucketGrid.assign`, which picks a clip's bucket, and :func:`fit_to_bucket`, which resizes,
  centre-crops and trims a clip to it.
* :class:`BucketBatchSampler` yields batches of dataset indices in which every *global* batch comes from
  one bucket; each data-parallel rank receives its contiguous slice of it, and the sampler resumes
  exactly from a ``state_dict``.

Sizes in :class:`BucketGrid` are ``(height, width)`` pairs, in the same order as tensors and
:meth:`BucketGrid.assign`. Bucket names read ``"{width}x{height}-{frames}f"`` (a landscape 1024×576
clip of 256 frames is ``"1024x576-256f"``), the way the paper writes resolutions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from moviegen.config import Config, require
from moviegen.errors import MovieGenError

SIZE_MULTIPLE = 16
"""Bucket heights and widths are multiples of 16: the TAE's 8× compression times the 2×2 patch."""

# [choice] The paper names 1024×576 and 576×1024 among its 5 aspect ratios but not the other three. We
# add the square 768×768 and 7:5 landscape / 5:7 portrait 896×640 / 640×896: all five have about 768²
# pixels (0.57–0.59 Mpx, so about the same token count per frame) and are multiples of 16.
PAPER_768_SIZES = ((576, 1024), (640, 896), (768, 768), (896, 640), (1024, 576))
# [choice] The same five ratios at about 256² pixels, rounded to multiples of 16: 352×192 (the paper's
# 5B ablation resolution, ≈16:9), 288×208 (≈7:5), 256×256, and their portrait versions.
PAPER_256_SIZES = ((192, 352), (208, 288), (256, 256), (288, 208), (352, 192))
# [paper: 4–16 s clips] [choice: which five] 4, 6, 8, 12 and 16 s at 16 fps → 8, 12, 16, 24, 32 latent
# frames; 256 frames (16 s) is the paper's longest context.
PAPER_DURATIONS = (64, 96, 128, 192, 256)


@dataclass(frozen=True)
class Bucket:
    """One bucket: every clip in it is resized/cropped to ``height × width`` and trimmed to ``frames``."""

    name: str
    height: int
    width: int
    frames: int

    LATENT_CHANNELS: ClassVar[int] = 16
    COMPRESSION: ClassVar[int] = 8

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """``(C, T, H, W)`` of the TAE latent: ``(16, ceil(frames/8), height/8, width/8)``."""
        c = self.COMPRESSION
        return (self.LATENT_CHANNELS, math.ceil(self.frames / c), self.height // c, self.width // c)

    @property
    def aspect(self) -> float:
        """Width / height."""
        return self.width / self.height

    @property
    def seconds(self) -> float:
        """Duration at 16 fps (the paper's training frame rate)."""
        return self.frames / 16


def bucket_name(height: int, width: int, frames: int) -> str:
    return f"{width}x{height}-{frames}f"


@dataclass(frozen=True)
class BucketGrid(Config):
    """Aspect sizes × durations. ``aspect_sizes`` are ``(height, width)`` pairs; ``durations`` frames.

    Presets: ``paper-768`` (5 sizes of ≈768² pixels × 64/96/128/192/256 frames, i.e. 4–16 s at 16 fps),
    ``paper-256`` (the same ratios at ≈256²) and ``tiny`` (32×32, 32×48, 48×32 × 8/16 frames, for tests).
    """

    aspect_sizes: tuple[tuple[int, int], ...] = PAPER_256_SIZES
    durations: tuple[int, ...] = PAPER_DURATIONS

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper-768": {"aspect_sizes": PAPER_768_SIZES, "durations": PAPER_DURATIONS},
        "paper-256": {"aspect_sizes": PAPER_256_SIZES, "durations": PAPER_DURATIONS},
        "tiny": {"aspect_sizes": ((32, 32), (32, 48), (48, 32)), "durations": (8, 16)},
    }

    def validate(self) -> None:
        owner = type(self).__name__
        require(len(self.aspect_sizes) > 0, owner, "aspect_sizes must not be empty")
        require(len(self.durations) > 0, owner, "durations must not be empty")
        for size in self.aspect_sizes:
            require(
                len(size) == 2 and all(isinstance(s, int) and s > 0 and s % SIZE_MULTIPLE == 0 for s in size),
                owner,
                f"aspect size {size!r} must be (height, width), positive multiples of {SIZE_MULTIPLE}",
            )
        ratios = [round(math.log(w / h), 9) for h, w in self.aspect_sizes]
        require(len(set(ratios)) == len(ratios), owner, "aspect_sizes must have distinct aspect ratios")
        require(all(isinstance(d, int) and d >= 1 for d in self.durations), owner, "durations must be >= 1")
        require(len(set(self.durations)) == len(self.durations), owner, "durations must be distinct")

    @property
    def buckets(self) -> list[Bucket]:
        """Every bucket, sizes in config order, durations ascending."""
        return [
            Bucket(bucket_name(h, w, t), h, w, t)
            for h, w in self.aspect_sizes
            for t in sorted(self.durations)
        ]

    def bucket(self, name: str) -> Bucket:
        for b in self.buckets:
            if b.name == name:
                return b
        raise MovieGenError(f"no bucket named {name!r} in this grid")

    def assign(self, height: int, width: int, frames: int) -> Bucket | None:
        """The bucket for a ``height × width`` clip of ``frames`` frames, or None if it is too short.

        The aspect size is the one whose log aspect ratio is closest to the clip's (ties: the first in
        config order); the duration is the longest one that is ``<= frames``. The clip is then resized
        to cover the bucket, centre-cropped and trimmed (:func:`fit_to_bucket`).
        """
        for label, value in (("height", height), ("width", width), ("frames", frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MovieGenError(f"clip {label} must be a positive integer, got {value!r}")
        fitting = [d for d in self.durations if d <= frames]
        if not fitting:
            return None
        target = math.log(width / height)
        h, w = min(self.aspect_sizes, key=lambda s: abs(math.log(s[1] / s[0]) - target))
        t = max(fitting)
        return Bucket(bucket_name(h, w, t), h, w, t)


def fit_to_bucket(video: Tensor, bucket: Bucket, chunk_frames: int = 32) -> Tensor:
    """Fit ``(3, T, H, W)`` to a bucket: first ``bucket.frames`` frames, resized, centre-cropped.

    The frames are scaled (bilinear, antialiased) by the smallest factor that makes them cover
    ``height × width`` while keeping their aspect ratio, then centre-cropped; frames are processed
    ``chunk_frames`` at a time to bound memory. The filter weights are non-negative, so values stay in
    the input's range ([-1, 1]).
    """
    if not isinstance(video, Tensor) or video.dim() != 4 or video.shape[0] != 3:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise MovieGenError(f"expected frames (3, T, H, W); got {shape}")
    _, t, h, w = video.shape
    if t < bucket.frames:
        raise MovieGenError(f"clip has {t} frames, bucket {bucket.name} needs {bucket.frames}")
    video = video[:, : bucket.frames]
    scale = max(bucket.height / h, bucket.width / w)
    size = (max(bucket.height, round(h * scale)), max(bucket.width, round(w * scale)))
    y0 = (size[0] - bucket.height) // 2
    x0 = (size[1] - bucket.width) // 2
    out = video.new_empty(3, bucket.frames, bucket.height, bucket.width)
    for s in range(0, bucket.frames, chunk_frames):
        frames = video[:, s : s + chunk_frames].transpose(0, 1).float()
        if size != (h, w):
            frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
        crop = frames[:, :, y0 : y0 + bucket.height, x0 : x0 + bucket.width]
        out[:, s : s + chunk_frames] = crop.transpose(0, 1).to(out.dtype)
    return out


class BucketBatchSampler:
    """Deterministic, resumable, infinite batches of dataset indices, each global batch from one bucket.

    Per epoch ``e`` (a generator seeded with ``seed + e``): the items of each bucket are shuffled and cut
    into global batches of ``global_batch`` items; the batches of all buckets are then shuffled together.
    A bucket's incomplete last batch is dropped (``drop_last``) or completed by repeating items of the
    same bucket, so a bucket smaller than a global batch is skipped with ``drop_last``. The number of
    batches per epoch is therefore the same every epoch.

    This rank yields its contiguous slice ``[dp_rank·b : (dp_rank+1)·b]`` of every global batch, with
    ``b = global_batch // dp_size``; all ranks see the same global batches because they share the seed.
    ``dp_rank``/``dp_size`` are the *data-parallel* coordinates: ranks of one tensor/context-parallel
    group must pass the same ``dp_rank``.

    Iteration never ends (epochs follow each other). :meth:`state_dict` is the position of the next
    batch; a sampler built with the same arguments and given it via :meth:`load_state_dict` yields
    exactly the batches the uninterrupted one would. A ``DataLoader`` draws from its batch sampler ahead
    of the training loop (prefetching); in that case save :meth:`state_after` with the number of batches
    the loop actually consumed since construction or the last :meth:`load_state_dict`.
    """

    def __init__(
        self,
        bucket_of: Sequence[str],
        global_batch: int,
        seed: int,
        dp_rank: int = 0,
        dp_size: int = 1,
        drop_last: bool = True,
    ):
        for label, value in (("global_batch", global_batch), ("dp_size", dp_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MovieGenError(f"{label} must be a positive integer, got {value!r}")
        if global_batch % dp_size:
            raise MovieGenError(f"global_batch {global_batch} is not divisible by dp_size {dp_size}")
        if isinstance(dp_rank, bool) or not isinstance(dp_rank, int) or not 0 <= dp_rank < dp_size:
            raise MovieGenError(f"dp_rank must be in [0, {dp_size}), got {dp_rank!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise MovieGenError(f"seed must be an integer, got {seed!r}")
        self.global_batch, self.seed = global_batch, seed
        self.dp_rank, self.dp_size, self.drop_last = dp_rank, dp_size, drop_last
        self.local_batch = global_batch // dp_size
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(bucket_of):
            groups.setdefault(str(name), []).append(i)
        self.groups = {name: groups[name] for name in sorted(groups)}
        per_bucket = [
            len(v) // global_batch if drop_last else math.ceil(len(v) / global_batch) for v in groups.values()
        ]
        self.batches_per_epoch = sum(per_bucket)
        if self.batches_per_epoch == 0:
            largest = max((len(v) for v in groups.values()), default=0)
            raise MovieGenError(
                f"no bucket holds a full global batch of {global_batch} (largest bucket: {largest} items)"
            )
        self.epoch = 0
        self.batch_in_epoch = 0
        self._start = (0, 0)
        self._cache: tuple[int, list[list[int]]] | None = None

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All global batches of an epoch, in order (every rank computes the same list)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(self.seed + epoch)
        n = self.global_batch
        batches: list[list[int]] = []
        for items in self.groups.values():
            order = [items[j] for j in torch.randperm(len(items), generator=g).tolist()]
            full = len(order) // n
            batches.extend(order[k * n : (k + 1) * n] for k in range(full))
            rest = order[full * n :]
            if rest and not self.drop_last:
                repeats = math.ceil(n / len(order)) + 1
                batches.append((rest + order * repeats)[:n])
        shuffled = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
        self._cache = (epoch, shuffled)
        return shuffled

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.dp_rank * self.local_batch, (self.dp_rank + 1) * self.local_batch
        while True:
            batches = self.global_batches(self.epoch)
            while self.batch_in_epoch < len(batches):
                batch = batches[self.batch_in_epoch]
                self.batch_in_epoch += 1
                yield batch[lo:hi]
            self.epoch += 1
            self.batch_in_epoch = 0

    def _normalise(self, epoch: int, batch: int) -> dict[str, int]:
        epoch += batch // self.batches_per_epoch
        return {"epoch": epoch, "batch_in_epoch": batch % self.batches_per_epoch, "seed": self.seed}

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batch_in_epoch", "seed"}``: where the next yielded batch comes from."""
        return self._normalise(self.epoch, self.batch_in_epoch)

    def state_after(self, num_batches: int) -> dict[str, int]:
        """The state after ``num_batches`` batches from the start (construction or last load)."""
        if num_batches < 0:
            raise MovieGenError(f"num_batches must be >= 0, got {num_batches}")
        return self._normalise(self._start[0], self._start[1] + num_batches)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; the seed must match this sampler's."""
        try:
            epoch, batch, seed = (int(state[k]) for k in ("epoch", "batch_in_epoch", "seed"))
        except (KeyError, TypeError, ValueError) as e:
            raise MovieGenError(f"invalid sampler state {state!r}: {e}") from None
        if seed != self.seed:
            raise MovieGenError(
                f"sampler state was saved with seed {seed}, this sampler has seed {self.seed}"
            )
        if epoch < 0 or not 0 <= batch < self.batches_per_epoch:
            raise MovieGenError(
                f"sampler state (epoch {epoch}, batch {batch}) does not fit {self.batches_per_epoch} "
                "batches per epoch: was the dataset or global batch changed?"
            )
        self.epoch, self.batch_in_epoch = epoch, batch
        self._start = (epoch, batch)
