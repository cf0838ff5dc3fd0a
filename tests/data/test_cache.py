"""The on-disk latent cache: building from real MP4s, reading lazily by shard, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

import moviegen.data.cache as cache_module
import moviegen.pipeline as pipeline_module
from helpers import moving_clip
from moviegen.data.buckets import BucketGrid, fit_to_bucket
from moviegen.data.cache import (
    CacheItem,
    DataItem,
    LatentCache,
    build_cache,
    cache_cli,
    read_data,
)
from moviegen.errors import MovieGenError
from moviegen.models.tae import TAE, TAEConfig
from moviegen.models.text import compose_prompt, default_text_conditioner
from moviegen.video import read_video, write_video

GRID = BucketGrid.preset("tiny")


@pytest.fixture(scope="module")
def text():
    return default_text_conditioner(64)


@pytest.fixture(scope="module")
def tae():
    torch.manual_seed(0)
    return TAE(TAEConfig.preset("tiny", scaling_factor=0.7, shift_factor=0.05)).eval()


def make_data(root: Path) -> Path:
    """Videos with every kind of sidecar, plus the problem cases."""
    root.mkdir(parents=True, exist_ok=True)
    write_video(root / "a.mp4", moving_clip(16, 32, 48))
    (root / "a.txt").write_text("a red ball rolls\n")
    write_video(root / "a2.mp4", moving_clip(20, 30, 46).flip(-1))  # same bucket as a
    (root / "a2.txt").write_text("a blue square moving left")
    write_video(root / "sub" / "b.mp4", moving_clip(12, 48, 32), fps=8)
    (root / "sub" / "b.json").write_text(json.dumps({"caption": 'a sign that says "hello"', "fps": 24}))
    write_video(root / "sq.mp4", moving_clip(9, 40, 40))
    (root / "sq.json").write_text(json.dumps({"caption": "a tree", "camera_motion": "Pan Left"}))
    write_video(root / "short.mp4", moving_clip(4, 32, 32))
    (root / "short.txt").write_text("too short for any bucket")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00 not an mp4 at all")
    (root / "broken.txt").write_text("a corrupt file")
    write_video(root / "nocap.mp4", moving_clip(8, 32, 32))
    write_video(root / "badmeta.mp4", moving_clip(8, 32, 32))
    (root / "badmeta.json").write_text("{not json")
    write_video(root / "prefixed.mp4", moving_clip(8, 32, 32))
    (root / "prefixed.txt").write_text("FPS-8. a caption that already has a prefix")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def built(data, tae, text, tmp_path_factory):
    out = tmp_path_factory.mktemp("caches") / "cache"
    calls = []
    path = build_cache(
        data, tae, text, out, GRID, shard_size=2, batch_size=2, progress=lambda d, t: calls.append((d, t))
    )
    return path, calls


def fresh_latent(tae, source: str, bucket_name: str) -> torch.Tensor:
    video, _ = read_video(source)
    fitted = fit_to_bucket(video, GRID.bucket(bucket_name))
    with torch.no_grad():
        z = tae.encode(fitted[None])[0]
    return (z - tae.config.shift_factor) * tae.config.scaling_factor


# ---- reading DATA -------------------------------------------------------------------------------------


def test_read_data_folder(data):
    source = read_data(data)
    names = sorted(item.path.name for item in source.items)
    assert names == ["a.mp4", "a2.mp4", "b.mp4", "broken.mp4", "prefixed.mp4", "short.mp4", "sq.mp4"]
    by_name = {item.path.name: item for item in source.items}
    assert by_name["a.mp4"].caption == "a red ball rolls" and by_name["a.mp4"].fps is None
    assert by_name["b.mp4"].fps == 24.0
    assert by_name["sq.mp4"].camera_motion == "Pan Left"
    assert [Path(p).name for p in source.no_caption] == ["nocap.mp4"]
    assert [f["reason"] for f in source.failures] == ["bad_sidecar"]


def test_read_data_errors(tmp_path):
    with pytest.raises(MovieGenError, match="data not found"):
        read_data(tmp_path / "missing")
    (tmp_path / "list.csv").write_text("x")
    with pytest.raises(MovieGenError, match=r"\.jsonl manifest"):
        read_data(tmp_path / "list.csv")


# ---- building -----------------------------------------------------------------------------------------


def test_build_counts_manifest_and_failures(built):
    path, calls = built
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "moviegen-latent-cache" and manifest["version"] == 1
    assert manifest["dtype"] == "float16"
    assert manifest["counts"] == {"inputs": 9, "cached": 4, "no_caption": 1, "failures": 4}
    assert manifest["num_items"] == 4 and len(manifest["items"]) == 4
    assert manifest["shards"] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert all((path / s).is_file() for s in manifest["shards"])
    assert manifest["grid"] == json.loads(json.dumps(GRID.to_dict()))
    assert manifest["tae"]["scaling_factor"] == pytest.approx(0.7)
    assert manifest["tae"]["shift_factor"] == pytest.approx(0.05)
    assert manifest["tae"]["config"]["latent_channels"] == 16
    assert manifest["text"] == {
        "config": {"kinds": ["minilm"], "dims": [384], "max_lengths": [256], "model_dim": 64},
        "num_encoders": 1,
        "dims": [384],
    }
    assert manifest["buckets"] == {
        "32x32-8f": {"height": 32, "width": 32, "frames": 8, "latent_shape": [16, 1, 4, 4], "count": 1},
        "32x48-8f": {"height": 48, "width": 32, "frames": 8, "latent_shape": [16, 1, 6, 4], "count": 1},
        "48x32-16f": {"height": 32, "width": 48, "frames": 16, "latent_shape": [16, 2, 4, 6], "count": 2},
    }
    for i, item in enumerate(manifest["items"]):
        assert set(item) == {
            "index", "shard", "bucket", "caption", "prompt", "fps", "latent_shape", "text_lengths", "source",
        }  # fmt: skip
        assert item["index"] == i and item["shard"] == i // 2
    failures = [json.loads(line) for line in (path / "failures.jsonl").read_text().splitlines()]
    reasons = {Path(f["source"]).name.split(":")[0]: f["reason"] for f in failures}
    assert reasons == {
        "badmeta.mp4": "bad_sidecar",
        "nocap.mp4": "no_caption",
        "broken.mp4": "unreadable",
        "short.mp4": "too_short",
        "prefixed.mp4": "bad_caption",
    }
    assert all("\n" not in f["error"] for f in failures)
    assert calls[-1] == (7, 7) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # temp folder renamed away


def test_latent_round_trip_equals_fresh_normalised_encode(built, tae):
    cache = LatentCache(built[0])
    assert len(cache) == 4
    for i in range(len(cache)):
        item = cache.get(i)
        meta = cache.items[i]
        assert item.latent.dtype == torch.float32
        assert list(item.latent.shape) == meta["latent_shape"] == list(GRID.bucket(item.bucket).latent_shape)
        expected = fresh_latent(tae, meta["source"], meta["bucket"])
        torch.testing.assert_close(item.latent, expected, rtol=2e-3, atol=2e-3)  # float16 storage
        assert item.caption == meta["caption"] and item.index == i


def test_text_states_equal_encode_raw_of_the_composed_prompt(built, text):
    cache = LatentCache(built[0])
    prompts = {Path(m["source"]).name: m["prompt"] for m in cache.items}
    assert prompts["a.mp4"] == "FPS-16. a red ball rolls"  # the file's frame rate
    assert prompts["b.mp4"] == 'FPS-24. a sign that says "hello"'  # the sidecar's fps wins
    assert prompts["sq.mp4"] == compose_prompt("a tree", fps=16, camera_motion="pan left")
    for i, meta in enumerate(cache.items):
        ((hidden, mask),) = cache.get(i).text
        ((ref_hidden, ref_mask),) = text.encode_raw([meta["prompt"]])
        assert (
            meta["prompt"] == compose_prompt(meta["caption"], fps=meta["fps"]) or "Camera" in meta["prompt"]
        )
        length = int(ref_mask.sum())
        assert hidden.shape == (length, 384) and mask.dtype == torch.bool and bool(mask.all())
        assert meta["text_lengths"] == [length]
        torch.testing.assert_close(hidden, ref_hidden[0, :length], rtol=5e-3, atol=5e-3)


def test_collate_pads_text_and_stacks_latents(built):
    cache = LatentCache(built[0])
    same = [i for i, b in enumerate(cache.buckets()) if b == "48x32-16f"]
    assert len(same) == 2
    items = [cache[i] for i in same]
    latents, text = LatentCache.collate(items)
    assert latents.shape == (2, 16, 2, 4, 6)
    ((hidden, mask),) = text
    lengths = [it.text[0][0].shape[0] for it in items]
    assert hidden.shape == (2, max(lengths), 384) and mask.shape == (2, max(lengths))
    assert mask.sum(1).tolist() == lengths
    for b, n in enumerate(lengths):
        assert torch.equal(hidden[b, :n], items[b].text[0][0]) and not hidden[b, n:].any()
    with pytest.raises(MovieGenError, match="mixes latent shapes"):
        LatentCache.collate([cache[i] for i in range(len(cache))])


def test_collate_keeps_fully_masked_rows_non_empty():
    empty = (torch.zeros(0, 3), torch.zeros(0, dtype=torch.bool))
    items = [
        CacheItem(torch.zeros(16, 1, 2, 2), [empty], "x"),
        CacheItem(torch.ones(16, 1, 2, 2), [empty], "y"),
    ]
    latents, ((hidden, mask),) = LatentCache.collate(items)
    assert hidden.shape == (2, 1, 3) and not mask.any()


def test_shard_indices_only_opens_the_ranks_shards(built, monkeypatch):
    opened = []
    real = cache_module.safe_open

    def counting(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cache_module, "safe_open", counting)
    cache = LatentCache(built[0])
    assert cache.shard_indices(0, 1) == [0, 1, 2, 3]
    assert cache.shard_indices(0, 2) == [0, 1]
    mine = cache.shard_indices(1, 2)
    assert mine == [2, 3]
    assert cache.shard_indices(2, 3) == []
    assert opened == []  # nothing is read before an item is
    for i in mine:
        cache.get(i)
        cache.get(i)
    assert opened == ["shard-00001.safetensors"] and cache.opened_shards == [1]
    with pytest.raises(MovieGenError, match="rank"):
        cache.shard_indices(2, 2)


def test_works_as_a_dataset_with_the_bucket_sampler(built):
    from torch.utils.data import DataLoader

    from moviegen.data.buckets import BucketBatchSampler

    cache = LatentCache(built[0])
    sampler = BucketBatchSampler(cache.buckets(), global_batch=2, seed=0, drop_last=True)
    loader = DataLoader(cache, batch_sampler=sampler, collate_fn=LatentCache.collate)
    latents, ((hidden, mask),) = next(iter(loader))
    assert latents.shape == (2, 16, 2, 4, 6) and hidden.shape[0] == 2


# ---- options, JSONL manifests and stand-in encoders ---------------------------------------------------


class StandInText:
    """Two encoders like UL2 + ByT5: a character embedding, and one that only sees quoted text."""

    def encode_raw(self, prompts):
        length = max(len(p) for p in prompts)
        codes = torch.zeros(len(prompts), length)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for b, p in enumerate(prompts):
            codes[b, : len(p)] = torch.tensor([ord(c) / 100 for c in p])
            mask[b, : len(p)] = True
        hidden = torch.stack([codes, -codes, codes**2], -1)
        quoted = torch.zeros(len(prompts), 1, 2)
        return [(hidden, mask), (quoted, torch.zeros(len(prompts), 1, dtype=torch.bool))]


def test_jsonl_manifest_float32_and_two_encoders(data, tae, tmp_path):
    rows = [
        {"path": "data/a.mp4", "caption": "first"},
        {"path": str(data / "sub" / "b.mp4"), "caption": "second", "fps": 16},
        {"path": "data/sq.mp4"},
        {"caption": "no path"},
        {"path": "data/missing.mp4", "caption": "gone"},
    ]
    (tmp_path / "data").symlink_to(data)
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken json\n\n")
    out = build_cache(manifest, tae, StandInText(), tmp_path / "cache", GRID, dtype=torch.float32)
    cache = LatentCache(out)
    info = cache.manifest
    assert info["counts"] == {"inputs": 6, "cached": 2, "no_caption": 1, "failures": 3}
    assert info["dtype"] == "float32" and info["text"]["num_encoders"] == 2 and info["text"]["config"] is None
    assert [m["caption"] for m in cache.items] == ["first", "second"]
    assert [m["prompt"] for m in cache.items] == ["FPS-16. first", "FPS-16. second"]
    for i, meta in enumerate(cache.items):
        item = cache.get(i)
        torch.testing.assert_close(item.latent, fresh_latent(tae, meta["source"], meta["bucket"]))
        (hidden, mask), (quoted, quoted_mask) = item.text
        ref = StandInText().encode_raw([meta["prompt"]])[0][0][0]
        assert torch.equal(hidden, ref) and bool(mask.all())
        assert quoted.shape == (0, 2) and quoted_mask.shape == (0,)
    latents, text = LatentCache.collate([cache[0]])
    assert text[1][0].shape == (1, 1, 2) and not text[1][1].any()
    reasons = sorted(json.loads(line)["reason"] for line in (out / "failures.jsonl").read_text().splitlines())
    assert reasons == ["bad_row", "bad_row", "no_caption", "unreadable"]


def test_build_items_list_and_overwrite_rules(data, tae, tmp_path):
    items = [DataItem(data / "a.mp4", "one"), DataItem(data / "sq.mp4", "two", fps=12.4)]
    out = build_cache(items, tae, StandInText(), tmp_path / "cache", GRID, batch_size=1)
    assert [m["fps"] for m in LatentCache(out).items] == [16, 12]
    # a rebuild replaces an existing cache
    build_cache(items[:1], tae, StandInText(), out, GRID)
    assert len(LatentCache(out)) == 1
    # but never a folder that is not a cache
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(MovieGenError, match="refusing to overwrite"):
        build_cache(items, tae, StandInText(), tmp_path / "precious", GRID)
    assert (tmp_path / "precious" / "thesis.tex").is_file()
    with pytest.raises(MovieGenError, match="shard_size"):
        build_cache(items, tae, StandInText(), tmp_path / "c2", GRID, shard_size=0)


def test_nothing_cacheable_and_float16_overflow_are_errors(data, tae, tmp_path):
    with pytest.raises(MovieGenError, match="no item could be cached.*cannot decode video"):
        build_cache([DataItem(data / "broken.mp4", "x")], tae, StandInText(), tmp_path / "c", GRID)
    assert not (tmp_path / "c").exists()
    huge = TAE(TAEConfig.preset("tiny", scaling_factor=1e9)).eval()
    with pytest.raises(MovieGenError, match="non-finite"):
        build_cache([DataItem(data / "a.mp4", "x")], huge, StandInText(), tmp_path / "c", GRID)


# ---- corrupt caches -----------------------------------------------------------------------------------


def copy_cache(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_missing_or_corrupt_manifest(built, tmp_path):
    with pytest.raises(MovieGenError, match="latent cache folder not found"):
        LatentCache(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MovieGenError, match="not a latent cache"):
        LatentCache(tmp_path / "empty")
    bad = copy_cache(built[0], tmp_path / "bad")
    (bad / "manifest.json").write_text('{"format": "moviegen-latent-cache", "ver')
    with pytest.raises(MovieGenError, match="corrupt latent cache manifest"):
        LatentCache(bad)
    manifest = json.loads((built[0] / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "items": [{"index": 5}]}))
    with pytest.raises(MovieGenError, match="item 0 is malformed"):
        LatentCache(bad)
    (bad / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(MovieGenError, match="unsupported cache version"):
        LatentCache(bad)
    (bad / "manifest.json").write_text("[]")
    with pytest.raises(MovieGenError, match="not a moviegen-latent-cache manifest"):
        LatentCache(bad)


def test_missing_or_corrupt_shard(built, tmp_path):
    broken = copy_cache(built[0], tmp_path / "broken")
    (broken / "shard-00001.safetensors").unlink()
    (broken / "shard-00000.safetensors").write_bytes(b"garbage")
    cache = LatentCache(broken)
    with pytest.raises(MovieGenError, match="corrupt latent cache shard .*shard-00000"):
        cache.get(0)
    with pytest.raises(MovieGenError, match="latent cache shard missing: .*shard-00001"):
        cache.get(2)
    with pytest.raises(IndexError):
        cache.get(4)


# ---- CLI ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    app.command("cache")(cache_cli)
    return app


def run(app, *args):
    return CliRunner().invoke(app, ["cache", *map(str, args)])


@pytest.fixture(scope="module")
def tae_folder(tae, tmp_path_factory):
    return tae.save_pretrained(tmp_path_factory.mktemp("models") / "tae")


def test_cli_builds_a_cache_from_components(app, data, tae_folder, tmp_path):
    out = tmp_path / "cache"
    result = run(app, data, "--out", out, "--tae", tae_folder, "--text", "minilm", "--grid", "tiny",
                 "--shard-size", 3, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cached 4 clip(s) in 2 shard(s)" in result.output
    assert "48x32-16f" in result.output and "[16, 2, 4, 6]" in result.output
    assert "failures: 4" in result.output and "unreadable" in result.output
    assert "skipped without caption: 1" in result.output
    assert len(LatentCache(out)) == 4


def test_cli_builds_from_a_pipeline_folder(app, data, tmp_path, monkeypatch):
    from moviegen.pipeline import MovieGenPipeline

    pipe = MovieGenPipeline.from_presets()
    folder = pipe.save_pretrained(tmp_path / "pipe")
    monkeypatch.setattr(pipeline_module, "DEFAULT_MODEL", folder)  # used when nothing is given
    for args in (["--pipeline", folder], []):
        out = tmp_path / f"cache{len(args)}"
        result = run(app, data, "--out", out, "--grid", "tiny", "--dtype", "bfloat16", *args)
        assert result.exit_code == 0, result.output
        cache = LatentCache(out)
        assert cache.manifest["dtype"] == "bfloat16" and len(cache) == 4
        assert cache.manifest["text"]["config"]["model_dim"] == pipe.text.model_dim


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}", "--tae", "{tae}", "--text", "minilm"], "data not found"),
        (["{data}", "--tae", "{tae}", "--text", "minilm", "--grid", "huge"], "unknown BucketGrid preset"),
        (["{data}", "--tae", "{tae}", "--text", "minilm", "--dtype", "int8"], "--dtype must be one of"),
        (["{data}", "--tae", "{tae}", "--text", "minilm", "--shard-size", "0"], "must be positive"),
        (["{data}"], "no TAE: pass --pipeline DIR or --tae DIR"),
        (["{data}", "--tae", "{tae}"], "no text encoders"),
        (["{data}", "--pipeline", "{data}"], "is not a MovieGenPipeline folder"),
        (["{data}", "--tae", "{missing}", "--text", "minilm"], "model folder not found"),
        (["{data}", "--tae", "{tae}", "--text", "minilm", "--out", "{data}"], "refusing to overwrite"),
    ],
)
def test_cli_errors_are_one_line(app, data, tae_folder, tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(pipeline_module, "DEFAULT_MODEL", tmp_path / "no-shipped-model")
    values = {"data": data, "tae": tae_folder, "missing": tmp_path / "missing"}
    argv = [a.format(**values) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    result = run(app, *argv)
    assert result.exit_code == 1
    assert isinstance(result.exception, MovieGenError), result.output
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_images_are_cached_without_the_fps_prefix(tae, tmp_path):
    """One rule for images (issue 16): a one-frame bucket's prompt has no FPS prefix or camera label."""
    grid = BucketGrid(aspect_sizes=((32, 32),), durations=(1, 8))
    root = tmp_path / "data"
    write_video(root / "still.mp4", moving_clip(1, 32, 32))
    (root / "still.json").write_text(json.dumps({"caption": "a red ball", "camera_motion": "pan left"}))
    write_video(root / "clip.mp4", moving_clip(8, 32, 32))
    (root / "clip.txt").write_text("a red ball rolls")
    cache = LatentCache(build_cache(root, tae, StandInText(), tmp_path / "cache", grid))
    prompts = {Path(m["source"]).name: m["prompt"] for m in cache.items}
    assert prompts == {"still.mp4": "a red ball", "clip.mp4": "FPS-16. a red ball rolls"}
