"""moviegen.train.loop: config, LR schedules, the staged recipe, and exact resume after SIGKILL.

Kill/resume: a run is SIGKILLed (a subprocess, or a whole ``torchrun`` job) right after its checkpoint at
step 3 is complete, resumed with ``--resume``, and its per-step losses (and gradient norms, validation
losses, learning rates) must equal those of an uninterrupted run bit for bit: single-process and on 2
ranks with tensor parallelism (tp=2, which also exercises the strided q/k/v shards in the checkpoint).
Runs use the tiny backbone on a small on-disk latent cache (``train_worker.write_cache``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from train_worker import make_app, write_cache
from typer.testing import CliRunner

from moviegen.errors import MovieGenError
from moviegen.models.transformer import MovieGenTransformer
from moviegen.train import stages
from moviegen.train.checkpoint import latest
from moviegen.train.loop import LRSchedule, TrainConfig, load_train_config, sample_draws

WORKER = Path(__file__).with_name("train_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
KILL_AT = 3  # checkpoint step after which the run is killed

# one tiny run: 8 steps, image:video 1:2, validation every 2 steps with a plateau rule that always fires
# (an improvement must exceed 50%), checkpoints at 3, 6 and 8
RUN = dict(
    global_batch=4,
    steps=8,
    lr=1e-3,
    warmup_steps=2,
    val_every=2,
    ckpt_every=KILL_AT,
    plateau_patience=1,
    plateau_threshold=0.5,
    image_video_ratio=[1, 2],
    model_overrides={"max_latent_frames": 4},
    keep_checkpoints=0,
    log_every=0,
    peak_flops=5e10,  # a nominal per-device peak, so the MFU estimate is logged on CPU too
)


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("caches")
    return {
        "train": write_cache(root / "train", num_videos=16, num_images=8, seed=0),
        "val": write_cache(root / "val", num_videos=6, num_images=2, seed=1),
        "images": write_cache(root / "images", num_videos=0, num_images=8, seed=2),
    }


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic as the 1-thread subprocesses
    yield
    torch.set_num_threads(threads)


def write_config(path: Path, caches: dict, run_dir: Path, **overrides) -> Path:
    data = {**RUN, "cache": str(caches["train"]), "val_cache": str(caches["val"]), "run_dir": str(run_dir)}
    path.write_text(json.dumps({**data, **overrides}))
    return path


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def trajectory(run_dir: Path) -> list[tuple]:
    """Losses, lr and validation losses exactly; grad norms to 1e-9 relative (a multi-threaded sum of
    squares may round its last bit differently between processes)."""
    return [
        (m["step"], m["loss"], pytest.approx(m["grad_norm"], rel=1e-9), m["lr"], m.get("val_loss"))
        for m in metrics(run_dir)
    ]


def run_in_process(*args: str) -> None:
    result = CliRunner().invoke(make_app(), [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"exit {result.exit_code}: {result.output}") from result.exception
    assert not dist.is_initialized(), "a single-process run must destroy its process group"


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"run ended (exit {proc.returncode}) before {path} appeared:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {path}")
        time.sleep(0.02)


def kill_after_checkpoint(cmd: list[str], run_dir: Path) -> None:
    """Start ``cmd`` in its own process group, SIGKILL the group once checkpoint KILL_AT is complete."""
    env = {**ENV, "MOVIEGEN_TEST_SLOW_AFTER": str(KILL_AT), "MOVIEGEN_TEST_SLOW_S": "3"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    wait_for(run_dir / "checkpoints" / f"step-{KILL_AT:06d}" / "COMPLETE", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # it really died mid-run: no later checkpoint, no export
    assert latest(run_dir).name == f"step-{KILL_AT:06d}"
    assert not (run_dir / "export").exists()


# ---------------------------------------------------------------------------------------------------------
# config


def test_config_is_validated_and_round_trips(tmp_path):
    config = TrainConfig(cache="c", steps=10, tp=2, image_video_ratio=(1, 10))
    data = json.loads(config.to_json())
    assert TrainConfig.from_dict({k: v for k, v in data.items() if k != "_class_name"}) == config
    assert config.plan.tp == 2 and config.plan.dp_shard == -1
    for bad, message in [
        ({"stepz": 1}, "unknown config key"),
        ({"schedule": "linear"}, "schedule must be one of"),
        ({"global_batch": 0}, "global_batch must be >= 1"),
        ({"image_video_ratio": [0, 0]}, "image_video_ratio"),
        ({"text_dropout": 1.5}, "text_dropout"),
        ({"tp": 0}, "tp must be >= 1"),
        ({"model": "7t"}, "unknown model preset"),
        ({"expand_positions": [4, 8]}, "expand_positions"),
        ({"lr": "fast"}, "expected a number"),
    ]:
        with pytest.raises(MovieGenError, match=message):
            TrainConfig.from_dict(bad)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MovieGenError, match="not valid JSON"):
        load_train_config(tmp_path / "bad.json")


def test_missing_cache_is_a_clear_error(tmp_path, caches):
    cfg = write_config(tmp_path / "c.json", caches, tmp_path / "run", cache=str(tmp_path / "nope"))
    result = CliRunner().invoke(make_app(), ["train", "run", "--config", str(cfg)])
    assert result.exit_code != 0 and isinstance(result.exception, MovieGenError)
    assert "latent cache folder not found" in str(result.exception)
    assert not dist.is_initialized()


# ---------------------------------------------------------------------------------------------------------
# learning-rate schedules


def test_plateau_schedule_halves_when_validation_stalls():
    s = LRSchedule(TrainConfig(lr=1e-3, warmup_steps=4, plateau_patience=2, plateau_threshold=0.01))
    assert [s.lr(i) for i in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert not s.observe(1.0, 10)  # first value: the best so far
    assert not s.observe(0.98, 20)  # a 2% improvement counts
    assert not s.observe(0.975, 30)  # < 1%: one bad validation (patience 2)
    assert s.observe(0.99, 40)  # two in a row: halve
    assert s.lr(100) == pytest.approx(5e-4) and s.halvings == [40]
    assert not s.observe(0.975, 50)  # < 1% better than the best (0.98): bad, counter restarted at 0
    assert s.observe(0.971, 60) and s.lr(100) == pytest.approx(2.5e-4)
    assert not s.observe(0.9, 70) and s.best == 0.9  # a real improvement resets the counter
    state = json.loads(json.dumps(s.state_dict()))  # JSON-able (it goes into checkpoints)
    t = LRSchedule(s.c)
    t.load_state_dict(state)
    assert t.lr(100) == s.lr(100) and t.state_dict() == s.state_dict()
    floor = LRSchedule(TrainConfig(lr=1e-3, plateau_patience=1, min_lr=3e-4))
    for i in range(5):
        floor.observe(1.0, i)
    assert floor.lr(10) == pytest.approx(3e-4)  # never below min_lr


def test_cosine_schedule():
    c = TrainConfig(lr=1e-3, schedule="cosine", warmup_steps=10, steps=110, cosine_final_ratio=0.1)
    s = LRSchedule(c)
    assert s.lr(4) == pytest.approx(5e-4)  # warmup
    assert s.lr(10) == pytest.approx(1e-3)  # peak after warmup
    assert s.lr(60) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half-way
    assert s.lr(110) == pytest.approx(1e-4) and s.lr(500) == pytest.approx(1e-4)  # floor at the end
    lrs = [s.lr(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert not s.observe(1.0, 5) and not s.observe(2.0, 6)  # validation never changes a cosine LR


def test_sample_draws_do_not_depend_on_the_split():
    whole = sample_draws((2, 3), [0, 1, 2, 3], seed=5, step=7, device=torch.device("cpu"))
    halves = [sample_draws((2, 3), pos, 5, 7, torch.device("cpu")) for pos in ([0, 1], [2, 3])]
    assert torch.equal(whole[0], torch.cat([h[0] for h in halves]))
    assert torch.equal(whole[1], torch.cat([h[1] for h in halves]))
    other = sample_draws((2, 3), [0, 1, 2, 3], seed=5, step=8, device=torch.device("cpu"))
    assert not torch.equal(whole[1], other[1])
    mask = torch.ones(4000, 3, dtype=torch.bool)
    _, _, dropped = sample_draws((1,), list(range(4000)), 0, 0, torch.device("cpu"), mask, 0.1)
    assert 0.08 < (~dropped.any(1)).float().mean() < 0.12  # text dropout rate


# ---------------------------------------------------------------------------------------------------------
# exact resume after SIGKILL


@pytest.fixture(scope="module")
def reference(tmp_path_factory, caches) -> Path:
    """The uninterrupted single-process run (in-process through the CLI function)."""
    root = tmp_path_factory.mktemp("reference")
    cfg = write_config(root / "ref.json", caches, root / "run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_in_process("train", "run", "--config", cfg)
    finally:
        torch.set_num_threads(threads)
    return root / "run"


def test_reference_run_logs_and_plateau(reference):
    m = metrics(reference)
    assert [r["step"] for r in m] == list(range(1, 9))
    assert [r["kind"] for r in m] == ["image", "video", "video"] * 2 + ["image", "video"]  # 1:2
    assert all(math.isfinite(r["loss"]) and r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 for r in m)
    assert m[0]["tokens"] == 4 * 4 * 4  # global batch 4 × one 4×4-patch image
    assert m[1]["tokens"] == 4 * 2 * 4 * 4  # global batch 4 × 2 latent frames of 4×4 patches
    assert [r["step"] for r in m if "val_loss" in r] == [2, 4, 6, 8]
    # plateau rule (improvement must exceed 50%): halved after every validation but the first
    lrs = [r["lr"] for r in m]
    assert lrs[:2] == pytest.approx([5e-4, 1e-3])  # warmup
    assert lrs[2:] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    assert [r.get("lr_halved", False) for r in m] == [False] * 3 + [True, False, True, False, True]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(reference / "logs"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/loss", "perf/tokens_per_s", "perf/mfu"} <= tags
    assert [e.step for e in events.Scalars("val/loss")] == [2, 4, 6, 8]
    assert (reference / "export" / "transformer" / "model.safetensors").is_file()
    assert [p.name for p in sorted((reference / "checkpoints").iterdir())] == [
        "step-000003",
        "step-000006",
        "step-000008",
    ]


def test_fresh_start_refuses_a_run_dir_with_checkpoints(reference, tmp_path, caches):
    cfg = write_config(tmp_path / "c.json", caches, reference)
    result = CliRunner().invoke(make_app(), ["train", "run", "--config", str(cfg)])
    assert isinstance(result.exception, MovieGenError) and "pass --resume" in str(result.exception)


def test_kill_and_resume_single_process(reference, tmp_path, caches, one_thread):
    run_dir = tmp_path / "run"
    cfg = write_config(tmp_path / "c.json", caches, run_dir)
    kill_after_checkpoint([sys.executable, str(WORKER), "train", "run", "--config", str(cfg)], run_dir)
    run_in_process("train", "run", "--config", cfg, "--resume")
    assert trajectory(run_dir) == trajectory(reference)  # bit-identical, including steps 4-8
    assert len(trajectory(run_dir)) == 8


@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_kill_and_resume_two_ranks_tensor_parallel(reference, tmp_path, caches):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    cfg_killed = write_config(tmp_path / "killed.json", caches, killed, tp=2)
    cfg_fresh = write_config(tmp_path / "fresh.json", caches, fresh, tp=2)
    kill_after_checkpoint([*torchrun, str(WORKER), "train", "run", "--config", str(cfg_killed)], killed)
    # one launch: resume the killed run, then an uninterrupted 2-rank run for comparison
    cmd = [*torchrun, str(WORKER), "train", "run", "--config", str(cfg_killed), "--resume",
           "--then", "train", "run", "--config", str(cfg_fresh)]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "resumed from" in proc.stdout and f"step-{KILL_AT:06d}" in proc.stdout
    assert trajectory(killed) == trajectory(fresh)  # bit-identical on 2 ranks
    assert len(trajectory(killed)) == 8
    marker = json.loads((killed / "checkpoints" / "step-000008" / "COMPLETE").read_text())
    assert marker["world_size"] == 2 and marker["plan"]["tp"] == 2
    # the per-sample draws do not depend on the layout: tp=2 matches one process up to rounding
    for a, b in zip(metrics(killed), metrics(reference), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


# ---------------------------------------------------------------------------------------------------------
# the staged recipe


def test_paper_stages_mirror_the_recipe(tmp_path):
    t2i, t2iv, hi, sft = (
        stages.stage_config(n, {"run_dir": str(tmp_path), "cache": "c"}) for n in stages.ORDER
    )
    assert (t2i.global_batch, t2i.lr, t2i.tp, t2i.cp, t2i.steps) == (9216, 1e-4, 1, 1, 210_000)
    assert (t2iv.global_batch, t2iv.lr, t2iv.tp, t2iv.cp, t2iv.steps) == (1536, 6e-5, 4, 1, 185_000)
    assert (hi.global_batch, hi.lr, hi.tp, hi.cp, hi.steps, hi.min_lr) == (1536, 6e-5, 4, 2, 74_500, 1e-5)
    assert t2i.image_video_ratio == (1, 0) and t2iv.image_video_ratio == (1, 10)
    assert t2i.model_overrides["max_latent_frames"] == 1 and t2i.model == "30b"
    assert t2iv.expand_positions == (32, 32, 32) and hi.expand_positions == (32, 96, 96)
    assert [c.schedule for c in (t2i, t2iv, hi, sft)] == ["plateau"] * 3 + ["cosine"]
    assert t2iv.init_from == str(tmp_path / "t2i-256" / "export")
    assert sft.init_from == str(tmp_path / "t2iv-768" / "export") and sft.run_dir == str(tmp_path / "sft")
    assert t2i.init_from == "" and all(c.weight_decay == 0.1 and c.grad_clip == 1.0 for c in (t2i, sft))
    with pytest.raises(MovieGenError, match="unknown training stage"):
        stages.stage_config("t2v-9000", {})


def test_tiny_recipe_runs_stage_by_stage(tmp_path, caches, one_thread):
    """tiny-t2i-256 → tiny-t2iv-256 → tiny-t2iv-768 → tiny-sft through ``--stage``, each from the last."""
    root = tmp_path / "recipe"
    video = {"cache": str(caches["train"]), "val_cache": str(caches["val"])}
    cfg = tmp_path / "recipe.json"
    cfg.write_text(json.dumps({
        "run_dir": str(root), "model_overrides": {"num_layers": 1},
        "stages": {"tiny-t2i-256": {"cache": str(caches["images"]), "val_cache": str(caches["images"])},
                   "tiny-t2iv-256": video, "tiny-t2iv-768": video, "tiny-sft": video},
    }))  # fmt: skip
    tables = {}
    for name in ("tiny-t2i-256", "tiny-t2iv-256", "tiny-t2iv-768", "tiny-sft"):
        run_in_process("train", "run", "--config", cfg, "--stage", name)
        model = MovieGenTransformer.from_pretrained(root / name / "export" / "transformer")
        c = model.config
        tables[name] = (c.max_latent_frames, c.max_height_patches, c.max_width_patches, c.num_layers)
    assert tables == {
        "tiny-t2i-256": (1, 4, 4, 1),
        "tiny-t2iv-256": (4, 8, 8, 1),  # temporal table grown, spatial 2×
        "tiny-t2iv-768": (4, 24, 24, 1),  # spatial 3×
        "tiny-sft": (4, 24, 24, 1),
    }
    assert {m["kind"] for m in metrics(root / "tiny-t2i-256")} == {"image"}
    assert {m["kind"] for m in metrics(root / "tiny-sft")} == {"video"}
    sft = load_train_config(cfg, "tiny-sft")
    expected = [LRSchedule(sft).lr(i) for i in range(sft.steps)]
    assert [m["lr"] for m in metrics(root / "tiny-sft")] == pytest.approx(expected)  # cosine
    assert expected[-1] < expected[2] / 2
    assert "tiny-t2iv-768" in json.loads((root / "tiny-sft" / "config.json").read_text())["init_from"]
