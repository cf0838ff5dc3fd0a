import pytest
import torch

from moviegen import flow
from moviegen.errors import MovieGenError
from moviegen.flow import (
    SIGMA_MIN,
    drop_text,
    flow_matching_loss,
    interpolate,
    linear,
    linear_quadratic_schedule,
    sample,
    sample_timesteps,
    velocity_target,
)
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model's ops are far too small for intra-op threads: they only add overhead and contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- path and loss --------------------------------------------------------------------------------------


def test_interpolate_endpoints_and_velocity():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(interpolate(x0, x1, torch.zeros(2)), x0)
    torch.testing.assert_close(interpolate(x0, x1, torch.ones(2)), x1 + SIGMA_MIN * x0)
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    expected = t.view(2, 1, 1) * x1 + (1 - (1 - SIGMA_MIN) * t.view(2, 1, 1)) * x0
    torch.testing.assert_close(interpolate(x0, x1, t), expected)
    # the target is the time derivative of the path
    eps = 1e-4
    fd = (interpolate(x0, x1, t + eps) - interpolate(x0, x1, t - eps)) / (2 * eps)
    torch.testing.assert_close(fd, velocity_target(x0, x1))
    torch.testing.assert_close(interpolate(x0, x1, 0.5), interpolate(x0, x1, torch.full((2,), 0.5)))
    with pytest.raises(MovieGenError):
        interpolate(x0, x1, torch.zeros(3))


