"""moviegen.upsampler: the spatial upsampler pipeline on tiny random models."""

import pytest
import torch

from moviegen.errors import MovieGenError
from moviegen.pipeline import MovieGenPipeline
from moviegen.upsampler import UpsamplerPipeline


@pytest.fixture(scope="module")
def upsampler():
    base = MovieGenPipeline.from_presets()
    pipe = UpsamplerPipeline.from_base(base, num_steps=2)
    for p in pipe.transformer.parameters():  # a fresh variant outputs zero; make it do something
        p.data.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    return base, pipe


def test_from_base_widens_and_grows_the_tables(upsampler):
    base, pipe = upsampler
    c = pipe.transformer.config
    assert c.in_channels == 2 * c.out_channels == 2 * base.tae.config.latent_channels
    assert c.max_height_patches == 2 * base.transformer.config.max_height_patches
    assert pipe.window == min(14, c.max_latent_frames) and pipe.overlap == 4


def test_upsamples_non_square_videos_deterministically(upsampler, tmp_path):
    _, pipe = upsampler
    video = torch.rand(3, 9, 32, 48) * 2 - 1
    out = pipe(video, seed=3)
    assert out.shape == (3, 9, 64, 96) and bool(torch.isfinite(out).all())
    assert torch.equal(out, pipe(video, seed=3))
    pipe.save_pretrained(tmp_path / "up")
    again = UpsamplerPipeline.from_pretrained(tmp_path / "up")
    assert (again.num_steps, again.window, again.overlap) == (pipe.num_steps, pipe.window, pipe.overlap)
    assert torch.allclose(again(video, seed=3), out, atol=1e-5)
    assert pipe(video, prompt="a red circle", seed=3, window=1, overlap=0).shape == out.shape


def test_bad_inputs_and_wrong_folders_are_refused(upsampler, tmp_path):
    base, pipe = upsampler
    with pytest.raises(MovieGenError, match="multiples of 8"):
        pipe(torch.zeros(3, 4, 30, 32))
    with pytest.raises(MovieGenError, match="at most"):
        pipe(torch.zeros(3, 4, 512, 32))
    with pytest.raises(MovieGenError, match="shape"):
        pipe(torch.zeros(4, 32, 32))
    with pytest.raises(MovieGenError, match="longer than"):
        pipe(torch.zeros(3, 4, 32, 32), window=99)
    base.save_pretrained(tmp_path / "t2v")
    with pytest.raises(MovieGenError, match="text-to-video model, not a spatial upsampler"):
        UpsamplerPipeline.from_pretrained(tmp_path / "t2v")
    with pytest.raises(MovieGenError, match="2 × 16"):
        UpsamplerPipeline(base.text, base.transformer, base.tae)
    with pytest.raises(MovieGenError, match="UpsamplerPipeline"):
        MovieGenPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "up2"))
