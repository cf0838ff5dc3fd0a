"""moviegen.edit: the Edit pipeline and ``moviegen edit`` on tiny random models."""

import json

import pytest
import torch

from helpers import run_cli
from moviegen.edit import NUM_TASKS, TASK_EDIT, EditPipeline
from moviegen.errors import MovieGenError
from moviegen.pipeline import MovieGenPipeline


@pytest.fixture(scope="module")
def edit_model():
    base = MovieGenPipeline.from_presets()
    pipe = EditPipeline.from_base(base, num_steps=2)
    for p in pipe.transformer.parameters():  # a fresh variant outputs what the base does; perturb it
        p.data.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    return base, pipe


def test_from_base_adds_source_channels_and_task_rows_as_no_ops():
    base = MovieGenPipeline.from_presets()
    for p in base.transformer.head.parameters():
        p.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    pipe = EditPipeline.from_base(base)
    c = pipe.transformer.config
    assert c.in_channels == 2 * c.out_channels and c.num_tasks == NUM_TASKS
    x, source = torch.randn(2, 16, 2, 8, 8), torch.randn(2, 16, 2, 8, 8)
    t, text = torch.rand(2), torch.randn(2, 5, c.dim)
    with torch.no_grad():
        want = base.transformer(x, t, text)
        got = pipe.transformer(torch.cat([x, source], 1), t, text, task=torch.full((2,), TASK_EDIT))
    assert torch.allclose(want, got, atol=1e-6)


def test_edits_deterministically_and_round_trips(edit_model, tmp_path):
    _, pipe = edit_model
    video = torch.rand(3, 16, 64, 64) * 2 - 1
    out = pipe(video, "make the circle blue", seed=3)
    assert out.shape == video.shape and bool(torch.isfinite(out).all())
    assert torch.equal(out, pipe(video, "make the circle blue", seed=3))
    assert not torch.equal(out, pipe(video, "remove the red circle", seed=3))
    pipe.guidance_scale = 2.0
    pipe.save_pretrained(tmp_path / "edit")
    index = json.loads((tmp_path / "edit" / "model_index.json").read_text())
    assert index["_class_name"] == "EditPipeline" and index["guidance_scale"] == 2.0
    again = EditPipeline.from_pretrained(tmp_path / "edit")
    assert (again.num_steps, again.guidance_scale) == (2, 2.0)
    pipe.guidance_scale = 1.0
    assert torch.allclose(again(video, "x", seed=1, guidance_scale=1.0), pipe(video, "x", seed=1), atol=1e-5)


def test_bad_inputs_and_wrong_folders_are_refused(edit_model, tmp_path):
    base, pipe = edit_model
    for video, message in ((torch.zeros(3, 16, 40, 64), "multiples of 16"), (torch.zeros(3, 16, 512, 64), "at most"),
                           (torch.zeros(4, 64, 64), "shape"), (torch.zeros(3, 999, 64, 64), "frames"),
                           (torch.full((3, 8, 64, 64), float("nan")), "non-finite")):  # fmt: skip
        with pytest.raises(MovieGenError, match=message):
            pipe(video, "make it blue")
    with pytest.raises(MovieGenError, match="instruction"):
        pipe(torch.zeros(3, 8, 64, 64), "  ")
    with pytest.raises(MovieGenError, match="2 × 16"):
        EditPipeline(base.text, base.transformer, base.tae)
    base.save_pretrained(tmp_path / "t2v")
    with pytest.raises(MovieGenError, match="text-to-video model, not a video Edit model"):
        EditPipeline.from_pretrained(tmp_path / "t2v")
    with pytest.raises(MovieGenError, match="EditPipeline"):
        MovieGenPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "e2"))


def test_edit_command(edit_model, tmp_path, capsys):
    from moviegen.video import read_video, write_video

    base, pipe = edit_model
    pipe.save_pretrained(tmp_path / "edit")
    base.save_pretrained(tmp_path / "t2v")
    write_video(tmp_path / "in.mp4", torch.rand(3, 16, 64, 64) * 2 - 1, fps=8)
    code, out, err = run_cli(capsys, "edit", tmp_path / "in.mp4", "make the circle blue", "--out",
                             tmp_path / "out.mp4", "--model", tmp_path / "edit", "--steps", "2")  # fmt: skip
    assert code == 0, err
    video, fps = read_video(tmp_path / "out.mp4")
    assert video.shape == (3, 16, 64, 64) and fps == 8
    (tmp_path / "notavideo.mp4").write_text("hello")
    for args, message in (
        ([tmp_path / "in.mp4", "", "--model", tmp_path / "edit"], "instruction"),
        ([tmp_path / "notavideo.mp4", "make it blue", "--model", tmp_path / "edit"], ""),
        ([tmp_path / "missing.mp4", "make it blue", "--model", tmp_path / "edit"], "not found"),
        ([tmp_path / "in.mp4", "make it blue", "--model", tmp_path / "t2v"], "not a video Edit model"),
        ([tmp_path / "in.mp4", "make it blue", "--model", tmp_path / "edit", "--steps", "0"], "--steps"),
        (
            [tmp_path / "in.mp4", "make it blue", "--model", tmp_path / "edit", "--guidance", "-1"],
            "--guidance",
        ),
    ):
        target = tmp_path / "bad.mp4"
        code, out, err = run_cli(capsys, "edit", *args, "--out", target)
        assert code == 1 and err.count("error:") == 1 and message in err, err
        assert not target.exists()
