"""moviegen train personalize --quick: analyzer, people TAE, tower pretraining, three stages and the
paired-only ablation through the one Trainer; the Trainer's reference-encoder hook (frozen / unfrozen
tower, tokens appended to the text, export, resume)."""


import pytest
import torch

from helpers import run_quick_recipe
from moviegen.data.cache import CacheItem, MemoryCache
from moviegen.errors import MovieGenError
from moviegen.models.vision import CLIPVisionTower, ReferenceEncoder, VisionConfig
from moviegen.personalize import PersonalizedPipeline
from moviegen.train.loop import TrainConfig, Trainer, train


def _tower_state(pipe):
    return {k: v.clone() for k, v in pipe.reference.tower.state_dict().items()}


def test_quick_personalize_recipe_end_to_end(tmp_path, capsys):
    out = tmp_path / "pt2v"
    log = run_quick_recipe(capsys, "personalize", out)
    assert set(log["guidance"]) == {"stage1", "stage2", "stage3", "paired-only"}
    assert [len(log["history"][f"{s}/loss"]) for s in ("stage1", "stage2", "stage3")] == [2, 2, 2]
    pipes = {s: PersonalizedPipeline.from_pretrained(out / s) for s in ("stage1", "stage2", "stage3", "pipeline")}
    vision = ReferenceEncoder.from_pretrained(out / "vision-encoder").tower.state_dict()
    s1, s2, s3 = (_tower_state(pipes[s]) for s in ("stage1", "stage2", "stage3"))
    for key, value in vision.items():  # frozen in stages 1-2 (fp16 folders), unfrozen in stage 3
        assert torch.allclose(s1[key].float(), value.half().float()) and torch.equal(s1[key], s2[key])
    assert any(not torch.equal(s2[k], s3[k]) for k in s2)
    assert not torch.equal(pipes["stage1"].reference.projection[0].weight, torch.zeros_like(
        pipes["stage1"].reference.projection[0].weight))  # fmt: skip
    assert (out / "analyzer" / "config.json").is_file()


def _items(n: int, size: int = 16):
    g = torch.Generator().manual_seed(0)
    return [CacheItem(torch.randn(16, 1, 2, 2, generator=g), [(torch.randn(3, 384, generator=g), torch.ones(3, dtype=torch.bool))],
                      "x", "people/video", i, {"reference": torch.rand(3, size, size, generator=g) * 2 - 1})
            for i in range(n)]  # fmt: skip


def _encoder_dir(tmp_path, dim):
    tower = CLIPVisionTower(VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=16, patch_size=4))  # fmt: skip
    return ReferenceEncoder(tower, dim).save_pretrained(tmp_path / "enc")


def _config(tmp_path, name, **kw):
    base = dict(model="tiny", model_overrides={"max_height_patches": 1, "max_width_patches": 1}, global_batch=2,
                steps=3, log_every=0, lr=1e-2, group_ratio={"people": 1}, run_dir=str(tmp_path / name), device="cpu")  # fmt: skip
    return TrainConfig(**(base | kw))


def test_trainer_reference_hook_trains_the_projector_freezes_the_tower_and_exports(tmp_path):
    from moviegen.models.transformer import TransformerConfig

    dim = TransformerConfig.preset("tiny").dim
    enc = _encoder_dir(tmp_path, dim)
    result = train(_config(tmp_path, "frozen", reference_encoder=str(enc)), log=lambda m: None,
                   cache=MemoryCache(_items(4)))  # fmt: skip
    exported = ReferenceEncoder.from_pretrained(result.export_dir / "reference")
    fresh = ReferenceEncoder.from_pretrained(enc)
    for k, v in fresh.tower.state_dict().items():
        assert torch.equal(exported.tower.state_dict()[k], v)
    assert exported.projection[0].weight.abs().sum() > 0
    # stage 3: from the export (its reference/ folder), tower unfrozen
    result = train(_config(tmp_path, "unfrozen", init_from=str(result.export_dir), train_vision_tower=True),
                   log=lambda m: None, cache=MemoryCache(_items(4)))  # fmt: skip
    again = ReferenceEncoder.from_pretrained(result.export_dir / "reference")
    assert any(not torch.equal(again.tower.state_dict()[k], v) for k, v in exported.tower.state_dict().items())


def test_reference_tokens_change_the_loss_and_resume_is_exact(tmp_path):
    from moviegen.models.transformer import TransformerConfig

    dim = TransformerConfig.preset("tiny").dim
    enc = _encoder_dir(tmp_path, dim)
    losses = {}
    for name, steps, resume in (("full", 4, False), ("cut", 2, False), ("cut", 4, True)):
        records = []
        train(_config(tmp_path, name, reference_encoder=str(enc), steps=steps, ckpt_every=2, train_vision_tower=True),
              resume=resume, log=lambda m: None, cache=MemoryCache(_items(4)), on_step=lambda r: records.append(r["loss"]))  # fmt: skip
        losses.setdefault(name, []).extend(records)
    assert losses["full"] == pytest.approx(losses["cut"], rel=1e-6)
    trainer = Trainer(_config(tmp_path, "missing"), cache=MemoryCache(_items(2)), log=lambda m: None)
    try:
        with pytest.raises(MovieGenError, match="no reference_encoder"):
            trainer.train_step()
    finally:
        trainer.close()
