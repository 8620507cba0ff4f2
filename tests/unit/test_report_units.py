"""Units and numbers in the reports (issue 16, point 4).

HD95 is in mm when every image's pixel spacing is known and in px otherwise; the engine
records which, and the HTML (tables, heat map, plots) and JUnit say it. Numbers in tables
and the heat map have 3 significant digits and never an exponent. Every family's curve
stays visible when two families have the same values.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from report_factory import make_result
from torch import nn

import robusttest
from robusttest.models import ModelCard, export_onnx
from robusttest.report import case_properties, render_html
from robusttest.report.numbers import plain_level, plain_number
from robusttest.report.plots import DODGE, PALETTE, Series, curve_svg, dodge
from robusttest.results import RunResult


# --- the number format ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "text"),
    [
        (0.94932, "0.949"),
        (-1.954e-05, "−0.0000195"),  # the "−2e−05"
        (-2e-05, "−0.0000200"),
        (150.23, "150"),  # the "+1.5e+02"
        (1234.6, "1235"),  # the integer part is never rounded away
        (99.96, "100"),
        (9.996, "10.0"),
        (0.09996, "0.100"),  # rounding up adds no fourth digit
        (27.36, "27.4"),
        (0.5, "0.500"),
        (3.0, "3.00"),
        (0.0, "0"),
    ],
)
def test_plain_number(x: float, text: str) -> None:
    assert plain_number(x) == text
    assert "e" not in plain_number(x) and "E" not in plain_number(x)
    # it is the same number, to 3 significant digits
    back = float(text.replace("−", "-"))
    assert back == pytest.approx(float(f"{x:.3g}") if abs(x) < 100 else round(x), rel=1e-12)


def test_plain_number_signed() -> None:
    assert plain_number(0.035, signed=True) == "+0.0350"
    assert plain_number(-0.035, signed=True) == "−0.0350"


@pytest.mark.parametrize(
    ("x", "text"),
    [(0.02, "0.02"), (100.0, "100"), (1e-05, "0.00001"), (2.5e-07, "0.00000025"), (0.5, "0.5")],
)
def test_plain_level(x: float, text: str) -> None:
    assert plain_level(x) == text
    assert float(text) == x


def _tiny_and_huge() -> RunResult:
    """A result whose drops are tiny (−2e−05) and large (+150): the issue's two cases."""
    r = make_result()
    cases = []
    for c in r.cases:
        if c.metric == "dice" and c.condition == "quantum-dose50":
            c = replace(c, drop=-1.954e-05, ci_low=-7.87e-05, ci_high=2.13e-05)
        if c.metric == "hd95" and c.condition == "gaussian-sigma0.12":
            c = replace(c, drop=150.23, ci_low=144.0, ci_high=157.0, unit="mm")
        cases.append(c)
    return replace(r, cases=tuple(cases))


