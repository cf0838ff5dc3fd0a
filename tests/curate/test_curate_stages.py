"""Each stage as a pure function over a clip record, on frames rendered in memory (no encoding)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from moviegen.curate import camera, captions, content, motion, scenes, subsets, visual
from moviegen.curate.config import CurateConfig
from moviegen.curate.probe import probe
from moviegen.curate.record import Clip, Frames
from moviegen.curate.synthetic import Shot, render
from moviegen.errors import MovieGenError
from moviegen.models.text import CAMERA_MOTIONS

CONFIG = CurateConfig.preset("tiny")
FPS = 12.0


def frames_of(video: np.ndarray, fps: float = FPS, stills_every: int = 12) -> Frames:
    index = np.arange(len(video))
    stills = [(int(i), video[i]) for i in index[::stills_every]]
    return Frames(video, index, stills, fps, video.shape[2], video.shape[1])


def record(video: np.ndarray, **changes) -> Clip:
    t, h, w = video.shape[:3]
    base = Clip("clip", "clip.mp4", 0, width=w, height=h, fps=FPS, start_frame=0, end_frame=t, frames=t)
    return dataclasses.replace(base, **changes)


# ------------------------------------------------------------------------------------------ config


def test_config_presets_json_and_validation(tmp_path):
    assert CurateConfig().min_side == 720 and CurateConfig().subset_min_sides == (720, 768)
    assert CurateConfig.preset("tiny").bucket_grid().durations == (8, 16)
    path = tmp_path / "c.json"
    path.write_text(CONFIG.to_json())
    assert CurateConfig.from_json(path) == CONFIG
    with pytest.raises(MovieGenError, match="unknown config key"):
        CurateConfig.from_dict({"min_sides": 5})
    with pytest.raises(MovieGenError, match="max_clip_s"):
        CurateConfig.from_dict({"min_clip_s": 8.0, "max_clip_s": 4.0})
    with pytest.raises(MovieGenError, match="preset"):
        CurateConfig.from_dict({"grid": "nope"})
    grid = CurateConfig.from_dict({"grid": "tiny", "grid_durations": [4, 12]}).bucket_grid()
    assert grid.durations == (4, 12)


# -------------------------------------------------------------------------------------------- probe


def test_probe_reasons(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"\x00junk" * 100)
    assert probe(Clip("a", str(tmp_path / "missing.mp4"))).reason == "probe:missing"
    assert probe(Clip("a", str(tmp_path / "empty.mp4"))).reason == "probe:empty_file"
    assert probe(Clip("a", str(tmp_path / "junk.mp4"))).reason == "probe:unreadable"


# ------------------------------------------------------------------------------------------- scenes


def test_isolated_boundaries_are_cuts_bursts_are_shot_boundaries():
    f = frames_of(np.zeros((120, 8, 8, 3), np.uint8))  # 10 s at 12 fps
    cuts, bursts = scenes.split_boundaries([24, 60, 66, 72, 108], f, CONFIG)
    assert cuts == [24, 108] and bursts == [60, 66, 72]


def test_split_trims_splits_long_scenes_and_drops_short_ones():
    video = render([Shot(1.5, "pan left", seed=1), Shot(11.0, "pan right", seed=2)], 72, 128, FPS)
    clips, cuts = scenes.split(record(video, source_frames=len(video)), frames_of(video), CONFIG)
    assert cuts == [pytest.approx(1.5)]
    assert [c.reason for c in clips] == ["scenes:too_short", None, None, None]  # 0.5–1.5 s, then 11 s / 3
    assert [round(c.duration_s, 2) for c in clips[1:]] == [3.67, 3.67, 3.67]
    assert clips[0].start_s == pytest.approx(CONFIG.trim_start_s)
    assert [c.clip_index for c in clips] == [0, 1, 2, 3] and len({c.clip_id for c in clips}) == 4


# ------------------------------------------------------------------------------------------- visual


def test_aspect_classes():
    assert visual.aspect_class(1280, 720) == "landscape"
    assert visual.aspect_class(720, 1280) == "portrait"
    assert visual.aspect_class(1000, 960) == "square"


def test_pillarbox_border_and_sharpness():
    video = render([Shot(3.0, "pan left", seed=3)], 96, 160, FPS)
    boxed = video.copy()
    boxed[:, :, :20] = 0
    boxed[:, :, -20:] = 0
    clean = visual.classical_scores([v for v in video[::12]])
    framed = visual.classical_scores([v for v in boxed[::12]])
    assert clean["border"] == 0.0
    assert framed["border"] == pytest.approx(40 / 160, abs=0.02)
    blurred = render([Shot(3.0, "pan left", seed=3, blur=4.0)], 96, 160, FPS)
    assert visual.classical_scores([v for v in blurred[::12]])["sharpness"] < clean["sharpness"] - 0.2


def test_ocr_text_area():
    detector = visual.TextDetector()
    plain = render([Shot(0.1, seed=4)], 144, 256, FPS)[0]
    texted = render([Shot(0.1, seed=4, text="SALE 50% OFF")], 144, 256, FPS)[0]
    assert detector.text_area(plain) < 0.005
    assert detector.text_area(texted) > 0.05
    video = render([Shot(3.0, "pan left", seed=4, text="SALE 50% OFF")], 144, 256, FPS)
    cfg = dataclasses.replace(CONFIG, min_side=64)
    assert visual.visual(record(video), frames_of(video), cfg, detector).reason == "visual:text"
    low = render([Shot(3.0, "pan left", seed=4)], 72, 128, FPS)
    assert visual.visual(record(low), frames_of(low), CONFIG, detector).reason == "visual:min_side"


# ------------------------------------------------------------------------------------------- motion


def test_vmaf_motion_and_jumps():
    assert motion.vmaf_motion(np.array([0.0, 9.0, 0.0, 0.0])) == 0.0  # a single spike is ignored
    assert motion.count_jumps(np.array([0, 0, 3, 4, 0, 0, 0.1, 0, 5, 0]), 0.25, 2.0) == 2


def test_hard_cut_slideshow_is_a_slideshow_not_shake():
    # pictures held 0.5 s with hard cuts: the content detector fires in a burst, but frames are frozen
    video = render([Shot(0.5, "static", seed=s) for s in range(10, 18)], 72, 128, FPS)
    frames = frames_of(video)
    clips, _ = scenes.split(record(video, source_frames=len(video)), frames, CONFIG)
    (clip,) = clips
    assert clip.shot_boundaries >= 2
    checked = motion.motion(clip, frames.window(clip.start_frame, clip.end_frame), CONFIG)
    assert checked.reason == "motion:slideshow" and checked.shaky


def test_static_and_moving():
    still = render([Shot(3.0, "static", seed=5)], 72, 128, FPS)
    moving = render([Shot(3.0, "pan right", seed=5)], 144, 256, FPS)
    assert motion.motion(record(still), frames_of(still), CONFIG).reason == "motion:static"
    checked = motion.motion(record(moving), frames_of(moving), CONFIG)
    assert checked.kept and checked.flow_magnitude == pytest.approx(0.08, rel=0.25)


# ------------------------------------------------------------------------------------------- camera


@pytest.mark.parametrize(
    "shot, label",
    [
        (Shot(3.0, "static", seed=6), "static"),
        (Shot(3.0, "pan left", seed=6), "pan left"),
        (Shot(3.0, "pan right", seed=6), "pan right"),
        (Shot(3.0, "tilt up", seed=6), "tilt up"),
        (Shot(3.0, "tilt down", seed=6), "tilt down"),
        (Shot(3.0, "zoom in", seed=6), "zoom in"),
        (Shot(3.0, "zoom out", seed=6), "zoom out"),
        (Shot(3.0, "roll clockwise", seed=6, speed=12.0), "roll clockwise"),
        (Shot(3.0, "roll counterclockwise", seed=6, speed=12.0), "roll counterclockwise"),
        (Shot(3.0, "static", seed=6, shake=0.012), "shaky"),
    ],
)
def test_camera_labels(shot, label):
    video = render([shot], 96, 160, FPS)
    labelled = camera.camera(record(video), frames_of(video), CONFIG)
    assert labelled.camera_motion == label
    assert labelled.camera_confidence >= 0.5


def test_camera_label_set_and_2d_limitation():
    emitted = {"static", "shaky", *camera.LABELS.values()}
    assert emitted <= set(CAMERA_MOTIONS) and len(CAMERA_MOTIONS) == 16
    # documented: translation and rotation are the same 2D motion, so these are never emitted
    assert set(CAMERA_MOTIONS) - emitted == {
        "truck left", "truck right", "pedestal up", "pedestal down", "dolly in", "dolly out"
    }  # fmt: skip


# ------------------------------------------------------------------------------------------ content


def test_embedding_dedup_keeps_the_best_and_is_order_free():
    a = render([Shot(3.0, "pan left", seed=7)], 72, 128, FPS)
    b = np.clip(a.astype(np.int16) + 15, 0, 255).astype(np.uint8)  # brighter copy
    c = render([Shot(3.0, "pan left", seed=8)], 72, 128, FPS)
    clips = [
        content.embed(record(v, clip_id=name, source=name, quality=q), frames_of(v), 4)
        for name, v, q in (("a", a, 0.5), ("b", b, 0.9), ("c", c, 0.5))
    ]
    assert len(clips[0].embedding) == 4 * (16 * 16 + 8 * 8 * 2)
    out = content.deduplicate(clips, 0.95)
    assert [x.reason for x in out] == ["content:duplicate", None, None]
    assert out[0].duplicate_of == "b"
    assert [x.reason for x in content.deduplicate(clips[::-1], 0.95)] == [None, None, "content:duplicate"]


def test_kmeans_clusters_and_inverse_sqrt_weights():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 8))
    vectors = [centres[0] + 0.01 * rng.normal(size=8) for _ in range(4)] + [centres[1]]
    clips = [Clip(f"c{i}", f"s{i}", 0, embedding=list(map(float, v))) for i, v in enumerate(vectors)]
    out = content.cluster(clips, clusters=2, seed=0)
    assert [c.cluster for c in out] == [0, 0, 0, 0, 1]
    assert [c.cluster_size for c in out] == [4, 4, 4, 4, 1]
    assert out[4].weight / out[0].weight == pytest.approx(2.0)  # ∝ 1/sqrt(size)
    assert np.mean([c.weight for c in out]) == pytest.approx(1.0)
    again = content.cluster(clips, clusters=2, seed=0)
    assert [c.weight for c in again] == [c.weight for c in out]


# ---------------------------------------------------------------------------------- captions, subsets


def test_sidecar_caption_and_camera_prefix():
    video = render([Shot(2.0, "pan left", seed=9)], 72, 128, FPS)
    clip = record(video, camera_motion="pan left", camera_confidence=0.9)
    done = captions.captions(clip, frames_of(video), CONFIG, sidecar="  a  walk in the park ")
    assert (done.caption, done.caption_source) == ("a walk in the park", "sidecar")
    assert done.prompt == "FPS-12. Camera: pan left. a walk in the park"
    unsure = dataclasses.replace(clip, camera_confidence=0.2)
    assert captions.captions(unsure, frames_of(video), CONFIG, sidecar="x").prompt == "FPS-12. x"
    uncaptioned = captions.captions(clip, frames_of(video), CONFIG)
    assert uncaptioned.kept and uncaptioned.caption_source == "needs_caption"
    assert uncaptioned.caption is None and uncaptioned.prompt is None
    strict = dataclasses.replace(CONFIG, require_caption=True)
    assert captions.captions(clip, frames_of(video), strict).reason == "captions:no_caption"


def test_buckets_aspect_mix_levels():
    grid = CONFIG.bucket_grid()
    clips = [
        Clip(f"l{i}", "s", i, width=256, height=144, frames=48, aspect="landscape", quality=i / 10)
        for i in range(10)
    ]
    clips += [Clip("p", "s", 10, width=144, height=256, frames=48, aspect="portrait", quality=0.5)]
    clips += [Clip("short", "s", 11, width=256, height=144, frames=5, aspect="landscape", quality=1.0)]
    out = subsets.assign_buckets(clips, grid)
    assert out[0].bucket == "48x32-16f" and out[10].bucket == "32x48-16f"
    assert out[11].reason == "buckets:no_bucket"
    mixed = subsets.balance_aspect(out, 0.8)
    kept = [c.clip_id for c in mixed if c.kept]
    assert kept == ["l6", "l7", "l8", "l9", "p"]  # 4 : 1 = 80 % / 20 %, best quality first
    assert {c.reason for c in mixed[:6]} == {"subsets:aspect_mix"}
    sizes = [Clip("a", "s", 0, width=800, height=720), Clip("b", "s", 1, width=1280, height=800)]
    levels = subsets.subset_levels(sizes, (720, 768))
    assert [c.subset_level for c in levels] == [1, 2]


def test_concept_filter_with_minilm():
    texts = [
        "a man dancing on a stage",
        "a woman smiling at the camera",
        "a red ball rolling",
        "clouds over hills",
    ]
    clips = [Clip(f"c{i}", "s", i, caption=t) for i, t in enumerate(texts)]
    cfg = dataclasses.replace(CONFIG, concepts=("a person dancing", "a person smiling"), concept_fraction=1.0)
    encoder = subsets.SentenceEncoder()
    out = subsets.concept_filter(clips, subsets.load_concepts(cfg), cfg, encoder)
    assert [c.kept for c in out] == [True, True, False, False]
    assert out[0].concept == "a person dancing" and out[1].concept == "a person smiling"
    half = dataclasses.replace(cfg, concept_fraction=0.5)  # 2 hits allow 2 misses
    assert all(c.kept for c in subsets.concept_filter(clips, subsets.load_concepts(half), half, encoder))


# ------------------------------------------------------------------------------------ local models


def _tiny_blip(folder):
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    words = ["a", "the", "video", "of", "red", "blue", "circle", "moving", "camera", "scene", "sky", "green"]
    folder.mkdir()
    (folder / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n"
    )
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=BertTokenizer(str(folder / "vocab.txt")),
    )
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = BlipConfig(
        vision_config={**tiny, "image_size": 32, "patch_size": 8},
        text_config={
            **tiny,
            "vocab_size": 17,
            "max_position_embeddings": 64,
            "bos_token_id": 2,
            "sep_token_id": 3,
            "pad_token_id": 0,
            "eos_token_id": 3,
        },  # fmt: skip
        projection_dim=32,
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _tiny_clip(folder, head: bool = True):
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPVisionConfig(**tiny, image_size=32, patch_size=8, projection_dim=16)
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    if head:
        weights = {"layers.0.weight": torch.randn(4, 16), "layers.0.bias": torch.randn(4),
                   "layers.2.weight": torch.randn(1, 4), "layers.2.bias": torch.zeros(1)}  # fmt: skip
        save_file(weights, str(folder / "aesthetic_head.safetensors"))
        return folder, weights
    return folder, None


def test_vlm_captioner_and_clip_models_from_local_folders(tmp_path, corpus):
    import torch

    from moviegen.curate.runner import _RESOURCES, process_source
    from moviegen.curate.vision import CLIPAestheticScorer, CLIPImageEncoder

    blip = _tiny_blip(tmp_path / "blip")
    clip_dir, head = _tiny_clip(tmp_path / "clip")
    frame = render([Shot(0.1, seed=10)], 72, 128, FPS)[0]
    text = captions.VLMCaptioner(blip, max_new_tokens=6).caption([frame])
    assert isinstance(text, str) and text  # random weights: words from the tiny vocabulary
    encoder = CLIPImageEncoder(clip_dir)
    vectors = encoder.embed([frame, frame[::-1]])
    assert vectors.shape == (2, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    x = torch.from_numpy(vectors[:1])
    expected = (x @ head["layers.0.weight"].T + head["layers.0.bias"]) @ head["layers.2.weight"].T
    assert CLIPAestheticScorer(clip_dir).score([frame]) == pytest.approx(float(expected), rel=1e-4)
    with pytest.raises(MovieGenError, match="not found"):
        captions.VLMCaptioner(tmp_path / "none")

    # through the pipeline: the worker loads the models from the config's folders
    cfg = dataclasses.replace(CONFIG, captioner=str(blip), embedding_model=str(clip_dir),
                              aesthetic_model=str(clip_dir), caption_max_tokens=6)  # fmt: skip
    folder, _ = corpus
    result = process_source({"source": str(folder / "pan_left.mp4"), "caption": "sidecar text"}, cfg)
    _RESOURCES.clear()
    (row,) = result["clips"]
    assert row["kept"], row["reason"]
    assert row["caption_source"] == "vlm" and row["caption"] != "sidecar text"
    assert row["prompt"].startswith("FPS-12. Camera: pan left. ")
    assert len(row["embedding"]) == 16 and row["aesthetic"] is not None
    json.dumps(result)  # what the runner writes and Ray ships
