"""The report printed to PDF keeps every case, verdict and heat-map cell (issue 16, point 3).

`make demo`-like results (the lungs suite on the fixture lung model, the findings suite on
the fixture findings model, fewer images) are printed by headless Chromium through
``robusttest report --pdf``; pdftotext reads the PDF back. Before the print stylesheet the
PDF held 2 "✓ pass" of the 15 (lungs) and 67 (findings) in the HTML: the scroll boxes clipped
the wide tables. A control print without that stylesheet shows the check can fail.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

import robusttest
from robusttest.cli import main
from robusttest.errors import ConfigError
from robusttest.report import html as html_mod
from robusttest.report.html import _fmt_signed
from robusttest.report.pdf import find_chromium, print_pdf
from robusttest.resources import fixture_models
from robusttest.results import RunResult

INSTALL = "apt-get install -y chromium poppler-utils"


def _tools() -> str | None:
    try:
        find_chromium()
    except ConfigError:
        return f"headless Chromium not installed ({INSTALL}, or set CHROMIUM)"
    if shutil.which("pdftotext") is None:
        return f"pdftotext not installed ({INSTALL})"
    return None


needs_tools = pytest.mark.skipif(_tools() is not None, reason=_tools() or "")
VERDICT_WORDS = {
    "pass": "✓ pass",
    "fail": "✗ fail",
    "no-gate": "· no gate",
    "error": "! error",
    "uninformative": "○ uninformative",
}


class _Printed(HTMLParser):
    """The text a printed page shows: no <head>, no hidden navigation, <details> closed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip: list[str] = []  # open elements whose text is not printed
        self._in_summary = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = dict(attrs).get("class") or ""
        if tag in ("head", "nav", "details") or "sr" in cls.split():
            self._skip.append(tag)
        elif tag == "summary":
            self._in_summary += 1

    def handle_endtag(self, tag: str) -> None:
        if self._skip and self._skip[-1] == tag:
            self._skip.pop()
        elif tag == "summary":
            self._in_summary -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip or (self._skip == ["details"] and self._in_summary):
            self.parts.append(data)


def _printed_text(page: str) -> str:
    p = _Printed()
    p.feed(page)
    return "".join(p.parts)


def _pdf_text(pdf: Path) -> str:
    proc = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    )
    return proc.stdout


def _run(model: str, suite: str, limit: int) -> RunResult:
    return robusttest.run(
        fixture_models()[model],
        suite,
        limit=limit,
        repeats=1,
        cache=False,
        progress=False,
        device="cpu",
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[RunResult, Path, Path]]:
    """name → (result, its HTML report, its PDF), printed by `robusttest report`: lungs as
    the registered format (--report pdf=...), findings with --pdf."""
    if _tools() is not None:
        pytest.skip(_tools() or "")
    tmp = tmp_path_factory.mktemp("pdf")
    out = {}
    for name, limit in (("lungs", 8), ("findings", 40)):
        result = _run(name, name, limit)
        js = result.write_json(tmp / f"{name}.json")
        pdf, page = tmp / f"{name}.pdf", tmp / f"{name}.html"
        how = ["--report", f"pdf={pdf}"] if name == "lungs" else ["--pdf", str(pdf)]
        assert main(["report", str(js), *how, "--html", str(page)]) == 0
        assert pdf.read_bytes().startswith(b"%PDF")
        out[name] = (result, page, pdf)
    return out


def _missing(result: RunResult, text: str) -> list[str]:
    """Cases whose id, with its verdict on the same printed line, is not in ``text``."""
    lines = text.splitlines()
    missing = []
    for c in result.cases:
        word = VERDICT_WORDS[c.verdict]
        if not any(c.case_id in ln and word in ln for ln in lines):
            missing.append(f"{c.case_id} ({word})")
    return missing


@needs_tools
@pytest.mark.slow
@pytest.mark.parametrize("name", ["lungs", "findings"])
def test_pdf_keeps_every_case_verdict_and_heat_map_cell(
    name: str, demo: dict[str, tuple[RunResult, Path, Path]]
) -> None:
    result, html_path, pdf = demo[name]
    text = _pdf_text(pdf)
    assert len(result.cases) > 20 and {c.verdict for c in result.cases} >= {"pass", "no-gate"}
    # every case id, on one line with its verdict (the case table's row)
    assert _missing(result, text) == []
    # every verdict word and symbol the page shows (tables, failed list, heat map, legends)
    shown = _printed_text(html_path.read_text(encoding="utf-8"))
    for word in (*VERDICT_WORDS.values(), "✓", "✗"):
        assert text.count(word) == shown.count(word), word
    n_pass = sum(c.verdict == "pass" for c in result.cases)
    assert text.count("✓ pass") >= n_pass
    # every heat-map cell's drop (each also in its table row)
    drops = Counter(_fmt_signed(c.drop) for c in result.cases if not c.is_baseline)
    for drop, n in drops.items():
        assert text.count(drop) >= 2 * n, drop
    # on landscape pages
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    size = next(ln for ln in info.stdout.splitlines() if ln.startswith("Page size"))
    w, h = (float(v) for v in size.split(":")[1].split("pts")[0].split("x"))
    assert w > h


@needs_tools
@pytest.mark.slow
def test_without_the_print_stylesheet_the_pdf_loses_cases(
    demo: dict[str, tuple[RunResult, Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the check above sees what the issue saw when the print CSS is absent."""
    result, _, _ = demo["lungs"]
    monkeypatch.setattr(html_mod, "PRINT_CSS", "")
    text = _pdf_text_of(html_mod.render_html(result, rendered_at="t"))
    assert len(_missing(result, text)) > len(result.cases) // 2


def _pdf_text_of(page: str) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "x.pdf"
        pdf.write_bytes(print_pdf(page))
        return _pdf_text(pdf)


def test_without_chromium_one_line_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from report_factory import make_result

    js = make_result().write_json(tmp_path / "r.json")
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no browser on it
    assert main(["report", str(js), "--pdf", str(tmp_path / "r.pdf")]) == 2
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "PDF report not written" in ln)
    assert "apt-get install chromium" in line and "CHROMIUM=" in line
    assert "Traceback" not in out and not (tmp_path / "r.pdf").exists()
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    with pytest.raises(ConfigError, match="no-such-browser"):
        find_chromium()
