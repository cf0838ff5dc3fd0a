"""Audio autoencoder (25 Hz latents, Griffin-Lim phase, normalisation, folders), the frame encoder and
feature resampling, and the audio DiT presets (13B on meta)."""

import math

import numpy as np
import pytest
import torch

from moviegen.errors import MovieGenError
from moviegen.models.audio import (
    FEATURES,
    FRAME_FEATURES,
    NUM_COLORS,
    NUM_SHAPES,
    AudioAutoencoder,
    AudioAutoencoderConfig,
    FrameEncoder,
    FrameEncoderConfig,
    audio_dit_channels,
    contact_times,
    contact_track,
    resample_features,
    video_features,
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
    assert feats.shape == (10, FRAME_FEATURES) and torch.isfinite(feats).all()
    assert video_features(enc, video, 16, 16).shape == (FEATURES, 16)
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


def test_contact_times_find_bounces_between_frames():
    from moviegen.data.sound import SoundWorld, SoundWorldConfig
    from moviegen.eval.audio import match_events
    from moviegen.train.audio import frame_labels

    world = SoundWorld(SoundWorldConfig(seconds=4.0))
    clip = world.object_clip("red", "square", "horizontal", np.random.default_rng(4))
    feats = torch.zeros(clip.video.shape[1], FRAME_FEATURES)
    feats[:, -5:-3] = frame_labels(clip, world)["geometry"][:, :2]
    feats[:, NUM_COLORS + NUM_SHAPES] = 1.0  # the "object" scene
    truth = [i.time for i in clip.impacts if 0.15 < i.time < 3.8]
    m = match_events(contact_times(feats, 16), truth, tolerance=0.03)
    assert m["f1"] == 1.0 and np.median(m["errors"]) < 0.005 and max(m["errors"]) < 0.02
    track = contact_track(feats, 16, 100)[0]
    peaks = [j for j in range(1, 99) if track[j] > 0.5 and track[j] >= track[j - 1] and track[j] >= track[j + 1]]
    assert len(peaks) == len(truth)
    assert all(abs((j + 0.5) / 25 - t) <= 0.04 for j, t in zip(peaks, truth, strict=True))
    feats[:, NUM_COLORS + NUM_SHAPES] = 0.0  # not an object: no contacts
    assert contact_track(feats, 16, 100).abs().max() == 0
    still = torch.zeros(64, FRAME_FEATURES)
    still[:, -5:-3] = 0.5 + 0.003 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    assert contact_times(still, 16) == []
