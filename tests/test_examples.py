"""The README's example data path, command by command: curate → cache → train run."""

import json
import shutil
from pathlib import Path

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "curation"


def test_example_clips_go_through_curate_cache_and_train_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # the README's relative paths
    code, out, err = run_cli(
        capsys, "curate", "examples/curation/raw", "--out", "example-run/curated",
        "--config", "examples/curation/curate.json", "--cut-clips", "--workers", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "kept 3 of 3 clip(s)" in out and "1 kept clip(s) have no caption" in out
    rows = [json.loads(line) for line in Path("example-run/curated/curated.jsonl").read_text().splitlines()]
    assert sorted(r["caption_source"] for r in rows) == ["needs_caption", "sidecar", "sidecar"]
    curated = "example-run/curated/curated.jsonl"
    code, out, err = run_cli(capsys, "cache", curated, "--out", "example-run/cache")
    assert code == 0, err
    assert "cached 2 clip(s)" in out and "skipped without caption: 1" in out
    assert "skipping 1 of 3 video(s) without a caption" in err
    code, out, err = run_cli(capsys, "train", "run", "--config", str(EXAMPLE / "train.json"))
    assert code == 0, err
    assert (tmp_path / "example-run" / "pipeline" / "transformer" / "model.safetensors").is_file()
    metrics = [json.loads(line) for line in Path("example-run/train/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m][-1] == 4
