"""The HTML report: content, escaping, offline-ness and byte-for-byte re-rendering."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_factory import (
    EVIL,
    make_classification_result,
    make_merged,
    make_result,
    with_nan_case,
)

from robusttest.report import render_html, write_html
from robusttest.results import RunResult

STAMP = "2025-02-03T04:05:06Z"


class _Collector(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text.append(data)


def _parse(page: str) -> _Collector:
    p = _Collector()
    p.feed(page)
    p.close()
    return p


@pytest.fixture(scope="module")
def failed_page() -> str:
    return render_html(make_result(), rendered_at=STAMP)


@pytest.fixture(scope="module")
def evil_result() -> RunResult:
    attr_break = '" onmouseover="alert(2)'
    r = make_result(
        task=EVIL,
        target=EVIL,
        image_prefix=EVIL,
        caption_extra=EVIL + attr_break,
        model_name=EVIL + attr_break,
        noises=((EVIL, "x", (0.1, 0.2)), ("gaussian", "sigma", (0.04, 0.08))),
    )
    prov = dict(r.provenance)
    prov["suite"] = {"name": EVIL, "sha256": EVIL, "definition": {"description": EVIL}}
    prov[EVIL] = EVIL
    run = {**r.run, "host": EVIL, EVIL: [EVIL]}
    return replace(r, provenance=prov, run=run)


# --- content ------------------------------------------------------------------------------
def test_verdict_comes_first_with_counts_and_failed_gate(failed_page: str) -> None:
    body = failed_page[failed_page.index("<body>") :]
    assert body.index("FAILED") < body.index("Degradation curves") < body.index("Provenance")
    assert "<b>6</b> passed" in body and "<b>1</b> failed" in body
    assert "<b>7</b> ungated" in body
    assert "lungs-dice[gaussian-sigma0.12]" in body
    assert "&gt; limit 0.05" in body  # the gate's own message, escaped
    assert "How to read this" in body
    assert "<title>FAILED" in failed_page


def test_passed_banner() -> None:
    page = render_html(make_result(fail=False), rendered_at=STAMP)
    assert 'class="banner b-passed"' in page and "PASSED" in page
    assert "Failed gates" not in page


def test_incomplete_banner_says_how_many_images_finished() -> None:
    r = make_result(completed=False)
    page = render_html(r, rendered_at=STAMP)
    assert 'class="banner b-incomplete"' in page and "INCOMPLETE" in page
    assert "incomplete: 4 of 10 images finished" in page
    assert "(interrupted)" in page
    # without a planned total the page still says it is incomplete
    run = {k: v for k, v in r.run.items() if k != "n_images_total"}
    page2 = render_html(replace(r, run=run), rendered_at=STAMP)
    assert "incomplete: 4 (of an unknown number of) images finished" in page2


def test_tables_curves_heatmap_gallery_and_provenance(failed_page: str) -> None:
    p = _parse(failed_page)
    tables = [a.get("class") for t, a in p.tags if t == "table"]
    assert tables.count("cases") == 2  # dice · lungs, hd95 · lungs
    assert "heatmap" in tables and "gallery" in tables
    assert failed_page.count('<svg role="img" class="curve"') == 2
    for col in ("Case", "Severity (level)", "Clean", "Noisy", "Drop", "Drop CI"):
        assert f"<th>{col}</th>" in failed_page
    # every row names its case id (the pytest / JUnit test name), whole
    assert '<td class="case"><code>lungs-dice[quantum-dose50]</code></td>' in failed_page
    assert "p (Holm)" in failed_page and "min 0.75, max_drop 0.05 (on ci)" in failed_page
    # greyscale-safe verdicts: symbol and word, not colour alone
    assert "✗</span> fail" in failed_page and "✓</span> pass" in failed_page
    assert "·</span> no gate" in failed_page
    # numbers: 3 significant digits, no exponent, signed drops
    assert ">0.927<" in failed_page and ">+0.0900<" in failed_page
    assert "[+0.0842, +0.0958]" in failed_page
    # gallery: overlays (the sample grid has 2 images × 7 conditions) + worst strip of 6
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 2 * 7 + 6
    assert all((a.get("src") or "").startswith("data:image/png;base64,iVBORw0KGgo") for a in imgs)
    assert "Worst case per condition" in failed_page
    assert "model prediction" in failed_page  # the outline legend
    # provenance and run blocks
    for needle in ("3f" * 32, "ab" * 32, "cd" * 32, "montgomery", "numpy 2.1.0", "ci-runner-7"):
        assert needle in failed_page
    assert "2025-01-02T10:00:00+00:00" in failed_page  # started_at
    assert "192.2 s (3 min 12 s)" in failed_page


def test_heatmap_colours_worse_red_and_marks_verdicts(failed_page: str) -> None:
    heat = failed_page[failed_page.index('<table class="heatmap">') :]
    heat = heat[: heat.index("</table>")]
    cells = re.findall(r'<td class="heat" style="background:(#[0-9a-f]{6});[^>]*>(.*?)</td>', heat)
    assert len(cells) == 12  # 2 metrics × 6 noisy conditions
    worst_bg, worst_text = cells[5]  # dice, gaussian 0.12: the failed case
    assert "✗" in worst_text and "+0.0900" in worst_text
    r, g, b = (int(worst_bg[i : i + 2], 16) for i in (1, 3, 5))
    assert r > g and r > b  # red = worse


def test_classification_without_overlays_shows_images_and_scores() -> None:
    page = render_html(make_classification_result(), rendered_at=STAMP)
    assert "PASSED" in page and "auroc · Effusion" in page and "auroc · Nodule" in page
    assert "Effusion 0.50, Nodule 0.51" in page  # caption, minus the id/condition prefix
    assert "model prediction" not in page  # no outline legend without overlays


def test_merged_result_has_a_section_per_task_and_per_run() -> None:
    page = render_html(make_merged(), rendered_at=STAMP)
    assert 'id="task-0"' in page and 'id="task-1"' in page
    assert "Run 1 of 2" in page and "Run 2 of 2" in page
    assert "densenet_findings.onnx" in page and "unet_lungs.onnx" in page


def test_undefined_metric_shows_reason_and_error_verdict() -> None:
    page = render_html(with_nan_case(make_result()), rendered_at=STAMP)
    assert "empty prediction mask on every image" in page
    assert "!</span> error" in page
    assert "errors (undefined metric)" in page


def test_dollar_signs_in_labels_are_not_mathtext() -> None:
    page = render_html(make_result(target="a$\\frac{1}{0$b"), rendered_at=STAMP)
    assert "a$\\frac{1}{0$b" in page


def test_bad_base64_is_never_emitted() -> None:
    r = make_result()
    bad = replace(r.gallery[0], overlay_png='"><script>alert(1)</script>', image_png="x")
    page = render_html(replace(r, gallery=(bad, *r.gallery[1:])), rendered_at=STAMP)
    assert "image not available" in page
    assert "<script" not in page


# --- security ------------------------------------------------------------------------------
def test_user_strings_are_escaped_everywhere(evil_result: RunResult) -> None:
    page = render_html(evil_result, rendered_at=EVIL)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    p = _parse(page)
    assert not [t for t, _ in p.tags if t == "script"]
    assert not p.script_text
    handlers = [k for _, a in p.tags for k in a if k.startswith("on")]
    assert handlers == []  # the attribute-breaking caption stayed inside its attribute
    # the SVG text (titles, legends, tick labels) is escaped too
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert svgs and all("alert(1)" not in s or "&lt;script&gt;" in s for s in svgs)


def test_content_security_policy_forbids_scripts_and_fetches(failed_page: str) -> None:
    m = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', failed_page)
    assert m is not None
    assert "default-src 'none'" in m.group(1) and "img-src data:" in m.group(1)


# --- offline -------------------------------------------------------------------------------
def test_offline_no_external_references() -> None:
    page = render_html(make_merged(), rendered_at=STAMP)
    p = _parse(page)
    refs = [
        (t, k, v) for t, a in p.tags for k, v in a.items() if k in ("src", "href", "xlink:href")
    ]
    assert refs
    for tag, key, val in refs:
        assert val is not None
        assert val.startswith("#") or val.startswith("data:image/png;base64,"), (tag, key, val)
    assert not re.search(r"https?://", page)
    assert "@import" not in page and "@font-face" not in page
    assert all(u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", page))


# --- determinism -----------------------------------------------------------------------------
def test_rerender_from_json_is_byte_identical() -> None:
    r = make_merged()
    again = RunResult.from_json(r.to_json())
    assert render_html(again, rendered_at=STAMP) == render_html(r, rendered_at=STAMP)


def test_only_the_render_stamp_differs() -> None:
    r = make_result()
    a = render_html(r, rendered_at="2025-01-01T00:00:00Z")
    b = render_html(RunResult.from_json(r.to_json()), rendered_at="2030-12-31T23:59:59Z")
    assert a != b
    assert a.replace("2025-01-01T00:00:00Z", "T") == b.replace("2030-12-31T23:59:59Z", "T")


def test_default_stamp_is_taken_once() -> None:
    page = render_html(make_classification_result())
    assert len(re.findall(r"rendered \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", page)) == 1


def test_write_html_atomic(tmp_path: Path) -> None:
    out = write_html(make_result(), tmp_path / "sub" / "report.html", rendered_at=STAMP)
    assert out.read_text(encoding="utf-8") == render_html(make_result(), rendered_at=STAMP)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left
