import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from tests.helpers import run_cli

from moviegen.errors import MovieGenError
from moviegen.eval.bench import BenchPrompt, load_index, read_prompts, run_bench

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prompts" / "world_bench.csv"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_txt_prompts_skip_comments_and_report_empty_lines(tmp_path):
    path = write(tmp_path, "p.txt", "# a comment\na red circle moving up\n   \na cat\n\n")
    prompts, errors = read_prompts(path)
    assert [p.prompt for p in prompts] == ["a red circle moving up", "a cat"]
    assert [p.id for p in prompts] == ["0002", "0004"]
    assert [(e.line, e.message) for e in errors] == [(3, "empty prompt")]


def test_csv_multilabel_concepts_and_bad_rows(tmp_path):
    path = write(
        tmp_path,
        "bench.csv",
        "prompt,concept,motion_level,extra\n"
        'a dog runs,"animal, human activity",high,x\n'
        "too,few\n"
        ",scene,low,x\n"
        "a lake,scene,fast,x\n"
        'a storm,"physics",LOW,x\n',
    )
    prompts, errors = read_prompts(path)
    assert [(p.prompt, p.concepts, p.motion_level) for p in prompts] == [
        ("a dog runs", ("animal", "human activity"), "high"),
        ("a storm", ("physics",), "low"),
    ]
    messages = {e.line: e.message for e in errors}
    assert "unknown column(s) extra" in messages[1]
    assert messages[3] == "expected 4 fields, got 2"
    assert messages[4] == "empty prompt"
    assert "motion_level 'fast'" in messages[5]


def test_csv_without_prompt_column_is_an_error(tmp_path):
    with pytest.raises(MovieGenError, match="'prompt' column"):
        read_prompts(write(tmp_path, "b.csv", "text,concept\nhello,scene\n"))


def test_audio_bench_jsonl_is_validated(tmp_path):
    lines = [
        json.dumps(
            {"id": "a1", "video_prompt": "a drum", "audio_prompt": "drumming", "music_prompt": "jazz"}
        ),
        "{not json",
        json.dumps({"id": "a2", "video_prompt": "waves"}),
        json.dumps({"id": "a3", "video_prompt": "rain", "audio_prompt": "rain", "speaker": "x"}),
        json.dumps({"id": "a1", "video_prompt": "again", "audio_prompt": "again"}),
        json.dumps(["a list"]),
        json.dumps({"id": "a/4", "video_prompt": "wind", "audio_prompt": "howling"}),
    ]
    prompts, errors = read_prompts(write(tmp_path, "audio.jsonl", "\n".join(lines) + "\n"))
    assert [(p.id, p.prompt, p.audio_prompt, p.music_prompt) for p in prompts] == [
        ("a1", "a drum", "drumming", "jazz"),
        ("a_4", "wind", "howling", None),
    ]
    messages = {e.line: e.message for e in errors}
    assert messages[2].startswith("not valid JSON")
    assert messages[3] == "missing or empty audio_prompt"
    assert messages[4] == "unknown key(s) speaker"
    assert messages[5] == "duplicate id 'a1'"
    assert messages[6] == "expected a JSON object"


def published_audio_bench(path: Path, music: bool) -> Path:
    """Rows shaped exactly like facebookresearch/MovieGenBench's MovieGenAudioBenchSfx[Music].jsonl:
    integer ids 0-537 with gaps (527 rows), every prompt a string."""
    ids = [i for i in range(538) if i % 48 != 47]
    assert len(ids) == 527
    rows = []
    for i in ids:
        row = {"id": i, "video_prompt": f"A drum is hit {i} times.", "audio_prompt": f"drum hits, {i}"}
        if music:
            row["music_prompt"] = "A calm piano melody."
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("music", [False, True])
def test_published_audio_bench_files_are_accepted_as_published(tmp_path, music):
    path = published_audio_bench(tmp_path / "MovieGenAudioBenchSfx.jsonl", music)
    prompts, errors = read_prompts(path)
    assert errors == [] and len(prompts) == 527
    assert [p.id for p in prompts[:3]] == ["0", "1", "2"] and prompts[-1].id == "537"
    assert "47" not in {p.id for p in prompts}
    assert (prompts[0].music_prompt is not None) == music
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": True, "video_prompt": "a", "audio_prompt": "b"}) + "\n"
                   + json.dumps({"id": 3, "video_prompt": 5, "audio_prompt": "b"}) + "\n")  # fmt: skip
    _, errors = read_prompts(bad)
    assert [e.message for e in errors] == [
        "id must be an integer or a string, got True",
        "video_prompt must be text",
    ]


