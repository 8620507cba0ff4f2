"""Degradation curves as small inline SVG (matplotlib, no pyplot, no global state).

The SVG must be byte-identical from one render to the next (the re-render test compares
whole pages), so the hash salt is fixed, the date metadata dropped, text written as
``<text>`` (no embedded glyphs, so it stays small) and element ids prefixed per figure so
several figures can live in one HTML document without id clashes.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from robusttest.report.numbers import plain_level, plain_number
from robusttest.results import CaseResult, FrontierResult

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
# ...and line style + marker per family so the curves survive greyscale printing.
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "*")
FAIL_COLOUR = "#B42318"
# Horizontal offset between families' points at one severity step: families with the same
# values (e.g. two noises that change nothing) would otherwise hide one another exactly.
DODGE = 0.09

_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "robusttest",
    "font.size": 8.0,
    "font.family": ["DejaVu Sans", "sans-serif"],
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@dataclass(frozen=True)
class Series:
    """One noise family's cases for one (task, metric, target), in the suite's level order."""

    noise: str
    cases: tuple[CaseResult, ...]


def _mpl_text(s: str) -> str:
    """A user string as literal matplotlib text: ``$`` would start mathtext."""
    return s.replace("$", r"\$")


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _step_label(step: int, series: Sequence[Series]) -> str:
    """Tick label of severity step ``step`` (1-based): its name, then each family's level."""
    at = [s.cases[step - 1] for s in series if len(s.cases) >= step]
    sevs = {c.severity for c in at}
    head = sevs.pop() if len(sevs) == 1 and None not in sevs else f"step {step}"
    lines = [str(head)]
    for c in at:
        lvl = "?" if c.level is None else plain_level(c.level)
        lines.append(f"{c.noise or c.condition} {lvl}")
    return _mpl_text("\n".join(lines))


def dodge(i: int, n: int) -> float:
    """x offset of family ``i`` of ``n``: centred on the step, DODGE apart."""
    return (i - (n - 1) / 2) * DODGE


def _severity(front: FrontierResult, level: float) -> float:
    """The frontier's search axis, increasing with the noise (as engine.frontier's)."""
    x = math.log(level) if front.log_axis else level
    return x if front.higher_is_worse else -x


def frontier_x(
    front: FrontierResult, levels: Sequence[float | None]
) -> tuple[float | None, float | None, float | None]:
    """Where the frontier's level and its CI ends fall on a curve whose x = k is the k-th
    of ``levels`` and x = 0 the clean baseline: interpolated on the frontier's own axis
    between the steps around it; None where a value is missing. A level beyond the last
    step is drawn just after it, one milder than the first step (with no clean level to
    anchor it) just before it."""
    knots: list[tuple[float, float]] = []
    for p in front.points:
        if p.source == "clean" and (p.level > 0 or not front.log_axis):
            knots.append((_severity(front, p.level), 0.0))
            break
    for k, lv in enumerate(levels, start=1):
        if lv is not None and (lv > 0 or not front.log_axis):
            knots.append((_severity(front, lv), float(k)))
    knots.sort()
    if not knots:
        return None, None, None
    ks = [k for k, _ in knots]
    xs = [x for _, x in knots]

    def at(level: float | None) -> float | None:
        if level is None or (front.log_axis and level <= 0):
            return None
        sv = _severity(front, level)
        if sv > ks[-1]:
            return xs[-1] + 0.25
        if sv < ks[0]:
            return max(xs[0] - 0.5, 0.0)
        import numpy as np

        return float(np.interp(sv, ks, xs))

    lo, hi = at(front.ci_low), at(front.ci_high)
    if front.ci_low is not None or front.ci_high is not None:  # an open end: the curve's edge
        beyond = xs[-1] + 0.25
        lo = beyond if lo is None and not front.higher_is_worse else lo
        hi = beyond if hi is None and front.higher_is_worse else hi
    return at(front.level), lo, hi


def frontier_label(front: FrontierResult) -> str:
    """``gaussian frontier: sigma 0.159 [0.159, 0.181]`` (the legend's words)."""
    if not front.reached:
        return (
            f"{front.noise} frontier: not reached (holds to {plain_level(front.search_range[1])})"
        )

    def n(x: float | None) -> str:
        return "beyond" if x is None else plain_number(x, 3)

    text = f"{front.noise} frontier: {front.level_param} {n(front.level)}"
    if front.ci_low is not None or front.ci_high is not None:
        text += f" [{n(front.ci_low)}, {n(front.ci_high)}]"
    if front.dose_uGy is not None:
        text += f" = {plain_number(front.dose_uGy, 3)} µGy"
    return text


