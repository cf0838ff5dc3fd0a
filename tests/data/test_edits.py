"""moviegen.data.edits: world edits with exact ground truth."""

import numpy as np
import pytest
import torch

from moviegen.data.edits import (
    BENCH_TASKS,
    PARAPHRASES,
    TASKS,
    TRAIN_PHRASES,
    Edit,
    animate,
    apply_edit,
    background_name,
    edit_from_dict,
    edit_is_held_out,
    edit_to_dict,
    instruction,
    reverse_edit,
    sample_edit,
    scene_from_dict,
    scene_of,
    scene_to_dict,
    source_scene,
)
from moviegen.data.world import COLORS, SHAPES, World
from moviegen.errors import MovieGenError
from moviegen.eval.world import detect_object


def _object_clip(world, index=0):
    while (clip := world.clip("train", index)).kind != "object":
        index += 1
    return clip


def test_a_scene_renders_its_world_clip_exactly():
    clip = _object_clip(World())
    assert torch.equal(scene_of(clip).render(), clip.video)


@pytest.mark.parametrize("task", TASKS)
def test_every_edit_renders_what_it_says(task):
    scene, rng = source_scene(World(), "train", 5)
    edit = sample_edit(scene, rng, (task,), held_out=None)
    truth = apply_edit(scene, edit)
    video = truth.render()
    assert video.shape == scene.render().shape
    first = truth.sprites[0] if truth.sprites else None
    if task == "recolor":
        assert detect_object(video).color == edit.color != scene.sprites[0].color
    elif task == "reshape":
        assert detect_object(video).shape == edit.shape
    elif task == "remove":
        assert not truth.sprites and not detect_object(video).found
    elif task == "add":
        assert len(truth.sprites) == 2 and truth.sprites[1].color == edit.color
    elif task == "grayscale":
        assert torch.allclose(video[0], video[1]) and torch.allclose(video[1], video[2])
    elif task == "background":
        assert truth.photo == edit.background and not torch.allclose(video, scene.render())
    elif task == "segment":
        assert detect_object(video).color == edit.color and first is not None
    assert instruction(edit, scene, rng)  # phrased


def test_reverse_edits_restore_the_source():
    scene, rng = source_scene(World(), "train", 2)
    for task in ("recolor", "reshape", "background", "add"):
        edit = sample_edit(scene, rng, (task,), held_out=None)
        edited = apply_edit(scene, edit)
        back = reverse_edit(scene, edit)
        restored = apply_edit(edited, back)
        if task == "background":  # "make the background dark": the world's own kind, not its exact shade
            assert background_name(restored) == background_name(scene) == "dark"
            continue
        assert torch.allclose(restored.render(), scene.render(), atol=1e-6), task
    assert reverse_edit(scene, Edit("segment", color="red")) is None
    assert reverse_edit(scene, Edit("grayscale")) is None


def test_held_out_compositions_are_a_fifth_and_never_sampled_for_training():
    keys = [edit_is_held_out(Edit(t, color=c), scene_of_pair(c, s)) for t in ("recolor", "segment")
            for c in COLORS for s in SHAPES]  # fmt: skip
    assert 0.1 < np.mean(keys) < 0.3
    world = World()
    for i in range(60):
        scene, rng = source_scene(world, "train", i)
        assert not edit_is_held_out(sample_edit(scene, rng, BENCH_TASKS, held_out=False), scene)
        try:
            held = sample_edit(scene, rng, ("recolor",), held_out=True)
        except MovieGenError:
            continue
        assert edit_is_held_out(held, scene)


def scene_of_pair(color, shape):
    scene, _ = source_scene(World(), "train", 0)
    s = scene.sprites[0]
    return type(scene)(scene.background, (type(s)(shape, color, s.radius, s.centres, s.motion),), scene.size,
                       scene.frames)  # fmt: skip


def test_evaluation_phrasings_are_never_training_phrasings():
    for task in TASKS:
        assert not set(TRAIN_PHRASES[task]) & set(PARAPHRASES[task])
    scene, rng = source_scene(World(), "train", 1)
    edit = Edit("recolor", color="blue")
    assert instruction(edit, scene, np.random.default_rng(0), "paraphrase") not in {
        t.format(shape=w, color="blue", old=scene.sprites[0].color, new="", bg="", corner="")
        for t in TRAIN_PHRASES["recolor"] for w in ("circle", "ball", "disc", "square", "box", "block",
                                                      "triangle", "wedge")}  # fmt: skip
    with pytest.raises(MovieGenError, match="phrasing"):
        instruction(edit, scene, rng, "other")


def test_animate_moves_both_images_the_same_way():
    scene, rng = source_scene(World(), "train", 3, frames=1, still=True)
    src, dst = scene.render(), apply_edit(scene, Edit("recolor", color="blue")).render()
    a, b = animate([src, dst], np.random.default_rng(4), 16)
    assert a.shape == b.shape == (3, 16, 64, 64)
    assert torch.allclose(a[:, 0], src[:, 0], atol=1e-4)
    da, db = detect_object(a), detect_object(b)
    assert da.displacement == pytest.approx(db.displacement, abs=1.0)
    with pytest.raises(MovieGenError, match="one-frame"):
        animate([a], rng, 4)


def test_scenes_and_edits_round_trip_as_json():
    scene, rng = source_scene(World(), "test", 9)
    edit = sample_edit(scene, rng)
    assert scene_from_dict(scene_to_dict(scene)) == scene
    assert edit_from_dict(edit_to_dict(edit)) == edit
    with pytest.raises(MovieGenError, match="malformed"):
        scene_from_dict({"sprites": []})
    with pytest.raises(MovieGenError, match="task"):
        edit_from_dict({"task": "explode"})
