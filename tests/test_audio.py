"""AudioPipeline (paper §7) on tiny random models: sampling, determinism, extension modes, folders, and the
audio commands (moviegen audio, generate --audio, Audio Bench runs, metrics, eval audio) with their errors."""

import json

import numpy as np
import pytest
import torch

from helpers import moving_clip, run_cli
from moviegen.audio import AudioPipeline, dit_condition
from moviegen.audio_files import read_audio
from moviegen.errors import MovieGenError
from moviegen.video import read_video, write_video

SR = 48_000


@pytest.fixture(scope="module")
def pipe():
    return AudioPipeline.from_presets("audio-tiny", "tiny", "tiny", num_steps=2, guidance_scale=2.0)


@pytest.fixture(scope="module")
def folder(pipe, tmp_path_factory):
    return pipe.save_pretrained(tmp_path_factory.mktemp("audio") / "model")


@pytest.fixture(scope="module")
def embedding(tmp_path_factory):
    from moviegen.data.sound import SoundWorld, SoundWorldConfig
    from moviegen.eval.audio import train_audio_embedding

    model = train_audio_embedding(SoundWorld(SoundWorldConfig(seconds=1.0)), steps=2, clips=4, batch=2, preset="tiny")
    return model.save_pretrained(tmp_path_factory.mktemp("emb") / "embedding")