def curve_svg(
    title: str,
    metric: str,
    higher_is_better: bool,
    baseline: CaseResult | None,
    series: Sequence[Series],
    fig_id: str,
    unit: str = "",
    frontiers: Sequence[FrontierResult] = (),
) -> str:
    """SVG markup of one metric against severity step, one line per noise family.

    x = 0 is the clean baseline, x = k the k-th level of each family, each family offset a
    little sideways (``dodge``) so equal curves stay visible; the band is the CI of the
    noisy metric; failed gates get a cross so they read without colour. ``unit`` labels the
    y axis ("" for a fraction). Each family's failure frontier (``frontiers``) is a dotted
    vertical line where its gate starts to fail, its CI a light band around it.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    n_steps = max((len(s.cases) for s in series), default=0)
    clean = baseline.noisy if baseline is not None else None
    if clean is None or not math.isfinite(clean):
        clean = next((c.clean for s in series for c in s.cases if _finite(c.clean)), math.nan)
    c_lo = baseline.noisy_ci_low if baseline is not None else clean
    c_hi = baseline.noisy_ci_high if baseline is not None else clean
    if not (_finite(c_lo) and _finite(c_hi)):
        c_lo = c_hi = clean
    with matplotlib.rc_context(cast(Any, _RC)):  # its stub wants Literal keys
        marked = [f for f in frontiers if any(f.noise == s.noise for s in series)]
        # frontier legends are long: the legend then goes under the axes
        below = 0.16 * (len(series) + len(marked) + 2) if marked else 0.0
        fig = Figure(figsize=(4.6, 3.1 + 0.12 * max(0, len(series) - 1) + below), dpi=100)
        FigureCanvasAgg(fig)  # explicit non-GUI canvas: never touches pyplot's backend
        ax = fig.add_subplot(1, 1, 1)
        handles: list[Line2D] = []
        any_fail = False
        for i, s in enumerate(series):
            colour = PALETTE[i % len(PALETTE)]
            dx = dodge(i, len(series))
            xs = [dx, *[k + 1 + dx for k in range(len(s.cases))]]
            ys = [clean, *[c.noisy for c in s.cases]]
            lo = [c_lo, *[c.noisy_ci_low for c in s.cases]]
            hi = [c_hi, *[c.noisy_ci_high for c in s.cases]]
            (line,) = ax.plot(
                xs,
                ys,
                color=colour,
                linestyle=LINESTYLES[i % len(LINESTYLES)],
                marker=MARKERS[i % len(MARKERS)],
                markersize=4.5,
                linewidth=1.6,
                label=_mpl_text(s.noise),
            )
            handles.append(line)
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, linewidth=0)
            fx = [x for x, c in zip(xs[1:], s.cases, strict=True) if c.verdict in ("fail", "error")]
            fy = [
                c.noisy if _finite(c.noisy) else clean
                for c in s.cases
                if c.verdict in ("fail", "error")
            ]
            front = next((f for f in frontiers if f.noise == s.noise), None)
            if front is not None:
                fx0, flo, fhi = frontier_x(front, [c.level for c in s.cases])
                if front.reached and fx0 is not None:
                    if flo is not None and fhi is not None:
                        ax.axvspan(flo + dx, fhi + dx, color=colour, alpha=0.10, linewidth=0)
                    ax.axvline(fx0 + dx, color=colour, linestyle=":", linewidth=1.4)
                handles.append(
                    Line2D(
                        [],
                        [],
                        color=colour,
                        linestyle=":" if front.reached else "none",
                        label=_mpl_text(frontier_label(front)),
                    )
                )
            if fx:
                any_fail = True
                ax.plot(
                    fx,
                    fy,
                    linestyle="none",
                    marker="X",
                    markersize=10,
                    markerfacecolor=FAIL_COLOUR,
                    markeredgecolor="black",
                    markeredgewidth=0.8,
                    zorder=5,
                )
        floors = {
            c.gate.min
            for s in series
            for c in s.cases
            if c.gate is not None and c.gate.min is not None
        }
        if baseline is not None and baseline.gate is not None and baseline.gate.min is not None:
            floors.add(baseline.gate.min)
        if len(floors) == 1:
            floor = floors.pop()
            ax.axhline(floor, color="#555555", linestyle=(0, (2, 2)), linewidth=1.0)
            handles.append(
                Line2D(
                    [],
                    [],
                    color="#555555",
                    linestyle=(0, (2, 2)),
                    label=f"min gate {plain_level(floor)}",
                )
            )
        if any_fail:
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker="X",
                    markersize=8,
                    markerfacecolor=FAIL_COLOUR,
                    markeredgecolor="black",
                    label="gate failed",
                )
            )
        ax.set_xticks(
            [0, *range(1, n_steps + 1)],
            ["clean", *[_step_label(k, series) for k in range(1, n_steps + 1)]],
            fontsize=6.5,
        )
        ax.set_xlim(-0.3 + dodge(0, len(series)), n_steps + 0.3 - dodge(0, len(series)))
        better = "higher is better" if higher_is_better else "lower is better"
        ax.set_ylabel(_mpl_text(f"{metric} ({unit + ', ' if unit else ''}{better})"))
        ax.set_title(_mpl_text(title), fontsize=9, loc="left")
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)  # no "1e-5" / "+0.9"
        ax.grid(True, axis="y", color="#dddddd", linewidth=0.6)
        if marked:
            ax.legend(
                handles=handles,
                fontsize=7,
                frameon=False,
                loc="upper left",
                bbox_to_anchor=(0.0, -0.28),
                borderaxespad=0.0,
            )
        else:
            ax.legend(handles=handles, fontsize=7, frameon=False, loc="best")
        fig.tight_layout(pad=0.4)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return _inline(buf.getvalue(), fig_id)


_ID_RE = re.compile(r'\bid="([^"]+)"')


def _inline(svg: str, prefix: str) -> str:
    """Strip the XML prologue and make ids unique within the page."""
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    # The RDF metadata and namespace declarations are useless inline (the HTML parser knows
    # SVG and xlink) and would be the only URLs in the page.
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
    for old in sorted(set(_ID_RE.findall(svg)), key=len, reverse=True):
        new = f"{prefix}-{old}"
        svg = svg.replace(f'id="{old}"', f'id="{new}"')
        svg = svg.replace(f"#{old})", f"#{new})").replace(f'href="#{old}"', f'href="#{new}"')
    # Scale with the layout: keep the viewBox, drop the fixed pt size.
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", svg, count=1)
    return svg.replace("<svg", '<svg role="img" class="curve"', 1)
