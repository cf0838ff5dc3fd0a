"""Text conditioning: adapters on tiny random local models, the projector, saving, prompt prefixes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from moviegen.errors import MovieGenError
from moviegen.models.text import (
    CAMERA_MOTIONS,
    ByT5TextEncoder,
    CLIPTextEncoder,
    MiniLMTextEncoder,
    T5TextEncoder,
    TextConditioner,
    TextConditionerConfig,
    TextEncoder,
    TextProjector,
    compose_prompt,
    default_text_conditioner,
    packaged_minilm_path,
    parse_prompt_prefix,
    quoted_text,
)

transformers = pytest.importorskip("transformers")


def _tiny_t5(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=384,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    transformers.T5EncoderModel(config).save_pretrained(str(folder))
    transformers.ByT5Tokenizer().save_pretrained(str(folder))
    return folder


def _tiny_clip(folder: Path) -> Path:
    special = ["<|startoftext|>", "<|endoftext|>"]
    chars = [chr(c) for c in range(33, 127)]
    vocab = {tok: i for i, tok in enumerate(special + chars + [c + "</w>" for c in chars])}
    source = folder.parent / f"{folder.name}-tokenizer-src"
    source.mkdir()
    (source / "vocab.json").write_text(json.dumps(vocab))
    (source / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(source))
    torch.manual_seed(1)
    config = transformers.CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        projection_dim=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    transformers.CLIPTextModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _tiny_bert(folder: Path) -> Path:
    torch.manual_seed(2)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    transformers.BertModel(config).save_pretrained(str(folder))
    transformers.AutoTokenizer.from_pretrained(str(packaged_minilm_path())).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {
        "t5": _tiny_t5(root / "t5", seed=0),
        "byt5": _tiny_t5(root / "byt5", seed=3),
        "clip": _tiny_clip(root / "clip"),
        "bert": _tiny_bert(root / "bert"),
    }


@pytest.fixture(scope="module")
def t5(folders: dict[str, Path]) -> T5TextEncoder:
    return T5TextEncoder(folders["t5"], max_length=64)


@pytest.fixture(scope="module")
def byt5(folders: dict[str, Path]) -> ByT5TextEncoder:
    return ByT5TextEncoder(folders["byt5"], max_length=32)


@pytest.fixture(scope="module")
def clip(folders: dict[str, Path]) -> CLIPTextEncoder:
    return CLIPTextEncoder(folders["clip"])


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return MiniLMTextEncoder(max_length=32)


PROMPTS = ["a red circle moving left", 'a neon sign that says "Movie Gen" at night']


def test_t5_shapes_masks_and_truncation(t5: T5TextEncoder) -> None:
    assert isinstance(t5, TextEncoder) and t5.name == "t5" and t5.dim == 32
    hidden, mask = t5.encode(PROMPTS)
    lengths = [len(p.encode()) + 1 for p in PROMPTS]  # bytes + </s>
    assert hidden.shape == (2, max(lengths), 32) and hidden.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == lengths
    assert torch.all(hidden[~mask] == 0)
    long_hidden, long_mask = t5.encode(["x" * 500])
    assert long_hidden.shape[1] == 64 and long_mask.all()
    alone, _ = t5.encode(PROMPTS[:1])
    torch.testing.assert_close(alone[0], hidden[0, : lengths[0]], atol=1e-5, rtol=1e-5)


def test_byt5_reads_only_quoted_text(byt5: ByT5TextEncoder) -> None:
    assert quoted_text('a sign that says "Movie Gen" and “OPEN” and "" here "unclosed') == "Movie Gen OPEN"
    assert quoted_text("no quotes") == ""
    prompts = ['a sign "HELLO" in a park', 'a dog holding "HELLO" on a beach', "no quotes", 'a "BYE" card']
    hidden, mask = byt5.encode(prompts)
    assert hidden.shape[:2] == mask.shape == (4, len("HELLO") + 1)
    assert not mask[2].any() and torch.all(hidden[2] == 0)
    torch.testing.assert_close(hidden[0], hidden[1])
    assert not torch.allclose(hidden[0, :4], hidden[3, :4])
    empty_hidden, empty_mask = byt5.encode(["plain", "also plain"])
    assert empty_hidden.shape == (2, 1, byt5.dim) and not empty_mask.any()


def test_clip_context_extended_to_256(clip: CLIPTextEncoder, folders: dict[str, Path]) -> None:
    table = clip.position_embedding.weight
    assert table.shape == (256, 32) and clip.max_length == 256
    assert clip.tokenizer.model_max_length >= 256 and clip.model.config.max_position_embeddings == 256
    old = CLIPTextEncoder(folders["clip"], max_length=77).position_embedding.weight
    assert old.shape == (77, 32)
    torch.testing.assert_close(table[0], old[0])
    torch.testing.assert_close(table[255], old[76])

    prompt = "abcdefghij" * 15  # 150 character tokens + start/end
    hidden, mask = clip.encode([prompt, "short"])
    assert hidden.shape == (2, 152, 32) and mask[0].all() and mask[1].sum() == 7
    truncated, _ = clip.encode(["z" * 400])
    assert truncated.shape[1] == 256

    saved = table.detach().clone()
    try:
        with torch.no_grad():
            table[100] += 1.0
        changed, _ = clip.encode([prompt])
    finally:
        with torch.no_grad():
            table.copy_(saved)
    torch.testing.assert_close(changed[0, :100], hidden[0, :100])  # causal: earlier tokens unaffected
    assert not torch.allclose(changed[0, 100], hidden[0, 100])


def test_minilm_loads_offline_and_separates_prompts(minilm: MiniLMTextEncoder) -> None:
    assert minilm.packaged and minilm.dim == 384
    hidden, mask = minilm.encode(["a cat on a sofa", "a rocket launching into space at dawn"])
    assert hidden.shape[0] == 2 and hidden.shape[2] == 384 and mask.shape == hidden.shape[:2]
    assert mask[1].all() and not mask[0].all()
    a = hidden[0][mask[0]].mean(0)
    b = hidden[1][mask[1]].mean(0)
    assert torch.cosine_similarity(a, b, dim=0) < 0.99


def test_encoders_are_frozen(t5, byt5, clip, minilm) -> None:
    for encoder in (t5, byt5, clip, minilm):
        assert not encoder.model.training
        assert not any(p.requires_grad for p in encoder.model.parameters())
        hidden, _ = encoder.encode(['say "hi"'])
        assert not hidden.requires_grad


def test_projector_concatenates() -> None:
    projector = TextProjector([8, 4], model_dim=16)
    raw = [
        (torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)),
        (torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool)),
    ]
    tokens, mask = projector(raw)
    assert tokens.shape == (2, 8, 16) and mask.shape == (2, 8)
    assert mask.tolist() == [[True] * 3 + [False] * 5, [True] * 5 + [False] * 3]
    with pytest.raises(MovieGenError):
        projector(raw[:1])


def test_conditioner_round_trip(tmp_path: Path, t5, byt5, clip, minilm, folders) -> None:
    custom = MiniLMTextEncoder(folders["bert"], max_length=16)
    conditioner = TextConditioner([t5, byt5, clip, minilm, custom], model_dim=24)
    assert conditioner.config.kinds == ("t5", "byt5", "clip", "minilm", "minilm")
    params = list(conditioner.parameters())
    assert params and all(p.requires_grad for p in params)
    assert sum(p.numel() for p in params) == sum(p.numel() for p in conditioner.projector.parameters())

    prompts = ["FPS-16. Camera: pan left. a red circle", 'a poster reading "MOVIE GEN"']
    tokens, mask = conditioner(prompts)
    raw = conditioner.encode_raw(prompts)
    assert tokens.shape == (2, sum(h.shape[1] for h, _ in raw), 24)
    assert torch.equal(mask, torch.cat([m for _, m in raw], dim=1))
    byt5_start = raw[0][1].shape[1]
    assert not mask[0, byt5_start : byt5_start + raw[1][1].shape[1]].any()  # no quotes in prompt 0
    tokens.sum().backward()
    assert conditioner.projector.projections[0][0].weight.grad is not None

    out = conditioner.save_pretrained(tmp_path / "text")
    names = sorted(p.name for p in (out / "encoders").iterdir())
    assert names == ["0-t5", "1-byt5", "2-clip", "4-minilm"]
    loaded = TextConditioner.from_pretrained(out)
    assert loaded.config == conditioner.config
    assert loaded.encoders[2].position_embedding.weight.shape[0] == 256
    with torch.no_grad():
        again, again_mask = loaded(prompts)
    torch.testing.assert_close(again, tokens.detach(), rtol=0, atol=0)
    assert torch.equal(again_mask, mask)


def test_from_pretrained_errors(tmp_path: Path, t5) -> None:
    with pytest.raises(MovieGenError, match="not found"):
        TextConditioner.from_pretrained(tmp_path / "missing")
    good = TextConditioner([t5], model_dim=8).save_pretrained(tmp_path / "good")

    def broken(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(good, target)
        return target

    folder = broken("no-weights")
    (folder / "model.safetensors").unlink()
    with pytest.raises(MovieGenError):
        TextConditioner.from_pretrained(folder)
    folder = broken("bad-config")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(MovieGenError):
        TextConditioner.from_pretrained(folder)
    folder = broken("no-encoder")
    shutil.rmtree(folder / "encoders" / "0-t5")
    with pytest.raises(MovieGenError, match="missing"):
        TextConditioner.from_pretrained(folder)
    folder = broken("bad-encoder")
    (folder / "encoders" / "0-t5" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(MovieGenError):
        TextConditioner.from_pretrained(folder)
    with pytest.raises(MovieGenError):
        T5TextEncoder(tmp_path / "nowhere")


def test_default_conditioner_and_config(tmp_path: Path) -> None:
    conditioner = default_text_conditioner(model_dim=32, max_length=16)
    tokens, mask = conditioner(["a cat", "a dog running"])
    assert tokens.shape[0] == 2 and tokens.shape[2] == 32 and mask.shape == tokens.shape[:2]
    saved = conditioner.save_pretrained(tmp_path / "default")
    assert not (saved / "encoders").exists()
    loaded = TextConditioner.from_pretrained(saved)
    torch.testing.assert_close(loaded(["a cat", "a dog running"])[0], tokens, rtol=0, atol=0)
    assert TextConditionerConfig.preset("paper").kinds == ("t5", "byt5", "clip")
    with pytest.raises(MovieGenError):
        TextConditionerConfig(kinds=("t5",), dims=(4, 4), max_lengths=(8,))
    with pytest.raises(MovieGenError):
        TextConditioner.from_config(TextConditionerConfig.preset("paper"))  # no local paths


def test_compose_and_parse_prompt() -> None:
    assert len(CAMERA_MOTIONS) == 16
    text = compose_prompt("  a red circle moving left ", fps=16, camera_motion="Pan  Left")
    assert text == "FPS-16. Camera: pan left. a red circle moving left"
    assert parse_prompt_prefix(text) == (16, "pan left", "a red circle moving left")
    for fps in (None, 1, 24):
        for camera in (None, *CAMERA_MOTIONS):
            for prompt in ("a cat", "static shot of a lake", "FPS-16 is a number", "Camera: roll. x"):
                composed = compose_prompt(prompt, fps=fps, camera_motion=camera)
                assert parse_prompt_prefix(composed) == (fps, camera, prompt)
                parsed_fps, parsed_camera, parsed_prompt = parse_prompt_prefix(composed)
                assert compose_prompt(parsed_prompt, parsed_fps, parsed_camera) == composed
    assert parse_prompt_prefix("a dog") == (None, None, "a dog")
    for bad in ("", "   ", None):
        with pytest.raises(MovieGenError):
            compose_prompt(bad)  # type: ignore[arg-type]
    for bad_fps in (0, -4, 16.0, True, "16"):
        with pytest.raises(MovieGenError):
            compose_prompt("a cat", fps=bad_fps)  # type: ignore[arg-type]
    with pytest.raises(MovieGenError):
        compose_prompt("a cat", camera_motion="spin")
    with pytest.raises(MovieGenError):
        compose_prompt("FPS-24. a cat", fps=16)
    with pytest.raises(MovieGenError):
        parse_prompt_prefix("   ")
    assert parse_prompt_prefix("FPS-16. ") == (None, None, "FPS-16.")  # no text after it: not a prefix


def test_native_minilm_matches_transformers_bert():
    from transformers import AutoModel, AutoTokenizer

    from moviegen.models.text import MiniLMTextEncoder, packaged_minilm_path

    prompts = ["FPS-16. a red circle moving up", "Camera: pan left. a cat on a sofa", "hi"]
    hidden, mask = MiniLMTextEncoder().encode(prompts)
    folder = packaged_minilm_path()
    batch = AutoTokenizer.from_pretrained(folder)(
        prompts, padding="longest", truncation=True, max_length=256, return_tensors="pt"
    )
    with torch.no_grad():
        ref = AutoModel.from_pretrained(folder).eval()(**batch).last_hidden_state
    assert torch.equal(mask, batch["attention_mask"].bool())
    assert torch.allclose(hidden, ref.masked_fill(~mask[..., None], 0.0), atol=1e-5)