def test_sample_timesteps_logit_normal():
    t = sample_timesteps(20000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (20000,) and (t > 0).all() and (t < 1).all()
    logit = torch.logit(t.double())
    assert abs(logit.mean().item()) < 0.03 and abs(logit.std().item() - 1) < 0.03
    a = sample_timesteps(5, generator=torch.Generator().manual_seed(3))
    b = sample_timesteps(5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_flow_matching_loss_values():
    x1 = torch.randn(3, 4, 2, 2, 2)
    text, mask = torch.randn(3, 2, 8), torch.ones(3, 2, dtype=torch.bool)
    noise = torch.randn_like(x1)
    t = torch.tensor([0.1, 0.5, 0.9])
    seen = {}

    def zero_model(x, tt, txt, msk, **kw):
        seen.update(x=x, t=tt, kw=kw)
        return torch.zeros_like(x)

    loss = flow_matching_loss(zero_model, x1, text, mask, t=t, noise=noise, task=torch.tensor([1, 2, 3]))
    assert loss.ndim == 0
    torch.testing.assert_close(loss, velocity_target(noise, x1).square().mean())
    torch.testing.assert_close(seen["x"], interpolate(noise, x1, t))
    assert seen["kw"]["task"].tolist() == [1, 2, 3]

    def oracle(x, tt, txt, msk):
        return velocity_target(noise, x1)

    assert flow_matching_loss(oracle, x1, text, mask, t=t, noise=noise).item() == 0.0
    # drawn t and noise are reproducible with a generator
    a = flow_matching_loss(zero_model, x1, text, mask, generator=torch.Generator().manual_seed(7))
    b = flow_matching_loss(zero_model, x1, text, mask, generator=torch.Generator().manual_seed(7))
    assert a.item() == b.item()
    with pytest.raises(MovieGenError):
        flow_matching_loss(zero_model, x1, text, mask, noise=noise[:2])


def test_drop_text():
    mask = torch.ones(1000, 5, dtype=torch.bool)
    mask[:, 4] = False
    assert torch.equal(drop_text(mask, 0.0), mask)
    assert not drop_text(mask, 1.0).any()
    dropped = drop_text(mask, 0.3, generator=torch.Generator().manual_seed(0))
    rows_kept = dropped.any(1)
    assert torch.equal(dropped[rows_kept], mask[rows_kept])  # rows are dropped whole or kept whole
    assert 0.25 < (~rows_kept).float().mean().item() < 0.35
    with pytest.raises(MovieGenError):
        drop_text(mask, 1.5)


# --- schedules ------------------------------------------------------------------------------------------


def test_linear_schedule():
    s = linear(4)
    assert s.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(MovieGenError):
        linear(0)


def test_linear_quadratic_schedule_paper_values():
    s = linear_quadratic_schedule(50, 250)
    assert s.shape == (51,)
    assert s[:26].tolist() == pytest.approx([i / 250 for i in range(26)], abs=1e-12)
    assert s[25].item() == pytest.approx(0.1, abs=1e-12)
    assert s[26:29].tolist() == pytest.approx([0.10528, 0.11312, 0.12352], abs=1e-9)
    assert s[-3:].tolist() == pytest.approx([0.86912, 0.93328, 1.0], abs=1e-9)
    assert s[0].item() == 0.0 and s[-1].item() == 1.0
    steps = s.diff()
    assert (steps > 0).all()
    tail = steps[24:]  # from the last linear step on
    assert (tail.diff() >= -1e-12).all()
    # step sizes grow linearly from 1/N after the join, reaching ≈ 0.0667 at the end
    assert tail.diff()[1:].tolist() == pytest.approx([2 * 0.00128] * 24, abs=1e-9)
    assert steps[-1].item() == pytest.approx(0.06672, abs=1e-9)


@pytest.mark.parametrize("steps,emulated", [(1, 1), (2, 10), (3, 10), (7, 100), (20, 1000), (50, 50)])
def test_linear_quadratic_schedule_general(steps, emulated):
    s = linear_quadratic_schedule(steps, emulated)
    assert s.shape == (steps + 1,)
    assert s[0].item() == 0.0 and s[-1].item() == 1.0
    assert (s.diff() > 0).all()
    k = steps // 2
    assert s[: k + 1].tolist() == pytest.approx([i / emulated for i in range(k + 1)], abs=1e-12)
    assert (s.diff()[max(k - 1, 0) :].diff() >= -1e-12).all()
    if steps == emulated:
        torch.testing.assert_close(s, linear(steps))


def test_linear_quadratic_schedule_errors():
    with pytest.raises(MovieGenError):
        linear_quadratic_schedule(0, 250)
    with pytest.raises(MovieGenError, match="emulated_steps"):
        linear_quadratic_schedule(50, 49)


# --- sampler --------------------------------------------------------------------------------------------


class TextVelocity(torch.nn.Module):
    """A toy field: velocity a where the sample has text, b where its text is null; counts calls."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, text, mask, task=None):
        self.calls.append((x.shape[0], None if task is None else task.clone()))
        has = mask.any(1).view(-1, *[1] * (x.ndim - 1)).to(x.dtype)
        return has * 2.0 + (1 - has) * 0.5 + 0 * x


def test_euler_constant_field_and_cfg():
    model = TextVelocity()
    noise = torch.randn(2, 4, 1, 2, 2)
    text, mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    times = linear_quadratic_schedule(10, 40)
    out = sample(model, noise, text, mask, times, guidance_scale=3.0, task=torch.tensor([0, 1]))
    # u = 0.5 + 3·(2 − 0.5) = 5 integrated over [0, 1]
    torch.testing.assert_close(out, noise + 5.0)
    assert len(model.calls) == 10 and all(b == 4 for b, _ in model.calls)
    assert model.calls[0][1].tolist() == [0, 1, 0, 1]  # per-sample kwargs repeated for the null branch
    model.calls.clear()
    out1 = sample(model, noise, text, mask, times, guidance_scale=1.0)
    torch.testing.assert_close(out1, noise + 2.0)
    assert len(model.calls) == 10 and all(b == 2 for b, _ in model.calls)


def test_null_text_mask_override():
    noise = torch.zeros(1, 1, 1, 1, 1)
    text, mask = torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.bool)
    # a "null" mask that still has text makes both branches conditional: guidance has no effect
    out = sample(TextVelocity(), noise, text, mask, linear(4), guidance_scale=7.5, null_text_mask=mask)
    torch.testing.assert_close(out, noise + 2.0)


def tiny_model():
    torch.manual_seed(0)
    model = MovieGenTransformer(TransformerConfig.preset("tiny"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def test_guidance_one_equals_conditional_euler():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(2, 16, 2, 8, 8, generator=g)
    text, mask = torch.randn(2, 4, 64, generator=g), torch.ones(2, 4, dtype=torch.bool)
    mask[1, 2:] = False
    times = linear_quadratic_schedule(6, 20)
    out = sample(model, noise, text, mask, times, guidance_scale=1.0)
    x = noise
    with torch.no_grad():
        for i in range(6):
            x = x + (times[i + 1] - times[i]).item() * model(x, torch.full((2,), times[i].item()), text, mask)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)
    guided = sample(model, noise, text, mask, times, guidance_scale=7.5)
    assert not torch.allclose(guided, out)


def test_sampler_deterministic_and_callback():
    model = tiny_model()
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(1, 16, 1, 8, 8, generator=g)
    text, mask = torch.randn(1, 4, 64, generator=g), torch.ones(1, 4, dtype=torch.bool)
    seen = []
    a = sample(model, noise, text, mask, linear(5), callback=lambda i, n: seen.append((i, n)))
    b = sample(model, noise, text, mask, linear(5))
    assert seen == [(i, 5) for i in range(5)]
    assert torch.equal(a, b)
    assert torch.isfinite(a).all() and not a.requires_grad
    with pytest.raises(MovieGenError):
        sample(model, noise, text, mask, torch.tensor([0.0]))


def test_timestep_location_moves_mass_towards_noise():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(20000, generator=g, location=-0.8)
    logit = torch.logit(t.double())
    assert abs(logit.mean().item() + 0.8) < 0.03 and abs(logit.std().item() - 1) < 0.03
    assert (t < 0.2).float().mean() > 2.5 * (sample_timesteps(20000, generator=g) < 0.2).float().mean()


def test_frame_difference_term_is_the_weighted_mse_of_consecutive_error_differences():
    g = torch.Generator().manual_seed(1)
    x1, noise = torch.randn(2, 3, 4, 2, 2, generator=g), torch.randn(2, 3, 4, 2, 2, generator=g)
    text, mask = torch.randn(2, 1, 8), torch.ones(2, 1, dtype=torch.bool)
    t = torch.tensor([0.2, 0.7])
    guess = torch.randn(2, 3, 4, 2, 2, generator=g)

    def model(x, tt, txt, msk):
        return guess

    error = guess - velocity_target(noise, x1)
    plain = flow_matching_loss(model, x1, text, mask, t=t, noise=noise)
    torch.testing.assert_close(plain, error.square().mean())
    weighted = flow_matching_loss(model, x1, text, mask, t=t, noise=noise, frame_diff_weight=2.0)
    torch.testing.assert_close(weighted, plain + 2.0 * (error[:, :, 1:] - error[:, :, :-1]).square().mean())
    # an error that is the same in every frame (no motion error) costs nothing extra
    static = velocity_target(noise, x1) + torch.randn(2, 3, 1, 2, 2, generator=g)
    a = flow_matching_loss(lambda *_: static, x1, text, mask, t=t, noise=noise)
    b = flow_matching_loss(lambda *_: static, x1, text, mask, t=t, noise=noise, frame_diff_weight=5.0)
    torch.testing.assert_close(a, b)
    # images (one latent frame) have no frame difference
    image = x1[:, :, :1]
    c = flow_matching_loss(lambda *_: guess[:, :, :1], image, text, mask, t=t, noise=noise[:, :, :1])
    d = flow_matching_loss(
        lambda *_: guess[:, :, :1], image, text, mask, t=t, noise=noise[:, :, :1], frame_diff_weight=3.0
    )
    torch.testing.assert_close(c, d)


class CondVelocity(torch.nn.Module):
    """u = mean of the conditioning channels (after the latent's), for every latent channel."""

    def forward(self, x, t, text, text_mask=None):
        return x[:, 1:].mean(dim=1, keepdim=True).expand(-1, 1, *x.shape[2:]) * torch.ones_like(x[:, :1])


def test_null_cond_guides_towards_the_condition():
    noise = torch.zeros(1, 1, 4, 1, 1)
    text, mask = torch.randn(1, 2, 8), torch.ones(1, 2, dtype=torch.bool)
    cond, null = torch.full((1, 1, 4, 1, 1), 2.0), torch.zeros(1, 1, 4, 1, 1)
    same = sample(CondVelocity(), noise, text, mask, linear(4), guidance_scale=3.0, cond=cond)
    torch.testing.assert_close(same, noise + 2.0)  # the same condition in both branches: no effect
    guided = sample(CondVelocity(), noise, text, mask, linear(4), guidance_scale=3.0, cond=cond, null_cond=null)
    torch.testing.assert_close(guided, noise + 6.0)  # 0 + 3·(2 − 0)
    windowed = sample(CondVelocity(), noise, text, mask, linear(4), guidance_scale=3.0, cond=cond, null_cond=null,
                      window=2, overlap=1, window_weights="triangular")  # fmt: skip
    torch.testing.assert_close(windowed, noise + 6.0)
    with pytest.raises(MovieGenError):
        sample(CondVelocity(), noise, text, mask, linear(4), guidance_scale=3.0, null_cond=null)


def _counting_transformer():
    from moviegen.models.transformer import MovieGenTransformer, TransformerConfig

    model = MovieGenTransformer(TransformerConfig.preset("tiny")).eval()
    for block in model.blocks:  # the zero-initialised cross-attention output would hide any error
        torch.nn.init.normal_(block.cross_attn.out.weight, std=0.05)
    calls = {"kv": 0, "q_rows": 0}
    for block in model.blocks:
        block.cross_attn.kv.register_forward_hook(lambda *a: calls.__setitem__("kv", calls["kv"] + 1))
        block.cross_attn.q.register_forward_pre_hook(
            lambda mod, inp: calls.__setitem__("q_rows", calls["q_rows"] + inp[0].shape[0]))
    return model, calls


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_cached_text_keys_values_give_the_same_sample_with_less_work(guidance):
    model, calls = _counting_transformer()
    c = model.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c.in_channels, 2, 8, 8, generator=g)
    text = torch.randn(2, 7, c.dim, generator=g)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 5:] = False
    steps, blocks = 4, len(model.blocks)
    plain = flow.sample(model, x, text, mask, flow.linear(steps), guidance, cache_text=False)
    branches = 2 if guidance != 1 else 1
    assert calls == {"kv": steps * blocks, "q_rows": steps * blocks * 2 * branches}
    calls.update(kv=0, q_rows=0)
    cached = flow.sample(model, x, text, mask, flow.linear(steps), guidance)
    assert torch.allclose(cached, plain, atol=1e-6) and plain.abs().mean() > 0.1
    # keys/values once per run; the null-text rows of the unconditional branch skip cross-attention
    assert calls == {"kv": blocks, "q_rows": steps * blocks * 2}


def test_text_cache_with_context_tokens_windows_and_empty_text():
    model, _ = _counting_transformer()
    c = model.config
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, c.in_channels, 4, 8, 8, generator=g)
    text, mask = torch.randn(1, 5, c.dim, generator=g), torch.ones(1, 5, dtype=torch.bool)
    context = (torch.randn(1, 3, c.dim, generator=g), torch.ones(1, 3, dtype=torch.bool))
    for kwargs in ({"context": context}, {"window": 2, "overlap": 1}):
        a = flow.sample(model, x, text, mask, flow.linear(3), 2.0, cache_text=False, **kwargs)
        b = flow.sample(model, x, text, mask, flow.linear(3), 2.0, **kwargs)
        assert torch.allclose(a, b, atol=1e-6), kwargs
    empty = torch.zeros(1, 0, c.dim)
    a = flow.sample(model, x, empty, None, flow.linear(2), 1.0, cache_text=False)
    assert torch.allclose(a, flow.sample(model, x, empty, None, flow.linear(2), 1.0), atol=1e-6)
    cache = model.text_cache(text, mask)
    with pytest.raises(MovieGenError, match="text_cache is of text 1×5"):
        model(x, torch.zeros(1), torch.randn(1, 6, c.dim), text_cache=cache)