def test_bench_generates_from_a_published_audio_bench_file(tmp_path, capsys):
    path = published_audio_bench(tmp_path / "MovieGenAudioBenchSfxMusic.jsonl", music=True)
    args = [
        "--prompts",
        path,
        "--out",
        tmp_path / "out",
        "--model",
        "tiny-random",
        "--limit",
        "2",
        "--steps",
        "1",
    ]
    code, out, err = run_cli(capsys, "bench", *args)
    assert code == 0, err
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [(r["id"], r["file"], r["status"]) for r in index] == [
        ("0", "0_s0.mp4", "ok"),
        ("1", "1_s0.mp4", "ok"),
    ]


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [("p.md", "x", "unknown prompt file type"), ("p.txt", "\n\n", "no prompts"), ("p.csv", "", "no prompts")],
)
def test_unusable_prompt_files(tmp_path, name, text, match):
    with pytest.raises(MovieGenError, match=match):
        read_prompts(write(tmp_path, name, text))
    with pytest.raises(MovieGenError, match="not found"):
        read_prompts(tmp_path / "missing.txt")


def test_shipped_example_prompt_file_parses_cleanly():
    prompts, errors = read_prompts(EXAMPLE)
    assert not errors and len(prompts) == 8
    assert {c for p in prompts for c in p.concepts} >= {"object", "held-out composition", "camera motion"}


def fake_generate(calls: list):
    def generate(prompt: str, seed: int) -> torch.Tensor:
        calls.append((prompt, seed))
        if "fail" in prompt:
            raise MovieGenError("cannot draw that")
        g = torch.Generator().manual_seed(seed)
        return torch.rand((3, 4, 16, 16), generator=g) * 2 - 1

    return generate


def test_run_bench_writes_index_and_resumes(tmp_path):
    prompts = [BenchPrompt("0001", "a cat", ("animal",), "low"), BenchPrompt("0002", "please fail")]
    calls: list = []
    out = tmp_path / "run"
    summary = run_bench(prompts, fake_generate(calls), out, seeds=2, settings={"model": "m"})
    assert (summary.generated, summary.failed, summary.skipped) == (2, 2, 0) and not summary.ok
    records = load_index(out)
    assert [(r.id, r.seed, r.status) for r in records] == [
        ("0001", 0, "ok"),
        ("0001", 1, "ok"),
        ("0002", 0, "error"),
        ("0002", 1, "error"),
    ]
    assert records[0].file == "0001_s0.mp4" and (out / "0001_s0.mp4").is_file()
    assert records[0].concepts == ["animal"] and records[0].motion_level == "low" and records[0].time_s >= 0
    assert records[2].error == "cannot draw that" and not (out / "0002_s0.mp4").exists()
    table = pq.read_table(out / "index.parquet").to_pylist()
    assert [(r["id"], r["seed"], r["status"]) for r in table] == [(r.id, r.seed, r.status) for r in records]

    calls.clear()
    again = run_bench(prompts, fake_generate(calls), out, seeds=2, settings={"model": "m"})
    assert again.skipped == 2 and calls == [("please fail", 0), ("please fail", 1)]
    calls.clear()
    more = run_bench(prompts[:1], fake_generate(calls), out, seeds=3, settings={"model": "m"})
    assert calls == [("a cat", 2)] and more.skipped == 2 and more.ok

    (out / "0001_s0.mp4").unlink()
    calls.clear()
    run_bench(prompts[:1], fake_generate(calls), out, seeds=1, settings={"model": "m"})
    assert calls == [("a cat", 0)]
    with pytest.raises(MovieGenError, match="with other settings"):
        run_bench(prompts, fake_generate(calls), out, settings={"model": "other"})


