"""moviegen train distill --quick: teacher trajectories of the shipped world model cut into window pairs, the one
Trainer, a student pipeline that samples in its own step count with guidance 1; the pair algebra."""

import json

import pytest
import torch

from helpers import run_cli
from moviegen import flow
from moviegen.data.cache import LatentCache
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline
from moviegen.train.distill import DistillRecipe, onpolicy_windows, teacher_grid, trajectories, window_pairs
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


def test_window_pairs_take_each_window_its_own_start_and_end():
    g = torch.Generator().manual_seed(1)
    windows = torch.randn(3, 2, 5, generator=g)  # (K, 2, ...): on-policy windows do not chain
    grid = torch.tensor([0.0, 0.2, 0.6, 1.0], dtype=torch.float64)
    for k, pair in enumerate(window_pairs(windows, grid)):
        lo, hi = pair["t_window"].tolist()
        assert torch.allclose(flow.interpolate(pair["noise"], pair["latent"], lo), windows[k, 0], atol=1e-5)
        assert torch.allclose(flow.interpolate(pair["noise"], pair["latent"], hi), windows[k, 1], atol=1e-5)


def test_onpolicy_windows_start_at_the_students_states_and_end_where_the_teacher_takes_them():
    teacher = MovieGenPipeline.from_pretrained(DEFAULT_MODEL)
    student = MovieGenPipeline.from_pretrained(DEFAULT_MODEL)
    with torch.no_grad():
        for p in student.transformer.parameters():  # another model: its steps differ from the teacher's
            p.mul_(0.9)
    recipe = DistillRecipe.preset("quick")
    grid, fine = teacher_grid(recipe)
    prompt = "FPS-16. a red circle moves left"
    windows = onpolicy_windows(teacher, student, [prompt], [3], recipe)
    assert windows.shape == (1, recipe.student_steps, 2, *teacher.latent_shape(16, 64, 64))
    x = torch.randn(teacher.latent_shape(16, 64, 64), generator=torch.Generator().manual_seed(3))[None]
    tokens, mask = teacher.text([prompt])
    with torch.inference_mode():
        for k in range(recipe.student_steps):
            assert torch.allclose(windows[0, k, 0], x[0], atol=1e-4)
            inside = fine[(fine >= grid[k]) & (fine <= grid[k + 1])]
            end = flow.sample(teacher.transformer, x, tokens, mask, inside, teacher.guidance_scale)
            assert torch.allclose(windows[0, k, 1], end[0], atol=1e-4)
            x = flow.sample(student.transformer, x, tokens, mask, grid[k : k + 2], 1.0)
            assert not torch.allclose(x, end, atol=1e-3)  # the next window starts from the student's state


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
    code, _, err = run_cli(capsys, "train", "distill", "--out", out, "--quick")
    assert code == 0, err
    log = json.loads((out / "training_log.json").read_text())
    assert len(log["history"]["train/loss"]) == 3 and log["history"]["val/loss"]
    assert len(log["history"]["onpolicy/train/loss"]) == 2 and log["history"]["onpolicy/val/loss"]
    assert {"trajectories_s", "train_s", "onpolicy_windows_s", "onpolicy_train_s"} <= set(log["timings"])
    cache = LatentCache(out / "cache")
    recipe = DistillRecipe.preset("quick")
    assert len(cache) == recipe.num_prompts * recipe.student_steps
    assert len(LatentCache(out / "cache_onpolicy")) == recipe.onpolicy_prompts * recipe.student_steps
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
