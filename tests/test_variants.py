"""The shared machinery of the post-trained cast: variants from a base, one sampler with conditioning and
MultiDiffusion windows, named tensors in caches, and the one Trainer training a widened variant."""

from __future__ import annotations

import json

import pytest
import torch

from moviegen import flow
from moviegen.data.cache import CacheItem, LatentCache, MemoryCache, collate_tensors, write_cache
from moviegen.errors import MovieGenError
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig
from moviegen.train.loop import TrainConfig, train


def trained_like(seed: int = 0) -> MovieGenTransformer:
    """A tiny backbone with every weight non-zero (a fresh one outputs exactly zero)."""
    torch.manual_seed(seed)
    model = MovieGenTransformer(TransformerConfig.preset("tiny"))
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    return model.eval()


def test_from_base_reproduces_the_base_velocity_exactly(tmp_path):
    base = trained_like()
    x, cond = torch.randn(2, 16, 2, 8, 8), torch.randn(2, 16, 2, 8, 8)
    t, text = torch.rand(2), torch.randn(2, 5, 64)
    expected = base(x, t, text)
    variant = MovieGenTransformer.from_base(base, in_channels=32, num_tasks=3)
    assert variant.config.in_channels == 32 and variant.config.num_tasks == 3
    assert torch.equal(variant(torch.cat([x, cond], 1), t, text, task=torch.tensor([0, 2])), expected)
    # from a saved folder (a transformer folder, or a pipeline folder's transformer/) as well
    base.save_pretrained(tmp_path / "pipe" / "transformer")
    again = MovieGenTransformer.from_base(tmp_path / "pipe", in_channels=32)
    assert torch.equal(again(torch.cat([x, cond], 1), t, text), expected)
    # the new channels really are inputs: training can move them
    assert variant.patch_embed.weight[:, 16:].abs().sum() == 0 and variant.patch_embed.weight.requires_grad
    with pytest.raises(MovieGenError, match="in_channels"):
        MovieGenTransformer.from_base(base, in_channels=8)
    with pytest.raises(MovieGenError, match="num_tasks"):
        MovieGenTransformer.from_base(variant, num_tasks=1)


def test_sample_concatenates_the_condition_and_appends_context_tokens():
    model = MovieGenTransformer.from_base(trained_like(), in_channels=32)
    noise, cond = torch.randn(1, 16, 2, 8, 8), torch.randn(1, 16, 2, 8, 8)
    text, mask = torch.randn(1, 4, 64), torch.ones(1, 4, dtype=torch.bool)
    ctx, ctx_mask = torch.randn(1, 3, 64), torch.ones(1, 3, dtype=torch.bool)
    times = flow.linear(3)
    out = flow.sample(model, noise, text, mask, times, 2.0, cond=cond, context=(ctx, ctx_mask))

    # the same Euler/CFG loop written out by hand
    x = noise
    for i in range(3):
        t = torch.full((1,), float(times[i]))
        inp = torch.cat([x, cond], 1)
        both = torch.cat([text, ctx], 1)
        u_c = model(inp, t, both, torch.cat([mask, ctx_mask], 1))
        u_u = model(inp, t, both, torch.cat([torch.zeros_like(mask), ctx_mask], 1))
        x = x + float(times[i + 1] - times[i]) * (u_u + 2.0 * (u_c - u_u))
    assert torch.allclose(out, x, atol=1e-5)
    with pytest.raises(MovieGenError, match="conditioning latent"):
        flow.sample(model, noise, text, mask, times, cond=cond[:, :, :1])


def test_window_starts_cover_every_frame_and_end_aligned():
    assert flow.window_starts(32, 14, 4) == [0, 10, 18]
    assert flow.window_starts(5, 14, 4) == [0]
    assert flow.window_starts(8, 2, 0) == [0, 2, 4, 6]
    for length, window, overlap in ((32, 14, 4), (9, 4, 1), (7, 3, 2)):
        starts = flow.window_starts(length, window, overlap)
        covered = {f for s in starts for f in range(s, s + window)}
        assert covered == set(range(length)) and starts[-1] + window == length
    with pytest.raises(MovieGenError, match="overlap"):
        flow.window_starts(10, 4, 4)


def test_multidiffusion_averages_overlapping_window_velocities():
    model = MovieGenTransformer.from_base(trained_like(), in_channels=32)
    model.expand_positions(max_latent_frames=8)
    noise, cond = torch.randn(1, 16, 7, 8, 8), torch.randn(1, 16, 7, 8, 8)
    text, mask = torch.randn(1, 4, 64), torch.ones(1, 4, dtype=torch.bool)
    times = flow.linear(2)
    out = flow.sample(model, noise, text, mask, times, 1.0, cond=cond, window=3, overlap=1)
    x = noise
    for i in range(2):
        t = torch.full((1,), float(times[i]))
        total, count = torch.zeros_like(x), torch.zeros(7)
        for s in (0, 2, 4):
            total[:, :, s : s + 3] += model(torch.cat([x, cond], 1)[:, :, s : s + 3], t, text, mask)
            count[s : s + 3] += 1
        x = x + float(times[i + 1] - times[i]) * total / count.view(1, 1, -1, 1, 1)
    assert torch.allclose(out, x, atol=1e-5)
    # overlap 0: independent windows side by side, each sampled as a clip of its own
    noise8, cond8 = torch.randn(1, 16, 8, 8, 8), torch.randn(1, 16, 8, 8, 8)
    split = flow.sample(model, noise8, text, mask, times, 1.0, cond=cond8, window=4, overlap=0)
    for s in (0, 4):
        alone = flow.sample(
            model, noise8[:, :, s : s + 4], text, mask, times, 1.0, cond=cond8[:, :, s : s + 4]
        )
        assert torch.allclose(split[:, :, s : s + 4], alone, atol=1e-6)
    # a window that covers the clip is plain sampling
    whole = flow.sample(model, noise, text, mask, times, 1.0, cond=cond)
    assert torch.equal(flow.sample(model, noise, text, mask, times, 1.0, cond=cond, window=7), whole)


