"""Shared fixtures: one synthetic corpus with ground truth, and one curation run over it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from curate_helpers import TEST_CONFIG, run_curate

from moviegen.curate.synthetic import make_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("corpus") / "videos"
    return folder, make_corpus(folder)


@pytest.fixture(scope="session")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "curate.json"
    path.write_text(json.dumps(TEST_CONFIG))
    return path


@pytest.fixture(scope="session")
def local_run(corpus, config_file, tmp_path_factory) -> Path:
    """The reference run: local, in-process (--workers 1), clips cut."""
    out = tmp_path_factory.mktemp("runs") / "local"
    code, output, error = run_curate(
        corpus[0], "--out", out, "--config", config_file, "--workers", "1", "--cut-clips"
    )
    assert code == 0, (output, error)
    return out
