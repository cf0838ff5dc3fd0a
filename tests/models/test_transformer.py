import dataclasses
import json

import pytest
import torch

from moviegen.errors import MovieGenError
from moviegen.flow import flow_matching_loss
from moviegen.models.transformer import (
    MovieGenTransformer,
    TransformerConfig,
    count_parameters,
    latent_shape,
    num_tokens,
)

DIM = 64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model's ops are far too small for intra-op threads: they only add overhead and contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> TransformerConfig:
    return TransformerConfig.preset("tiny", **overrides)


@torch.no_grad()
def randomize(model: MovieGenTransformer, seed: int = 0) -> MovieGenTransformer:
    """Give every parameter (the zero-initialised ones too) random values, so outputs are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def random_model(seed: int = 0, **overrides) -> MovieGenTransformer:
    torch.manual_seed(seed)
    return randomize(MovieGenTransformer(tiny(**overrides)), seed).eval()


def inputs(b=2, t=2, h=8, w=8, length=5, seed=0, channels=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, channels, t, h, w, generator=g)
    ts = torch.rand(b, generator=g)
    text = torch.randn(b, length, DIM, generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    return x, ts, text, mask


# --- config --------------------------------------------------------------------------------------------


def test_presets_and_defaults():
    assert TransformerConfig() == tiny()
    c30 = TransformerConfig.preset("30b")
    assert (c30.num_layers, c30.dim, c30.ffn_dim, c30.num_heads, c30.head_dim) == (48, 6144, 16384, 48, 128)
    c5 = TransformerConfig.preset("5b")
    assert (c5.num_layers, c5.dim, c5.ffn_dim, c5.num_heads) == (32, 3072, 8192, 24)
    for c in (c5, c30):
        assert c.max_latent_frames == 32 and c.max_height_patches >= 64 and c.max_width_patches >= 64
    assert c30.patch_size == (1, 2, 2) and c30.in_channels == c30.out_channels == 16


def test_config_validation():
    with pytest.raises(MovieGenError, match="unknown config key"):
        TransformerConfig.from_dict({"dim": 64, "bogus": 1})
    with pytest.raises(MovieGenError, match="unknown"):
        TransformerConfig.preset("nope")
    with pytest.raises(MovieGenError, match="divisible"):
        tiny(num_heads=5)
    with pytest.raises(MovieGenError, match="num_layers"):
        tiny(num_layers=0)
    with pytest.raises(MovieGenError, match="patch_size"):
        tiny(patch_size=(1, 2))
    with pytest.raises(MovieGenError, match="num_tasks"):
        tiny(num_tasks=-1)
    with pytest.raises(MovieGenError, match="integer"):
        TransformerConfig.from_dict({"dim": 64.5})


def test_config_json_round_trip(tmp_path):
    c = TransformerConfig.preset("30b", num_tasks=3, qk_norm=True)
    path = tmp_path / "c.json"
    path.write_text(c.to_json())
    assert TransformerConfig.from_json(path) == c
    assert json.loads(c.to_json())["patch_size"] == [1, 2, 2]


# --- sizes ---------------------------------------------------------------------------------------------


def test_parameter_counts_on_meta():
    counts = {}
    for name in ("tiny", "5b", "30b"):
        with torch.device("meta"):
            model = MovieGenTransformer(TransformerConfig.preset(name))
        assert all(p.is_meta for p in model.parameters())
        counts[name] = count_parameters(model)
    print(f"parameters: {counts}")
    assert abs(counts["30b"] - 30e9) / 30e9 < 0.03
    d, f, layers = 6144, 16384, 48
    assert counts["30b"] > layers * (8 * d * d + 3 * d * f)  # attention + cross-attention + SwiGLU
    assert 4.5e9 < counts["5b"] < 5.5e9
    assert counts["tiny"] < 500_000


def test_latent_shape_and_tokens():
    assert latent_shape(256, 576, 1008) == (16, 32, 72, 126)
    assert latent_shape(1, 64, 64) == (16, 1, 8, 8)
    assert latent_shape(9, 64, 64)[1] == 2
    c30 = TransformerConfig.preset("30b")
    assert num_tokens(c30, latent_shape(256, 576, 1008)) == 72576
    assert num_tokens(c30, (32, 72, 126)) == 72576
    with pytest.raises(MovieGenError):
        latent_shape(16, 100, 64)
    with pytest.raises(MovieGenError):
        latent_shape(0, 64, 64)
    with pytest.raises(MovieGenError):
        num_tokens(c30, (16, 1, 7, 8))


# --- forward -------------------------------------------------------------------------------------------


def test_fresh_model_outputs_exactly_zero():
    torch.manual_seed(0)
    model = MovieGenTransformer(tiny())
    x, t, text, mask = inputs()
    out = model(x, t, text, mask)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (8, 16, 16), (2, 4, 12), (1, 2, 2)])
def test_output_shapes(shape):
    model = random_model()
    x, t, text, mask = inputs(t=shape[0], h=shape[1], w=shape[2])
    out = model(x, t, text, mask)
    assert out.shape == x.shape
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_in_channels_differ_from_out_channels():
    model = random_model(in_channels=32, out_channels=16)
    x, t, text, mask = inputs(channels=32)
    assert model(x, t, text, mask).shape == (2, 16, 2, 8, 8)


def test_shape_errors():
    model = random_model()
    _, t, text, mask = inputs()
    with pytest.raises(MovieGenError, match="divisible"):
        model(torch.randn(2, 16, 2, 7, 8), t, text, mask)
    with pytest.raises(MovieGenError, match="positional tables"):
        model(torch.randn(2, 16, 9, 8, 8), t, text, mask)
    with pytest.raises(MovieGenError, match="positional tables"):
        model(torch.randn(2, 16, 1, 8, 18), t, text, mask)
    with pytest.raises(MovieGenError, match="latent must have shape"):
        model(torch.randn(2, 8, 1, 8, 8), t, text, mask)
    with pytest.raises(MovieGenError, match="text must have shape"):
        model(torch.randn(2, 16, 1, 8, 8), t, torch.randn(2, 5, 32), mask)
    with pytest.raises(MovieGenError, match="text_mask"):
        model(torch.randn(2, 16, 1, 8, 8), t, text, mask.float())
    with pytest.raises(MovieGenError, match="t must have shape"):
        model(torch.randn(2, 16, 1, 8, 8), t[:1], text, mask)


def test_padded_text_tokens_do_not_change_output():
    model = random_model()
    x, t, text, mask = inputs(length=5)
    mask[1, 3:] = False  # sample 1 is already partly padded
    ref = model(x, t, text, mask)
    pad = torch.randn(2, 7, DIM) * 10
    out = model(x, t, torch.cat([text, pad], 1), torch.cat([mask, torch.zeros(2, 7, dtype=torch.bool)], 1))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    # the padded positions of sample 1 are ignored whatever their values
    text2 = text.clone()
    text2[1, 3:] = torch.randn(2, DIM) * 10
    torch.testing.assert_close(model(x, t, text2, mask), ref, atol=1e-6, rtol=0)
    assert not torch.allclose(model(x, t, text2, torch.ones_like(mask)), ref)


def test_all_masked_text_is_finite_and_means_no_text():
    model = random_model()
    x, t, text, mask = inputs()
    mask[0] = False
    out = model(x, t, text, mask)
    assert torch.isfinite(out).all()
    # the null-text sample equals a run with no text tokens at all (cross-attention contributes zero) ...
    no_text = model(x[:1], t[:1], text[:1, :0], mask[:1, :0])
    torch.testing.assert_close(out[:1], no_text, atol=1e-6, rtol=0)
    # ... and does not depend on the (masked) token values; the other sample is unaffected
    other = model(x, t, torch.randn_like(text), mask)
    torch.testing.assert_close(other[:1], out[:1], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1:], model(x[1:], t[1:], text[1:], mask[1:]), atol=1e-6, rtol=0)
    assert not torch.allclose(out[1:], model(x[1:], t[1:], text[1:, :0], mask[1:, :0]))


def test_text_mask_none_means_all_tokens():
    model = random_model()
    x, t, text, mask = inputs()
    torch.testing.assert_close(model(x, t, text), model(x, t, text, mask))


def test_timestep_changes_output():
    model = random_model()
    x, t, text, mask = inputs()
    assert not torch.allclose(model(x, t, text, mask), model(x, 1 - t, text, mask))


def test_task_embedding():
    x, t, text, mask = inputs()
    task = torch.tensor([0, 2])
    fresh = MovieGenTransformer(tiny(num_tasks=3))
    assert fresh.task_embed.weight.shape == (3, DIM)
    assert torch.count_nonzero(fresh.task_embed.weight) == 0  # a new task embedding starts as a no-op
    model = random_model(num_tasks=3)
    out = model(x, t, text, mask, task=task)
    assert out.shape == x.shape
    assert not torch.allclose(out, model(x, t, text, mask, task=torch.tensor([1, 1])))
    assert not torch.allclose(out, model(x, t, text, mask))
    with pytest.raises(MovieGenError, match="task"):
        random_model()(x, t, text, mask, task=task)
    with pytest.raises(MovieGenError, match="task"):
        model(x, t, text, mask, task=task[:1])


def test_qk_norm():
    model = random_model(qk_norm=True)
    assert any("q_norm.weight" in n for n, _ in model.named_parameters())
    x, t, text, mask = inputs()
    assert torch.isfinite(model(x, t, text, mask)).all()


def test_positions_added_at_every_layer():
    """Each block gets the positions and adds them to its input: block(h, pos) == block(h + pos, 0) and
    differs from block(h, 0). A block that ignored (or did anything but add) them fails here."""
    model = random_model(num_layers=3)
    x, t, text, mask = inputs()
    calls = []
    handles = [b.register_forward_pre_hook(lambda m, args: calls.append((m, args))) for b in model.blocks]
    model(x, t, text, mask)
    for handle in handles:
        handle.remove()
    assert [m for m, _ in calls] == list(model.blocks)
    expected = model.positions(2, 4, 4)
    with torch.no_grad():
        for block, (h, pos, *rest) in calls:
            torch.testing.assert_close(pos, expected)
            zero = torch.zeros_like(pos)
            out = block(h, pos, *rest)
            torch.testing.assert_close(out, block(h + pos, zero, *rest))
            assert (out - block(h, zero, *rest)).abs().max() > 1e-4


# --- expand_positions -----------------------------------------------------------------------------------


def test_expand_positions_shapes_and_config(tmp_path):
    model = random_model(max_latent_frames=1, max_height_patches=4, max_width_patches=4)
    old_t, old_h = model.pos_t.detach().clone(), model.pos_h.detach().clone()
    model.expand_positions(max_latent_frames=8, max_height_patches=8, max_width_patches=12)
    assert model.pos_t.shape == (8, DIM) and model.pos_h.shape == (8, DIM) and model.pos_w.shape == (12, DIM)
    c = model.config
    assert (c.max_latent_frames, c.max_height_patches, c.max_width_patches) == (8, 8, 12)
    assert set(dict(model.named_parameters())) >= {"pos_t", "pos_h", "pos_w"}
    # text-to-image → video: the single temporal row is copied to every frame
    torch.testing.assert_close(model.pos_t.detach(), old_t.expand(8, -1))
    # spatial tables are linearly resampled: each new row is a convex mix of neighbouring old rows
    new_h = model.pos_h.detach()
    torch.testing.assert_close(new_h[0], old_h[0])
    torch.testing.assert_close(new_h[3], 0.75 * old_h[1] + 0.25 * old_h[2])
    torch.testing.assert_close(new_h[4], 0.75 * old_h[2] + 0.25 * old_h[1])

    x, t, text, mask = inputs(t=8, h=16, w=24)
    out = model(x, t, text, mask)
    model.save_pretrained(tmp_path / "m")
    loaded = MovieGenTransformer.from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(x, t, text, mask), out, atol=0, rtol=0)


def test_expand_positions_linear_ramp():
    model = MovieGenTransformer(tiny(max_height_patches=4))
    with torch.no_grad():
        model.pos_h.copy_(torch.arange(4.0)[:, None].expand(4, DIM))
    model.expand_positions(max_height_patches=8)
    # half-pixel-centred resampling of a ramp: new row j sits at old position (j + 0.5) / 2 - 0.5, clamped
    expected = ((torch.arange(8.0) + 0.5) / 2 - 0.5).clamp(0, 3)
    torch.testing.assert_close(model.pos_h.detach()[:, 0], expected)


def test_expand_temporal_keeps_rows_and_outputs():
    model = random_model(max_latent_frames=4)
    x, t, text, mask = inputs(t=3)
    before = model(x, t, text, mask)
    old = model.pos_t.detach().clone()
    model.expand_positions(max_latent_frames=8)
    torch.testing.assert_close(model.pos_t.detach()[:4], old)
    torch.testing.assert_close(model.pos_t.detach()[4:], old[-1:].expand(4, -1))
    torch.testing.assert_close(model(x, t, text, mask), before, atol=0, rtol=0)
    assert model.config.max_height_patches == 8  # untouched


def test_expand_positions_cannot_shrink():
    model = random_model()
    with pytest.raises(MovieGenError, match="grow"):
        model.expand_positions(max_width_patches=4)


def test_save_from_pretrained_round_trip(tmp_path):
    model = random_model(num_tasks=2, qk_norm=True)
    path = model.save_pretrained(tmp_path / "ckpt")
    loaded = MovieGenTransformer.from_pretrained(path).eval()
    x, t, text, mask = inputs()
    task = torch.tensor([1, 0])
    torch.testing.assert_close(loaded(x, t, text, mask, task=task), model(x, t, text, mask, task=task))


# --- training -------------------------------------------------------------------------------------------


def test_overfit_fixed_batch():
    torch.manual_seed(0)
    model = MovieGenTransformer(tiny())
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(4, 16, 2, 8, 8, generator=g)
    text = torch.randn(4, 6, DIM, generator=g)
    mask = torch.ones(4, 6, dtype=torch.bool)
    t = torch.rand(4, generator=g)
    noise = torch.randn(x1.shape, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(40):
        loss = flow_matching_loss(model, x1, text, mask, t=t, noise=noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"overfit loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert losses[0] == pytest.approx(((x1 - (1 - 1e-5) * noise) ** 2).mean().item(), rel=1e-5)
    assert losses[-1] < 0.5 * losses[0]


def test_gradient_checkpointing_matches():
    x, t, text, mask = inputs()
    mask[1, 2:] = False
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = randomize(MovieGenTransformer(tiny(gradient_checkpointing=ckpt))).train()
        loss = flow_matching_loss(model, x, text, mask, t=t, noise=torch.ones_like(x))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l0, g0), (l1, g1) = results
    torch.testing.assert_close(l0, l1)
    assert g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g0[name], g1[name], msg=name)


def test_gradient_checkpointing_can_be_toggled():
    model = random_model()
    model.config = dataclasses.replace(model.config, gradient_checkpointing=True)
    model.train()
    x, t, text, mask = inputs()
    model(x, t, text, mask).square().mean().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
