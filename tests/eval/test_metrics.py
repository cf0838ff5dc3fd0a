import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from moviegen.data.world import World
from moviegen.errors import MovieGenError
from moviegen.eval import metrics as m
from moviegen.pipeline import MovieGenPipeline


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0)


def object_clip(world: World, color="red", shape="circle", motion="right", seed=0):
    return world.object_clip(color, shape, motion, fps=16, rng=np.random.default_rng(seed))


def test_world_encoder_parses_captions_and_matches_ground_truth(world):
    enc = m.WorldJointEncoder()
    assert enc.parse("FPS-16. a red ball travels left") == {
        "color": "red",
        "shape": "circle",
        "motion": "left",
    }
    assert enc.parse("FPS-8. Camera: tilt up. a cat") == {"camera": "tilt up"}
    clip = object_clip(world, color="green", shape="square", motion="up")
    assert m.text_alignment(enc, clip.caption, clip.video) == pytest.approx(1.0)
    assert m.text_alignment(enc, "a red square moving down", clip.video) == pytest.approx(1 / 3)
    assert m.frame_consistency(enc, clip.video) == pytest.approx(1.0)


def test_motion_score_measures_pixels_per_frame(world):
    still = object_clip(world, motion="still")
    moving = object_clip(world, motion="right")
    assert m.motion_score(still.video) < 0.05
    assert m.motion_score(moving.video) > 5 * m.motion_score(still.video) + 0.05
    static = torch.zeros(3, 6, 32, 32)
    assert m.motion_score(static) == 0.0 and m.motion_score(static[:, :1]) == 0.0


def test_frame_consistency_drops_when_frames_change(world):
    enc = m.WorldJointEncoder()
    a = object_clip(world, color="red", shape="circle")
    b = object_clip(world, color="blue", shape="triangle")
    flicker = torch.cat([a.video[:, :4], b.video[:, 4:8], a.video[:, 8:12]], dim=1)
    assert m.frame_consistency(enc, flicker) < 0.9


def test_edit_metrics_follow_the_edit_direction(world):
    enc = m.WorldJointEncoder()
    src = object_clip(world, color="red", shape="circle", motion="still")
    out = object_clip(world, color="blue", shape="circle", motion="still")
    assert m.viclip_out(enc, out.video, "a blue circle staying still") == pytest.approx(1.0)
    right = m.viclip_dir(
        enc, src.video, out.video, "a red circle staying still", "a blue circle staying still"
    )
    wrong = m.viclip_dir(
        enc, src.video, out.video, "a red circle staying still", "a green circle staying still"
    )
    assert right > 0.9 and right > wrong
    assert m.viclip_dir(enc, src.video, src.video, "a red circle", "a blue circle") == 0.0


def test_aggregate_by_concept_and_motion_level():
    rows = [
        dict(
            concepts=["animal", "scene"],
            motion_level="high",
            text_alignment=0.2,
            frame_consistency=0.9,
            motion_score=3.0,
        ),
        dict(
            concepts=["animal"],
            motion_level="low",
            text_alignment=0.4,
            frame_consistency=0.7,
            motion_score=1.0,
        ),
        dict(
            concepts=[],
            motion_level=None,
            text_alignment=float("nan"),
            frame_consistency=0.5,
            motion_score=2.0,
        ),
    ]
    agg = m.aggregate(rows)
    assert agg["overall"]["all"]["n"] == 3
    assert agg["overall"]["all"]["text_alignment"] == pytest.approx(0.3)
    assert agg["overall"]["all"]["frame_consistency"] == pytest.approx(0.7)
    assert agg["concept"]["animal"]["motion_score"] == pytest.approx(2.0)
    assert agg["concept"]["scene"]["n"] == 1
    assert list(agg["motion_level"]) == ["low", "high"]


def tiny_clip_model(folder: Path) -> Path:
    special = ["<|startoftext|>", "<|endoftext|>"]
    chars = [chr(c) for c in range(33, 127)]
    vocab = {tok: i for i, tok in enumerate(special + chars + [c + "</w>" for c in chars])}
    source = folder.parent / "tokenizer-src"
    source.mkdir()
    (source / "vocab.json").write_text(json.dumps(vocab))
    (source / "merges.txt").write_text("#version: 0.2\n")
    torch.manual_seed(0)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(str(folder))
    transformers.CLIPTokenizer.from_pretrained(str(source)).save_pretrained(str(folder))
    return folder


def test_clip_joint_encoder_from_a_local_folder(tmp_path, world):
    enc = m.load_encoder(str(tiny_clip_model(tmp_path / "clip")))
    assert isinstance(enc, m.CLIPJointEncoder)
    clip = object_clip(world, motion="left")
    text = enc.embed_text(["a red circle", "a much longer prompt about a cat"])
    frames = enc.embed_frames(clip.video)
    assert text.shape == (2, 16) and frames.shape == (clip.video.shape[1], 16)
    score = m.text_alignment(enc, clip.caption, clip.video)
    assert -1 <= score <= 1 and score == m.text_alignment(enc, clip.caption, clip.video)
    assert 0.5 < m.frame_consistency(enc, clip.video) <= 1.0 + 1e-6
    with pytest.raises(MovieGenError, match="does not exist"):
        m.load_encoder(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MovieGenError, match="no config.json"):
        m.load_encoder(str(tmp_path / "empty"))


def test_validation_loss_is_deterministic_and_reads_a_folder(tmp_path):
    from moviegen.video import write_video

    pipe = MovieGenPipeline.from_presets("tiny", "tiny")
    videos, captions = m.held_out_world(num_clips=4)
    assert videos.shape == (4, 3, 16, 64, 64) and all(c.startswith("FPS-") for c in captions)
    first = m.validation_loss(pipe, videos, captions)
    assert math.isfinite(first) and first == m.validation_loss(pipe, videos, captions)
    assert first != m.validation_loss(pipe, videos, captions, seed=7)

    for i in range(2):
        write_video(tmp_path / f"c{i}.mp4", videos[i], fps=16)
        (tmp_path / f"c{i}.txt").write_text(captions[i])
    loaded, caps = m.held_out_folder(tmp_path)
    assert loaded.shape == (2, 3, 16, 64, 64) and caps == captions[:2]
    (tmp_path / "c1.txt").unlink()
    with pytest.raises(MovieGenError, match="no caption file"):
        m.held_out_folder(tmp_path)
