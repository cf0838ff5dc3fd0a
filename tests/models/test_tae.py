"""The TAE: shapes, any frame count, tiling, OPL, save/load, bad input, and a CPU overfit."""

import dataclasses

import pytest
import torch

from moviegen.errors import MovieGenError
from moviegen.eval.reconstruction import psnr
from moviegen.models.tae import TAE, TAEConfig, outlier_penalty_loss
from moviegen.train.tae import TAELoss, TAELossConfig, TAETrainer, mix_images_and_videos


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TAE(TAEConfig.preset("tiny")).eval()


def _perturb_temporal(model: TAE, scale: float = 0.05) -> TAE:
    """Move temporal layers off their identity init, as training would."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".temporal." in name:
                p.add_(scale * torch.randn_like(p))
    return model


def test_paper_shapes_any_frame_count_and_images(tiny):
    video = torch.rand(1, 3, 33, 64, 64) * 2 - 1
    with torch.no_grad():
        z = tiny.encode(video)
        assert z.shape == (1, 16, 5, 8, 8)
        assert tiny.decode(z, num_frames=33).shape == (1, 3, 33, 64, 64)
        assert tiny.decode(z).shape == (1, 3, 40, 64, 64)
        for t in (1, 7, 8, 9, 17):
            zt = tiny.encode(video[:, :, :t])
            assert zt.shape[2] == -(-t // 8)
            assert tiny.decode(zt, num_frames=t).shape[2] == t


def test_presets_and_config_validation():
    paper = TAEConfig.preset("paper")
    assert paper.block_out_channels == (128, 256, 512, 512) and paper.latent_channels == 16
    assert paper.compression == 8
    with torch.device("meta"):
        assert sum(p.numel() for p in TAE(paper).parameters()) > 80e6
    with pytest.raises(MovieGenError, match="unknown config key"):
        TAEConfig.from_dict({"latent_chans": 16})
    with pytest.raises(MovieGenError, match="divisible by norm_num_groups"):
        TAEConfig.preset("tiny", block_out_channels=(30, 32, 64, 64))
    with pytest.raises(MovieGenError, match="unknown TAEConfig preset"):
        TAEConfig.preset("huge")


def test_temporal_layers_start_as_identity_so_static_frames_decode_alike(tiny):
    frame = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        single = tiny.decode(tiny.encode(frame), num_frames=1)
        static = tiny.decode(tiny.encode(frame.expand(1, 3, 20, 32, 32)), num_frames=20)
    assert torch.allclose(static, single.expand_as(static), atol=1e-5)


def test_untiled_equals_tiled_when_one_tile_covers_the_input():
    model = _perturb_temporal(TAE(TAEConfig.preset("tiny"))).eval()
    video = torch.rand(1, 3, 24, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode(video, tile_frames=32), model.encode(video, tile_frames=None))
        z = model.encode(video, tile_frames=None)
        assert torch.equal(model.decode(z, tile_latents=4), model.decode(z, tile_latents=None))


def test_tiled_encode_is_exact_per_tile_and_tiled_decode_blends_neighbouring_windows():
    model = _perturb_temporal(TAE(TAEConfig.preset("tiny"))).eval()
    video = torch.rand(1, 3, 72, 32, 32) * 2 - 1
    with torch.no_grad():
        z = model.encode(video, tile_frames=32)
        assert z.shape[2] == 9
        assert torch.allclose(z[:, :, 4:8], model.encode(video[:, :, 32:64], tile_frames=None), atol=1e-6)
        tiled = model.decode(z, num_frames=72, tile_latents=4, overlap_latents=2)
        untiled = model.decode(z, num_frames=72, tile_latents=None)
        first = model.decode(z[:, :, :4], tile_latents=None)
        second = model.decode(z[:, :, 2:6], tile_latents=None)
    assert tiled.shape == untiled.shape == (1, 3, 72, 32, 32)
    # frames before any overlap are the first window's output exactly
    assert torch.allclose(tiled[:, :, :16], first[:, :, :16], atol=1e-6)
    # across the 2-latent (16-frame) overlap the two windows are blended with linear weights
    ramp = ((torch.arange(16) + 0.5) / 16).view(1, 1, 16, 1, 1)
    blend = (1 - ramp) * first[:, :, 16:32] + ramp * second[:, :, :16]
    assert torch.allclose(tiled[:, :, 16:32], blend, atol=1e-5)
    assert not torch.allclose(tiled[:, :, 16:32], untiled[:, :, 16:32], atol=1e-3)


def test_tiled_and_untiled_agree_everywhere_for_a_temporally_constant_latent():
    model = TAE(TAEConfig.preset("tiny")).eval()  # temporal layers at identity
    z = torch.randn(1, 16, 1, 4, 4).expand(1, 16, 11, 4, 4).contiguous()
    with torch.no_grad():
        tiled = model.decode(z, num_frames=85, tile_latents=4, overlap_latents=2)
        untiled = model.decode(z, num_frames=85, tile_latents=None)
    assert torch.allclose(tiled, untiled, atol=1e-5)


def test_tiling_arguments_are_validated(tiny):
    video = torch.zeros(1, 3, 16, 32, 32)
    with pytest.raises(MovieGenError, match="multiple of 8"):
        tiny.encode(video, tile_frames=12)
    z = torch.zeros(1, 16, 6, 4, 4)
    with pytest.raises(MovieGenError, match="overlap_latents"):
        tiny.decode(z, tile_latents=4, overlap_latents=4)
    with pytest.raises(MovieGenError, match="num_frames"):
        tiny.decode(z, num_frames=49)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(1, 3, 32, 32),
        torch.zeros(3, 8, 32, 32),
        torch.zeros(1, 4, 8, 32, 32),
        torch.zeros(1, 3, 8, 30, 32),
    ],
)
def test_wrong_video_shapes_are_one_clear_error(tiny, bad):
    with pytest.raises(MovieGenError, match="TAE"):
        tiny.encode(bad)


def test_wrong_latent_shapes_are_one_clear_error(tiny):
    with pytest.raises(MovieGenError, match="latent tensor"):
        tiny.decode(torch.zeros(1, 4, 2, 4, 4))


def test_outlier_penalty_is_zero_without_outliers_and_grows_with_a_spot():
    z = torch.randn(2, 16, 3, 16, 16)
    assert outlier_penalty_loss(z).item() == 0.0
    spotted = z.clone()
    spotted[0, :, 1, 5, 7] += 20.0
    small = outlier_penalty_loss(spotted).item()
    spotted[0, :, 1, 5, 7] += 20.0
    assert 0 < small < outlier_penalty_loss(spotted).item()
    assert outlier_penalty_loss(z[:, :, 0]).item() == 0.0  # images (B, C, H, W) too
    with pytest.raises(MovieGenError):
        outlier_penalty_loss(torch.zeros(16, 8))


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "tae")
    assert sorted(p.name for p in (tmp_path / "tae").iterdir()) == ["config.json", "model.safetensors"]
    loaded = TAE.from_pretrained(tmp_path / "tae").eval()
    assert loaded.config == tiny.config
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.encode(video), tiny.encode(video))
    with pytest.raises(MovieGenError, match="not found"):
        TAE.from_pretrained(tmp_path / "nope")
    (tmp_path / "tae" / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(MovieGenError, match="cannot read weights"):
        TAE.from_pretrained(tmp_path / "tae")


def test_images_and_videos_are_mixed_one_to_three():
    images = (torch.zeros(1, 3, 1, 8, 8) for _ in range(100))
    videos = (torch.zeros(1, 3, 16, 8, 8) for _ in range(100))
    frames = [b.shape[2] for b in mix_images_and_videos(images, videos)][:12]
    assert frames == [1, 16, 16, 16] * 3


def test_loss_terms_and_optional_adversarial_step():
    from moviegen.train.tae import PatchDiscriminator

    torch.manual_seed(0)
    model = TAE(TAEConfig.preset("tiny"))
    disc = PatchDiscriminator(width=8, layers=2)
    loss = TAELoss(TAELossConfig(adversarial_weight=0.1), discriminator=disc)
    trainer = TAETrainer(model, loss, lr=1e-3)
    before = [p.clone() for p in disc.parameters()]
    terms = trainer.train_step(torch.rand(1, 3, 8, 32, 32) * 2 - 1)
    assert {"l1", "kl", "opl", "adversarial", "discriminator", "loss"} <= set(terms)
    assert any(not torch.equal(a, b) for a, b in zip(before, disc.parameters(), strict=True))


def test_optional_mse_term_adds_its_weighted_value():
    video = torch.zeros(1, 3, 2, 4, 4)
    recon = torch.full_like(video, 0.5)
    latent, kl = torch.zeros(1, 16, 1, 1, 1), torch.tensor(0.0)
    plain, terms = TAELoss(TAELossConfig(opl_weight=0))(video, recon, latent, kl)
    assert "mse" not in terms and float(plain) == pytest.approx(0.5)
    with_l2, terms = TAELoss(TAELossConfig(opl_weight=0, l2_weight=4.0))(video, recon, latent, kl)
    assert terms["mse"] == pytest.approx(0.25) and float(with_l2) == pytest.approx(0.5 + 4.0 * 0.25)
    with pytest.raises(MovieGenError, match="l2_weight"):
        TAELossConfig(l2_weight=-1.0)


def _moving_blob_clip(frames: int = 16, size: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for t in range(frames):
        blob = torch.exp(-((xx + 0.5 - 0.06 * t) ** 2 + yy**2) / 0.25)
        out.append(torch.stack([blob * 1.6 - 0.8, 0.5 * xx, 0.5 * yy - 0.3 * blob]))
    return torch.stack(out, 1)[None]


def test_tiny_tae_overfits_a_short_clip_on_cpu():
    torch.manual_seed(0)
    clip = _moving_blob_clip()
    model = TAE(TAEConfig.preset("tiny"))
    trainer = TAETrainer(model, lr=1e-3, grad_clip=100.0)
    best = 0.0
    for step in range(150):
        trainer.train_step(clip)
        if step % 10 == 9:
            model.eval()
            with torch.no_grad():
                best = max(best, psnr(model.decode(model.encode(clip), num_frames=16), clip))
            if best > 25:
                break
    assert best > 25, f"PSNR only reached {best:.2f} dB"
    assert dataclasses.asdict(model.config) == dataclasses.asdict(TAEConfig.preset("tiny"))


def test_latent_normalisation_per_channel_or_scalar_round_trips(tmp_path):
    z = torch.randn(2, 16, 2, 3, 3) * torch.linspace(0.5, 3, 16).view(1, -1, 1, 1, 1) + 1.5
    scalar = TAE(TAEConfig.preset("tiny", scaling_factor=0.5, shift_factor=0.25))
    torch.testing.assert_close(scalar.normalize(z), (z - 0.25) * 0.5)
    torch.testing.assert_close(scalar.denormalize(scalar.normalize(z)), z)
    mean = z.transpose(0, 1).flatten(1).mean(1)
    std = z.transpose(0, 1).flatten(1).std(1)
    cfg = TAEConfig.preset("tiny", latents_mean=tuple(mean.tolist()), latents_std=tuple(std.tolist()))
    model = TAE(cfg)
    x = model.normalize(z)
    per_channel = x.transpose(0, 1).flatten(1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(16))
    torch.testing.assert_close(model.denormalize(x), z)
    model.save_pretrained(tmp_path / "tae")
    loaded = TAE.from_pretrained(tmp_path / "tae")
    torch.testing.assert_close(loaded.normalize(z), x)
    for bad in (dict(latents_mean=(0.0,) * 16), dict(latents_mean=(0.0,) * 3, latents_std=(1.0,) * 3),
                dict(latents_mean=(0.0,) * 16, latents_std=(0.0,) * 16)):  # fmt: skip
        with pytest.raises(MovieGenError):
            TAEConfig.preset("tiny", **bad)
