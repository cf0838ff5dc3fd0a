"""The one output rule (moviegen.files): rename over regular files, write symlink targets, devices and FIFOs
in place, refuse directories; checks before work."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from moviegen.errors import MovieGenError
from moviegen.files import check_output_dir, check_output_file, read_json_object, write_atomic
from moviegen.pretrained import atomic_dir


def test_regular_and_missing_files_are_replaced_atomically(tmp_path):
    write_atomic(tmp_path / "a" / "b.json", "{}")
    write_atomic(tmp_path / "a" / "b.json", "[1]")
    assert (tmp_path / "a" / "b.json").read_text() == "[1]"
    assert os.listdir(tmp_path / "a") == ["b.json"]


def test_a_symlink_keeps_being_a_link_and_its_target_is_written(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("old")
    (tmp_path / "link.txt").symlink_to(target)
    write_atomic(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and target.read_text() == "new"


def test_character_devices_and_fifos_are_written_in_place(tmp_path):
    write_atomic("/dev/null", "discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    write_atomic(fifo, b"through the pipe")
    reader.join(5)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe"]


def test_folders_and_impossible_paths_are_refused(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("keep")
    for path, why in [(tmp_path / "dir", "directory"), (tmp_path / "file" / "x", "not a directory"),
                      ("/proc/x/y.json", "not writable")]:  # fmt: skip
        with pytest.raises(MovieGenError, match=why):
            check_output_file(path)
        with pytest.raises(MovieGenError, match=why):
            write_atomic(path, "x")
    with pytest.raises(MovieGenError, match="not a directory"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(MovieGenError, match="not a directory"), atomic_dir(tmp_path / "file"):
        pass
    assert (tmp_path / "file").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["dir", "file"]


def test_json_objects(tmp_path):
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(MovieGenError, match="must hold a JSON object"):
        read_json_object(tmp_path / "list.json", "config file")
    with pytest.raises(MovieGenError, match="is a directory"):
        read_json_object(tmp_path, "config file")