def test_sampling_is_deterministic_and_sized(pipe):
    video = moving_clip(8, 32, 32)
    a = pipe(video, "knocks as it bounces", fps=16, seed=3)
    b = pipe(video, "knocks as it bounces", fps=16, seed=3)
    assert a.shape == (SR // 2,) and torch.equal(a, b) and a.abs().max() <= 1
    assert not torch.equal(a, pipe(video, "knocks as it bounces", fps=16, seed=4))
    assert pipe(video, "x", "happy piano melody", fps=16, seconds=0.3).shape == (round(0.3 * SR),)


@pytest.mark.parametrize("extension", ["triangular", "uniform", "independent", "context"])
def test_extension_modes_make_audio_as_long_as_the_video(pipe, extension):
    video = moving_clip(48, 16, 16)  # 3 s at 16 fps: 75 latent frames, window 32
    calls = []
    audio = pipe(video, "a quiet room", fps=16, extension=extension, callback=lambda i, n: calls.append(n))
    assert audio.shape == (3 * SR,) and torch.isfinite(audio).all()
    assert calls


def test_context_windows_keep_what_was_already_made(pipe, monkeypatch):
    from moviegen import flow

    seen = []
    real = flow.sample

    def spy(model, noise, *args, cond=None, **kw):
        seen.append(cond[:, -1, :, 0, 0].clone())  # the mask channel of each window
        return real(model, noise, *args, cond=cond, **kw)

    monkeypatch.setattr(flow, "sample", spy)
    pipe(moving_clip(48, 16, 16), "a quiet room", fps=16, extension="context")
    assert seen[0].sum() == 0 and all(m[0, : pipe.overlap].all() and not m[0, pipe.overlap :].any() for m in seen[1:-1])
    cond = dit_condition(torch.ones(1, 3, 4), torch.full((1, 2, 4), 5.0), torch.tensor([[True, False, True, False]]))
    assert cond.shape == (1, 6, 4, 1, 1) and cond[0, 3:5, :, 0, 0].tolist() == [[5, 0, 5, 0]] * 2


def test_folder_round_trip_and_refusals(pipe, folder, tmp_path):
    again = AudioPipeline.from_pretrained(folder)
    assert (again.num_steps, again.guidance_scale, again.extension) == (2, 2.0, "triangular")
    video = moving_clip(8, 32, 32)
    assert torch.allclose(again(video, "hum", fps=16), pipe(video, "hum", fps=16), atol=1e-3)
    with pytest.raises(MovieGenError, match="not found"):
        AudioPipeline.from_pretrained(tmp_path / "missing")
    with pytest.raises(MovieGenError, match="extension"):
        pipe(video, "hum", extension="zigzag")
    with pytest.raises(MovieGenError, match="empty"):
        pipe(video, "  ")
    with pytest.raises(MovieGenError, match="duration"):
        pipe(video, "hum", seconds=1e6)
    with pytest.raises(MovieGenError, match="frame"):
        pipe(torch.zeros(3, 0, 8, 8), "hum")


def test_moviegen_audio_writes_mp4_and_wav(folder, tmp_path, capsys):
    src = write_video(tmp_path / "in.mp4", moving_clip(16, 32, 32), fps=16)
    out, wav = tmp_path / "out.mp4", tmp_path / "out.wav"
    code, stdout, err = run_cli(capsys, "audio", src, "--prompt", "knocks as it bounces", "--music",
                                "happy piano melody in C major at 120 BPM", "--out", out, "--wav", wav,
                                "--model", folder, "--steps", "2")  # fmt: skip
    assert code == 0, err
    assert "1.00 s of 48000 Hz audio" in stdout
    audio, rate = read_audio(out)
    assert rate == SR and abs(len(audio) - SR) < 0.03 * SR
    assert read_video(out)[0].shape[1] == 16
    assert read_audio(wav)[0].shape == (SR,)


@pytest.mark.parametrize("case", ["missing", "not_video", "bad_extension", "same_path", "empty_prompt"])
def test_moviegen_audio_refuses_bad_input_without_output(folder, tmp_path, capsys, case):
    src = write_video(tmp_path / "in.mp4", moving_clip(4, 16, 16), fps=16)
    args = {"missing": [tmp_path / "nope.mp4", "--prompt", "hum"],
            "not_video": [tmp_path / "text.mp4", "--prompt", "hum"],
            "bad_extension": [src, "--prompt", "hum", "--extension", "zigzag"],
            "same_path": [src, "--prompt", "hum", "--wav", tmp_path / "out.mp4"],
            "empty_prompt": [src, "--prompt", " "]}[case]  # fmt: skip
    (tmp_path / "text.mp4").write_text("not a video")
    code, _, err = run_cli(capsys, "audio", *args, "--out", tmp_path / "out.mp4", "--model", folder)
    assert code != 0 and "error" in err.lower() and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()


def test_generate_with_audio_cascade(folder, tmp_path, capsys):
    out = tmp_path / "g.mp4"
    code, stdout, err = run_cli(capsys, "generate", "a red circle moves right", "--model", "tiny-random", "--out",
                                out, "--frames", "8", "--height", "32", "--width", "32", "--steps", "2", "--audio",
                                "--audio-model", folder, "--wav", tmp_path / "g.wav")  # fmt: skip
    assert code == 0, err
    assert "with sound" in stdout
    assert read_audio(out)[0].shape[0] == pytest.approx(SR // 2, rel=0.03)
    assert (tmp_path / "g.wav").is_file()
    code, _, err = run_cli(capsys, "generate", "x", "--out", tmp_path / "h.mp4", "--music", "piano")
    assert code != 0 and "only apply with --audio" in err and not (tmp_path / "h.mp4").exists()


def test_audio_bench_metrics_and_eval(folder, embedding, tmp_path, capsys):
    rows = [{"id": 0, "video_prompt": "a red circle moves right", "audio_prompt": "knocks as it bounces",
             "music_prompt": "sad organ melody in D minor at 90 BPM"},
            {"id": 7, "video_prompt": "a photo of a rocket, pan left", "audio_prompt": "engine rumble"}]  # fmt: skip
    bench_file = tmp_path / "MovieGenAudioBenchSfx.jsonl"
    bench_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "bench"
    code, _, err = run_cli(capsys, "bench", "--prompts", bench_file, "--out", out, "--model", "tiny-random",
                           "--frames", "8", "--height", "32", "--width", "32", "--steps", "2",
                           "--audio-model", folder)  # fmt: skip
    assert code == 0, err
    index = json.loads((out / "index.json").read_text())
    assert [r["audio_prompt"] for r in index] == ["knocks as it bounces", "engine rumble"]
    assert all(read_audio(out / r["file"])[0].shape[0] > 0.45 * SR for r in index)
    code, stdout, err = run_cli(capsys, "metrics", out, "--audio-embedding", embedding, "--autoencoder", folder)
    assert code == 0, err
    report = json.loads((out / "metrics" / "audio_metrics.json").read_text())
    assert len(report["files"]) == 2 and np.isfinite(report["fad"]) and "mel_distance" in report["autoencoder"]

    videos, path = tmp_path / "cases", tmp_path / "report.json"
    code, stdout, err = run_cli(capsys, "eval", "audio", "--model", folder, "--embedding", embedding, "--limit", "3",
                                "--extension-seconds", "3", "--videos", videos, "--out", path, "--steps", "2")  # fmt: skip
    assert code == 0, err
    report = json.loads(path.read_text())
    assert report["cases"] == 3 and {"truth", "autoencoder", "shuffled", "silence", str(folder)} <= set(report["rows"])
    assert report["rows"]["truth"]["impact_f1"] > report["rows"]["silence"]["impact_f1"]
    assert set(report["extension"][str(folder)]) == {"truth", "triangular", "uniform", "independent", "context"}
    assert all(r["seconds"] == pytest.approx(3.0) for r in report["extension"][str(folder)].values())
    code, stdout, err = run_cli(capsys, "metrics", videos, "--audio-embedding", embedding)
    assert code == 0, err
    assert "impact F1" in stdout
    assert "world" in json.loads((videos / "metrics" / "audio_metrics.json").read_text())


def test_metrics_reports_silent_and_corrupt_audio(folder, embedding, tmp_path, capsys):
    from moviegen.audio_files import write_wav

    files = tmp_path / "sounds"
    files.mkdir()
    t = torch.arange(SR) / SR
    write_wav(files / "tone.wav", 0.3 * torch.sin(2 * torch.pi * 440 * t))
    write_wav(files / "click.wav", (t % 0.25 < 0.002).float() * 0.8)
    write_wav(files / "silent.wav", torch.zeros(SR))
    (files / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    code, stdout, err = run_cli(capsys, "metrics", files, "--audio-embedding", embedding, "--autoencoder", folder)
    assert code == 1
    report = json.loads((files / "metrics" / "audio_metrics.json").read_text())
    assert sorted(f["file"] for f in report["files"]) == ["click.wav", "tone.wav"]
    assert any("silent.wav" in e and "silent" in e for e in report["errors"])
    assert any("corrupt.wav" in e for e in report["errors"])
    assert np.isfinite(report["autoencoder"]["si_sdr_db"])


def test_moviegen_audio_refuses_a_file_without_video_frames(folder, tmp_path, capsys):
    from moviegen.audio_files import write_wav

    wav = write_wav(tmp_path / "only_sound.wav", torch.zeros(SR // 10))
    code, _, err = run_cli(capsys, "audio", wav, "--prompt", "hum", "--out", tmp_path / "o.mp4", "--model", folder)
    assert code != 0 and len(err.strip().splitlines()) == 1 and not (tmp_path / "o.mp4").exists()


def test_video_guidance_zeroes_the_features_in_the_unconditional_branch(pipe, monkeypatch, tmp_path):
    from moviegen import flow
    from moviegen.models.audio import FEATURES

    seen = []
    real = flow.sample

    def spy(*args, null_cond=None, **kw):
        seen.append(null_cond)
        return real(*args, null_cond=null_cond, **kw)

    monkeypatch.setattr(flow, "sample", spy)
    video = moving_clip(8, 16, 16)
    pipe(video, "hum", fps=16)
    assert seen[-1] is None
    guided = AudioPipeline(pipe.text, pipe.transformer, pipe.autoencoder, pipe.frames, num_steps=2,
                           guidance_scale=2.0, video_guidance=True)  # fmt: skip
    guided(video, "hum", fps=16)
    assert seen[-1][:, :FEATURES].abs().max() == 0 and seen[-1].shape[1] == FEATURES + 8 + 1
    again = AudioPipeline.from_pretrained(guided.save_pretrained(tmp_path / "guided"))
    assert again.video_guidance is True
    with pytest.raises(MovieGenError):
        AudioPipeline(pipe.text, pipe.transformer, pipe.autoencoder, pipe.frames, video_guidance="yes")
