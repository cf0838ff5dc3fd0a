"""``moviegen generate`` and ``moviegen info`` through the real entry point."""

import json

import pytest

from helpers import run_cli
from moviegen.video import read_video


def test_generate_smoke_writes_a_playable_mp4(tmp_path, capsys):
    out = tmp_path / "x.mp4"
    code, stdout, err = run_cli(
        capsys, "generate", "a red circle moves right", "--out", out, "--model", "tiny-random",
        "--frames", "12", "--height", "32", "--width", "48", "--steps", "5", "--fps", "8",
    )  # fmt: skip
    assert code == 0, err
    frames, fps = read_video(out)
    assert frames.shape == (3, 12, 32, 48) and fps == 8
    assert "wrote" in stdout


def test_generate_with_no_model_flag_uses_the_shipped_model_and_follows_the_prompt(tmp_path, capsys):
    from moviegen.eval.world import detect_object

    out = tmp_path / "yellow.mp4"
    code, stdout, err = run_cli(capsys, "generate", "a yellow square moving up", "--out", out)
    assert code == 0, err
    assert "no shipped model" not in err + stdout
    frames, fps = read_video(out)
    assert frames.shape == (3, 16, 64, 64) and fps == 16
    found = detect_object(frames)
    assert (found.color, found.motion) == ("yellow", "up"), found
    assert found.displacement[1] < -4  # pixels, upwards


def test_generate_defaults_to_the_distilled_student_and_falls_back_to_world(tmp_path, monkeypatch, capsys):
    import moviegen.cli as cli
    from moviegen import pipeline
    from moviegen.serve.app import default_generators

    assert cli.default_video_model() == pipeline.GENERATE_DEFAULT == "world-distilled"
    assert list(default_generators())[:2] == ["world-distilled", "world"]  # the service's default is the first
    loaded = []
    real = cli.load_pipeline
    monkeypatch.setattr(cli, "load_pipeline", lambda model, device="auto": loaded.append(model) or real(model, device))
    code, _, err = run_cli(capsys, "generate", "a red circle moving left", "--out", tmp_path / "a.mp4")
    assert code == 0, err
    assert loaded == ["world-distilled"]
    monkeypatch.setitem(pipeline.SHIPPED_MODELS, "world-distilled", tmp_path / "not-installed")
    assert cli.default_video_model() is None  # without the student: the world model (load_pipeline(None))
    assert list(default_generators())[0] == "world"


@pytest.mark.parametrize(
    "args, message",
    [
        (["", "--model", "tiny-random"], "prompt is empty"),
        (["a dog", "--frames", "0"], "frames must be >= 1"),
        (["a dog", "--height", "30"], "multiples of 16"),
        (["a dog", "--schedule", "cosine"], "unknown schedule"),
        (["a dog", "--model", "no/such/folder"], "model folder not found"),
        (["a dog", "--camera", "barrel roll"], "camera"),
    ],
)
def test_generate_bad_input_is_one_error_line_and_no_file(tmp_path, capsys, args, message):
    out = tmp_path / "x.mp4"
    code, _, err = run_cli(capsys, "generate", *args, "--out", out)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_info_30b_matches_the_paper(capsys):
    code, out, _ = run_cli(capsys, "info", "--model", "30b", "--frames", "256", "--height", "576",
                           "--width", "1008", "--json")  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert abs(report["params"] - 30e9) <= 0.03 * 30e9
    assert report["tokens"] == 72576 == 32 * 36 * 63
    assert report["latent_shape"] == [16, 32, 72, 126]
    assert (report["layers"], report["dim"], report["ffn_dim"], report["heads"]) == (48, 6144, 16384, 48)


def test_info_5b_and_unknown_preset(capsys):
    code, out, _ = run_cli(capsys, "info", "--model", "5b", "--json")
    assert code == 0 and json.loads(out)["params"] > 4e9
    code, _, err = run_cli(capsys, "info", "--model", "7b", "--json")
    assert code == 1 and "unknown TransformerConfig preset" in err
