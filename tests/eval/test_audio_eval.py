"""Audio measurements on the sound world: onsets, event matching, impact classes, tempo, signal scores,
the FAD-style embedding and distance, whole-clip scoring, seams and the held-out benchmark's cases."""

import numpy as np
import pytest
import torch

from moviegen.data.sound import (
    PARAPHRASES,
    SOUND_CAPTIONS,
    SoundWorld,
    SoundWorldConfig,
    held_out_triples,
    impact_sound,
    render_music,
)
from moviegen.errors import MovieGenError
from moviegen.eval import audio_bench as bench
from moviegen.eval.audio import (
    AudioEmbedding,
    AudioEmbeddingConfig,
    aggregate_world_scores,
    classify_onsets,
    estimate_tempo,
    frechet_distance,
    impact_classes,
    match_events,
    mel_distance,
    onset_times,
    score_world_clip,
    si_sdr,
    train_audio_embedding,
)

SR = 48_000


@pytest.fixture(scope="module")
def world():
    return SoundWorld(SoundWorldConfig(seconds=3.0))


def test_onsets_of_world_impacts_within_a_few_ms(world):
    errors, f1 = [], []
    for motion in ("horizontal", "vertical", "diagonal"):
        clip = world.object_clip("green", "triangle", motion, np.random.default_rng(2))
        m = match_events(onset_times(clip.audio), [i.time for i in clip.impacts])
        f1.append(m["f1"])
        errors += m["errors"]
    assert min(f1) == 1.0 and max(errors) < 0.005


def test_match_events_is_one_to_one_within_tolerance():
    m = match_events([0.10, 0.11, 0.50, 0.90], [0.10, 0.52, 2.0], tolerance=0.05)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 2, 1)
    assert m["precision"] == 0.5 and m["recall"] == pytest.approx(2 / 3)
    assert [(i, j) for i, j, _ in m["matched"]] == [(0, 0), (2, 1)]
    assert m["median_error_s"] == pytest.approx(0.01)
    assert match_events([], [])["f1"] == 1.0 and match_events([0.1], [])["f1"] == 0.0
    with pytest.raises(MovieGenError):
        match_events([np.nan], [0.1])


@pytest.mark.parametrize("color,shape", [("red", "circle"), ("cyan", "square"), ("white", "triangle"),
                                         ("orange", "triangle")])  # fmt: skip
def test_impact_classes_name_pitch_and_timbre(color, shape):
    from moviegen.data.sound import PITCHES

    x = np.zeros(SR)
    sound = impact_sound(PITCHES[color], shape, SR)[: SR - 12_000]
    x[12_000 : 12_000 + len(sound)] += 0.5 * sound
    x += 0.002 * np.random.default_rng(0).standard_normal(SR)
    assert impact_classes(x, [0.25]) == [(color, shape)]


def test_tempo_of_a_melody_and_music_onsets_are_not_impacts():
    rng = np.random.default_rng(3)
    for tempo in (90, 120, 150):
        melody, _ = render_music("piano", tempo, "C", "happy", 4 * SR, SR, rng)
        assert estimate_tempo(0.25 * melody) == pytest.approx(tempo, rel=0.02)
        kinds = [r["kind"] for r in classify_onsets(0.25 * melody, music={"instrument": "piano"})]
        assert kinds.count("music") >= len(kinds) - 1
    assert estimate_tempo(np.zeros(SR) + 1e-4 * rng.standard_normal(SR)) is None


def test_signal_scores():
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(SR) * 0.1).float()
    assert mel_distance(x, x) == 0.0 and si_sdr(x, 3 * x) > 90
    noisy = x + 0.1 * torch.randn(SR, generator=torch.Generator().manual_seed(1))
    assert si_sdr(x, noisy) == pytest.approx(0.0, abs=0.3)
    assert mel_distance(x, noisy) > 0.05 and mel_distance(x, 0.1 * x) == pytest.approx(1.0, abs=0.01)


def test_frechet_distance():
    g = np.random.default_rng(0)
    a, b = g.standard_normal((400, 4)), g.standard_normal((400, 4))
    assert frechet_distance(a, b) < 0.1
    assert frechet_distance(a, b + 2) == pytest.approx(16, rel=0.1)
    with pytest.raises(MovieGenError):
        frechet_distance(a[:1], b)


def test_world_scoring_truth_against_silence(world):
    clips = [world.object_clip(c, s, m, np.random.default_rng(i)) for i, (c, s, m) in enumerate(held_out_triples()[:6])]
    truth = aggregate_world_scores([score_world_clip(c.audio, c) for c in clips])
    silent = aggregate_world_scores([score_world_clip(torch.zeros_like(c.audio), c) for c in clips])
    assert truth["impact_f1"] >= 0.9 and truth["median_onset_error_ms"] < 5
    assert truth["pitch_accuracy"] >= 0.9 and truth["timbre_accuracy"] >= 0.9
    assert silent["impact_f1"] == 0.0 and silent["pitch_accuracy"] is None


def test_embedding_trains_saves_and_separates_sounds(world, tmp_path):
    model = train_audio_embedding(world, steps=30, clips=24, batch=8, preset="tiny")
    folder = model.save_pretrained(tmp_path / "emb")
    again = AudioEmbedding.from_pretrained(folder)
    clips = [world.clip("val", i).audio for i in range(4)]
    assert np.allclose(model.embed(clips), again.embed(clips))
    assert model.embed(clips).shape == (4, AudioEmbeddingConfig.preset("tiny").dim)


def test_benchmark_cases_are_held_out_and_paraphrased():
    train = bench.cases("train", seconds=1.0)
    para = bench.cases("paraphrase", seconds=1.0)
    assert len(train) == len(para) == 2 * len(held_out_triples()) + 5
    for a, b in zip(train, para, strict=True):
        if a.clip.kind == "object":
            assert a.clip.caption in SOUND_CAPTIONS[a.clip.attributes["motion"]]
            assert b.clip.caption in PARAPHRASES[b.clip.attributes["motion"]]
        if a.clip.music:
            assert a.clip.music != b.clip.music and b.clip.attributes["music"] == a.clip.attributes["music"]
    pairs = {(m["instrument"], m["key"]) for c in train if (m := c.clip.attributes.get("music"))}
    assert pairs == set(bench.held_out_music())


def test_seams_and_boundaries():
    assert bench.boundaries(10, 10, 5, "triangular") == []
    assert bench.boundaries(20, 8, 4, "triangular") == [4, 8, 12, 16]
    assert bench.boundaries(20, 8, 4, "independent") == [8, 12, 16]  # the last window is end-aligned
    x = 0.1 * np.random.default_rng(0).standard_normal(2 * SR)
    flat = bench.seam_ratios(x, [0.5, 1.0, 1.5], SR)
    assert flat["loudness"] == pytest.approx(1.0, abs=0.1) and flat["discontinuity"] == pytest.approx(1.0, abs=0.2)
    x[SR - 1000 : SR + 1000] *= 8  # a burst at a seam
    loud = bench.seam_ratios(x, [0.5, 1.0, 1.5], SR)
    assert loud["loudness"] > 2 and loud["discontinuity"] > 1.2


def test_truth_round_trips_through_json(world, tmp_path):
    clip = world.object_clip("red", "circle", "horizontal", np.random.default_rng(0), ("piano", 120, "C", "happy"))
    again = bench.truth_clip(bench.clip_truth(clip))
    assert score_world_clip(clip.audio, again) == score_world_clip(clip.audio, clip)
    with pytest.raises(MovieGenError):
        bench.truth_clip({"kind": "object"})
