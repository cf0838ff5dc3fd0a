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
        ([tmp_path / "in.mp4", "--model", tmp_path / "missing"], "not found"),
        ([tmp_path / "in.mp4", "--model", tmp_path / "up", "--steps", "0"], "--steps"),
    ):
        code, _, err = run_cli(capsys, "upsample", *args, "--out", tmp_path / "bad.mp4")
        assert code == 1 and message in err and err.strip().count("\n") == 0, err
        assert not (tmp_path / "bad.mp4").exists()


def test_generate_upsample_runs_the_cascade(upsampler, tmp_path, capsys):
    from helpers import run_cli
    from moviegen.video import read_video

    _, pipe = upsampler
    pipe.save_pretrained(tmp_path / "up")
    common = ["--model", "tiny-random", "--frames", "9", "--height", "32", "--width", "48", "--steps", "2"]
    code, out, err = run_cli(capsys, "generate", "a red circle", "--out", tmp_path / "big.mp4", *common,
                             "--upsample", "--upsampler", tmp_path / "up")  # fmt: skip
    assert code == 0, err
    video, _ = read_video(tmp_path / "big.mp4")
    assert video.shape == (3, 9, 64, 96) and "64x96" in out
    for args, message in (
        (["--upsampler", tmp_path / "up"], "only used with --upsample"),
        (["--upsample", "--upsampler", tmp_path / "missing"], "not found"),
    ):
        code, _, err = run_cli(
            capsys, "generate", "a red circle", "--out", tmp_path / "bad.mp4", *common, *args
        )
        assert code == 1 and message in err and err.strip().count("\n") == 0, err
        assert not (tmp_path / "bad.mp4").exists()


def test_color_fix_takes_the_low_band_from_the_input(upsampler, tmp_path):
    from moviegen.upsampler import fix_colors

    reference = torch.rand(3, 4, 32, 32) * 2 - 1
    shifted = (reference + torch.tensor([0.3, -0.2, 0.1]).view(3, 1, 1, 1)).clamp(-2, 2)
    assert torch.allclose(fix_colors(shifted, reference, 2.0), reference, atol=1e-5)
    _, pipe = upsampler
    video = torch.rand(3, 9, 32, 48) * 2 - 1
    plain, fixed = pipe(video, seed=3), pipe(video, seed=3, color_fix=2.0)
    assert fixed.shape == plain.shape and not torch.equal(fixed, plain)
    pipe.color_fix = 2.0
    pipe.save_pretrained(tmp_path / "up")
    assert UpsamplerPipeline.from_pretrained(tmp_path / "up").color_fix == 2.0
    pipe.color_fix = 0.0
    with pytest.raises(MovieGenError, match="color_fix"):
        pipe(video, color_fix=-1.0)


def test_the_shipped_upsampler_is_the_default_and_keeps_content(tmp_path, capsys):
    from helpers import run_cli
    from moviegen.eval.world import detect_object
    from moviegen.pipeline import DEFAULT_MODEL
    from moviegen.upsampler import DEFAULT_UPSAMPLER
    from moviegen.video import read_video

    up = UpsamplerPipeline.from_pretrained(DEFAULT_UPSAMPLER)
    assert (up.scale, up.num_steps, up.color_fix) == (2, 20, 1.0)
    low = MovieGenPipeline.from_pretrained(DEFAULT_MODEL)("a red circle moving right", seed=0)
    high = up(low, seed=0)
    assert high.shape == (3, 16, 128, 128)
    before, after = detect_object(low), detect_object(high)
    assert (after.color, after.shape, after.motion) == (before.color, before.shape, before.motion)
    code, out, err = run_cli(capsys, "generate", "a red circle moving right", "--out", tmp_path / "big.mp4",
                             "--upsample", "--audio")  # fmt: skip
    assert code == 0, err
    assert read_video(tmp_path / "big.mp4")[0].shape == (3, 16, 128, 128)
    stages = dict(part.rsplit(" ", 2)[:2] for part in out.split("time per stage: ")[1].strip().split(", "))
    assert list(stages) == ["sampling", "upsampling", "audio", "writing"] and all(float(v) > 0 for v in stages.values())
    code, _, err = run_cli(capsys, "upsample", tmp_path / "big.mp4", "--out", tmp_path / "huge.mp4")
    assert code == 1 and "at most 128x128" in err and not (tmp_path / "huge.mp4").exists()
