"""moviegen train edit --quick: three stages through the one Trainer, task batches by ratio, stage folders
that load as EditPipelines and edit a real file; the Trainer's task groups and random frame positions."""

import pytest
import torch

from helpers import run_cli, run_quick_recipe
from moviegen.data.cache import CacheItem, MemoryCache
from moviegen.edit import EditPipeline
from moviegen.errors import MovieGenError
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig
from moviegen.train.edit import parse_stages
from moviegen.train.loop import DataStream, TrainConfig


def test_quick_edit_recipe_end_to_end(tmp_path, capsys):
    from moviegen.data.world import World
    from moviegen.video import read_video, write_video

    out = tmp_path / "edit"
    log = run_quick_recipe(capsys, "edit", out)
    assert log["stages"] == [1, 2, 3] and set(log["guidance"]) == {"stage1", "stage2", "stage3"}
    kinds = {stage: [k for _, _, k in log["history"][f"stage{stage}/loss"]] for stage in (1, 2, 3)}
    assert kinds[1] == ["edit", "edit", "edit"]  # 5 edit batches, then 1 text-to-video
    assert kinds[2] == ["t2v", "segment", "animated"]
    assert kinds[3] == ["t2v", "segment", "animated"]
    for stage in ("stage1", "stage2", "stage3", "pipeline"):
        pipe = EditPipeline.from_pretrained(out / stage)
        assert pipe.transformer.config.in_channels == 32 and pipe.num_steps == 2
    clip = World().clip("test", 0).video
    write_video(tmp_path / "in.mp4", clip, fps=16)
    code, _, err = run_cli(capsys, "edit", tmp_path / "in.mp4", "make the circle blue", "--out",
                           tmp_path / "out.mp4", "--model", out / "pipeline")  # fmt: skip
    assert code == 0, err
    assert read_video(tmp_path / "out.mp4")[0].shape == clip.shape
    # a later stage from an earlier stage's model
    again = run_quick_recipe(capsys, "edit", tmp_path / "again", "--stages", "3", "--base", out / "stage2")
    assert again["stages"] == [3]


def test_stage_lists_are_checked(tmp_path, capsys):
    assert parse_stages("1,2,3") == (1, 2, 3) and parse_stages("2,3") == (2, 3)
    for bad in ("1,3", "0", "3,2", "a", ""):
        with pytest.raises(MovieGenError, match="stages"):
            parse_stages(bad)
    code, _, err = run_cli(capsys, "train", "edit", "--out", tmp_path / "x", "--quick", "--stages", "2")
    assert code == 1 and "--base" in err and not (tmp_path / "x").exists()


def _items(groups: dict[str, int]) -> list[CacheItem]:
    text = [(torch.zeros(1, 4), torch.ones(1, dtype=torch.bool))]
    return [CacheItem(torch.zeros(16, 1, 4, 4), text, "x", f"{g}/image", i)
            for g, n in groups.items() for i in range(n)]  # fmt: skip


def test_group_ratio_cycles_one_group_per_batch():
    cache = MemoryCache(_items({"edit": 6, "t2v": 4}))
    config = TrainConfig(global_batch=2, group_ratio={"edit": 2, "t2v": 1}, run_dir="r")
    stream = DataStream(cache, config, 0, 1)
    kinds = []
    for step in range(6):
        kind, idx = stream.next(step)
        kinds.append(kind)
        assert all(cache.get(i).bucket.startswith(kind + "/") for i in idx)
    assert kinds == ["edit", "edit", "t2v"] * 2
    with pytest.raises(MovieGenError, match="does not name"):
        DataStream(cache, TrainConfig(group_ratio={"edit": 1}, run_dir="r"), 0, 1)
    with pytest.raises(MovieGenError, match="group_ratio"):
        TrainConfig(group_ratio={"a/b": 1}, run_dir="r")


def test_frame_offset_shifts_the_temporal_positions():
    model = MovieGenTransformer(TransformerConfig.preset("tiny"))
    full = model.positions(3, 2, 2)  # frames 0..2
    shifted = model.positions(1, 2, 2, frame_offset=torch.tensor([2, 0]))
    assert torch.equal(shifted[0], full[0, 8:12]) and torch.equal(shifted[1], full[0, :4])
    x, t, text = torch.randn(2, 16, 1, 4, 4), torch.rand(2), torch.randn(2, 3, 64)
    for p in model.head.parameters():
        p.data.normal_(0, 0.1)
    with torch.no_grad():
        a = model(x, t, text, frame_offset=torch.tensor([0, 0]))
        b = model(x, t, text, frame_offset=torch.tensor([5, 0]))
    assert torch.equal(a, model(x, t, text)) and not torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(MovieGenError, match="frame_offset"):
        model(x, t, text, frame_offset=torch.tensor([8, 0]))
