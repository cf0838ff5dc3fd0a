"""Images as one-frame videos (issue 16): the FPS rule, PNG files, ``moviegen image``."""

import pytest
import torch

from helpers import run_cli
from moviegen.errors import MovieGenError
from moviegen.models.text import compose_clip_prompt
from moviegen.pipeline import MovieGenPipeline
from moviegen.video import read_image, write_image


def test_one_rule_for_the_fps_prefix():
    assert compose_clip_prompt("a cat", 1, fps=16, camera_motion="pan left") == "a cat"
    assert (
        compose_clip_prompt("a cat", 16, fps=8, camera_motion="pan left") == "FPS-8. Camera: pan left. a cat"
    )
    pipe = MovieGenPipeline.from_presets()
    image = pipe.prepare_prompt("FPS-8. Camera: pan left. a cat", num_frames=1)
    assert image.encoded == "a cat" and any("camera" in n for n in image.notes)
    assert pipe.prepare_prompt("a cat", num_frames=16).encoded == "FPS-16. a cat"
    assert pipe.prepare_prompt("a cat").encoded == "FPS-16. a cat"  # no frame count: a video


def test_png_round_trip_and_refusals(tmp_path):
    frame = torch.rand(3, 1, 24, 40) * 2 - 1
    write_image(tmp_path / "x.png", frame)
    back = read_image(tmp_path / "x.png")
    assert back.shape == (3, 1, 24, 40) and (back - frame).abs().max() <= 1 / 127.5 + 1e-6
    with pytest.raises(MovieGenError, match="one frame"):
        write_image(tmp_path / "y.png", torch.zeros(3, 2, 8, 8))
    assert not (tmp_path / "y.png").exists()
    (tmp_path / "bad.png").write_text("not a png")
    with pytest.raises(MovieGenError, match="cannot read image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(MovieGenError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_image_and_one_frame_generate_write_pngs(tmp_path, capsys):
    tiny = ["--model", "tiny-random", "--steps", "2"]
    (tmp_path / "afile").write_text("a file, not a folder")
    code, out, err = run_cli(
        capsys, "image", "a red circle", "--out", tmp_path / "a.png", "--size", "32", *tiny
    )
    assert code == 0, err
    assert read_image(tmp_path / "a.png").shape == (3, 1, 32, 32) and "32x32 image" in out
    code, _, err = run_cli(capsys, "generate", "a red circle", "--out", tmp_path / "b.png", "--frames", "1",
                           "--height", "32", "--width", "48", *tiny)  # fmt: skip
    assert code == 0, err
    assert read_image(tmp_path / "b.png").shape == (3, 1, 32, 48)
    code, _, err = run_cli(capsys, "generate", "a red circle", "--out", tmp_path / "c.mp4", "--frames", "1",
                           "--height", "32", "--width", "32", *tiny)  # fmt: skip
    assert code == 0, err  # a one-frame MP4 when asked
    for command, args, message in (
        ("generate", ["--frames", "2"], "a PNG holds one frame"),
        ("image", ["--size", "30"], "multiple"),
        ("image", ["--size", "100000"], ""),
        ("image", ["--out", tmp_path / "bad.mp4"], "writes a PNG"),
        ("image", ["--out", tmp_path / "afile" / "bad.png"], "cannot write"),
    ):
        target = tmp_path / "bad.png"
        if "--out" not in args:
            args = ["--out", target, *args]
        code, _, err = run_cli(capsys, command, "a red circle", *args, *tiny)
        assert code == 1 and message in err and err.strip().count("\n") == 0, (args, err)
        assert not target.exists() and not (tmp_path / "bad.mp4").exists()


def test_image_benchmark_prompts_and_scoring():
    from moviegen.data.world import COLORS, SHAPES, World, WorldConfig
    from moviegen.eval.image import image_prompts, score_images
    from moviegen.eval.paraphrase import check_disjoint

    captions, paraphrases = image_prompts("captions"), image_prompts("paraphrases")
    assert len(captions) == len(COLORS) * len(SHAPES) and len(paraphrases) == 2 * len(captions)
    check_disjoint(paraphrases)  # no world caption words: generalisation, not recall
    world = World(WorldConfig(size=32, frames=1))

    def render(prompt, seed):
        truth = prompt.truth
        return world.object_clip(truth["color"], truth["shape"], "still", 16, frames=1).video

    perfect = score_images(render, captions[:6], seeds=1)
    assert perfect == {"color": 100.0, "shape": 100.0, "both": 100.0, "images": 6}
    wrong = score_images(lambda p, s: render(captions[(captions.index(p) + 3) % 6], s), captions[:6], 1)
    assert wrong["both"] == 0.0
    with pytest.raises(ValueError, match="one-frame"):
        score_images(lambda p, s: torch.zeros(3, 2, 32, 32), captions[:1], 1)


def test_the_shipped_image_model_is_the_default(tmp_path, capsys):
    from moviegen.eval.world import detect_object
    from moviegen.train.image import HELD_OUT_PAIRS

    assert ("red", "circle") in HELD_OUT_PAIRS  # a composition the image recipe never showed
    code, out, err = run_cli(capsys, "image", "a red ball", "--out", tmp_path / "ball.png")
    assert code == 0, err
    image = read_image(tmp_path / "ball.png")
    assert image.shape == (3, 1, 128, 128)
    found = detect_object(image)
    assert (found.color, found.shape) == ("red", "circle")
    code, _, err = run_cli(capsys, "generate", "a red ball", "--out", tmp_path / "g.png", "--frames", "1")
    assert code == 0, err
    assert read_image(tmp_path / "g.png").shape == (3, 1, 64, 64)  # generate's default size
