"""``moviegen tae ...`` on real MP4 files, through the real entry point."""

import re

import pytest
import torch

from helpers import moving_clip, run_cli
from moviegen.models.tae import TAE, TAEConfig
from moviegen.video import read_video, write_video


@pytest.fixture(scope="module")
def tae_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tae"
    torch.manual_seed(0)
    TAE(TAEConfig.preset("tiny")).save_pretrained(folder)
    return folder


def test_roundtrip_writes_a_playable_video_and_reports_quality(tmp_path, tae_dir, capsys):
    src = write_video(tmp_path / "in.mp4", moving_clip(33, 64, 64), fps=16)
    code, out, err = run_cli(
        capsys, "tae", "roundtrip", src, "--out", tmp_path / "out.mp4", "--model", tae_dir
    )
    assert code == 0, err
    assert "latent shape: [16, 5, 8, 8]" in out
    assert re.search(r"PSNR: [\d.]+ dB  SSIM: [\d.-]+", out)
    video, fps = read_video(tmp_path / "out.mp4")
    assert video.shape == (3, 33, 64, 64) and fps == 16


def test_roundtrip_pads_sizes_that_are_not_multiples_of_eight(tmp_path, tae_dir, capsys):
    src = write_video(tmp_path / "in.mp4", moving_clip(9, 36, 52), fps=10)
    code, out, err = run_cli(capsys, "tae", "roundtrip", src, "--out", tmp_path / "o.mp4", "--model", tae_dir)
    assert code == 0, err
    assert "latent shape: [16, 2, 5, 7]" in out
    assert read_video(tmp_path / "o.mp4")[0].shape == (3, 9, 36, 52)


@pytest.mark.parametrize("kind", ["missing", "corrupt", "text", "bad_model"])
def test_roundtrip_bad_input_is_one_error_line_and_no_output(tmp_path, tae_dir, capsys, kind):
    src = tmp_path / "in.mp4"
    model = tae_dir
    if kind == "corrupt":
        good = write_video(tmp_path / "g.mp4", moving_clip(16, 64, 64)).read_bytes()
        src.write_bytes(good[:200])
    elif kind == "text":
        src.write_text("hello\n")
    elif kind == "bad_model":
        write_video(src, moving_clip(8))
        model = tmp_path / "no_such_model"
    code, out, err = run_cli(capsys, "tae", "roundtrip", src, "--out", tmp_path / "out.mp4", "--model", model)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not (tmp_path / "out.mp4").exists()


def test_train_then_roundtrip_improves_reconstruction(tmp_path, capsys):
    src = write_video(tmp_path / "clip.mp4", moving_clip(24, 32, 32), fps=16)
    code, _, err = run_cli(
        capsys, "tae", "train", src, "--out", tmp_path / "tae", "--steps", "40", "--size", "32"
    )
    assert code == 0, err
    trained = TAE.from_pretrained(tmp_path / "tae")
    assert trained.config == TAEConfig.preset("tiny")
    code, out, _ = run_cli(
        capsys, "tae", "roundtrip", src, "--out", tmp_path / "o.mp4", "--model", tmp_path / "tae"
    )
    assert code == 0
    assert float(re.search(r"PSNR: ([\d.]+)", out).group(1)) > 15
    code, _, err = run_cli(
        capsys, "tae", "train", src, "--out", tmp_path / "t2", "--frames", "64", "--size", "32"
    )
    assert code == 1 and "no video has 64 frames" in err
    assert not (tmp_path / "t2").exists()