def test_flow_matching_loss_feeds_the_condition():
    model = MovieGenTransformer.from_base(trained_like(), in_channels=32)
    x1, cond = torch.randn(2, 16, 2, 8, 8), torch.randn(2, 16, 2, 8, 8)
    text, t, noise = torch.randn(2, 4, 64), torch.rand(2), torch.randn(2, 16, 2, 8, 8)
    a = flow.flow_matching_loss(model, x1, text, None, t=t, noise=noise, cond=cond)
    with torch.no_grad():
        model.patch_embed.weight[:, 16:] = 0.1
    b = flow.flow_matching_loss(model, x1, text, None, t=t, noise=noise, cond=cond)
    assert a.item() != b.item()


def items(n: int, cond: bool = True) -> list[CacheItem]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        text = [(torch.randn(5, 384, generator=g), torch.tensor([True] * 3 + [False] * 2))]
        tensors = {"cond": torch.randn(16, 2, 8, 8, generator=g)} if cond else {}
        out.append(CacheItem(torch.randn(16, 2, 8, 8, generator=g), text, f"clip {i}", "video", i, tensors))
    return out


def test_caches_hold_named_tensors(tmp_path):
    source = items(5)
    path = write_cache(source, tmp_path / "cache", text_config={"kinds": ["minilm"]}, dtype=torch.float32)
    cache = LatentCache(path)
    assert len(cache) == 5 and json.loads((path / "manifest.json").read_text())["items"][0]["tensors"] == [
        "cond"
    ]
    got = cache.get(3)
    assert torch.equal(got.tensors["cond"], source[3].tensors["cond"]) and got.text[0][0].shape == (3, 384)
    assert collate_tensors([cache.get(0), cache.get(1)])["cond"].shape == (2, 16, 2, 8, 8)
    with pytest.raises(MovieGenError, match="different named tensors"):
        collate_tensors([cache.get(0), items(1, cond=False)[0]])
    with pytest.raises(MovieGenError, match="not a usable tensor name"):
        bad = items(1)
        bad[0].tensors = {"latent": bad[0].latent}
        write_cache(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    memory = MemoryCache(source)
    assert memory.buckets() == ["video"] * 5 and memory.get(2) is source[2]


def test_trainer_trains_a_widened_variant_from_a_cache_with_a_condition(tmp_path):
    base = trained_like()
    base.save_pretrained(tmp_path / "base")
    cache = write_cache(items(8), tmp_path / "cache", dtype=torch.float32)
    config = TrainConfig(init_from=str(tmp_path / "base"), model_overrides={"in_channels": 32},
                         cache=str(cache), global_batch=4, steps=3, lr=1e-3, log_every=0,
                         run_dir=str(tmp_path / "run"), device="cpu", schedule="constant",
                         t_location=-0.5, frame_diff_weight=1.0)  # fmt: skip
    losses = []
    result = train(config, log=lambda m: None, on_step=lambda r: losses.append(r["loss"]))
    assert result.steps == 3 and len(losses) == 3
    trained = MovieGenTransformer.from_pretrained(result.export_dir / "transformer")
    assert trained.config.in_channels == 32
    assert trained.patch_embed.weight[:, 16:].abs().sum() > 0  # the conditioning channels learned


def test_upsampler_presets():
    with torch.device("meta"):
        big = MovieGenTransformer(TransformerConfig.preset("upsampler-7b"))
    n = sum(p.numel() for p in big.parameters())
    assert 6.5e9 < n < 7.5e9 and big.config.in_channels == 2 * big.config.out_channels == 32
    # 1088×1920 px (1080p) in one 14-latent-frame window fits the tables
    assert (big.config.max_height_patches * 16, big.config.max_width_patches * 16) == (1088, 1920)
    assert big.config.max_latent_frames == 14
    tiny = MovieGenTransformer(TransformerConfig.preset("upsampler-tiny"))
    out = tiny(torch.randn(1, 32, 2, 16, 24), torch.rand(1), torch.randn(1, 3, 64))
    assert out.shape == (1, 16, 2, 16, 24)  # not only squares


def test_text_to_video_pipeline_refuses_a_conditioned_variant():
    from moviegen.pipeline import MovieGenPipeline

    pipe = MovieGenPipeline.from_presets()
    variant = MovieGenTransformer.from_base(pipe.transformer, in_channels=32)
    with pytest.raises(MovieGenError, match="conditioned variant"):
        MovieGenPipeline(pipe.text, variant, pipe.tae)
