"""The people world: deterministic clips, held-out identities, actions the ground truth shows, references,
the crop rule and its errors."""

import pytest
import torch

from moviegen.data.people import (
    ACTION_PHRASES,
    ACTIONS,
    PARAPHRASES,
    People,
    crop,
    find_face,
    identity,
    is_held_out_identity,
)
from moviegen.errors import MovieGenError


def test_clips_are_deterministic_and_in_range():
    people = People(num_identities=8)
    a, b = people.clip("train", 3), people.clip("train", 3)
    assert torch.equal(a.video, b.video) and a.caption == b.caption
    assert a.video.shape == (3, 16, 64, 64) and a.video.min() >= -1 and a.video.max() <= 1
    assert people.clip("train", 3 + 8).person == a.person  # identities repeat across clips
    assert not torch.equal(people.clip("train", 11).video, a.video)


def test_held_out_identities_never_train():
    train = {identity("train", i).combination() for i in range(300)}
    test = {identity("test", i).combination() for i in range(40)}
    assert not train & test
    assert all(not is_held_out_identity(identity("val", i)) for i in range(50))
    assert len({c[1] for c in test}) > 1  # held-out identities still vary


def test_actions_follow_the_ground_truth():
    people = People()
    for action in ACTIONS:
        clip = people.clip("train", 0, action=action)
        first, last = clip.poses[0], clip.poses[-1]
        if action == "moving left":
            assert last.cx < first.cx - 5
        elif action == "moving right":
            assert last.cx > first.cx + 5
        elif action == "turning left":
            assert last.yaw < first.yaw - 0.5
        elif action == "turning right":
            assert last.yaw > first.yaw + 0.5
        elif action == "smiling":
            assert clip.expressions[0].smile == 0 and clip.expressions[-1].smile == 1
        elif action == "zoom in":
            assert last.radius > 1.15 * first.radius
        else:
            assert last == first
        assert not torch.equal(clip.video[:, 0], clip.video[:, -1]) or action == "still"
    with pytest.raises(MovieGenError, match="unknown action"):
        people.clip("train", 0, action="dancing")


def test_paraphrases_are_not_training_phrases():
    train = {p for v in ACTION_PHRASES.values() for p in v}
    assert set(PARAPHRASES) == set(ACTIONS) and not train & {p for v in PARAPHRASES.values() for p in v}
    clip = People().clip("test", 1, phrasing="paraphrase")
    assert any(p in clip.caption for p in PARAPHRASES[clip.action])


def test_references_and_crops():
    people = People()
    clip, ref = people.clip("train", 5), people.reference("train", 5)
    assert ref.person == clip.person and ref.video.shape == (3, 1, 64, 64) and ref.poses[0] != clip.poses[0]
    box = clip.box(0)
    face = crop(clip.video[:, 0], box)
    assert face.shape == (3, 32, 32)
    found = find_face(clip.video[:, 0])
    pose = clip.poses[0]  # the rule's square holds the face, about as large as the world's own box
    assert abs(found[0] - pose.cx) < found[2] / 4 and abs(found[1] - pose.cy) < found[2] / 4
    assert 0.6 < found[2] / box[2] < 1.3
    with pytest.raises(MovieGenError, match="no face found"):
        find_face(torch.full((3, 64, 64), -0.5))
    with pytest.raises(MovieGenError, match="shape"):
        crop(torch.zeros(64, 64), box)
