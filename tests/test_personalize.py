"""moviegen.personalize: the PT2V pipeline and ``moviegen generate --reference`` on tiny random models."""

import json

import pytest
import torch

from helpers import run_cli
from moviegen.data.people import People
from moviegen.errors import MovieGenError
from moviegen.models.vision import CLIPVisionTower, ReferenceEncoder, VisionConfig
from moviegen.personalize import PersonalizedPipeline, prepare_reference, read_reference
from moviegen.pipeline import MovieGenPipeline
from moviegen.video import read_video, write_image


@pytest.fixture(scope="module")
def pt2v():
    base = MovieGenPipeline.from_presets()
    for p in base.transformer.parameters():  # zero-initialised output layers: perturb them
        p.data.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    tower = CLIPVisionTower(VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=16, patch_size=4))  # fmt: skip
    encoder = ReferenceEncoder(tower, base.transformer.config.dim)
    encoder.projection[0].weight.data.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    return PersonalizedPipeline.from_base(base, encoder, num_steps=2, guidance_scale=2.0)


def faces():
    people = People(4, 64, 1, seed=3)
    return people.reference("test", 0).video[:, 0], people.reference("test", 1).video[:, 0]


def test_reference_changes_the_video_deterministically_and_round_trips(pt2v, tmp_path):
    a, b = faces()
    out = pt2v("a person smiling", a, seed=2)
    assert out.shape == (3, 16, 64, 64) and bool(torch.isfinite(out).all())
    assert torch.equal(out, pt2v("a person smiling", a, seed=2))
    assert not torch.allclose(out, pt2v("a person smiling", b, seed=2))
    pt2v.save_pretrained(tmp_path / "pt2v")
    index = json.loads((tmp_path / "pt2v" / "model_index.json").read_text())
    assert index["_class_name"] == "PersonalizedPipeline" and index["reference"] == "ReferenceEncoder"
    assert "reference/vision/model.safetensors" in index["weights_sha256"]
    again = PersonalizedPipeline.from_pretrained(tmp_path / "pt2v")
    assert (again.num_steps, again.guidance_scale) == (2, 2.0)
    assert torch.allclose(again("a person smiling", a, seed=2), out, atol=1e-5)


def test_crop_rule_finds_the_face_and_refuses_faceless_and_bad_images(pt2v, tmp_path):
    a, _ = faces()
    crop = prepare_reference(a, 16)
    assert crop.shape == (3, 16, 16)
    for image, message in ((torch.zeros(3, 64, 64), "no face found"), (torch.zeros(4, 64, 64), "shape"),
                           (torch.zeros(3, 4, 4), "too small"), (torch.full((3, 32, 32), float("nan")), "non-finite")):  # fmt: skip
        with pytest.raises(MovieGenError, match=message):
            pt2v.check_reference(image)
    write_image(tmp_path / "face.png", a)
    assert torch.allclose(read_reference(tmp_path / "face.png"), a, atol=1 / 127)
    (tmp_path / "fake.png").write_text("not an image")
    for path, message in ((tmp_path / "fake.png", "cannot read"), (tmp_path / "none.png", "not found")):
        with pytest.raises(MovieGenError, match=message):
            read_reference(path)


def test_huge_images_are_refused_from_the_header(tmp_path):
    import zlib
    import struct

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    for side in (5000, 20000):  # above our limit; above PIL's decompression-bomb limit
        header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # RGB, no pixel data is ever decoded
        (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
        with pytest.raises(MovieGenError, match="too large"):
            read_reference(tmp_path / "huge.png")


def test_wrong_folders_are_refused(pt2v, tmp_path):
    MovieGenPipeline.from_presets().save_pretrained(tmp_path / "t2v")
    with pytest.raises(MovieGenError, match="text-to-video model, not a personalization"):
        PersonalizedPipeline.from_pretrained(tmp_path / "t2v")
    with pytest.raises(MovieGenError, match="not found"):
        PersonalizedPipeline.from_pretrained(tmp_path / "missing")


def test_generate_reference_cli_writes_a_video_and_refuses_bad_input(pt2v, tmp_path, capsys):
    pt2v.save_pretrained(tmp_path / "pt2v")
    a, _ = faces()
    write_image(tmp_path / "face.png", a)
    out = tmp_path / "out.mp4"
    code, stdout, err = run_cli(capsys, "generate", "a person moving to the left", "--reference", tmp_path / "face.png",
                                "--model", tmp_path / "pt2v", "--steps", "2", "--out", out)  # fmt: skip
    assert code == 0, err
    assert read_video(out)[0].shape == (3, 16, 64, 64)
    write_image(tmp_path / "blank.png", torch.zeros(3, 64, 64))
    (tmp_path / "text.png").write_text("hello")
    for ref, message in ((tmp_path / "blank.png", "no face found"), (tmp_path / "text.png", "cannot read"),
                         (tmp_path / "nope.png", "not found")):  # fmt: skip
        bad = tmp_path / "bad.mp4"
        code, _, err = run_cli(capsys, "generate", "a person", "--reference", ref, "--model", tmp_path / "pt2v",
                               "--steps", "2", "--out", bad)  # fmt: skip
        assert code != 0 and message in err and not bad.exists()
        assert err.strip().count("\n") == 0
