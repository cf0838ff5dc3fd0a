"""Inflation from a diffusers AutoencoderKL: the fresh TAE must reproduce the image autoencoder."""

import json

import pytest
import torch

from moviegen.errors import MovieGenError
from moviegen.models.tae import TAE

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def image_ae(tmp_path_factory):
    torch.manual_seed(1)
    ae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        sample_size=32,
    ).eval()
    with torch.no_grad():  # randomise norms too so the test sees every weight
        for name, p in ae.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("image_ae")
    ae.save_pretrained(folder, safe_serialization=True)
    return ae, folder


def _image_roundtrip(ae, images):
    with torch.no_grad():
        return ae.decode(ae.encode(images).latent_dist.mode()).sample


def test_inflated_tae_matches_image_autoencoder_on_an_image(image_ae):
    ae, folder = image_ae
    tae = TAE.from_image_autoencoder(folder).eval()
    assert tae.config.latent_channels == 16 and tae.compression == 8
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref_latent = ae.encode(image).latent_dist.mode()
        z = tae.encode(image.unsqueeze(2))
        out = tae.decode(z, num_frames=1)
    assert z.shape == (2, 16, 1, 4, 4)
    assert (z[:, :, 0] - ref_latent).abs().max() <= 1e-4
    assert (out[:, :, 0] - _image_roundtrip(ae, image)).abs().max() <= 1e-4


def test_inflated_tae_matches_image_autoencoder_on_every_frame_of_a_static_video(image_ae):
    ae, folder = image_ae
    tae = TAE.from_image_autoencoder(folder).eval()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    video = image.unsqueeze(2).expand(1, 3, 19, 32, 32).contiguous()
    with torch.no_grad():
        out = tae.decode(tae.encode(video), num_frames=19)
    ref = _image_roundtrip(ae, image)
    assert out.shape == (1, 3, 19, 32, 32)
    assert (out - ref.unsqueeze(2)).abs().max() <= 1e-4


def test_inflation_reads_a_pipeline_folder_and_rejects_bad_folders(image_ae, tmp_path):
    _, folder = image_ae
    pipe = tmp_path / "pipe"
    (pipe / "vae").mkdir(parents=True)
    for f in folder.iterdir():
        (pipe / "vae" / f.name).write_bytes(f.read_bytes())
    assert TAE.from_image_autoencoder(pipe).config.block_out_channels == (8, 16, 16, 16)

    with pytest.raises(MovieGenError, match="no config.json"):
        TAE.from_image_autoencoder(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MovieGenError, match="cannot read weights"):
        TAE.from_image_autoencoder(broken)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["_class_name"] = "UNet2DModel"
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MovieGenError, match="expected an AutoencoderKL"):
        TAE.from_image_autoencoder(broken)


def test_inflate_cli_writes_a_loadable_tae(image_ae, tmp_path, capsys):
    from helpers import run_cli

    ae, folder = image_ae
    code, out, err = run_cli(capsys, "tae", "inflate", folder, "--out", tmp_path / "tae")
    assert code == 0, err
    tae = TAE.from_pretrained(tmp_path / "tae").eval()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out_frames = tae.decode(tae.encode(image.unsqueeze(2)), num_frames=1)
    assert (out_frames[:, :, 0] - _image_roundtrip(ae, image)).abs().max() <= 1e-4


def _tiny_ae(folder, latent_channels: int, quant_convs: bool, seed: int = 2):
    torch.manual_seed(seed)
    ae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        use_quant_conv=quant_convs,
        use_post_quant_conv=quant_convs,
        scaling_factor=1.5305,
        shift_factor=0.0609,
    ).eval()
    ae.save_pretrained(folder, safe_serialization=True)
    return ae


@pytest.mark.parametrize(
    ("channels", "quant_convs", "target"), [(16, False, None), (4, True, 16), (4, False, 16)]
)
def test_inflation_of_quant_conv_free_and_4_channel_autoencoders(tmp_path, channels, quant_convs, target):
    """SD3/FLUX-style AEs (no quant convs) and SD-style 4-channel AEs widened to the paper's 16 channels
    reproduce diffusers' own AutoencoderKL at initialisation."""
    ae = _tiny_ae(tmp_path / "ae", channels, quant_convs)
    tae = TAE.from_image_autoencoder(tmp_path / "ae", latent_channels=target).eval()
    assert tae.config.latent_channels == 16
    assert (tae.config.scaling_factor, tae.config.shift_factor) == (1.5305, 0.0609)
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        dist = ae.encode(image).latent_dist
        post = tae.encode_dist(image.unsqueeze(2))
        out = tae.decode(post.mean, num_frames=1)
        ref = ae.decode(dist.mode()).sample
    assert (post.mean[:, :channels, 0] - dist.mean).abs().max() <= 1e-4
    assert (post.logvar[:, :channels, 0] - dist.logvar).abs().max() <= 1e-4
    if channels < 16:  # new channels start as the prior N(0, 1) and the decoder ignores them
        assert post.mean[:, channels:].abs().max() == 0 and post.logvar[:, channels:].abs().max() == 0
        with torch.no_grad():
            noisy = post.mean.clone()
            noisy[:, channels:] = torch.randn_like(noisy[:, channels:])
            assert (tae.decode(noisy, num_frames=1) - out).abs().max() <= 1e-5
    assert (out[:, :, 0] - ref).abs().max() <= 1e-4
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        z = tae.encode(video)
        assert z.shape == (1, 16, 2, 4, 4) and tae.decode(z, num_frames=9).shape == video.shape


def test_tae_inflate_command(tmp_path, capsys):
    from tests.helpers import run_cli

    _tiny_ae(tmp_path / "ae4", 4, True)
    code, out, err = run_cli(capsys, "tae", "inflate", tmp_path / "ae4", "--out", tmp_path / "tae",
                             "--latent-channels", "16")  # fmt: skip
    assert code == 0 and "latent 16" in out, err
    assert TAE.from_pretrained(tmp_path / "tae").config.latent_channels == 16
    code, _, err = run_cli(
        capsys, "tae", "inflate", tmp_path / "ae4", "--out", tmp_path / "t2", "--latent-channels", "2"
    )
    assert code == 1 and "from the source's 4" in err and "Traceback" not in err
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "config.json").write_text("[1, 2]")
    code, _, err = run_cli(capsys, "tae", "inflate", tmp_path / "list", "--out", tmp_path / "t3")
    assert code == 1 and "JSON object" in err and "Traceback" not in err
    assert not (tmp_path / "t2").exists() and not (tmp_path / "t3").exists()
