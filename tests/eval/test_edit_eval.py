"""moviegen.eval.edit and moviegen.eval.edit_bench: world edit scores, the Edit Bench file and runner."""

import json

import pytest
import torch

from helpers import run_cli
from moviegen.data.edits import BENCH_TASKS, TASKS, apply_edit, edit_is_held_out
from moviegen.errors import MovieGenError
from moviegen.eval.edit import bench_cases, copy_baseline, evaluate_edits, score_edit
from moviegen.eval.edit_bench import (
    evaluate_edit_folder,
    export_world_bench,
    read_edit_bench,
    run_edit_bench,
)
from moviegen.eval.metrics import WorldJointEncoder


@pytest.fixture(scope="module")
def cases():
    return bench_cases(per_task=3, tasks=TASKS)


def test_the_truth_scores_perfectly_and_copying_edits_nothing(cases):
    truth, _ = evaluate_edits(lambda c: apply_edit(c.scene, c.edit).render(), cases)
    assert truth["all"]["edit"] == truth["all"]["preserve"] == 100.0
    copy, scores = evaluate_edits(copy_baseline, cases)
    assert copy["all"]["preserve"] == 100.0  # a white object is already grey: only grayscale can pass
    assert all(copy[t]["edit"] == 0.0 for t in TASKS if t != "grayscale")
    assert {s["psnr_region"] for s in scores} == {"unedited", "whole"}
    assert all(edit_is_held_out(c.edit, c.scene) for c in cases)
    assert {c.task for c in cases} == set(TASKS)


def test_detector_scores_see_wrong_edits(cases):
    recolor = next(c for c in cases if c.task == "recolor")
    wrong = apply_edit(recolor.scene, type(recolor.edit)("reshape", shape=next(
        s for s in ("circle", "square", "triangle") if s != recolor.scene.sprites[0].shape)))  # fmt: skip
    s = score_edit(recolor.scene, recolor.edit, wrong.render())
    assert not s["edit"] and not s["preserve"]
    moved = torch.roll(apply_edit(recolor.scene, recolor.edit).render(), shifts=20, dims=3)
    s = score_edit(recolor.scene, recolor.edit, moved)
    assert not s["preserve"] and s["psnr"] < 25  # read inside the true region: the object is not there
    with pytest.raises(MovieGenError, match="does not match"):
        score_edit(recolor.scene, recolor.edit, torch.zeros(3, 4, 64, 64))


def test_paraphrased_cases_use_other_words():
    a, b = (
        bench_cases(per_task=2, tasks=BENCH_TASKS),
        bench_cases(per_task=2, tasks=BENCH_TASKS, phrasing="paraphrase"),
    )
    assert [c.id for c in a] == [c.id for c in b]
    assert all(x.instruction != y.instruction for x, y in zip(a, b, strict=True))


def test_edit_bench_file_rows_are_checked(tmp_path):
    lines = [
        json.dumps({"id": 1, "video": "a.mp4", "instruction": "make it blue", "source_caption": "a",
                    "target_caption": "b"}),
        "{not json",
        json.dumps({"id": 2, "video": "a.mp4", "instruction": "x"}),
        json.dumps({"id": 3, "video": "a.mp4", "instruction": " ", "source_caption": "a", "target_caption": "b"}),
        json.dumps({"id": 1, "video": "a.mp4", "instruction": "y", "source_caption": "a", "target_caption": "b"}),
        json.dumps({"id": 4, "video": "/abs/v.mp4", "instruction": "y", "source_caption": "a",
                    "target_caption": "b", "colour": 3}),
    ]  # fmt: skip
    (tmp_path / "bench.jsonl").write_text("\n".join(lines) + "\n")
    rows, errors = read_edit_bench(tmp_path / "bench.jsonl")
    assert [r.id for r in rows] == ["1"] and rows[0].video == str(tmp_path / "a.mp4")
    assert [e.line for e in errors] == [2, 3, 4, 5, 6]
    assert "unknown colour" in str(errors[-1]) and "duplicate" in str(errors[-2])
    with pytest.raises(MovieGenError, match="not found"):
        read_edit_bench(tmp_path / "missing.jsonl")


def test_world_bench_runs_resumes_and_scores(tmp_path):
    path = export_world_bench(tmp_path / "bench", per_task=1)
    rows, errors = read_edit_bench(path)
    assert len(rows) == len(BENCH_TASKS) and not errors and all(r.world for r in rows)
    calls = []

    def identity(video, text, seed):
        calls.append(text)
        return video

    summary = run_edit_bench(rows, identity, tmp_path / "out", settings={"model": "copy"})
    assert summary.ok and summary.generated == len(rows)
    again = run_edit_bench(rows, identity, tmp_path / "out", settings={"model": "copy"})
    assert again.skipped == len(rows) and len(calls) == len(rows)
    with pytest.raises(MovieGenError, match="other settings"):
        run_edit_bench(rows, identity, tmp_path / "out", settings={"model": "other"})
    report = evaluate_edit_folder(tmp_path / "out", WorldJointEncoder())
    overall = report["aggregate"]["all"]
    assert overall["n"] == len(rows) and overall["edit"] < 20 and overall["preserve"] > 80
    assert set(report["aggregate"]) == set(BENCH_TASKS) | {"all"} and "viclip_dir" in overall


def test_bench_edit_and_metrics_commands(tmp_path, capsys):
    from moviegen.edit import EditPipeline
    from moviegen.pipeline import MovieGenPipeline

    EditPipeline.from_base(MovieGenPipeline.from_presets(), num_steps=2).save_pretrained(tmp_path / "edit")
    code, out, err = run_cli(capsys, "eval", "edit", "--export", tmp_path / "bench", "--per-task", "1")
    assert code == 0, err
    bench = tmp_path / "bench" / "edit_bench.jsonl"
    with bench.open("a") as f:
        f.write("{broken\n")
    code, out, err = run_cli(capsys, "bench", "--edit", bench, "--out", tmp_path / "out", "--model",
                             tmp_path / "edit")  # fmt: skip
    assert code == 1 and "bad JSON" in err  # the bad row is reported; the others are edited
    records = json.loads((tmp_path / "out" / "edit_index.json").read_text())
    assert len(records) == len(BENCH_TASKS) and all(r["status"] == "ok" for r in records)
    code, out, err = run_cli(capsys, "metrics", tmp_path / "out")
    assert code == 0, err
    assert "viclip_dir" in out and (tmp_path / "out" / "metrics" / "edit_metrics.json").is_file()
    code, out, err = run_cli(capsys, "bench", "--out", tmp_path / "x")
    assert code == 1 and "--prompts" in err
