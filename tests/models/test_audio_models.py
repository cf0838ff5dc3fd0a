"""Audio autoencoder (25 Hz latents, Griffin-Lim phase, normalisation, folders), the frame encoder and
feature resampling, and the audio DiT presets (13B on meta)."""

import math

import pytest
import torch

from moviegen.errors import MovieGenError
from moviegen.models.audio import (
    FEATURES,
    AudioAutoencoder,
    AudioAutoencoderConfig,
    FrameEncoder,
    FrameEncoderConfig,
    audio_dit_channels,
    resample_features,
)
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig


def test_latent_rate_and_shapes():
    ae = AudioAutoencoder(AudioAutoencoderConfig.preset("tiny"))
    assert ae.config.samples_per_latent == 1920 and ae.config.latent_rate == 25
    z = ae.encode(torch.randn(2, 48_000 + 5))
    assert z.shape == (2, 8, 26)  # padded up to a whole latent frame
    assert ae.decode(z, 48_005).shape == (2, 48_005)
    assert ae.num_latent_frames(48_000) == 25
    with pytest.raises(MovieGenError):
        ae.encode(torch.randn(48_000))
    with pytest.raises(MovieGenError):
        ae.decode(torch.randn(1, 7, 4))


def test_griffin_lim_recovers_a_waveform_from_its_magnitude():
    ae = AudioAutoencoder(AudioAutoencoderConfig.preset("tiny", griffin_lim_iters=32))
    t = torch.arange(19_200) / 48_000
    x = (0.3 * torch.sin(2 * math.pi * 440 * t) * torch.exp(-3 * t))[None]
    y = ae.waveform(ae.spectrum(ae.pad(x)), x.shape[-1])
    mag = lambda v: ae.spectrum(ae.pad(v))  # noqa: E731
    assert (mag(y) - mag(x)).abs().mean() < 0.1 * mag(x).abs().mean()
    peak = torch.fft.rfft(y[0]).abs().argmax() * 48_000 / y.shape[-1]
    assert abs(float(peak) - 440) < 5 and 0.8 < float(y.std() / x.std()) < 1.2


def test_normalisation_and_folder_round_trip(tmp_path):
    config = AudioAutoencoderConfig.preset("tiny", latents_mean=(1.0,) * 8, latents_std=(2.0,) * 8)
    ae = AudioAutoencoder(config)
    z = torch.randn(1, 8, 5)
    assert torch.allclose(ae.denormalize(ae.normalize(z)), z, atol=1e-6)
    assert torch.allclose(ae.normalize(torch.ones(1, 8, 3)), torch.zeros(1, 8, 3))
    again = AudioAutoencoder.from_pretrained(ae.save_pretrained(tmp_path / "ae"))
    assert again.config == config
    x = torch.randn(1, 4800)
    assert torch.allclose(again.encode(x), ae.encode(x), atol=1e-5)
    with pytest.raises(MovieGenError):
        AudioAutoencoderConfig.preset("tiny", latents_mean=(0.0,) * 3)


def test_frame_encoder_features_and_resampling():
    enc = FrameEncoder(FrameEncoderConfig.preset("tiny"))
    video = torch.rand(3, 10, 64, 64) * 2 - 1
    feats = enc.features(video, fps=16)
    assert feats.shape == (10, FEATURES) and torch.isfinite(feats).all()
    ramp = torch.arange(16, dtype=torch.float32)[:, None].repeat(1, 2)  # one value per frame at 16 fps
    out = resample_features(ramp, 16, 25)  # 1 s at 25 Hz
    times = (torch.arange(25) + 0.5) / 25
    assert out.shape == (2, 25)
    inside = (times * 16 - 0.5).clamp(0, 15)
    assert torch.allclose(out[0], inside, atol=1e-5)
    with pytest.raises(MovieGenError):
        enc.features(torch.rand(3, 0, 8, 8), 16)


def test_audio_dit_presets():
    for name, latent in (("audio-tiny", 8), ("audio-world", 32), ("audio-13b", 128)):
        c = TransformerConfig.preset(name)
        assert c.in_channels == audio_dit_channels(latent) and c.out_channels == latent
        assert tuple(c.patch_size) == (1, 1, 1)
    with torch.device("meta"):
        big = MovieGenTransformer(TransformerConfig.preset("audio-13b"))
    params = sum(p.numel() for p in big.parameters())
    assert 12.5e9 < params < 13.5e9
    assert TransformerConfig.preset("audio-13b").max_latent_frames == 750  # 30 s at 25 Hz
