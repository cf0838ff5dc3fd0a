"""Bad input on the command line: one error line, exit status 1, no traceback, nothing left behind, and an
output path that is not ours (a device, a symlink's target, a folder) never replaced."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.helpers import moving_clip, run_cli

from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline
from moviegen.video import write_video

FAST = ["--model", "tiny-random", "--steps", "1", "--frames", "8", "--height", "32", "--width", "32"]


def one_error_line(code: int, out: str, err: str, *needles: str) -> str:
    assert code == 1, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err + out, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mp4", moving_clip(8, 32, 32), fps=8)


def test_output_paths_that_cannot_be_written_fail_before_any_work(tmp_path, capsys, clip, monkeypatch):
    (tmp_path / "file.mp4").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    bad = {
        tmp_path / "folder": "directory",
        tmp_path / "file.mp4" / "x.mp4": "not a directory",
        Path("/proc/x/y.mp4"): "not writable",
    }
    calls = []
    monkeypatch.setattr(MovieGenPipeline, "__call__", lambda *a, **k: calls.append(1))
    for path, why in bad.items():
        one_error_line(*run_cli(capsys, "generate", "a red circle", "--out", path, *FAST), why)
        one_error_line(*run_cli(capsys, "tae", "roundtrip", clip, "--out", path), why)
        one_error_line(*run_cli(capsys, "bench", "--prompts", clip, "--out", tmp_path / "file.mp4"))
    assert calls == []  # refused before sampling anything
    one_error_line(
        *run_cli(capsys, "metrics", tmp_path / "folder", "--out", tmp_path / "file.mp4"), "not a dir"
    )
    assert (tmp_path / "file.mp4").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "file.mp4", "folder"]


@pytest.mark.skipif(os.geteuid() != 0 and not Path("/sys").is_dir(), reason="needs a read-only place")
def test_a_read_only_place_is_one_error_line(tmp_path, capsys):
    if os.geteuid() == 0:
        target = Path("/sys/moviegen-test.mp4")  # read-only even for root
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        target = tmp_path / "ro" / "v.mp4"
    one_error_line(*run_cli(capsys, "generate", "a red circle", "--out", target, *FAST), "not writable")
    assert not target.exists()


def test_a_device_node_is_written_in_place_and_a_symlink_writes_its_target(tmp_path, capsys):
    code, out, err = run_cli(capsys, "generate", "a red circle", "--out", "/dev/null", *FAST)
    assert code == 0, err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the system's /dev/null
    target = tmp_path / "real.mp4"
    target.write_bytes(b"old")
    (tmp_path / "link.mp4").symlink_to(target)
    code, out, err = run_cli(capsys, "generate", "a red circle", "--out", tmp_path / "link.mp4", *FAST)
    assert code == 0, err
    assert (tmp_path / "link.mp4").is_symlink() and target.stat().st_size > 100
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "nowhere" / "x.mp4")
    one_error_line(
        *run_cli(capsys, "generate", "a", "--out", tmp_path / "dangling.mp4", *FAST), "broken symlink"
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--guidance", "inf"], "guidance must be a number"),
        (["--guidance", "1e30"], "guidance must be a number"),
        (["--guidance", "nan"], "guidance must be a number"),
        (["--fps", "100000"], "fps must be in [1, 1000]"),
        (["--fps", "0"], "fps must be in"),
        (["--seed", "99999999999999999999999"], "seed must be in"),
        (["--seed", "-1"], "seed must be in"),
        (["--frames", "0"], "frames must be >= 1"),
        (["--steps", "1000000"], "steps must be at most"),
        (["--camera", "spin"], "unknown camera motion"),
    ],
)
def test_bad_generation_values(tmp_path, capsys, args, needle):
    out = tmp_path / "v.mp4"
    one_error_line(*run_cli(capsys, "generate", "a red circle", "--out", out, *args), needle)
    assert not out.exists()


def test_too_many_frames_names_what_was_asked(tmp_path, capsys):
    result = run_cli(capsys, "generate", "a red circle", "--out", tmp_path / "v.mp4", "--frames", "17")
    line = one_error_line(*result)
    assert "asked for 17 frames" in line and "at most 16 frames" in line


def test_conflicting_prefix_and_option(tmp_path, capsys):
    one_error_line(*run_cli(capsys, "generate", "Camera: pan left. a cat", "--camera", "zoom in", "--out",
                            tmp_path / "v.mp4"), "Camera: pan left")  # fmt: skip


def _damaged_copy(tmp_path: Path, nan: bool) -> Path:
    folder = tmp_path / "damaged"
    shutil.copytree(DEFAULT_MODEL, folder)
    weights = folder / "transformer" / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("weight") and state[k].dim() == 2)
    state[key] = torch.full_like(state[key], float("nan")) if nan else state[key] + 1
    save_file(state, str(weights), metadata={"format": "pt"})
    return folder


def test_damaged_weights_are_named_and_nan_models_write_nothing(tmp_path, capsys):
    folder = _damaged_copy(tmp_path, nan=True)
    out = tmp_path / "v.mp4"
    args = ["generate", "a red circle", "--model", folder, "--out", out, "--steps", "2"]
    one_error_line(*run_cli(capsys, *args), "transformer/model.safetensors is damaged")
    index = json.loads((folder / "model_index.json").read_text())
    del index["weights_sha256"]  # an older folder without checksums: the NaN sample itself is refused
    (folder / "model_index.json").write_text(json.dumps(index))
    one_error_line(*run_cli(capsys, *args), "non-finite")
    assert not out.exists()
    one_error_line(*run_cli(capsys, "average", folder, DEFAULT_MODEL, "--out", tmp_path / "soup"), "NaN")
    assert not (tmp_path / "soup").exists()


def test_numbers_out_of_range_in_eval_and_metrics(tmp_path, capsys):
    one_error_line(*run_cli(capsys, "eval", "world", "--num-seen", "-1"), "--num-seen")
    one_error_line(*run_cli(capsys, "eval", "world", "--seeds", "0"), "--seeds")
    one_error_line(*run_cli(capsys, "eval", "world", "--guidance", "inf"), "--guidance")
    (tmp_path / "bench").mkdir()
    one_error_line(*run_cli(capsys, "metrics", tmp_path / "bench", "--model", "default", "--val-clips", "0"),
                   "--val-clips")  # fmt: skip
    one_error_line(*run_cli(capsys, "metrics", tmp_path / "nothing"), "not found")


def test_train_world_config_errors_leave_nothing(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text("[1, 2]")
    out = tmp_path / "run"
    one_error_line(
        *run_cli(capsys, "train", "world", "--out", out, "--quick", "--config", config), "JSON object"
    )
    config.write_text('{"world_size": 60}')
    one_error_line(
        *run_cli(capsys, "train", "world", "--out", out, "--quick", "--config", config), "multiple"
    )
    one_error_line(
        *run_cli(capsys, "train", "world", "--out", out, "--quick", "--tae", tmp_path / "no"), "not found"
    )
    assert not out.exists()


def test_device_option(tmp_path, capsys):
    result = run_cli(capsys, "generate", "a red circle", "--out", tmp_path / "v.mp4", "--device", "tpu")
    one_error_line(*result, "unknown device")
    if not torch.cuda.is_available():
        one_error_line(
            *run_cli(capsys, "generate", "a", "--out", tmp_path / "v.mp4", "--device", "cuda"), "CUDA"
        )
    code, _, err = run_cli(
        capsys, "generate", "a red circle", "--out", tmp_path / "v.mp4", "--device", "cpu", *FAST
    )
    assert code == 0, err


def test_warnings_for_prompts_the_model_cannot_know(tmp_path, capsys):
    for prompt in ("a dog running on a beach", "一只狗在海滩上奔跑", "🐶🏖️"):
        code, _, err = run_cli(capsys, "generate", prompt, "--out", tmp_path / "v.mp4", "--steps", "1")
        assert code == 0, err
        warnings = [line for line in err.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "circle, square or triangle" in warnings[0] and "--model" in warnings[0]
    code, _, err = run_cli(
        capsys, "generate", "a red circle moving up", "--out", tmp_path / "v.mp4", "--steps", "1"
    )
    assert code == 0 and "warning" not in err
    long = " ".join(["a red circle moving up"] * 70)
    code, _, err = run_cli(
        capsys, "generate", long, "--out", tmp_path / "v.mp4", "--steps", "1", "--no-rewrite"
    )
    assert code == 0 and "reads only the first 256" in err


def test_flags_show_no_value_in_help(capsys):
    for command in (["info"], ["generate"]):
        code, out, _ = run_cli(capsys, *command, "--help")
        assert code == 0 and "<bool>" not in out and "--help" in out


def test_configs_that_are_lists_nan_or_too_big_are_refused_before_allocating(tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, folder)
    config = folder / "transformer" / "config.json"
    original = json.loads(config.read_text())
    args = ["generate", "a red circle", "--model", folder, "--out", tmp_path / "v.mp4", "--steps", "1"]
    config.write_text("[1, 2]")
    one_error_line(*run_cli(capsys, *args), "JSON object")
    config.write_text(json.dumps(original | {"dim": 600000, "num_heads": 1}))
    line = one_error_line(*run_cli(capsys, *args), "needs", "GB free")
    assert "the model in" in line
    config.write_text(json.dumps(original | {"norm_eps": float("nan")}))
    one_error_line(*run_cli(capsys, *args), "norm_eps", "finite")
    assert not (tmp_path / "v.mp4").exists()


def test_tae_train_checks_size_memory_and_learning_rate_first(tmp_path, capsys, clip):
    out = tmp_path / "tae"
    base = ["tae", "train", clip, "--out", out, "--steps", "1", "--frames", "4"]
    one_error_line(*run_cli(capsys, *base, "--lr", "nan"), "--lr")
    one_error_line(*run_cli(capsys, *base, "--lr", "-1"), "--lr")
    one_error_line(*run_cli(capsys, *base, "--size", "30"), "--size", "multiple of 8")
    line = one_error_line(*run_cli(capsys, *base, "--size", "65536"), "needs", "GB free")
    fits = int(line.split("--size ")[-1].split()[0])
    assert 8 <= fits < 65536 and fits % 8 == 0
    one_error_line(*run_cli(capsys, *base, "--device", "tpu"), "unknown device")
    assert not out.exists()