def test_bench_and_metrics_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    args = [
        "bench",
        "--prompts",
        EXAMPLE,
        "--model",
        "tiny-random",
        "--out",
        out,
        "--limit",
        "3",
        "--steps",
        "2",
    ]
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0, stdout
    assert "3 generated, 0 already there, 0 failed, 0 bad rows" in stdout
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and "0 generated, 3 already there" in stdout
    assert sorted(p.name for p in out.glob("*.mp4")) == ["0001_s0.mp4", "0002_s0.mp4", "0003_s0.mp4"]

    code, stdout, _ = run_cli(capsys, "metrics", out)
    assert code == 0, stdout
    assert "concept: held-out composition" in stdout and "motion_level: medium" in stdout
    report = json.loads((out / "metrics" / "metrics.json").read_text())
    assert len(report["per_video"]) == 3 and report["aggregate"]["overall"]["all"]["n"] == 3
    for name in ("metrics_overall.png", "metrics_concept.png", "metrics_motion_level.png", "per_video.csv"):
        assert (out / "metrics" / name).stat().st_size > 0

    (out / "0002_s0.mp4").unlink()
    code, stdout, err = run_cli(capsys, "metrics", out, "--out", tmp_path / "m2")
    assert code == 1 and "0002 seed 0" in err and "video file not found" in err
    assert json.loads((tmp_path / "m2" / "metrics.json").read_text())["aggregate"]["overall"]["all"]["n"] == 2


def test_bench_cli_reports_bad_rows_and_continues(tmp_path, capsys):
    prompts = write(
        tmp_path,
        "p.csv",
        "prompt,concept,colour\na red circle moving up,object,red\nbad,row\nFPS-8. a cat,animal,x\n",
    )
    out = tmp_path / "bench"
    code, stdout, err = run_cli(
        capsys, "bench", "--prompts", prompts, "--model", "tiny-random", "--out", out, "--steps", "1"
    )
    assert code == 1
    assert "unknown column(s) colour" in err and "line 3: expected 3 fields, got 2" in err
    assert "asks for FPS-8" in err
    assert (out / "0001_s0.mp4").is_file()
    assert "1 generated, 0 already there, 1 failed, 2 bad rows" in stdout
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["steps"] == 1 and len(run["row_errors"]) == 2


def test_bench_cli_bad_arguments(tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", "--prompts", tmp_path / "none.csv", "--out", tmp_path / "o")
    assert code == 1 and "prompt file not found" in err and not (tmp_path / "o").exists()
    code, _, err = run_cli(capsys, "bench", "--prompts", EXAMPLE, "--out", tmp_path / "o", "--limit", "0")
    assert code == 1 and "--limit" in err
    code, _, err = run_cli(capsys, "metrics", tmp_path)
    assert code == 1 and "no bench index" in err


def test_bench_and_metrics_on_the_shipped_model(tmp_path, capsys):
    """The README's evaluation commands with no --model: the shipped world model follows its prompts."""
    from moviegen.pipeline import DEFAULT_MODEL

    assert (DEFAULT_MODEL / "model_index.json").is_file(), "the shipped model is missing"
    code, _, err = run_cli(capsys, "bench", "--prompts", EXAMPLE, "--out", tmp_path / "bench")
    assert code == 0, err
    index = load_index(tmp_path / "bench")
    assert len(index) == 8 and all(row.status == "ok" for row in index)
    code, out, err = run_cli(capsys, "metrics", tmp_path / "bench", "--model", "default", "--val-clips", "16")
    assert code == 0, err
    report = json.loads((tmp_path / "bench" / "metrics" / "metrics.json").read_text())
    overall = report["aggregate"]["overall"]["all"]
    # tiny-random scores ~0 here (it draws noise); the world detector finds most prompted attributes
    assert overall["text_alignment"] >= 0.6, overall
    assert overall["frame_consistency"] > 0.8, overall
    assert 0 < report["validation_loss"] < 0.5


def test_bench_and_metrics_accept_images(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--prompts", EXAMPLE, "--model", "tiny-random", "--out", out, "--limit", "2", "--steps",
            "2", "--frames", "1", "--height", "32", "--width", "32"]  # fmt: skip
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["0001_s0.png", "0002_s0.png"]
    assert not list(out.glob("*.mp4"))
    code, stdout, err = run_cli(capsys, "metrics", out)
    assert code == 0, err
    rows = json.loads((out / "metrics" / "metrics.json").read_text())["per_video"]
    assert len(rows) == 2 and all(r["frame_consistency"] is None and r["motion_score"] is None for r in rows)
    assert all(isinstance(r["text_alignment"], float) for r in rows)  # per-image alignment
