"""moviegen.eval.people / eval.personalize: the action detector, copy distance, analyzer folders, the
benchmark's cases and scores (the shipped analyzer, when present, on true renderings)."""

import pytest
import torch

from moviegen.data.people import ACTIONS, People, is_held_out_identity
from moviegen.eval import personalize as bench
from moviegen.eval.people import (
    DEFAULT_ANALYZER,
    STATE_KEYS,
    PeopleAnalyzer,
    copy_distance,
    detect_action,
    state_vector,
    train_analyzer,
)


def true_states(clip):
    return torch.tensor([state_vector(clip, t, 64) for t in range(clip.video.shape[1])])


def test_detect_action_reads_every_action_from_true_states():
    people = People(16, 64, 16, seed=4)
    hits = [detect_action(true_states(people.clip("train", i, action=a))) == a
            for i in range(6) for a in ACTIONS]  # fmt: skip
    assert sum(hits) / len(hits) >= 0.95


def test_copy_distance_is_zero_for_a_copy_and_large_for_another_pose():
    people = People(4, 64, 16, seed=1)
    ref = people.reference("train", 0)
    state = torch.tensor(state_vector(ref, 0, 64))
    assert copy_distance(state.expand(16, -1), state) == 0.0
    far = [copy_distance(true_states(people.clip("train", i)), state) for i in range(8)]
    assert min(far) > 0.2


def test_analyzer_trains_saves_and_loads(tmp_path):
    model = train_analyzer(steps=2, batch=16, identities=8, samples=256)
    frames = torch.rand(2, 3, 64, 64) * 2 - 1
    model.save(tmp_path / "a")
    again = PeopleAnalyzer.load(tmp_path / "a")
    assert again.states(frames).shape == (2, len(STATE_KEYS))
    assert torch.allclose(again.states(frames), model.states(frames), atol=5e-2)
    assert torch.allclose(again.embed(frames[:, :, :32, :32]).norm(dim=-1), torch.ones(2))


def test_cases_use_held_out_identities_and_cross_references():
    cases = bench.cases(identities=3, per_identity=3)
    assert len(cases) == 9 and {c.action for c in cases} <= set(ACTIONS)
    for c in cases:
        assert is_held_out_identity(c.truth.person) and c.reference.person == c.truth.person
        assert c.reference.poses[0] != c.truth.poses[0]
    para = bench.cases(identities=3, per_identity=1, phrasing="paraphrase")
    assert all(p.prompt != c.prompt for p, c in zip(para, cases, strict=False))


@pytest.mark.skipif(not (DEFAULT_ANALYZER / "config.json").is_file(), reason="no shipped analyzer")
def test_shipped_analyzer_reads_true_renderings_of_held_out_identities():
    analyzer = PeopleAnalyzer.load()
    cases = bench.cases(identities=14, per_identity=1)
    table = bench.gallery(analyzer, cases)
    rows = bench.baselines(cases, analyzer, table)
    truth, copy = rows["truth"], rows["copy reference"]
    assert truth["retrieval"] >= 80 and truth["action"] >= 85
    assert copy["copy"] < 0.35 * truth["copy"] and copy["action"] < 40
