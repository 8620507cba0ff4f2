"""Open the report in a real headless Chromium: it renders, and logs no console errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from report_factory import make_merged, make_result

from robusttest.report import write_html
from robusttest.report.html import BANNER

CHROMIUM = next(
    (p for p in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")) if p),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or not Path(CHROMIUM).exists(),
    reason="headless Chromium not installed (Debian: apt-get install -y chromium; or set CHROMIUM)",
)


def _screenshot(page: Path, png: Path, tmp: Path, size: str = "1400,2400") -> str:
    """Screenshot ``page``; return Chromium's log (console messages show as INFO:CONSOLE)."""
    assert CHROMIUM is not None
    profile = tmp / f"profile-{png.stem}"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={png}",
        f"--window-size={size}",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def _console_errors(log: str) -> list[str]:
    return [
        ln
        for ln in log.splitlines()
        if "CONSOLE" in ln or "Uncaught" in ln or "Content Security Policy" in ln
    ]


def test_chromium_renders_report_without_console_errors(tmp_path: Path) -> None:
    # the harness must be able to see an error, or the check below proves nothing
    canary = tmp_path / "canary.html"
    canary.write_text("<!DOCTYPE html><script>undefined_function()</script>", encoding="utf-8")
    log = _screenshot(canary, tmp_path / "canary.png", tmp_path, "200,200")
    assert any("Uncaught" in ln for ln in _console_errors(log)), log[-2000:]

    page = write_html(make_result(), tmp_path / "report.html", rendered_at="t")
    png = tmp_path / "report.png"
    log = _screenshot(page, png, tmp_path)
    assert _console_errors(log) == []
    im = Image.open(png).convert("RGB")
    assert im.size == (1400, 2400)
    colours = im.getcolors(maxcolors=1 << 24)
    assert colours is not None and len(colours) > 200  # text, plots, thumbnails: not blank
    red = tuple(int(BANNER["failed"][i : i + 2], 16) for i in (1, 3, 5))
    assert sum(n for n, c in colours if c == red) > 20_000  # the FAILED banner is on screen
    # the banner is at the top: the first 400 px rows hold most of its colour
    top = im.crop((0, 0, 1400, 400)).getcolors(maxcolors=1 << 24) or []
    assert sum(n for n, c in top if c == red) > 20_000


def test_chromium_renders_merged_report(tmp_path: Path) -> None:
    page = write_html(make_merged(), tmp_path / "merged.html", rendered_at="t")
    log = _screenshot(page, tmp_path / "merged.png", tmp_path, "1200,1600")
    assert _console_errors(log) == []
