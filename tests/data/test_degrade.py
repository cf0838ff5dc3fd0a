"""moviegen.data.degrade: the upsampler's seeded second-order degradations and TAE-artefact branch."""

import numpy as np
import pytest
import torch

from moviegen.data.degrade import DegradationConfig, degrade, gaussian_blur
from moviegen.data.world import World, WorldConfig
from moviegen.errors import MovieGenError
from moviegen.models.tae import TAE, TAEConfig


def clip() -> torch.Tensor:
    return World(WorldConfig(size=32, frames=3), seed=0).clip("test", 1).video


def test_same_seed_same_degradation_and_the_target_size():
    video = clip()
    a = degrade(video, np.random.default_rng(5))
    assert a.shape == (3, 3, 16, 16) and float(a.min()) >= -1 and float(a.max()) <= 1
    assert torch.equal(a, degrade(video, np.random.default_rng(5)))
    assert not torch.equal(a, degrade(video, np.random.default_rng(6)))
    # the clean preset is a plain resize; the default pipeline moves the frames away from it
    clean = degrade(video, np.random.default_rng(5), DegradationConfig.preset("clean"))
    strong = DegradationConfig(op_prob=1.0, tae_prob=0.0)
    assert float((degrade(video, np.random.default_rng(5), strong) - clean).abs().mean()) > 0.01


def test_tae_branch_replaces_the_pipeline():
    torch.manual_seed(0)
    tae = TAE(TAEConfig.preset("tiny")).eval()
    video = clip()
    out = degrade(video, np.random.default_rng(0), DegradationConfig(tae_prob=1.0), tae=tae)
    assert out.shape == (3, 3, 16, 16)
    small = degrade(video, np.random.default_rng(0), DegradationConfig.preset("clean"))
    assert not torch.allclose(out, small, atol=1e-3)


def test_blur_keeps_the_mean_and_bad_inputs_are_refused():
    frames = torch.rand(2, 3, 16, 16)
    blurred = gaussian_blur(frames, 1.0)
    assert blurred.shape == frames.shape and abs(float(blurred.mean() - frames.mean())) < 0.02
    with pytest.raises(MovieGenError, match="divisible"):
        degrade(torch.zeros(3, 2, 15, 16), np.random.default_rng(0))
    with pytest.raises(MovieGenError, match="jpeg"):
        DegradationConfig(jpeg_quality=(0, 95, 50, 95))
