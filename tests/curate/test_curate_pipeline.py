"""End to end over the synthetic corpus: ground truth, broken files, Ray, kill -9 and resume, cache."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from curate_helpers import run_curate

from moviegen.curate.record import source_key
from moviegen.curate.runner import MANIFEST_NAME, SOURCES_DIR, SUMMARY_NAME, read_manifest


def by_file(out: Path) -> dict[str, list]:
    clips: dict[str, list] = {}
    for clip in read_manifest(out / MANIFEST_NAME):
        clips.setdefault(Path(clip.source).name, []).append(clip)
    return clips


def test_every_source_is_recorded(local_run, corpus):
    clips = by_file(local_run)
    assert set(clips) == set(corpus[1])


def test_scene_cuts_within_half_a_second(local_run, corpus):
    folder, truth = corpus
    result = json.loads((local_run / SOURCES_DIR / f"{source_key(folder / 'cuts.mp4')}.json").read_text())
    found = result["cuts"]
    assert len(found) == len(truth["cuts.mp4"]["cuts"])
    for cut, expected in zip(found, truth["cuts.mp4"]["cuts"], strict=True):
        assert abs(cut - expected) <= 0.5
    clips = sorted(by_file(local_run)["cuts.mp4"], key=lambda c: c.clip_index)
    # trimmed start, one clip per scene, the 6.5 s scene split in two (max 5 s), no clip across a cut
    assert clips[0].start_s == pytest.approx(0.5)
    assert all(2.0 <= c.duration_s <= 5.0 for c in clips)
    for cut in truth["cuts.mp4"]["cuts"]:
        assert not any(c.start_s < cut - 0.5 and c.end_s > cut + 0.5 for c in clips)
    assert [c.camera_motion for c in clips] == truth["cuts.mp4"]["camera"]


def test_planted_defects_caught_and_clean_clips_kept(local_run, corpus):
    _, truth = corpus
    clips = by_file(local_run)
    for name, gt in truth.items():
        if "duplicates" in gt:
            continue
        for clip in clips[name]:
            assert clip.reason == gt["reason"], (name, clip.reason)
            if gt["reason"] is None:
                assert clip.kept and clip.bucket and clip.cluster is not None
                if gt.get("caption_source") == "needs_caption":  # kept, marked for captioning
                    assert clip.caption is None and clip.caption_source == "needs_caption", name
                else:
                    assert clip.caption and clip.caption_source == "sidecar", name
                assert clip.aspect == gt["aspect"]
                assert clip.weight > 0 and clip.subset_level == 2


def test_duplicates_removed(local_run, corpus):
    clips = by_file(local_run)
    group = [c for name in ("pan_right.mp4", "pan_right_copy.mp4", "pan_right_near.mp4") for c in clips[name]]
    kept = [c for c in group if c.kept]
    assert len(kept) == 1
    for c in group:
        if not c.kept:
            assert c.reason == "content:duplicate"
            assert c.duplicate_of == kept[0].clip_id and c.duplicate_similarity >= 0.95


def test_camera_labels_of_clean_clips(local_run, corpus):
    _, truth = corpus
    clips = by_file(local_run)
    for name, gt in truth.items():
        if gt["reason"] is None and isinstance(gt.get("camera"), str):
            for clip in clips[name]:
                if clip.kept or clip.reason == "content:duplicate":
                    assert clip.camera_motion == gt["camera"], name
                    assert clip.camera_confidence >= 0.5
                    assert clip.prompt.startswith(f"FPS-12. Camera: {gt['camera']}. ")


def test_broken_files_recorded_not_fatal(local_run, corpus):
    clips = by_file(local_run)
    for name in ("empty.mp4", "garbage.mp4", "notes.mkv", "truncated.mp4", "audio.mp4", "cut_short.mkv"):
        (clip,) = clips[name]
        assert clip.clip_index == -1 and not clip.kept and clip.reason.startswith("probe:")


def test_manifest_and_summary(local_run):
    table = pq.read_table(local_run / MANIFEST_NAME)
    expected = (
        "source",
        "start_s",
        "end_s",
        "fps",
        "width",
        "height",
        "quality",
        "text_area",
        "motion_score",
        "flow_magnitude",
        "camera_motion",
        "camera_confidence",
        "cluster",
        "weight",
        "bucket",
        "caption",
        "kept",
        "reason",
        "probe_reason",
        "scenes_reason",
        "visual_reason",
        "motion_reason",
        "captions_reason",
        "content_reason",
        "buckets_reason",
        "subsets_reason",
    )
    assert set(expected) <= set(table.column_names)
    summary = json.loads((local_run / SUMMARY_NAME).read_text())
    stages = {row["stage"]: row for row in summary["stages"]}
    assert {"probe", "decode", "scenes", "visual", "motion", "camera", "captions", "dedup", "buckets",
            "subsets", "clusters", "cut"} <= set(stages)  # fmt: skip
    assert stages["visual"]["in"] - stages["visual"]["out"] == 4  # min_side, border, text, quality
    assert summary["kept"] == sum(1 for c in read_manifest(local_run / MANIFEST_NAME) if c.kept)
    assert summary["needs_caption"] == 1 and "captions:no_caption" not in summary["reasons"]


def test_rerun_is_a_no_op_and_other_config_refused(local_run, corpus, config_file, tmp_path):
    before = pq.read_table(local_run / MANIFEST_NAME)
    code, output, error = run_curate(
        corpus[0], "--out", local_run, "--config", config_file, "--workers", "1", "--cut-clips"
    )
    assert code == 0, (output, error)
    assert "1 kept clip(s) have no caption" in output and "--captioner DIR" in output
    assert json.loads((local_run / SUMMARY_NAME).read_text())["resumed_sources"] == len(corpus[1])
    assert pq.read_table(local_run / MANIFEST_NAME).equals(before)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(config_file.read_text()), "min_side": 64}))
    code, _, error = run_curate(corpus[0], "--out", local_run, "--config", other)
    assert code != 0 and "different config" in str(error)


def test_kill_9_then_resume_gives_the_same_manifest(local_run, corpus, config_file, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "moviegen.curate", str(corpus[0]), "--out", str(out), "--config",
               str(config_file), "--workers", "2", "--cut-clips"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / SOURCES_DIR).glob("*.json"))) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
    finally:
        proc.wait()
        proc.stderr.close()
    done = len(list((out / SOURCES_DIR).glob("*.json")))
    assert 4 <= done < len(corpus[1]) and not (out / MANIFEST_NAME).exists()
    code, output, error = run_curate(
        corpus[0], "--out", out, "--config", config_file, "--workers", "1", "--cut-clips"
    )
    assert code == 0, (output, error)
    assert json.loads((out / SUMMARY_NAME).read_text())["resumed_sources"] == done
    assert pq.read_table(out / MANIFEST_NAME).equals(pq.read_table(local_run / MANIFEST_NAME))
    assert (out / "curated.jsonl").read_text() == (local_run / "curated.jsonl").read_text()


def test_ray_gives_the_same_manifest(local_run, corpus, config_file, tmp_path):
    pytest.importorskip("ray.data")
    out = tmp_path / "ray"
    code, output, error = run_curate(
        corpus[0], "--out", out, "--config", config_file, "--ray", "--workers", "2", "--cut-clips"
    )
    assert code == 0, (output, error)
    assert json.loads((out / SUMMARY_NAME).read_text())["ray"] is True
    assert pq.read_table(out / MANIFEST_NAME).equals(pq.read_table(local_run / MANIFEST_NAME))
    assert (out / "curated.jsonl").read_text() == (local_run / "curated.jsonl").read_text()


def test_curated_clips_feed_the_latent_cache(local_run, tmp_path):
    import torch

    from moviegen.data.buckets import BucketGrid
    from moviegen.data.cache import LatentCache, build_cache, read_data
    from moviegen.models.tae import TAE, TAEConfig
    from moviegen.models.text import default_text_conditioner

    kept = [c for c in read_manifest(local_run / MANIFEST_NAME) if c.kept and c.caption]
    source = read_data(local_run / "curated.jsonl")
    assert len(source.items) == len(kept) and not source.failures
    assert [Path(p).stem for p in source.no_caption] == [  # kept by curate, skipped (counted) by the cache
        c.clip_id for c in read_manifest(local_run / MANIFEST_NAME) if c.kept and not c.caption
    ]
    torch.manual_seed(0)
    cache_dir = build_cache(source, TAE(TAEConfig.preset("tiny")).eval(), default_text_conditioner(64),
                            tmp_path / "cache", BucketGrid.preset("tiny"))  # fmt: skip
    cache = LatentCache(cache_dir)
    assert len(cache) == len(kept)
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    assert manifest["counts"]["failures"] == 0 and manifest["counts"]["no_caption"] == 1
    buckets = {Path(item["source"]).stem: item["bucket"] for item in manifest["items"]}
    prompts = {Path(item["source"]).stem: item["prompt"] for item in manifest["items"]}
    for clip in kept:
        assert buckets[clip.clip_id] == clip.bucket
        assert prompts[clip.clip_id] == clip.prompt  # FPS + camera prefix composed the same way
    item = cache[0]
    assert item.latent.shape[0] == 16


def test_uncaptioned_folder_keeps_the_clean_clips(corpus, config_file, tmp_path):
    """The normal first run: raw videos, no sidecars, no captioner."""
    folder, truth = corpus
    raw = tmp_path / "raw"
    raw.mkdir()
    names = ["pan_left.mp4", "tilt_up.mp4", "static.mp4", "lowres.mp4", "text.mp4", "garbage.mp4"]
    for name in names:
        (raw / name).write_bytes((folder / name).read_bytes())
    out = tmp_path / "out"
    code, output, error = run_curate(raw, "--out", out, "--config", config_file, "--workers", "1")
    assert code == 0, (output, error)
    clips = by_file(out)
    for name in names:
        expected = truth[name]["reason"] if name in truth else "probe"
        for clip in clips[name]:
            if expected is None:
                assert clip.kept and clip.caption_source == "needs_caption", (name, clip.reason)
            else:
                assert not clip.kept and clip.reason.startswith(expected), (name, clip.reason)
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["kept"] == summary["needs_caption"] == 2
    assert "2 kept clip(s) have no caption" in output


def test_curate_bad_options_are_one_line_before_any_work(corpus, config_file, tmp_path):
    folder = corpus[0]
    (tmp_path / "file").write_text("x")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    cases = [
        (["--out", tmp_path / "file"], "not a directory"),
        (["--out", tmp_path / "o1", "--config", listed], "JSON object"),
        (["--out", tmp_path / "o2", "--device", "tpu"], "unknown device"),
        (["--out", tmp_path / "o3", "--captioner", tmp_path / "none"], "does not exist"),
    ]
    if importlib.util.find_spec("ray") is not None:
        cases.append((["--out", tmp_path / "o4", "--ray", "127.0.0.1:1"], "cannot reach Ray at 127.0.0.1:1"))
    for args, needle in cases:
        start = time.monotonic()
        code, output, error = run_curate(folder, *args)
        assert code != 0 and needle in str(error), (args, output, error)
        assert time.monotonic() - start < 30, args
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))
