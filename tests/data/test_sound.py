"""The sound world: deterministic clips, exact impact times, held-out combinations, captions, music."""

import numpy as np
import pytest

from moviegen.data.sound import (
    INSTRUMENTS,
    KEYS,
    PARAPHRASES,
    SOUND_CAPTIONS,
    SOUND_MOTIONS,
    SoundWorld,
    SoundWorldConfig,
    bounce_path,
    compose_audio_prompt,
    contact_times,
    held_out_triples,
    is_held_out,
    is_held_out_music,
    music_prompt,
    parse_music_prompt,
)
from moviegen.data.world import COLORS, SHAPES
from moviegen.errors import MovieGenError


@pytest.fixture(scope="module")
def world():
    return SoundWorld(SoundWorldConfig(seconds=2.0))


def test_clips_are_pure_functions_of_split_and_index(world):
    a, b = world.clip("train", 3), world.clip("train", 3)
    assert a.caption == b.caption and a.music == b.music
    assert np.array_equal(a.audio.numpy(), b.audio.numpy()) and np.array_equal(a.video.numpy(), b.video.numpy())
    assert a.audio.shape == (96_000,) and a.video.shape == (3, 32, 32, 32)
    assert not np.array_equal(world.clip("val", 3).audio.numpy(), a.audio.numpy())


def test_training_clips_never_hold_a_held_out_combination(world):
    colors, motions, instruments = list(COLORS), list(SOUND_MOTIONS), list(INSTRUMENTS)
    seen = set()
    for i in range(150):
        c = world.clip("train", i)
        if c.kind == "object":
            a = c.attributes
            triple = (colors.index(a["color"]), SHAPES.index(a["shape"]), motions.index(a["motion"]))
            assert not is_held_out(*triple)
            seen.add(triple)
        if "music" in c.attributes:
            m = c.attributes["music"]
            assert not is_held_out_music(instruments.index(m["instrument"]), KEYS.index(m["key"]))
    held = held_out_triples()
    assert 15 <= len(held) <= 25 and len(seen) > 30
    # every attribute of a held-out triple appears in training on its own
    assert {t[0] for t in held} <= set(COLORS) and {t[2] for t in held} <= set(SOUND_MOTIONS)


def test_impacts_are_the_wall_contacts_of_the_rendered_path(world):
    clip = world.object_clip("red", "circle", "diagonal", np.random.default_rng(5))
    a = clip.attributes
    lo, hi = a["walls"]
    assert len(clip.impacts) >= 2
    for imp in clip.impacts:
        x = bounce_path(a["start"][0], a["velocity"][0], lo, hi, np.array([imp.time]))[0]
        y = bounce_path(a["start"][1], a["velocity"][1], lo, hi, np.array([imp.time]))[0]
        assert min(abs(x - lo), abs(x - hi), abs(y - lo), abs(y - hi)) < 1e-6
        assert imp.shape == "circle" and imp.pitch == 220.0
        i = round(imp.time * clip.sample_rate)  # the impact's attack is in the audio at that sample
        before, after = clip.audio[i - 480 : i].abs().max(), clip.audio[i : i + 480].abs().max()
        assert after > before + 0.2
    still = world.object_clip("red", "circle", "still", np.random.default_rng(5))
    assert still.impacts == [] and float(still.audio.abs().max()) < 0.02


def test_contact_times_match_a_dense_simulation():
    t = np.arange(0, 3.0, 1e-5)
    x = bounce_path(10.0, 7.0, 2.0, 20.0, t)
    turns = t[1:-1][(np.diff(np.sign(np.diff(x))) != 0)]
    assert np.allclose(contact_times(10.0, 7.0, 2.0, 20.0, 3.0), turns, atol=2e-5)


def test_captions_and_music_prompts(world):
    clip = world.object_clip("blue", "square", "vertical", np.random.default_rng(1), ("organ", 90, "D", "sad"))
    assert clip.caption in SOUND_CAPTIONS["vertical"]
    assert clip.music == music_prompt("organ", 90, "D", "sad") == "sad organ melody in D minor at 90 BPM"
    assert clip.prompt == f"{clip.caption}. Music: sad organ melody in D minor at 90 BPM."
    assert parse_music_prompt(clip.music) == dict(instrument="organ", tempo=90, key="D", mode="minor", mood="sad")
    assert parse_music_prompt("no instrument here") is None
    train_words = {c for v in SOUND_CAPTIONS.values() for c in v}
    assert not train_words & {p for v in PARAPHRASES.values() for p in v}
    with pytest.raises(MovieGenError):
        compose_audio_prompt("   ")
    with pytest.raises(MovieGenError):
        world.object_clip("puce", "circle", "still")
    with pytest.raises(MovieGenError):
        world.clip("holdout", 0)