def _visible_numbers(page: str) -> list[str]:
    """The text of the case tables and heat map cells (tags dropped)."""
    parts = re.findall(r'<table class="(?:cases|heatmap)">.*?</table>', page, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", " ".join(parts))
    return text.split()


def test_tables_and_heat_map_have_no_exponents() -> None:
    page = render_html(_tiny_and_huge(), rendered_at="t")
    words = _visible_numbers(page)
    assert not [w for w in words if re.fullmatch(r"[−+-]?[\d.]+e[−+-]?\d+,?\]?", w)]
    assert "−0.0000195" in words  # the case table's drop and the heat-map cell
    assert words.count("−0.0000195") == 2
    assert "+150" in words and "[+144," in words


# --- the unit: from the engine, through every report ---------------------------------------
class DarkIsLung(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (0.5 - (x * 0.25 + 0.5))


CARD = ModelCard(
    task="segmentation",
    input_size=(64, 64),
    channels=1,
    mean=(0.5,),
    std=(0.25,),
    structures=("lungs",),
    output_activation="sigmoid",
)


def _manifest(root: Path, spacing: list[float | None]) -> Path:
    rng = np.random.default_rng(0)
    rows = ["image,image_id,patient_id,pixel_spacing_mm,mask"]
    for i, sp in enumerate(spacing):
        img = rng.uniform(0.6, 1, (64, 64))
        img[10:50, 8 + i : 30 + i] *= 0.3  # a dark "lung" the model finds, off by a bit
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"im{i}.png")
        m = np.zeros((64, 64), bool)
        m[12:52, 10:30] = True
        Image.fromarray(m.astype(np.uint8) * 255).save(root / f"m{i}.png")
        rows.append(f"im{i}.png,im{i},p{i},{'' if sp is None else sp},m{i}.png")
    csv = root / "manifest.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return csv


def _run(tmp: Path, spacing: list[float | None]) -> RunResult:
    folder = tmp / "-".join(str(s) for s in spacing)
    folder.mkdir()
    model = export_onnx(DarkIsLung(), tmp / "dark.onnx", CARD)
    suite = {
        "name": "units",
        "task": "segmentation",
        "data": {"adapter": "manifest", "root": str(_manifest(folder, spacing))},
        "noise": {"gaussian": {"sigma": [0.05]}},
        "repeats": 1,
        "metrics": ["dice", "hd95"],
        "bootstrap": {"resamples": 100},
    }
    from robusttest.suite import parse_suite

    return robusttest.run(
        model, parse_suite(suite), cache=False, gallery=0, workers=0, device="cpu"
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    tmp = tmp_path_factory.mktemp("units")
    return {
        "mm": _run(tmp, [0.5, 0.5, 0.5]),
        "px": _run(tmp, [None, None, None]),
        "mixed": _run(tmp, [0.5, None, 0.5]),
    }


def test_engine_records_the_unit_from_the_pixel_spacing(runs: dict[str, RunResult]) -> None:
    for kind, want in (("mm", "mm"), ("px", "px"), ("mixed", "mm or px")):
        hd = [c for c in runs[kind].cases if c.metric == "hd95"]
        assert hd and {c.unit for c in hd} == {want}, kind
        assert {c.unit for c in runs[kind].cases if c.metric == "dice"} == {""}
    # the label is right: the same masks at 0.5 mm per pixel give half the pixel distances
    mm = runs["mm"].case("lungs-hd95[clean]").clean
    px = runs["px"].case("lungs-hd95[clean]").clean
    assert px > 1 and mm == pytest.approx(0.5 * px)


def test_unit_survives_json_and_old_files_say_mm_or_px(runs: dict[str, RunResult]) -> None:
    r = runs["px"]
    again = RunResult.from_json(r.to_json())
    assert again.case("lungs-hd95[clean]").unit == "px"
    # results written before cases had a unit: the metric's, with both possibilities
    import json

    d = json.loads(r.to_json())
    for c in d["cases"]:
        del c["unit"]
    old = RunResult.from_dict(d)
    assert old.case("lungs-hd95[clean]").unit is None
    assert case_properties(old.case("lungs-hd95[clean]"))["unit"] == "mm or px"
    assert case_properties(old.case("lungs-dice[clean]"))["unit"] == ""


def test_unit_in_junit_html_tables_heat_map_and_plot(runs: dict[str, RunResult]) -> None:
    r = runs["mm"]
    assert case_properties(r.case("lungs-hd95[gaussian-sigma0.05]"))["unit"] == "mm"
    assert case_properties(r.case("lungs-dice[gaussian-sigma0.05]"))["unit"] == ""
    page = render_html(r, rendered_at="t")
    assert 'hd95 · lungs <span class="muted">(in mm; lower is better)</span>' in page
    assert "<th>Drop (mm)</th>" in page and "<th>Clean (mm)</th>" in page
    assert "<th>Clean</th>" in page  # dice: a fraction, no unit
    assert '<th class="rowh">hd95 · lungs (mm)</th>' in page  # the heat-map row
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert any("<text" in g and "hd95 (mm, lower is better)" in g for g in svgs)  # y axis
    px = render_html(runs["px"], rendered_at="t")
    assert "<th>Drop (px)</th>" in px and "hd95 (px, lower is better)" in px


# --- every curve visible -------------------------------------------------------------------
def _series_points(svg: str) -> dict[str, list[tuple[float, float]]]:
    """The marker positions of each plotted family (by line colour), from the SVG."""
    out: dict[str, list[tuple[float, float]]] = {}
    for chunk in svg.split('<g id="f-line2d_')[1:]:
        head = re.search(
            r'<path d="[^"]+" clip-path="[^"]+" style="[^"]*stroke: (#[0-9a-f]{6})', chunk
        )
        if head is None or head.group(1) not in {c.lower() for c in PALETTE}:
            continue  # a grid line, a tick, the gate line or a legend entry
        pts = re.findall(r'<use xlink:href="#[^"]+" x="([\d.]+)" y="([\d.]+)"', chunk)
        out[head.group(1)] = [(float(x), float(y)) for x, y in pts]
    return out


def test_equal_curves_are_offset_so_each_stays_visible() -> None:
    r = make_result()
    dice = [c for c in r.cases if c.metric == "dice"]
    base = next(c for c in dice if c.is_baseline)
    quantum = tuple(c for c in dice if c.noise == "quantum")
    # a second family with exactly the same values: drawn on top, it would hide the first
    twin = tuple(replace(c, noise="electronic") for c in quantum)
    svg = curve_svg(
        "dice", "dice", True, base, [Series("quantum", quantum), Series("electronic", twin)], "f"
    )
    pts = _series_points(svg)
    assert len(pts) == 2 and all(len(p) == 1 + len(quantum) for p in pts.values())
    a, b = pts.values()
    assert not set(a) & set(b)  # no point of one family hides a point of the other
    assert [y for _, y in a] == [y for _, y in b]  # same values, side by side
    assert dodge(1, 2) - dodge(0, 2) == pytest.approx(DODGE)
    assert dodge(0, 3) == -dodge(2, 3) and dodge(1, 3) == 0
