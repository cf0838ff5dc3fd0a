"""moviegen.eval.upsampler: held-out pairs, quality table, seam ratio and content kept."""

import pytest
import torch

from moviegen.eval import upsampler as ev


def test_held_out_pairs_alternate_test_clips_and_held_out_compositions():
    pairs = ev.held_out_pairs(4, size=32, scale=2, frames=8)
    assert [p.name.split("/")[0] for p in pairs] == ["test", "held-out"] * 2
    for p in pairs:
        assert p.truth.shape == (3, 8, 32, 32) and p.low.shape == (3, 8, 16, 16)
        assert p.low.abs().max() <= 1
    clean = ev.held_out_pairs(2, size=32, scale=2, frames=8, degraded=False)
    assert torch.equal(clean[0].truth, pairs[0].truth) and not torch.equal(clean[0].low, pairs[0].low)
    assert torch.equal(ev.held_out_pairs(2, size=32, frames=8)[1].low, pairs[1].low)  # seeded


def test_quality_scores_every_method_against_the_truth():
    pairs = ev.held_out_pairs(2, size=32, scale=2, frames=8, degraded=False)
    table = ev.quality({"upsampler": lambda low: ev.upsample_baseline(low, 2, "bicubic")}, pairs, 2)
    assert set(table) == {"upsampler", "bicubic", "bilinear"}
    assert table["upsampler"] == table["bicubic"]
    worse = ev.quality({"upsampler": lambda low: ev.upsample_baseline(low, 2, "bicubic") * 0.5}, pairs, 2)
    assert worse["upsampler"]["psnr"] < table["bicubic"]["psnr"] - 3
    assert worse["upsampler"]["ssim"] < table["bicubic"]["ssim"]
    with pytest.raises(ValueError, match="returned"):
        ev.quality({"identity": lambda low: low}, pairs, 2)


def test_seams_of_independent_windows_and_their_ratio():
    assert ev.seam_frames(256, 2, 8) == list(range(16, 256, 16))
    assert ev.seam_frames(40, 2, 8) == [16, 24]  # the last window is end-aligned: starts 0, 2, 3
    assert ev.latent_boundaries(40, 8, exclude=[16, 24]) == [8, 32]
    video = ev.long_clip(64, 32)
    assert video.shape == (3, 64, 32, 32)
    seams = ev.seam_frames(64, 2, 8)
    assert ev.seam_ratio(video, seams) == pytest.approx(1.0, abs=0.15)  # steady motion: no seams
    jumpy = video.clone()
    for f in seams:
        jumpy[:, f:] = (jumpy[:, f:] + 0.05).clamp(-1, 1)
    assert ev.seam_ratio(jumpy, seams) > 1.5
    assert ev.seam_ratio(jumpy, seams, ev.latent_boundaries(64, 8, seams)) > 1.5
    with pytest.raises(ValueError):
        ev.seam_ratio(video, seams, seams)


def test_content_kept_reads_the_detector():
    from moviegen.data.world import World, WorldConfig

    world = World(WorldConfig(size=32, frames=8))
    clips = [world.object_clip(c, "circle", "right", 16) for c in ("red", "blue")]
    before = [c.video for c in clips]
    assert ev.content_kept(before, before) == {"color": 100.0, "shape": 100.0, "motion": 100.0, "all": 100.0}
    swapped = ev.content_kept(before, before[::-1])
    assert swapped["color"] == 0.0 and swapped["motion"] == 100.0 and swapped["all"] == 0.0
    with pytest.raises(ValueError):
        ev.content_kept(before, before[:1])
