"""moviegen train audio --quick: autoencoder, frame encoder, DiT through the one Trainer, guidance and the
FAD embedding; the autoencoder's losses and trainer."""


import pytest
import torch

from helpers import run_quick_recipe
from moviegen.audio import AudioPipeline
from moviegen.errors import MovieGenError
from moviegen.eval.audio import AudioEmbedding
from moviegen.models.audio import AudioAutoencoder, AudioAutoencoderConfig
from moviegen.train.audio import AudioRecipe
from moviegen.train.audio_ae import AudioAELoss, AudioAELossConfig, AudioAETrainer


def test_quick_audio_recipe_end_to_end(tmp_path, capsys):
    out = tmp_path / "audio"
    log = run_quick_recipe(capsys, "audio", out)
    assert {"autoencoder", "frame_encoder", "guidance", "timings", "history"} <= set(log)
    assert len(log["history"]["loss"]) == AudioRecipe.preset("quick").steps
    assert float(log["guidance"]["chosen"]) in AudioRecipe.preset("quick").guidance_scales
    pipe = AudioPipeline.from_pretrained(out / "pipeline")
    assert pipe.guidance_scale == float(log["guidance"]["chosen"])
    c = pipe.autoencoder.config
    assert len(c.latents_mean) == len(c.latents_std) == c.latent_channels  # measured on the training latents
    assert pipe.transformer.patch_embed.weight.dtype == torch.float32  # fp16 on disk, float in memory
    AudioEmbedding.from_pretrained(out / "audio-embedding")
    assert (out / "run" / "config.json").is_file()


def test_recipe_config_is_validated():
    with pytest.raises(MovieGenError):
        AudioRecipe.preset("quick", context_fraction=1.5)
    with pytest.raises(MovieGenError):
        AudioRecipe.preset("quick", model="not-a-preset")
    with pytest.raises(MovieGenError):
        AudioAELossConfig(peak_power=0.0)


def test_autoencoder_losses_and_trainer():
    torch.manual_seed(0)
    ae = AudioAutoencoder(AudioAutoencoderConfig.preset("tiny"))
    t = torch.arange(9600) / 48_000
    batch = torch.stack([0.5 * torch.sin(2 * torch.pi * f * t) * torch.exp(-8 * t) for f in (220.0, 330.0)])
    total, terms = AudioAELoss()(ae, batch, generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"spectral", "squared", "linear", "log", "kl"} and torch.isfinite(total)
    trainer = AudioAETrainer(ae, lr=3e-3, generator=torch.Generator().manual_seed(0))
    first = trainer.train_step(batch)["loss"]
    for _ in range(30):
        last = trainer.train_step(batch)["loss"]
    assert last < 0.7 * first and trainer.step_count == 31
