"""Aspect-ratio × duration buckets, fitting clips to them, and the bucketed batch sampler."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from moviegen.data.buckets import Bucket, BucketBatchSampler, BucketGrid, fit_to_bucket
from moviegen.errors import MovieGenError

# ---- grid and presets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paper-768", "paper-256", "tiny"])
def test_presets_are_valid_and_shapes_follow_the_tae(name):
    grid = BucketGrid.preset(name)
    buckets = grid.buckets
    assert len(buckets) == len(grid.aspect_sizes) * len(grid.durations)
    assert len({b.name for b in buckets}) == len(buckets)
    for b in buckets:
        assert b.height % 16 == 0 and b.width % 16 == 0
        assert b.latent_shape == (16, math.ceil(b.frames / 8), b.height // 8, b.width // 8)
        assert grid.bucket(b.name) == b
    assert BucketGrid.from_dict(grid.to_dict()) == grid


def test_paper_grids_have_five_ratios_and_four_to_sixteen_seconds():
    big, small = BucketGrid.preset("paper-768"), BucketGrid.preset("paper-256")
    assert len(big.aspect_sizes) == 5 and len(big.durations) == 5
    assert (576, 1024) in big.aspect_sizes and (1024, 576) in big.aspect_sizes  # the paper's examples
    assert [d / 16 for d in big.durations] == [4, 6, 8, 12, 16]
    assert max(b.latent_shape[1] for b in big.buckets) == 32  # 16 s → 32 latent frames
    for h, w in big.aspect_sizes:
        assert 0.95 < h * w / 768**2 < 1.05  # about the same token count per frame
    ratios = lambda g: sorted(w / h for h, w in g.aspect_sizes)  # noqa: E731
    for a, b in zip(ratios(big), ratios(small), strict=True):
        assert abs(math.log(a / b)) < 0.05


def test_grid_validation():
    with pytest.raises(MovieGenError, match="multiples of 16"):
        BucketGrid(aspect_sizes=((30, 32),), durations=(8,))
    with pytest.raises(MovieGenError, match="distinct aspect"):
        BucketGrid(aspect_sizes=((32, 32), (48, 48)), durations=(8,))
    with pytest.raises(MovieGenError, match="durations"):
        BucketGrid(aspect_sizes=((32, 32),), durations=(0,))
    with pytest.raises(MovieGenError, match="unknown BucketGrid preset"):
        BucketGrid.preset("paper-1080")
    with pytest.raises(MovieGenError, match="no bucket named"):
        BucketGrid.preset("tiny").bucket("nope")


# ---- assignment ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hwt, expected",
    [
        ((1080, 1920, 300), (576, 1024, 256)),  # 16:9 landscape, longer than 16 s → 16 s
        ((1920, 1080, 100), (1024, 576, 96)),  # portrait, 100 frames → the 6 s bucket
        ((500, 500, 64), (768, 768, 64)),  # square, exactly 4 s
        ((1080, 1440, 191), (640, 896, 128)),  # 4:3 is closest to 7:5; 191 < 192
        ((720, 1280, 192), (576, 1024, 192)),
    ],
)
def test_assign_picks_closest_ratio_and_longest_fitting_duration(hwt, expected):
    bucket = BucketGrid.preset("paper-768").assign(*hwt)
    assert (bucket.height, bucket.width, bucket.frames) == expected
    assert bucket.name == f"{expected[1]}x{expected[0]}-{expected[2]}f"


def test_assign_too_short_and_invalid():
    grid = BucketGrid.preset("paper-768")
    assert grid.assign(1080, 1920, 63) is None
    tiny = BucketGrid.preset("tiny")
    assert tiny.assign(30, 44, 9) == Bucket("48x32-8f", 32, 48, 8)
    assert tiny.assign(64, 40, 40).name == "32x48-16f"
    with pytest.raises(MovieGenError, match="height"):
        grid.assign(0, 10, 10)
    with pytest.raises(MovieGenError, match="frames"):
        grid.assign(10, 10, 2.5)


# ---- fitting ------------------------------------------------------------------------------------------


def test_fit_to_bucket_trims_resizes_and_centre_crops():
    t, h, w = 20, 40, 100
    xs = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(3, t, h, w)
    ts = torch.linspace(-1, 1, t).view(1, t, 1, 1)
    video = (xs * 0.5 + ts * 0.5).contiguous()
    bucket = Bucket("b", 32, 48, 16)
    out = fit_to_bucket(video, bucket, chunk_frames=5)
    assert out.shape == (3, 16, 32, 48)
    assert out.min() >= -1 and out.max() <= 1
    # first 16 frames kept: the time ramp increases and matches the source's first frames
    assert torch.allclose(out.mean(dim=(0, 2, 3)) - out.mean(), (ts[0, :16, 0, 0] - ts[0, :16].mean()) * 0.5)
    # 40×100 scaled by 0.8 to 32×80, the middle 48 columns kept: a symmetric horizontal ramp
    row = out[0, 0, 0]
    assert torch.allclose(row + row.flip(0), 2 * row.mean(), atol=1e-5)
    assert (
        0.55 < float(row[-1] - row[0]) < 0.65
    )  # 48 of 80 columns of a ramp spanning 1: cropped, not squeezed


def test_fit_to_bucket_identity_and_errors():
    video = torch.rand(3, 10, 32, 32) * 2 - 1
    bucket = Bucket("b", 32, 32, 8)
    assert torch.equal(fit_to_bucket(video, bucket), video[:, :8])
    with pytest.raises(MovieGenError, match="needs 16"):
        fit_to_bucket(video, Bucket("c", 32, 32, 16))
    with pytest.raises(MovieGenError, match=r"\(3, T, H, W\)"):
        fit_to_bucket(video[0], bucket)


# ---- sampler ------------------------------------------------------------------------------------------

BUCKET_OF = ["a"] * 37 + ["b"] * 20 + ["c"] * 3 + ["a"] * 3  # c is smaller than one global batch
GLOBAL = 8


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_every_global_batch_comes_from_one_bucket():
    sampler = BucketBatchSampler(BUCKET_OF, GLOBAL, seed=3)
    assert sampler.batches_per_epoch == 40 // 8 + 20 // 8  # c skipped (drop_last)
    for epoch in range(3):
        batches = sampler.global_batches(epoch)
        assert len(batches) == sampler.batches_per_epoch
        seen = [i for b in batches for i in b]
        assert len(seen) == len(set(seen))  # no repeats within an epoch
        for batch in batches:
            assert len(batch) == GLOBAL
            assert len({BUCKET_OF[i] for i in batch}) == 1
            assert "c" not in {BUCKET_OF[i] for i in batch}
    # shuffled across buckets: not all a-batches first
    kinds = [BUCKET_OF[b[0]] for b in sampler.global_batches(0)]
    assert set(kinds) == {"a", "b"}


def test_epochs_are_reshuffled_and_iteration_crosses_epochs():
    sampler = BucketBatchSampler(BUCKET_OF, GLOBAL, seed=0)
    n = sampler.batches_per_epoch
    got = take(sampler, 2 * n + 1)
    assert got[:n] == sampler.global_batches(0)
    assert got[n : 2 * n] == sampler.global_batches(1)
    assert got[2 * n] == sampler.global_batches(2)[0]
    assert sampler.global_batches(0) != sampler.global_batches(1)
    assert sampler.state_dict() == {"epoch": 2, "batch_in_epoch": 1, "seed": 0}


def test_deterministic_for_a_seed():
    a = take(BucketBatchSampler(BUCKET_OF, GLOBAL, seed=7), 12)
    b = take(BucketBatchSampler(BUCKET_OF, GLOBAL, seed=7), 12)
    c = take(BucketBatchSampler(BUCKET_OF, GLOBAL, seed=8), 12)
    assert a == b
    assert a != c


@pytest.mark.parametrize("dp_size", [2, 4, 8])
def test_rank_slices_are_disjoint_contiguous_and_cover_the_global_batch(dp_size):
    reference = take(BucketBatchSampler(BUCKET_OF, GLOBAL, seed=1), 15)
    per_rank = [
        take(BucketBatchSampler(BUCKET_OF, GLOBAL, seed=1, dp_rank=r, dp_size=dp_size), 15)
        for r in range(dp_size)
    ]
    for step, global_batch in enumerate(reference):
        slices = [per_rank[r][step] for r in range(dp_size)]
        assert all(len(s) == GLOBAL // dp_size for s in slices)
        assert sum(slices, []) == global_batch  # contiguous, in rank order
        assert len(set(sum(slices, []))) == GLOBAL  # disjoint


@pytest.mark.parametrize("stop", [1, 4, 7, 13])
@pytest.mark.parametrize("dp_rank", [0, 1])
def test_resume_mid_epoch_yields_exactly_the_uninterrupted_batches(stop, dp_rank):
    kwargs = dict(bucket_of=BUCKET_OF, global_batch=GLOBAL, seed=5, dp_rank=dp_rank, dp_size=2)
    uninterrupted = take(BucketBatchSampler(**kwargs), 20)
    first = BucketBatchSampler(**kwargs)
    head = take(first, stop)
    state = first.state_dict()
    assert set(state) == {"epoch", "batch_in_epoch", "seed"}
    resumed = BucketBatchSampler(**kwargs)
    resumed.load_state_dict(dict(state))
    assert head + take(resumed, 20 - stop) == uninterrupted


def test_state_after_accounts_for_prefetching():
    sampler = BucketBatchSampler(BUCKET_OF, GLOBAL, seed=2)
    stream = iter(sampler)
    consumed = [next(stream) for _ in range(3)]
    _ = [next(stream) for _ in range(4)]  # a DataLoader prefetched these; the loop did not use them
    state = sampler.state_after(len(consumed))
    resumed = BucketBatchSampler(BUCKET_OF, GLOBAL, seed=2)
    resumed.load_state_dict(state)
    assert consumed + take(resumed, 5) == take(BucketBatchSampler(BUCKET_OF, GLOBAL, seed=2), 8)
    # relative to the loaded position
    again = resumed.state_after(sampler.batches_per_epoch)
    assert again == {"epoch": state["epoch"] + 1, "batch_in_epoch": state["batch_in_epoch"], "seed": 2}


def test_without_drop_last_small_buckets_are_completed_by_repetition():
    sampler = BucketBatchSampler(BUCKET_OF, GLOBAL, seed=0, drop_last=False)
    assert sampler.batches_per_epoch == 5 + 3 + 1
    batches = sampler.global_batches(0)
    c_batches = [b for b in batches if BUCKET_OF[b[0]] == "c"]
    assert len(c_batches) == 1 and set(c_batches[0]) == {57, 58, 59}
    for batch in batches:
        assert len(batch) == GLOBAL and len({BUCKET_OF[i] for i in batch}) == 1
    covered = {i for b in batches for i in b}
    assert covered == set(range(len(BUCKET_OF)))


def test_sampler_errors():
    with pytest.raises(MovieGenError, match="not divisible by dp_size"):
        BucketBatchSampler(BUCKET_OF, 8, seed=0, dp_size=3)
    with pytest.raises(MovieGenError, match="dp_rank"):
        BucketBatchSampler(BUCKET_OF, 8, seed=0, dp_rank=2, dp_size=2)
    with pytest.raises(MovieGenError, match="global_batch"):
        BucketBatchSampler(BUCKET_OF, 0, seed=0)
    with pytest.raises(MovieGenError, match="no bucket holds a full global batch"):
        BucketBatchSampler(["a"] * 3, 8, seed=0)
    sampler = BucketBatchSampler(BUCKET_OF, 8, seed=0)
    with pytest.raises(MovieGenError, match="seed"):
        sampler.load_state_dict({"epoch": 0, "batch_in_epoch": 1, "seed": 1})
    with pytest.raises(MovieGenError, match="batches per epoch"):
        sampler.load_state_dict({"epoch": 0, "batch_in_epoch": 99, "seed": 0})
    with pytest.raises(MovieGenError, match="invalid sampler state"):
        sampler.load_state_dict({"epoch": 0})
