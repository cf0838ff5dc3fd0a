"""Shared test helpers: synthetic clips, running the CLI in-process, a headless Chromium."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch


def moving_clip(frames: int = 16, height: int = 32, width: int = 32) -> torch.Tensor:
    """A smooth test clip ``(3, T, H, W)`` in [-1, 1]: a blob drifting right over colour gradients."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    out = []
    for t in range(frames):
        blob = torch.exp(-((xx + 0.5 - 0.06 * t) ** 2 + yy**2) / 0.25)
        out.append(torch.stack([blob * 1.6 - 0.8, 0.5 * xx, 0.5 * yy - 0.3 * blob]))
    return torch.stack(out, 1)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``moviegen ARGS`` through its real entry point; return (exit code, stdout, stderr)."""
    from moviegen.cli import main

    argv = sys.argv
    sys.argv = ["moviegen", *map(str, args)]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def run_quick_recipe(capsys, member: str, out: Path, *args: str) -> dict:
    """Run ``moviegen train MEMBER --out OUT --quick [ARGS]``; assert it succeeded and return its
    ``training_log.json``."""
    import json

    code, _, err = run_cli(capsys, "train", member, "--out", out, "--quick", *args)
    assert code == 0, err
    return json.loads((Path(out) / "training_log.json").read_text())


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def headless_chromium(profile: Path, window: str, *flags: str, page_load_timeout: float = 15):
    """A Selenium driver of Debian's headless Chromium (Selenium Manager is never used: no network). Skips the
    test when Chromium, ChromeDriver or selenium is missing, unless MOVIEGEN_REQUIRE_BROWSER is set (then it
    fails). The caller quits the driver."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = f"headless browser test needs {', '.join(missing)}"
        if os.environ.get("MOVIEGEN_REQUIRE_BROWSER"):
            pytest.fail(f"{reason} (MOVIEGEN_REQUIRE_BROWSER is set)")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--window-size={window}", f"--user-data-dir={profile}", *flags):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(page_load_timeout)
    return driver


__all__ = ["headless_chromium", "moving_clip", "run_cli", "run_quick_recipe", "pytest"]
