"""moviegen.train.checkpoint: atomic sharded checkpoints, corruption detection, export, model averaging."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from train_worker import make_app, write_cache
from typer.testing import CliRunner

from moviegen.errors import MovieGenError
from moviegen.models.tae import TAE, TAEConfig
from moviegen.models.text import TextProjector
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig
from moviegen.pipeline import MovieGenPipeline
from moviegen.train import checkpoint as ckpt
from moviegen.train.loop import TrainConfig, Trainer, init_distributed, train

RUN = dict(global_batch=4, steps=4, lr=1e-3, ckpt_every=2, keep_checkpoints=0, log_every=0,
           image_video_ratio=[1, 1], model_overrides={"max_latent_frames": 4})  # fmt: skip


def quiet(_message: str) -> None:
    pass


def trajectory(run_dir: Path) -> list[tuple]:
    """(step, loss, lr, grad norm) per step; losses compare exactly, grad norms to 1e-9 relative, since a
    multi-threaded sum of squares rounds differently between processes (seen: 1e-11 on a 2-core AVX-512
    machine; a wrong resume changes the loss itself)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [
        (m["step"], m["loss"], m["lr"], pytest.approx(m["grad_norm"], rel=1e-9))
        for m in map(json.loads, lines)
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 4-step single-process run, asynchronous checkpoints with SHA-256, at steps 2 and 4."""
    root = tmp_path_factory.mktemp("ckpt")
    cache = write_cache(root / "cache", num_videos=8, num_images=4)
    config = TrainConfig.from_dict(
        {
            **RUN,
            "cache": str(cache),
            "run_dir": str(root / "run"),
            "async_checkpoint": True,
            "checkpoint_checksums": True,
        }  # fmt: skip
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, log=quiet)
    finally:
        torch.set_num_threads(threads)
    return root / "run"


@pytest.fixture
def copy(run, tmp_path) -> Path:
    """A private copy of the run to damage."""
    dest = tmp_path / "run"
    shutil.copytree(run, dest)
    config = json.loads((dest / "config.json").read_text())
    config["run_dir"] = str(dest)
    config.pop("_class_name")
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def resume(run_dir: Path):
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    return train(config, resume=True, log=quiet)


# ---------------------------------------------------------------------------------------------------------
# layout, marker, atomicity


def test_layout_and_marker(run):
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-000002", "step-000004"]  # no .tmp left behind
    final = run / "checkpoints" / "step-000004"
    marker = json.loads((final / ckpt.MARKER).read_text())
    assert marker["step"] == 4 and marker["world_size"] == 1 and marker["plan"]["dp_shard"] == 1
    assert set(marker["files"]) == {".metadata", "__0_0.distcp"}
    for name, info in marker["files"].items():
        assert (final / name).stat().st_size == info["size"] and len(info["sha256"]) == 64
    assert TransformerConfig.from_dict(marker["transformer_config"]).max_latent_frames == 4
    assert ckpt.latest(run) == final and ckpt.verify_checkpoint(final, 1, marker["plan"]) == marker


def test_latest_skips_unfinished_saves(copy):
    root = copy / "checkpoints"
    (root / "step-000009.tmp").mkdir()  # a save that was interrupted before its rename
    (root / "step-000009.tmp" / "__0_0.distcp").write_bytes(b"partial")
    assert ckpt.latest(copy).name == "step-000004"
    assert [s for s, _ in ckpt.list_checkpoints(copy)] == [2, 4]
    with pytest.raises(MovieGenError, match="unfinished save"):
        ckpt.verify_checkpoint(root / "step-000009.tmp")
    assert ckpt.latest(copy / "nothing-here") is None


def test_async_checkpoints_resume_exactly(copy, run):
    shutil.rmtree(copy / "checkpoints" / "step-000004")
    shutil.rmtree(copy / "export")
    result = resume(copy)
    assert result.resumed_from.name == "step-000002" and result.steps == 4
    assert trajectory(copy) == trajectory(run)


# ---------------------------------------------------------------------------------------------------------
# damaged checkpoints are refused


def test_missing_marker_is_refused(copy):
    (copy / "checkpoints" / "step-000004" / ckpt.MARKER).unlink()
    assert ckpt.latest(copy).name == "step-000002"  # the newest *complete* one
    with pytest.raises(MovieGenError, match=r"step-000004 is incomplete: its COMPLETE marker is missing"):
        resume(copy)  # but a newer incomplete one is not silently skipped
    assert not dist.is_initialized()
    config = copy / "config.json"
    result = CliRunner().invoke(make_app(), ["train", "run", "--config", str(config), "--resume"])
    assert result.exit_code != 0 and "COMPLETE marker is missing" in str(result.exception)


def test_truncated_file_is_refused(copy):
    shard = copy / "checkpoints" / "step-000004" / "__0_0.distcp"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(MovieGenError, match=r"__0_0.distcp has \d+ bytes, expected \d+ \(truncated"):
        resume(copy)
    shard.unlink()
    with pytest.raises(MovieGenError, match="file __0_0.distcp is missing"):
        ckpt.verify_checkpoint(shard.parent)


def test_corrupted_bytes_fail_the_hash(copy):
    shard = copy / "checkpoints" / "step-000004" / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    shard.write_bytes(bytes(data))
    with pytest.raises(MovieGenError, match="fails its SHA-256 check"):
        resume(copy)


def test_corrupt_marker_and_layout_mismatch_are_refused(copy):
    path = copy / "checkpoints" / "step-000004"
    plan = json.loads((path / ckpt.MARKER).read_text())["plan"]
    with pytest.raises(MovieGenError, match="written by 1 ranks but this run has 2"):
        ckpt.verify_checkpoint(path, world_size=2)
    with pytest.raises(MovieGenError, match="written with parallel plan"):
        ckpt.verify_checkpoint(path, world_size=1, plan={**plan, "tp": 2})
    (path / ckpt.MARKER).write_text("{oops")
    with pytest.raises(MovieGenError, match="COMPLETE marker is corrupt"):
        ckpt.verify_checkpoint(path)


# ---------------------------------------------------------------------------------------------------------
# the Checkpointer on its own


def test_checkpointer_restores_everything_and_prunes(tmp_path):
    created = init_distributed("cpu")
    try:
        torch.manual_seed(0)
        module = torch.nn.Linear(4, 3)
        opt = torch.optim.AdamW(module.parameters(), lr=0.1)
        module(torch.randn(2, 4)).sum().backward()
        opt.step()
        saver = ckpt.Checkpointer(tmp_path, module, opt, plan={"p": 1}, keep=2, meta={"note": "x"})
        for step in (1, 2, 3):
            saver.save(step, {"step": step, "sched": [1.5, None]}, {"sampler": {"epoch": step}})
        expected = {k: v.clone() for k, v in module.state_dict().items()}
        exp_avg = opt.state[module.weight]["exp_avg"].clone()
        rng = torch.get_rng_state()
        draw = torch.rand(3)
        assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]  # keep=2 pruned step 1
        with torch.no_grad():
            module.weight.add_(1.0)
        opt.state[module.weight]["exp_avg"].zero_()
        torch.rand(5)
        step, train_state, rank_state = saver.load(ckpt.latest(tmp_path))
        assert step == 3 and train_state == {"step": 3, "sched": [1.5, None]}
        assert rank_state == {"sampler": {"epoch": 3}}
        assert all(torch.equal(module.state_dict()[k], v) for k, v in expected.items())
        assert torch.equal(opt.state[module.weight]["exp_avg"], exp_avg)
        assert torch.equal(torch.get_rng_state(), rng) and torch.equal(torch.rand(3), draw)
        assert json.loads((ckpt.latest(tmp_path) / ckpt.MARKER).read_text())["note"] == "x"
        other = ckpt.Checkpointer(tmp_path, module, opt, plan={"p": 2})
        with pytest.raises(MovieGenError, match="parallel plan"):
            other.load(ckpt.latest(tmp_path))
        saver.close()
    finally:
        if created:
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------
# export → from_pretrained, init_from


def test_export_matches_the_checkpoint_and_loads(run):
    model = MovieGenTransformer.from_pretrained(run / "export" / "transformer")
    weights = ckpt.load_checkpoint_weights(run / "checkpoints" / "step-000004")
    transformer = {
        k.removeprefix("transformer."): v for k, v in weights.items() if k.startswith("transformer.")
    }
    assert sorted(transformer) == sorted(model.state_dict())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in transformer.items())
    projector = load_file(str(run / "export" / "text_projector" / "model.safetensors"))
    assert all(torch.equal(projector[k], weights[f"projector.{k}"]) for k in projector)
    # unknown (32-wide) text encodings: no TextConditioner folder and no pipeline index
    assert not (run / "export" / "text").exists() and not (run / "export" / "model_index.json").exists()


def test_full_pipeline_export_round_trip(tmp_path):
    """384-wide encodings (the packaged MiniLM) + a TAE folder → a MovieGenPipeline folder that loads."""
    cache = write_cache(tmp_path / "cache", num_videos=4, num_images=0, dims=(384,))
    tae = TAE(TAEConfig.preset("tiny")).save_pretrained(tmp_path / "tae")
    config = TrainConfig.from_dict({**RUN, "steps": 1, "image_video_ratio": [0, 1], "cache": str(cache),
                                    "run_dir": str(tmp_path / "run"), "tae": str(tae)})  # fmt: skip
    result = train(config, log=quiet)
    pipe = MovieGenPipeline.from_pretrained(result.export_dir)
    weights = ckpt.load_checkpoint_weights(result.checkpoint)
    for k, v in pipe.transformer.state_dict().items():
        assert torch.equal(v, weights[f"transformer.{k}"])
    for k, v in pipe.text.projector.state_dict().items():
        assert torch.equal(v, weights[f"projector.{k}"])
    assert pipe.text.config.kinds == ("minilm",) and pipe.tae.config == TAEConfig.preset("tiny")
    video = pipe("a red circle", num_frames=1, height=32, width=32, num_steps=1, guidance_scale=1.0)
    assert video.shape == (3, 1, 32, 32) and torch.isfinite(video).all()


def test_export_without_a_process_group(tmp_path):
    torch.manual_seed(3)
    model = MovieGenTransformer(TransformerConfig.preset("tiny"))
    projector = TextProjector((384,), model.config.dim)
    tae = TAE(TAEConfig.preset("tiny")).save_pretrained(tmp_path / "tae")
    out = ckpt.export_pretrained(model, projector, tmp_path / "out", tae_dir=tae)
    pipe = MovieGenPipeline.from_pretrained(out)
    assert all(torch.equal(pipe.transformer.state_dict()[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(pipe.text.projector.state_dict()[k], v) for k, v in projector.state_dict().items())


def test_init_from_a_run_starts_from_its_weights(run, tmp_path):
    cache = run.parent / "cache"
    config = TrainConfig.from_dict({**RUN, "cache": str(cache), "run_dir": str(tmp_path / "next"),
                                    "init_from": str(run), "expand_positions": [6, 8, 8]})  # fmt: skip
    trainer = Trainer(config, log=quiet)
    try:
        assert trainer.step == 0 and "checkpoint" in trainer.init_source.what
        state = ckpt.gather_full_state(trainer.model)
        assert state["pos_t"].shape[0] == 6  # expanded after loading
        source = MovieGenTransformer.from_pretrained(run / "export" / "transformer").state_dict()
        assert torch.equal(state["pos_t"][:4], source["pos_t"]) and torch.equal(
            state["pos_t"][5], source["pos_t"][3]
        )
        assert torch.equal(state["blocks.0.attn.qkv.weight"], source["blocks.0.attn.qkv.weight"])
    finally:
        trainer.close()
    assert not dist.is_initialized()
    with pytest.raises(MovieGenError, match="init_from folder not found"):
        train(TrainConfig.from_dict({**RUN, "cache": str(cache), "run_dir": str(tmp_path / "x"),
                                     "init_from": str(tmp_path / "missing")}), log=quiet)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# model averaging


def test_average_of_two_folders_is_the_mean(tmp_path):
    folders = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = MovieGenTransformer(TransformerConfig.preset("tiny"))
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        folders.append(model.save_pretrained(tmp_path / f"m{seed}"))
    result = CliRunner().invoke(make_app(), ["average", *map(str, folders), "--out", str(tmp_path / "avg")])
    assert result.exit_code == 0, result.output
    avg = MovieGenTransformer.from_pretrained(tmp_path / "avg").state_dict()
    a, b = (MovieGenTransformer.from_pretrained(f).state_dict() for f in folders)
    for k in avg:
        assert torch.allclose(avg[k], (a[k] + b[k]) / 2, atol=1e-7, rtol=0)
    assert not torch.equal(avg["pos_t"], a["pos_t"])

    other = MovieGenTransformer(TransformerConfig.preset("tiny", num_layers=3)).save_pretrained(
        tmp_path / "m3"
    )
    with pytest.raises(MovieGenError, match="config.json differs"):
        ckpt.average_checkpoints([folders[0], other], tmp_path / "bad")
    with pytest.raises(MovieGenError, match="at least two"):
        ckpt.average_checkpoints([folders[0]], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_average_of_pipelines(tmp_path):
    paths = [MovieGenPipeline.from_presets(seed=s).save_pretrained(tmp_path / f"p{s}") for s in (0, 1)]
    out = ckpt.average_checkpoints(paths, tmp_path / "avg")
    pipe = MovieGenPipeline.from_pretrained(out)
    p0, p1 = (MovieGenPipeline.from_pretrained(p) for p in paths)
    w = "blocks.1.ffn.w1.weight"
    mean = (p0.transformer.state_dict()[w] + p1.transformer.state_dict()[w]) / 2
    assert torch.allclose(pipe.transformer.state_dict()[w], mean, atol=1e-7)
    for part in ("text", "tae"):  # every component's weights are averaged; frozen ones are equal anyway
        mine, a, b = (getattr(p, part).state_dict() for p in (pipe, p0, p1))
        assert all(torch.allclose(mine[k], (a[k] + b[k]) / 2, atol=1e-6) for k in mine)
