"""moviegen train distill --quick: teacher trajectories of the shipped world model cut into window pairs, the one
Trainer, a student pipeline that samples in its own step count with guidance 1; the pair algebra."""


import pytest
import torch

from helpers import run_cli, run_quick_recipe
from moviegen import flow
from moviegen.data.cache import LatentCache
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline
from moviegen.train.distill import DistillRecipe, teacher_grid, trajectories, window_pairs
from moviegen.video import read_video


def test_window_pairs_put_the_teacher_states_on_the_flow_matching_path():
    g = torch.Generator().manual_seed(0)
    states = torch.randn(4, 2, 3, generator=g)
    grid = torch.tensor([0.0, 0.1, 0.5, 1.0], dtype=torch.float64)
    for k, pair in enumerate(window_pairs(states, grid)):
        lo, hi = pair["t_window"].tolist()
        assert (lo, hi) == pytest.approx((float(grid[k]), float(grid[k + 1])))
        for t, expected in ((lo, states[k]), (hi, states[k + 1])):
            assert torch.allclose(flow.interpolate(pair["noise"], pair["latent"], t), expected, atol=1e-5)
        v = flow.velocity_target(pair["noise"], pair["latent"])  # the regression target: the window's mean slope
        assert torch.allclose(v, (states[k + 1] - states[k]) / (hi - lo), atol=1e-4)


def test_trajectories_end_where_the_teacher_samples():
    teacher = MovieGenPipeline.from_pretrained(DEFAULT_MODEL)
    recipe = DistillRecipe.preset("quick")
    student, grid = teacher_grid(recipe)
    assert float(student[0]) == 0 and float(student[-1]) == 1 and set(student.tolist()) <= set(grid.tolist())
    prompt = "FPS-16. a red circle moves left"
    states = trajectories(teacher, [prompt], [7], recipe)
    assert states.shape == (1, recipe.student_steps + 1, *teacher.latent_shape(16, 64, 64))
    noise = torch.randn(teacher.latent_shape(16, 64, 64), generator=torch.Generator().manual_seed(7))
    assert torch.equal(states[0, 0], noise)
    tokens, mask = teacher.text([prompt])
    with torch.inference_mode():
        direct = flow.sample(teacher.transformer, noise[None], tokens, mask, grid, teacher.guidance_scale)
    assert torch.allclose(states[0, -1], direct[0], atol=1e-4)


def test_quick_distill_recipe_end_to_end(tmp_path, capsys):
    out = tmp_path / "distill"
    log = run_quick_recipe(capsys, "distill", out)
    assert len(log["history"]["train/loss"]) == 3 and log["history"]["val/loss"]
    cache = LatentCache(out / "cache")
    recipe = DistillRecipe.preset("quick")
    assert len(cache) == recipe.num_prompts * recipe.student_steps
    item = cache.get(1)
    assert item.tensors["noise"].shape == item.latent.shape and item.tensors["t_window"].shape == (2,)
    student = MovieGenPipeline.from_pretrained(out / "pipeline")
    assert (student.num_steps, student.schedule, student.guidance_scale) == (2, "linear-quadratic", 1.0)
    assert next(student.transformer.parameters()).dtype == torch.float32  # fp16 on disk, fp32 loaded
    code, stdout, err = run_cli(capsys, "generate", "a red circle moving left", "--model", out / "pipeline",
                                "--out", tmp_path / "x.mp4")  # fmt: skip
    assert code == 0, err
    assert read_video(tmp_path / "x.mp4")[0].shape == (3, 16, 64, 64)
    assert "sampling" in stdout and "time per stage" in stdout
