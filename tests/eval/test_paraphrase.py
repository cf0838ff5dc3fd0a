"""The paraphrase benchmark: its prompt sets, their checks, and scoring through a generator."""

import json

import pytest

from moviegen.data.world import CAMERA_MOTIONS, COLORS, MOTIONS, SHAPES, World, held_out_triples, is_held_out
from moviegen.errors import MovieGenError
from moviegen.eval.paraphrase import (
    BLIND_SET,
    check_disjoint,
    evaluate_paraphrases,
    paraphrase_prompts,
    read_prompt_set,
)
from moviegen.eval.world import EvalPrompt
from moviegen.rewrite.style import caption_style
from moviegen.rewrite.template import TemplateRewriter


@pytest.mark.parametrize(
    "prompts", [paraphrase_prompts(), read_prompt_set(BLIND_SET)], ids=["builtin", "blind"]
)
def test_sets_cover_the_held_out_triples_and_every_camera_motion_in_new_words(prompts):
    check_disjoint(prompts)
    objects = {
        (p.truth["color"], p.truth["shape"], p.truth["motion"]) for p in prompts if p.kind == "held_out"
    }
    assert objects == set(held_out_triples())
    for color, shape, motion in objects:
        assert is_held_out(list(COLORS).index(color), SHAPES.index(shape), MOTIONS.index(motion))
    assert {p.truth["camera"] for p in prompts if p.kind == "camera"} == set(CAMERA_MOTIONS)


def test_check_disjoint_refuses_the_worlds_own_words():
    with pytest.raises(AssertionError, match="caption words"):
        check_disjoint([EvalPrompt("a red circle moving up", "held_out", {})])
    with pytest.raises(AssertionError):
        check_disjoint([EvalPrompt("Camera: pan left. a kitten", "camera", {})])


def test_read_prompt_set_errors(tmp_path):
    path = tmp_path / "set.json"
    teal = {"prompt": "x", "kind": "held_out", "truth": {"color": "teal"}}
    cases = [([], "non-empty JSON list"), ([{"prompt": "x"}], "exactly the keys"), ([teal], "world names")]
    for data, needle in cases:
        path.write_text(json.dumps(data))
        with pytest.raises(MovieGenError, match=needle):
            read_prompt_set(path)


def test_the_rewriter_reads_every_blind_prompt():
    """Regression for the lexicon fixes the blind set found (noun camera moves, shapes by their sides)."""
    reader = TemplateRewriter(caption_style("world"))
    for p in read_prompt_set(BLIND_SET):
        r = reader.read(p.prompt)
        got = (
            {"camera": r.camera}
            if p.kind == "camera"
            else {"color": r.color, "shape": r.shape, "motion": r.motion}
        )
        assert got == {k: v for k, v in p.truth.items() if k in got}, p.prompt


def test_evaluate_paraphrases_scores_both_modes_from_the_generator():
    world = World()
    prompts = [p for p in paraphrase_prompts() if p.kind == "camera"][:4] + paraphrase_prompts()[:2]
    calls = []

    def generate(p, seed, rewrite):
        calls.append((p.prompt, seed, rewrite))
        if p.kind == "camera":
            return world.camera_clip(p.truth["photo"], p.truth["camera"] if rewrite else "static", 16).video
        return world.object_clip(p.truth["color"], p.truth["shape"], p.truth["motion"], 16).video

    scores = evaluate_paraphrases(generate, prompts, seeds=2)
    assert len(calls) == 2 * 2 * len(prompts) and {c[2] for c in calls} == {True, False}
    assert scores["rewritten"]["camera"] == 100.0 and scores["rewritten"]["held_out_color"] == 100.0
    assert [p.truth["camera"] for p in prompts[:4]] == ["static", "static", "pan left", "pan left"]
    assert scores["as typed"]["camera"] == 50.0  # every clip static: only the static prompts are right


def test_eval_paraphrase_command_on_a_set_file(tmp_path, capsys):
    from tests.helpers import run_cli

    items = [{"prompt": "a jade orb sinking", "kind": "held_out",
              "truth": {"color": "green", "shape": "circle", "motion": "down"}},
             {"prompt": "the camera slowly pans left across a kitten", "kind": "camera",
              "truth": {"camera": "pan left", "photo": "chelsea"}}]  # fmt: skip
    (tmp_path / "set.json").write_text(json.dumps(items))
    out = tmp_path / "report.json"
    args = ["eval", "paraphrase", "--set", tmp_path / "set.json", "--seeds", "1", "--out", out]
    code, stdout, err = run_cli(capsys, *args, "--device", "cpu")
    assert code == 0, err
    report = json.loads(out.read_text())
    assert set(report) == {f"{tmp_path / 'set.json'} rewritten", f"{tmp_path / 'set.json'} as typed"}
    for row in report.values():
        assert 0 <= row["camera"] <= 100 and 0 <= row["held_out_color"] <= 100
    assert "rewritten" in stdout and "as typed" in stdout
    code, _, err = run_cli(capsys, "eval", "paraphrase", "--set", tmp_path / "none.json")
    assert code == 1 and err.startswith("error:")
