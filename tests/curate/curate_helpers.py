"""Helpers of the curation tests: the test config and the `curate` command run in-process."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from moviegen.curate.runner import curate_cli

# the `tiny` preset as a config file (what a user would pass with --config)
TEST_CONFIG = {
    "trim_start_s": 0.5,
    "min_clip_s": 2.0,
    "max_clip_s": 5.0,
    "min_side": 128,
    "subset_min_sides": [128, 144],
    "landscape_fraction": None,
    "grid": "tiny",
}


def cli_app() -> typer.Typer:
    """A stand-in for ``moviegen`` (a group, as there): ``app.command("curate")(curate_cli)``."""
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def group() -> None:
        """moviegen"""

    app.command("curate")(curate_cli)
    return app


def run_curate(*args: str | Path) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(cli_app(), ["curate", *map(str, args)])
    return result.exit_code, result.output, result.exception
