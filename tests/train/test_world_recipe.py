"""The world recipe end to end in its --quick form: losses fall, the pipeline loads and generates."""

import json

import pytest

from helpers import run_cli, run_quick_recipe
from moviegen.pipeline import MovieGenPipeline
from moviegen.train.world import WorldRecipe
from moviegen.video import read_video


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    return out


def test_quick_recipe_end_to_end(trained, capsys):
    log = run_quick_recipe(capsys, "world", trained)
    losses = [v for _, v in log["history"]["train/loss"]]
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)
    assert log["history"]["val/loss"] and log["history"]["tae/l1"][-1][1] < log["history"]["tae/l1"][0][1]
    assert len(log["history"]["tae_decoder/l1"]) == WorldRecipe.preset("quick").tae_decoder_steps
    assert list((trained / "logs").glob("events.out.tfevents.*"))
    assert (trained / "loss_curves.png").stat().st_size > 1000
    pipe = MovieGenPipeline.from_pretrained(trained / "pipeline")
    # the guidance stage scored every candidate on training compositions and stored the best
    guidance = log["guidance"]
    assert set(guidance["scores"]) == {"1.0", "4.0"} and guidance["chosen"] in (1.0, 4.0)
    assert pipe.guidance_scale == guidance["chosen"] and log["timings"]["guidance_s"] > 0
    # latents are normalised per channel: the cached training latents have unit scale in every channel
    cfg = pipe.tae.config
    assert cfg.latents_mean is not None and len(cfg.latents_std) == cfg.latent_channels
    assert len(set(cfg.latents_std)) > 1
    code, _, err = run_cli(capsys, "generate", "a red circle moving up", "--out", trained / "x.mp4",
                           "--model", trained / "pipeline", "--steps", "4")  # fmt: skip
    assert code == 0, err
    assert read_video(trained / "x.mp4")[0].shape == (3, 16, 64, 64)
    # the TAE stage's output is kept and can be reused to skip TAE training
    again = run_quick_recipe(capsys, "world", trained / "again", "--steps", "3", "--tae", trained / "tae")
    assert "tae/l1" not in again["history"]


def test_recipe_config_is_validated(tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"stepz": 3}))
    code, _, err = run_cli(
        capsys, "train", "world", "--out", tmp_path / "o", "--config", tmp_path / "bad.json"
    )
    assert code == 1 and "unknown config key" in err
    assert WorldRecipe.preset("quick").steps < WorldRecipe.preset("default").steps


def test_random_crops_prefer_the_object():
    import torch

    from moviegen.data.world import World
    from moviegen.train.world import make_dataset, random_crops

    data = make_dataset(World(), "train", 12, 0)
    objects = data.videos[[i for i, c in enumerate(data.captions) if "Camera:" not in c]]

    def object_pixels(candidates: int) -> float:
        gen = torch.Generator().manual_seed(0)
        batches = random_crops(objects, 8, 24, candidates, gen)
        crops = torch.cat([next(batches) for _ in range(6)])
        assert crops.shape[1:] == (3, 16, 24, 24) and crops.min() >= -1 and crops.max() <= 1
        return float((crops[:, :, 0].std(dim=1) > 0.2).float().mean())  # coloured pixels in frame 0

    assert object_pixels(8) > 1.5 * object_pixels(1)


def test_decoder_finetuning_leaves_the_encoder_and_latents_unchanged():
    import torch

    from moviegen.data.world import World
    from moviegen.models.tae import TAE, TAEConfig
    from moviegen.train.world import finetune_tae_decoder, make_dataset, to_float

    recipe = WorldRecipe.preset("quick", tae_decoder_steps=8, tae_decoder_lr=1e-3)
    data = make_dataset(World(), "train", 4, 0)
    torch.manual_seed(0)
    tae = TAE(TAEConfig.preset("tiny", block_out_channels=(8, 8, 8, 8), norm_num_groups=4))
    video = to_float(data.videos[:2])
    before_latent = tae.encode(video)
    before = {k: v.clone() for k, v in tae.state_dict().items()}
    losses = []
    finetune_tae_decoder(recipe, data, tae, lambda tag, value, step: losses.append(value))
    after = tae.state_dict()
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert torch.equal(tae.encode(video), before_latent) and not tae.training


def test_recipe_sets_the_share_of_object_clips():
    from moviegen.errors import MovieGenError
    from moviegen.train.world import recipe_world

    with pytest.raises(MovieGenError, match="world_object_fraction"):
        WorldRecipe.preset("quick", world_object_fraction=1.5)
    cameras = recipe_world(WorldRecipe.preset("quick", world_object_fraction=0.0))
    assert {cameras.clip("train", i).kind for i in range(20)} == {"camera"}
    default = recipe_world(WorldRecipe.preset("default"))
    kinds = [default.clip("train", i).kind for i in range(400)]
    assert default.config.object_fraction == 0.75 and 0.65 < kinds.count("object") / 400 < 0.85
