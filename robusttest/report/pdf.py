"""The HTML report printed to PDF by a headless Chromium: the form a regulatory file takes.

The print stylesheet (``html.PRINT_CSS``) lays the report out on landscape pages with every
column, verdict and heat-map cell on the page; this renderer only drives the browser.
Chromium is found as ``$CHROMIUM`` or ``chromium`` / ``chromium-browser`` /
``google-chrome`` on the PATH, and runs with a fresh profile, no network and no sandbox
(the page has no scripts and a CSP that forbids every fetch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from robusttest.errors import ConfigError
from robusttest.report.base import Renderer, register_renderer
from robusttest.report.html import render_html
from robusttest.results import RunResult

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "install Chromium (Debian/Ubuntu: apt-get install chromium) or set CHROMIUM=/path/to/chrome"
)
PRINT_TIMEOUT_S = 180.0


def find_chromium() -> str:
    """The Chromium to print with; a one-line ConfigError saying how to get one."""
    env = os.environ.get("CHROMIUM")
    if env:
        exe = shutil.which(env)
        if exe is None:
            raise ConfigError(f"CHROMIUM={env!r} is not an executable; {INSTALL_HINT}")
        return exe
    for name in CHROMIUM_NAMES:
        exe = shutil.which(name)
        if exe is not None:
            return exe
    raise ConfigError(f"printing the report to PDF needs a headless Chromium; {INSTALL_HINT}")


def chromium_command(exe: str, page: Path, out: Path, profile: Path) -> list[str]:
    return [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--no-pdf-header-footer",  # the page numbers come from the print stylesheet
        "--print-to-pdf-no-header",  # the same, for Chromium before 120
        f"--print-to-pdf={out}",
        page.resolve().as_uri(),
    ]


def print_pdf(html: str, *, timeout: float = PRINT_TIMEOUT_S) -> bytes:
    """``html`` (a whole page) printed to PDF bytes by a headless Chromium."""
    exe = find_chromium()
    with tempfile.TemporaryDirectory(prefix="robusttest-pdf-") as tmp:
        folder = Path(tmp)
        page, out = folder / "report.html", folder / "report.pdf"
        page.write_text(html, encoding="utf-8")
        cmd = chromium_command(exe, page, out, folder / "profile")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"{exe} did not finish printing the report to PDF within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot start {exe} to print the report ({exc.strerror or exc})"
            ) from None
        data = out.read_bytes() if out.is_file() else b""
        if proc.returncode != 0 or not data.startswith(b"%PDF"):
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise ConfigError(
                f"{exe} failed to print the report to PDF (exit {proc.returncode}: {last[:300]})"
            )
        return data


@register_renderer
class PdfRenderer(Renderer):
    name = "pdf"
    suffix = ".pdf"
    description = "the HTML report printed by a headless Chromium (landscape A4/Letter)"

    def render(self, result: RunResult, *, rendered_at: str) -> bytes:
        return print_pdf(render_html(result, rendered_at=rendered_at))
