"""moviegen train image --quick: world images without the FPS prefix, fine-tuning and quality tuning through
the one Trainer from the shipped backbone, an image decoder, a loadable pipeline that writes PNGs."""


import torch

from helpers import run_cli, run_quick_recipe
from moviegen.data.cache import LatentCache
from moviegen.pipeline import DEFAULT_MODEL, MovieGenPipeline
from moviegen.train.image import HELD_OUT_PAIRS
from moviegen.video import read_image


def test_quick_image_recipe_end_to_end(tmp_path, capsys):
    out = tmp_path / "img"
    log = run_quick_recipe(capsys, "image", out)
    assert len(log["history"]["finetune/loss"]) == 3 and len(log["history"]["quality/loss"]) == 2
    assert [tuple(p) for p in log["held_out_pairs"]] == list(HELD_OUT_PAIRS) and HELD_OUT_PAIRS
    cache = LatentCache(out / "cache")
    assert cache.get(0).latent.shape == (16, 1, 16, 16)  # 128-px images
    assert not any(m["caption"].startswith("FPS-") for m in cache.items)  # the image rule
    captions = " ".join(m["caption"] for m in cache.items)
    assert all(f"{c} {s}" not in captions for c, s in HELD_OUT_PAIRS if s == "circle")
    assert len(LatentCache(out / "quality_cache").items) == 2  # max(batch, 20 % of 12)
    pipe = MovieGenPipeline.from_pretrained(out / "pipeline")
    base = MovieGenPipeline.from_pretrained(DEFAULT_MODEL)
    assert pipe.transformer.config.max_height_patches == 2 * base.transformer.config.max_height_patches
    enc, enc0 = pipe.tae.encoder.state_dict(), base.tae.encoder.state_dict()
    assert all(torch.equal(enc[k], enc0[k].to(enc[k].dtype)) for k in enc)  # latents unchanged
    dec, dec0 = pipe.tae.decoder.state_dict(), base.tae.decoder.state_dict()
    assert any(not torch.equal(dec[k], dec0[k]) for k in dec)  # the image decoder was tuned
    code, _, err = run_cli(capsys, "image", "a red circle", "--out", tmp_path / "x.png", "--model",
                           out / "pipeline", "--steps", "2")  # fmt: skip
    assert code == 0, err
    assert read_image(tmp_path / "x.png").shape == (3, 1, 128, 128)  # --size: the model's largest
