"""The built-in world: determinism, captions, FPS-dependent motion and held-out compositions."""

import torch

from moviegen.data.world import COLORS, MOTIONS, SHAPES, World, WorldConfig, held_out_triples, is_held_out
from moviegen.models.text import parse_prompt_prefix


def test_clips_are_a_pure_function_of_seed_split_and_index():
    a, b = World(seed=3), World(seed=3)
    for i in range(6):
        x, y = a.clip("train", i), b.clip("train", i)
        assert torch.equal(x.video, y.video) and x.caption == y.caption
    assert not torch.equal(a.clip("train", 0).video, World(seed=4).clip("train", 0).video)
    assert a.clip("train", 0).caption != a.clip("val", 0).caption or not torch.equal(
        a.clip("train", 0).video, a.clip("val", 0).video
    )


def test_shapes_ranges_and_prefixes():
    world = World()
    for i in range(40):
        clip = world.clip("train", i)
        assert clip.video.shape == (3, 16, 64, 64)
        assert clip.video.min() >= -1 and clip.video.max() <= 1
        fps, camera, prompt = parse_prompt_prefix(clip.caption)
        assert fps == clip.fps and prompt
        assert (camera is not None) == (clip.kind == "camera")
    image = world.image("train", 0)
    assert image.video.shape == (3, 1, 64, 64)
    assert parse_prompt_prefix(image.caption)[0] is None
    small = World(WorldConfig.preset("small")).clip("train", 1)
    assert small.video.shape == (3, 16, 32, 32)


def test_speed_is_in_pixels_per_second_so_fps_changes_per_frame_motion():
    world = World()
    slow = world.object_clip("red", "circle", "right", 16, rng=__import__("numpy").random.default_rng(0))
    fast = world.object_clip("red", "circle", "right", 8, rng=__import__("numpy").random.default_rng(0))
    step16 = slow.attributes["centres"][1][0] - slow.attributes["centres"][0][0]
    step8 = fast.attributes["centres"][1][0] - fast.attributes["centres"][0][0]
    assert abs(step8 - 2 * step16) < 1e-9 and step16 > 0
    assert parse_prompt_prefix(slow.caption)[0] == 16 and parse_prompt_prefix(fast.caption)[0] == 8


def test_held_out_triples_never_appear_in_training_but_each_attribute_does():
    held = set(held_out_triples())
    assert 0 < len(held) < len(COLORS) * len(SHAPES) * len(MOTIONS)
    world = World()
    seen = set()
    for i in range(1500):
        clip = world.clip("train", i)
        if clip.kind == "object":
            a = clip.attributes
            seen.add((a["color"], a["shape"], a["motion"]))
    assert not (seen & held)
    for color, shape, motion in held:
        assert any(t[0] == color for t in seen) and any(t[1] == shape for t in seen)
        assert any(t[2] == motion for t in seen)
    colors = list(COLORS)
    for c, s, m in held:
        assert is_held_out(colors.index(c), SHAPES.index(s), MOTIONS.index(m))
