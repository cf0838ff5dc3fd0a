"""MovieGenPipeline: prompt → frames → MP4, saving/loading, determinism and argument checks."""

import json

import pytest
import torch

from moviegen.errors import MovieGenError
from moviegen.pipeline import MovieGenPipeline, schedule_times
from moviegen.video import read_video


@pytest.fixture(scope="module")
def pipe():
    return MovieGenPipeline.from_presets("tiny", "tiny", seed=0)


@pytest.fixture(scope="module")
def trained_looking(pipe):
    """Give the zero-initialised backbone non-zero residual branches so outputs depend on everything."""
    with torch.no_grad():
        for name, p in pipe.transformer.named_parameters():
            if "modulation" in name or "head" in name or "adaln" in name or "cross_attn.out" in name:
                p.normal_(0, 0.02)
    return pipe


def test_generates_the_requested_shape_in_range(trained_looking):
    video = trained_looking("a red circle moves right", num_frames=9, height=32, width=48, num_steps=3)
    assert video.shape == (3, 9, 32, 48)
    assert video.min() >= -1 and video.max() <= 1


def test_fixed_seed_is_deterministic_and_seeds_prompts_and_guidance_matter(trained_looking):
    kw = dict(num_frames=8, height=32, width=32, num_steps=3)
    a = trained_looking("a red circle moves right", seed=1, **kw)
    assert torch.equal(a, trained_looking("a red circle moves right", seed=1, **kw))
    assert not torch.equal(a, trained_looking("a red circle moves right", seed=2, **kw))
    assert not torch.equal(a, trained_looking("a blue square moves up", seed=1, **kw))
    assert not torch.equal(a, trained_looking("a red circle moves right", seed=1, guidance_scale=1.0, **kw))
    assert not torch.equal(a, trained_looking("a red circle moves right", seed=1, fps=8, **kw))


def test_save_and_load_round_trip(trained_looking, tmp_path):
    trained_looking.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == "MovieGenPipeline"
    for name in ("text", "transformer", "tae"):
        assert (tmp_path / "pipe" / name / "config.json").is_file()
        assert (tmp_path / "pipe" / name / "model.safetensors").is_file()
    loaded = MovieGenPipeline.from_pretrained(tmp_path / "pipe")
    kw = dict(num_frames=8, height=32, width=32, num_steps=2, seed=3)
    assert torch.equal(loaded("a cat", **kw), trained_looking("a cat", **kw))


def test_export_mp4_is_playable(pipe, tmp_path):
    video = pipe("waves", num_frames=5, height=32, width=32, num_steps=2)
    path = pipe.export_mp4(video, tmp_path / "v.mp4", fps=8)
    frames, fps = read_video(path)
    assert frames.shape == (3, 5, 32, 32) and fps == 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prompt="  "), "prompt is empty"),
        (dict(num_frames=0), "frames must be >= 1"),
        (dict(height=40), "multiples of 16"),
        (dict(width=0), "multiples of 16"),
        (dict(schedule="cosine"), "unknown schedule"),
        (dict(num_steps=0), "steps must be >= 1"),
        (dict(num_frames=200), "at most 64 frames"),
        (dict(camera_motion="barrel roll"), "camera"),
    ],
)
def test_bad_arguments_are_clear_errors(pipe, kwargs, message):
    args = dict(prompt="a dog", num_frames=8, height=32, width=32, num_steps=1) | kwargs
    with pytest.raises(MovieGenError, match=message):
        pipe(**args)


def test_loading_bad_folders(tmp_path, pipe):
    with pytest.raises(MovieGenError, match="not found"):
        MovieGenPipeline.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MovieGenError, match="model_index.json"):
        MovieGenPipeline.from_pretrained(tmp_path / "empty")
    pipe.save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "tae" / "model.safetensors").unlink()
    with pytest.raises(MovieGenError, match="weights file not found"):
        MovieGenPipeline.from_pretrained(tmp_path / "p")


def test_schedules_by_name():
    lq = schedule_times("linear-quadratic", 50)
    assert len(lq) == 51 and lq[25] == pytest.approx(0.1) and lq[-1] == 1.0
    assert torch.allclose(
        schedule_times("linear", 4), torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=lq.dtype)
    )


def test_the_model_default_guidance_is_saved_loaded_and_used(trained_looking, tmp_path):
    from moviegen.pipeline import set_guidance_scale

    kw = dict(num_frames=8, height=32, width=32, num_steps=2, seed=3)
    assert trained_looking.guidance_scale == 7.5  # the paper's, for a model that names none
    trained_looking.save_pretrained(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "model_index.json").read_text())["guidance_scale"] == 7.5
    set_guidance_scale(tmp_path / "p", 2.0)
    loaded = MovieGenPipeline.from_pretrained(tmp_path / "p")
    assert loaded.guidance_scale == 2.0
    assert torch.equal(loaded("a cat", **kw), trained_looking("a cat", guidance_scale=2.0, **kw))
    assert not torch.equal(loaded("a cat", **kw), trained_looking("a cat", **kw))
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["transformer"] == "MovieGenTransformer" and not list((tmp_path / "p").glob(".model_index*"))


def test_bad_default_guidance_is_a_clear_error(pipe, tmp_path):
    from moviegen.pipeline import set_guidance_scale

    pipe.save_pretrained(tmp_path / "p")
    before = (tmp_path / "p" / "model_index.json").read_text()
    for bad in (-1.0, float("nan"), 1e6):
        with pytest.raises(MovieGenError, match="guidance_scale must be a number"):
            set_guidance_scale(tmp_path / "p", bad)
    assert (tmp_path / "p" / "model_index.json").read_text() == before
    with pytest.raises(MovieGenError, match="not a MovieGenPipeline folder"):
        set_guidance_scale(tmp_path, 2.0)
    index = json.loads(before) | {"guidance_scale": "strong"}
    (tmp_path / "p" / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(MovieGenError, match="model_index.json: guidance_scale must be a number"):
        MovieGenPipeline.from_pretrained(tmp_path / "p")
