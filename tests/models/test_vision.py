"""The plain-PyTorch CLIP vision tower equals transformers' CLIPVisionModel; the reference encoder's folder
round-trips and a fresh one adds zero-valued tokens."""

import json

import pytest
import torch

from moviegen.errors import MovieGenError
from moviegen.models.vision import CLIPVisionTower, ReferenceEncoder, VisionConfig


def tiny_clip_vision(folder, act="quick_gelu"):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=16, patch_size=4, hidden_act=act)  # fmt: skip
    model = CLIPVisionModel(config).eval()
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_tower_matches_transformers(tmp_path, act):
    hf = tiny_clip_vision(tmp_path / "clip", act)
    ours = CLIPVisionTower.from_pretrained(tmp_path / "clip").eval()
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = hf(pixel_values=pixels)
        tokens = ours(pixels)
    assert tokens.shape == (2, 17, 32)
    post = getattr(hf, "vision_model", hf).post_layernorm  # transformers 4 nests the ViT, 5 does not
    torch.testing.assert_close(tokens, post(ref.last_hidden_state), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tokens[:, 0], ref.pooler_output, atol=1e-5, rtol=1e-4)


def test_reference_encoder_round_trip(tmp_path):
    tower = CLIPVisionTower(VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=16, patch_size=8))  # fmt: skip
    enc = ReferenceEncoder(tower, model_dim=24).eval()
    images = torch.rand(3, 3, 40, 40) * 2 - 1
    assert torch.count_nonzero(enc(images)) == 0  # zero projector, LayerNorm of zeros
    torch.nn.init.normal_(enc.projection[0].weight)
    enc.save_pretrained(tmp_path / "ref")
    again = ReferenceEncoder.from_pretrained(tmp_path / "ref").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(images), enc(images))
    assert enc(images).shape == (3, 5, 24)
    # the tower folder is a transformers folder
    from transformers import CLIPVisionModel

    CLIPVisionModel.from_pretrained(tmp_path / "ref" / "vision")


def test_bad_folders(tmp_path):
    with pytest.raises(MovieGenError, match="not a CLIP vision folder"):
        CLIPVisionTower.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(MovieGenError, match="not a CLIP vision config"):
        CLIPVisionTower.from_pretrained(tmp_path)
    with pytest.raises(MovieGenError, match="shape"):
        ReferenceEncoder(CLIPVisionTower(VisionConfig()), 8)(torch.zeros(3, 32, 32))
