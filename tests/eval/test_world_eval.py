"""The classical world detector must be (nearly) perfect on the world's own ground truth."""

import json

import torch

from moviegen.data.world import CAMERA_MOTIONS, World
from moviegen.eval.world import detect_camera, detect_object, eval_prompts, evaluate_world, held_out_prompts


def test_detector_accuracy_on_ground_truth_clips():
    world = World(seed=7)
    hits = {"color": 0, "shape": 0, "motion": 0, "camera": 0}
    counts = dict.fromkeys(hits, 0)
    for i in range(200):
        clip = world.clip("test", i)
        if clip.kind == "object":
            det = detect_object(clip.video)
            for key in ("color", "shape", "motion"):
                counts[key] += 1
                hits[key] += getattr(det, key) == clip.attributes[key]
            assert det.area_variation < 0.1
        else:
            counts["camera"] += 1
            hits["camera"] += detect_camera(clip.video).camera == clip.attributes["camera"]
    for key in hits:
        assert counts[key] > 15
        assert hits[key] / counts[key] >= 0.99, (key, hits[key], counts[key])


def test_every_camera_motion_is_detected():
    world = World(seed=1)
    for motion in CAMERA_MOTIONS:
        for fps in (8, 16):
            clip = world.camera_clip("astronaut", motion, fps)
            assert detect_camera(clip.video).camera == motion


def test_benchmark_scores_ground_truth_renderings_as_perfect():
    """evaluate_world with a 'generator' that renders the truth must score 100 everywhere."""
    world = World(seed=2)

    def render(prompt, seed, schedule, steps):
        if prompt.kind == "camera":
            return world.camera_clip("coffee", prompt.truth["camera"], 16).video
        t = prompt.truth
        return world.object_clip(t["color"], t["shape"], t["motion"], 16).video

    results = evaluate_world(render, seeds=1, samplers=[("linear-quadratic", 50)], num_seen=5)
    scores = results["linear-quadratic-50"]
    for key in ("held_out_color", "held_out_shape", "held_out_motion", "seen_color", "camera"):
        assert scores[key] == 100.0
    json.dumps(results)
    assert len(held_out_prompts()) == 20
    assert {p.kind for p in eval_prompts(num_seen=3)} == {"held_out", "seen", "camera"}


def test_noise_is_not_mistaken_for_objects():
    det = detect_object(torch.zeros(3, 16, 64, 64) - 1)
    assert not det.found and det.color == "none"


def test_tae_roundtrip_ceiling_is_perfect_for_an_identity_autoencoder():
    from moviegen.eval.world import render_truth, tae_roundtrip_scores

    class Identity:
        def encode(self, video):
            return video

        def decode(self, latent, num_frames):
            return latent[:, :, :num_frames]

    scores = tae_roundtrip_scores(Identity(), seeds=1, num_seen=3, world=World(seed=2))
    for key in ("held_out_color", "held_out_shape", "held_out_motion", "seen_motion", "camera"):
        assert scores[key] == 100.0
    prompt = eval_prompts(num_seen=0)[0]
    assert torch.equal(render_truth(World(), prompt, 1), render_truth(World(), prompt, 1))
    assert not torch.equal(render_truth(World(), prompt, 1), render_truth(World(), prompt, 2))


def test_eval_world_cli_reports_samplers_and_the_tae_ceiling(tmp_path, capsys):
    from tests.helpers import run_cli

    out = tmp_path / "report.json"
    args = ["--model", "tiny-random", "--seeds", "1", "--num-seen", "0", "--quick", "--out", out]
    code, stdout, err = run_cli(capsys, "eval", "world", *args)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert set(report) == {"linear-quadratic-50", "tae-roundtrip"}
    assert set(report["tae-roundtrip"]) >= {"held_out_color", "held_out_shape", "held_out_motion", "camera"}
    assert "tae-roundtrip" in stdout.splitlines()[0]


def test_calibration_prompts_are_training_compositions_outside_the_benchmark():
    from moviegen.data.world import COLORS, MOTIONS, SHAPES, is_held_out
    from moviegen.eval.world import calibration_prompts

    prompts = calibration_prompts()
    objects = [p for p in prompts if p.kind == "seen"]
    cameras = {p.truth["camera"] for p in prompts if p.kind == "camera"}
    assert len(objects) == 24 and cameras == set(CAMERA_MOTIONS)
    for p in objects:
        t = p.truth
        index = list(COLORS).index(t["color"]), SHAPES.index(t["shape"]), MOTIONS.index(t["motion"])
        assert not is_held_out(*index)
    assert not {p.prompt for p in objects} & {p.prompt for p in eval_prompts()}


def test_calibrate_guidance_picks_the_scale_that_follows_the_prompt():
    """A fake sampler that renders the truth only at scale 2 (and the wrong colour elsewhere)."""
    from moviegen.eval.world import calibrate_guidance

    world = World(seed=3)
    calls = []

    def generate(prompt, seed, scale):
        calls.append((prompt.prompt, seed, scale))
        if prompt.kind == "camera":
            return world.camera_clip("coffee", prompt.truth["camera"] if scale == 2 else "static", 16).video
        t = prompt.truth
        color = t["color"] if scale == 2 else ("red" if t["color"] != "red" else "blue")
        return world.object_clip(color, t["shape"], t["motion"], 16).video

    best, table = calibrate_guidance(generate, scales=(1.0, 2.0, 7.5), seeds=1, num_seen=4)
    assert best == 2.0 and list(table) == [1.0, 2.0, 7.5]
    assert table[2.0]["seen_color"] == 100 and table[1.0]["seen_color"] == 0
    assert table[2.0]["mean"] == 100 and table[7.5]["mean"] < 100
    assert len(calls) == 3 * (4 + len(CAMERA_MOTIONS)) and min(s for _, s, _ in calls) >= 1000


def test_eval_guidance_cli_writes_the_best_scale(tmp_path, capsys):
    from tests.helpers import run_cli

    from moviegen.pipeline import MovieGenPipeline

    MovieGenPipeline.from_presets("tiny", "tiny").save_pretrained(tmp_path / "p")
    code, stdout, err = run_cli(capsys, "eval", "guidance", "--model", tmp_path / "p", "--scales", "1,3",
                                "--seeds", "1", "--num-seen", "2", "--write")  # fmt: skip
    assert code == 0, err
    assert "best guidance scale" in stdout
    assert MovieGenPipeline.from_pretrained(tmp_path / "p").guidance_scale in (1.0, 3.0)
    code, _, err = run_cli(capsys, "eval", "guidance", "--model", tmp_path / "p", "--scales", "1,x")
    assert code == 1 and "--scales" in err
