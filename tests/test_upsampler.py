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


def test_upsample_command(upsampler, tmp_path, capsys):
    from helpers import run_cli
    from moviegen.video import read_video, write_video

    base, pipe = upsampler
    pipe.save_pretrained(tmp_path / "up")
    base.save_pretrained(tmp_path / "t2v")
    write_video(tmp_path / "in.mp4", torch.rand(3, 9, 32, 48) * 2 - 1, fps=8)
    code, out, err = run_cli(capsys, "upsample", tmp_path / "in.mp4", "--out", tmp_path / "out.mp4",
                             "--model", tmp_path / "up", "--steps", "2")  # fmt: skip
    assert code == 0, err
    video, fps = read_video(tmp_path / "out.mp4")
    assert video.shape == (3, 9, 64, 96) and fps == 8
    write_video(tmp_path / "odd.mp4", torch.zeros(3, 2, 36, 32), fps=8)
    (tmp_path / "notavideo.mp4").write_text("hello")
    for args, message in (
        ([tmp_path / "in.mp4", "--model", tmp_path / "t2v"], "not a spatial upsampler"),
        ([tmp_path / "notavideo.mp4", "--model", tmp_path / "up"], ""),
        ([tmp_path / "odd.mp4", "--model", tmp_path / "up"], "multiples of 8"),
        ([tmp_path / "in.mp4"], "pass --model"),
        ([tmp_path / "in.mp4", "--model", tmp_path / "up", "--steps", "0"], "--steps"),
    ):
        code, _, err = run_cli(capsys, "upsample", *args, "--out", tmp_path / "bad.mp4")
        assert code == 1 and message in err and err.strip().count("\n") == 0, err
        assert not (tmp_path / "bad.mp4").exists()
