"""moviegen train upsampler --quick: pairs from the world, the one Trainer from the shipped backbone, a
loadable UpsamplerPipeline that upsamples a real file."""


import torch

from helpers import run_cli, run_quick_recipe
from moviegen.data.cache import LatentCache
from moviegen.data.world import World, WorldConfig
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline
from moviegen.upsampler import UpsamplerPipeline
from moviegen.video import read_video, write_video


def test_quick_upsampler_recipe_end_to_end(tmp_path, capsys):
    out = tmp_path / "up"
    log = run_quick_recipe(capsys, "upsampler", out)
    assert len(log["history"]["train/loss"]) == 4 and log["history"]["val/loss"]
    cache = LatentCache(out / "cache")
    item = cache.get(0)
    assert item.latent.shape == item.tensors["cond"].shape == (16, 2, 16, 16)  # 128 px clips
    assert not bool(item.text[0][1].any())  # the null text
    pipe = UpsamplerPipeline.from_pretrained(out / "pipeline")
    base = MovieGenPipeline.from_pretrained(DEFAULT_MODEL)
    assert pipe.transformer.config.in_channels == 2 * base.transformer.config.in_channels
    assert pipe.transformer.config.max_height_patches == 2 * base.transformer.config.max_height_patches
    assert (pipe.window, pipe.overlap, pipe.num_steps, pipe.color_fix) == (2, 1, 2, 1.0)
    assert next(pipe.transformer.parameters()).dtype == torch.float32  # fp16 on disk, fp32 loaded
    clip = World(WorldConfig(size=64), seed=0).clip("test", 0).video
    write_video(tmp_path / "low.mp4", clip, fps=16)
    code, _, err = run_cli(capsys, "upsample", tmp_path / "low.mp4", "--out", tmp_path / "high.mp4",
                           "--model", out / "pipeline")  # fmt: skip
    assert code == 0, err
    video, _ = read_video(tmp_path / "high.mp4")
    assert video.shape == (3, 16, 128, 128) and bool(torch.isfinite(video).all())
