"""The HTML report: one self-contained file, a pure function of a ``RunResult``.

Works offline (inline CSS, inline SVG, images as ``data:`` URIs, no scripts at all) and a
Content-Security-Policy forbids every network fetch and every script, so a hostile string
that slipped past the escaping still could not run. Every string that comes from the
result (labels, ids, captions, messages, provenance) goes through :func:`_e`.

Layout, for a reader with one minute: the verdict and the failed gates first, a one-line
"how to read this", then per task the degradation curves, a heat map of the grid, the
table of cases and the image gallery; provenance and run facts last for the auditor.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robusttest.gates import CLEAN
from robusttest.report.base import (
    OVERRIDE_SOURCES,
    Renderer,
    coverage_lines,
    gate_overrides,
    gate_source_text,
    gate_sources,
    gate_table_rows,
    register_renderer,
    run_errors,
    run_state,
    unit_of,
)
from robusttest.report.css import CSS, PRINT_CSS
from robusttest.report.numbers import plain_level, plain_number
from robusttest.report.plots import Series, curve_svg
from robusttest.results import CaseResult, FrontierResult, GalleryItem, RunResult

VERDICT_TEXT = {
    "pass": ("✓", "pass"),
    "fail": ("✗", "fail"),
    "no-gate": ("·", "no gate"),
    "uninformative": ("○", "uninformative"),
    "error": ("!", "error"),
}
# Banner colours: white text on each passes WCAG AA (≥ 4.5:1).
BANNER = {"passed": "#1A7F37", "failed": "#B42318", "incomplete": "#B54708"}
HEAT_SCALE = 0.20  # relative drop at which the heat-map colour saturates
_B64_PNG = re.compile(r"^iVBORw0KGgo[A-Za-z0-9+/]*={0,2}$")
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


# --- small formatting helpers ------------------------------------------------------------
def _e(x: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    return html.escape(str(x), quote=True)


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _fmt(x: float | None, sig: int = 3) -> str:
    """3 significant digits without an exponent; an undefined value as an em dash."""
    if x is None or not math.isfinite(x):
        return "—"
    return plain_number(x, sig)


def _fmt_signed(x: float | None, sig: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    if abs(x) < 1e-12:  # float noise from subtracting equal means: print an honest 0
        return "0"
    return plain_number(x, sig, signed=True)


def _fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def _fmt_ci(lo: float, hi: float) -> str:
    if not (_ok(lo) and _ok(hi)):
        return "—"
    return f"[{_fmt_signed(lo)}, {_fmt_signed(hi)}]"


def _fmt_seconds(x: Any) -> str:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        m, s = divmod(float(x), 60.0)
        return f"{x:.1f} s" + (f" ({int(m)} min {s:.0f} s)" if m >= 1 else "")
    return _e(x)


def _badge(verdict: str) -> str:
    sym, text = VERDICT_TEXT.get(verdict, ("?", verdict))
    cls = verdict if verdict in VERDICT_TEXT else "error"
    return (
        f'<span class="badge v-{_e(cls)}"><span aria-hidden="true">{sym}</span> {_e(text)}</span>'
    )


def _json_pre(x: Any) -> str:
    return f"<pre>{_e(json.dumps(x, indent=2, sort_keys=True, default=str))}</pre>"


def _value(x: Any) -> str:
    """A provenance/run value: scalars as text, containers as compact JSON."""
    if x is None:
        return "—"
    if isinstance(x, float):
        return _e(f"{x:g}")
    if isinstance(x, (str, int, bool)):
        return _e(x)
    return f"<code>{_e(json.dumps(x, sort_keys=True, default=str))}</code>"


def _get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def _unique(xs: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(xs))


# --- grouping ------------------------------------------------------------------------------
def _tasks(result: RunResult) -> list[str]:
    return _unique([c.suite for c in result.cases] + [g.suite for g in result.gallery])


def _conditions(cases: Sequence[CaseResult], gallery: Sequence[GalleryItem]) -> list[str]:
    """Clean first, then the conditions in the suite's order (the order of the cases)."""
    conds = _unique([CLEAN, *(c.condition for c in cases), *(g.condition for g in gallery)])
    has = {c.condition for c in cases} | {g.condition for g in gallery}
    return [c for c in conds if c in has]


def _panels(cases: Sequence[CaseResult]) -> list[tuple[str, str, list[CaseResult]]]:
    """(target, metric, cases) in order of first appearance."""
    keys = _unique([f"{c.target}\x00{c.metric}" for c in cases])
    out = []
    for k in keys:
        target, metric = k.split("\x00", 1)
        out.append(
            (target, metric, [c for c in cases if c.target == target and c.metric == metric])
        )
    return out


def _series(cases: Sequence[CaseResult]) -> tuple[CaseResult | None, list[Series]]:
    baseline = next((c for c in cases if c.is_baseline), None)
    noisy = [c for c in cases if not c.is_baseline]
    fams = _unique([c.noise or c.condition for c in noisy])
    return baseline, [
        Series(f, tuple(c for c in noisy if (c.noise or c.condition) == f)) for f in fams
    ]


# --- sections ------------------------------------------------------------------------------
def _image_counts(result: RunResult) -> tuple[int, int | None]:
    """(images finished, images planned or None when the result does not say)."""
    done = _get(result.provenance, "data", "n_images")
    if not isinstance(done, int):
        done = len({(r.suite, r.image_id) for r in result.records})
    total = result.run.get("n_images_total", _get(result.provenance, "data", "n_images_total"))
    return done, total if isinstance(total, int) else None


def _banner(result: RunResult) -> str:
    counts = result.counts()
    failed = result.failed
    errors = run_errors(result)
    if not result.completed:
        state, word, sym = "incomplete", "INCOMPLETE", "⚠"
        if run_state(result) == "error":
            word = "ERROR"
    elif errors or counts["error"]:
        state, word, sym = "failed", "ERROR", "!"
    elif failed or result.failed_frontiers:
        state, word, sym = "failed", "FAILED", "✗"
    else:
        state, word, sym = "passed", "PASSED", "✓"
    n_gated = counts["pass"] + counts["fail"] + counts["error"]
    parts = [
        f"<b>{counts['pass']}</b> passed",
        f"<b>{counts['fail']}</b> failed",
        f"<b>{counts['no-gate']}</b> ungated (reported only)",
    ]
    if counts["error"]:
        parts.append(f"<b>{counts['error']}</b> errors (not judged)")
    lines = [
        f'<section id="verdict" class="banner b-{state}" aria-label="verdict">',
        f'<div class="verdict-word"><span aria-hidden="true">{sym}</span> {word}</div>',
        f'<div class="verdict-counts">{" · ".join(parts)} — {len(result.cases)} cases, '
        f"{n_gated} gated</div>",
    ]
    if not result.completed:
        done, total = _image_counts(result)
        of = f"{done} of {total}" if total is not None else f"{done} (of an unknown number of)"
        err = result.run.get("error")
        why = f" ({_e(err)})" if err else ""
        lines.append(
            f'<p class="incomplete"><b>incomplete: {of} images finished</b>{why}. The numbers '
            "below cover only the finished images; an incomplete run never counts as a pass.</p>"
        )
    if errors:  # every unreadable file, or why the evaluation stopped, with the fix
        lines.append(
            f'<h2 class="failed-h">Could not be evaluated ({len(errors)})</h2><ul class="failed">'
        )
        lines += [f"<li>{_e(e)}</li>" for e in errors]
        lines.append("</ul>")
    if failed:
        lines.append(f'<h2 class="failed-h">Failed gates ({len(failed)})</h2><ul class="failed">')
        for c in failed:
            lines.append(
                f"<li>{_badge(c.verdict)} <code>{_e(c.suite)}</code> / <code>{_e(c.case_id)}</code>"
                f": {_e(c.message)}" + (f" <i>({_e(c.reason)})</i>" if c.reason else "") + "</li>"
            )
        lines.append("</ul>")
    if result.failed_frontiers:
        fronts = result.failed_frontiers
        lines.append(
            f'<h2 class="failed-h">Failed frontiers ({len(fronts)})</h2><ul class="failed">'
        )
        for f in fronts:
            lines.append(
                f"<li>{_badge(f.verdict)} <code>{_e(f.suite)}</code> / "
                f"<code>{_e(f.frontier_id)}</code>: {_e(f.message)}</li>"
            )
        lines.append("</ul>")
    lines.append("</section>")
    return "\n".join(lines)


def _coverage(result: RunResult) -> str:
    """What the cases cover: the selection that produced them and every name of the model
    or the data that got no case (never silently absent)."""
    lines = coverage_lines(result)
    if not lines:
        return (
            '<section id="coverage"><h2>Coverage</h2><p>Every case of the grid; every '
            "target of the model and the data evaluated.</p></section>"
        )
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return (
        '<section id="coverage"><h2>Coverage</h2><p>What these cases do not cover:</p>'
        f'<ul class="coverage">{items}</ul></section>'
    )


HOW_TO_READ = (
    '<p class="howto"><b>How to read this.</b> Each case runs the model on the same images '
    "clean and with one kind and level of noise. <b>Drop</b> is how much worse the metric gets "
    "under noise (positive = worse, in the metric's units), with its bootstrap confidence "
    "interval over patients. A gate <b>passes</b> when its limit holds (on the CI bound unless "
    "the suite says <i>point</i>). p comes from a paired test with the patient as its unit "
    "(as the bootstrap), Holm-adjusted across the cases shown. Verdicts: ✓ pass, ✗ fail, "
    "· no gate (reported only), ○ uninformative (clean metric at chance or below the suite's "
    "floor: nothing to judge), ! error (not judged: the run could not evaluate it).</p>"
)


def _unit_note(unit: str) -> str:
    """' (mm)' after a header or label; nothing for a fraction."""
    return f" ({_e(unit)})" if unit else ""


SHORT_SOURCE = {"command line": "cli", "ini": "ini", "argument": "arg"}


def _gate_cell(c: CaseResult, sources: Mapping[str, str]) -> str:
    """The gate, its sources as a tooltip, and a mark when the command line or the ini
    file set one of its limits (the Gates section lists them)."""
    if c.gate is None:
        return "<td>—</td>"
    kinds = [k for k, src in sources.items() if src.startswith(OVERRIDE_SOURCES)]
    where = sources[kinds[0]].split(":", 1)[0] if kinds else ""
    mark = (
        f' <a class="override" href="#gates" title="{_e("; ".join(kinds))} set by the {_e(where)}">'
        f"{_e(SHORT_SOURCE.get(where, where))}</a>"
        if kinds
        else ""
    )
    title = f' title="{_e(gate_source_text(sources))}"' if sources else ""
    return f"<td{title}>{_e(c.gate.describe())}{mark}</td>"


def _case_table(
    target: str,
    metric: str,
    cases: Sequence[CaseResult],
    sources: Sequence[Mapping[str, str]] | None = None,
) -> str:
    """``sources``: each case's gate sources (report.base.gate_sources), in case order."""
    hib = cases[0].higher_is_better
    unit = unit_of(cases[0])
    u = _unit_note(unit)
    rows = []
    for c, src in zip(cases, sources or [{} for _ in cases], strict=True):
        noisy = _fmt(c.noisy)
        if c.reason and not _ok(c.noisy):
            noisy = f'— <span class="reason">{_e(c.reason)}</span>'
        level = "" if c.level is None else f' <span class="lvl">({_e(plain_level(c.level))})</span>'
        pts = f"{c.n} images, {c.n_patients} patients, {c.repeats} noise repeat(s)"
        ptitle = f"{c.test or 'no test'}; unadjusted p {_fmt_p(c.p_value)}"
        rows.append(
            f'<tr class="r-{_e(c.verdict)}" title="{_e(c.message)}">'
            f'<td class="case"><code>{_e(c.case_id)}</code></td>'
            f"<td>{_e(c.severity or ('baseline' if c.is_baseline else '—'))}{level}</td>"
            f'<td class="num">{_fmt(c.clean)}</td><td class="num">{noisy}</td>'
            f'<td class="num">{"—" if c.is_baseline else _fmt_signed(c.drop)}</td>'
            f'<td class="num">{"—" if c.is_baseline else _fmt_ci(c.ci_low, c.ci_high)}</td>'
            f'<td class="num" title="{_e(ptitle)}">{_fmt_p(c.p_adjusted)}</td>'
            f"{_gate_cell(c, src)}"
            f'<td class="num" title="{_e(pts)}">{c.n}</td>'
            f"<td>{_badge(c.verdict)}</td></tr>"
        )
    better = "higher is better" if hib else "lower is better"
    in_unit = f"in {_e(unit)}; " if unit else ""
    return (
        f'<h4>{_e(metric)} · {_e(target)} <span class="muted">({in_unit}{better})</span></h4>'
        '<div class="scroll"><table class="cases"><thead><tr>'
        f"<th>Case</th><th>Severity (level)</th><th>Clean{u}</th><th>Noisy{u}</th>"
        f"<th>Drop{u}</th><th>Drop CI{u}</th><th>p (Holm)</th><th>Gate</th><th>n</th>"
        "<th>Verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _heat_colour(t: float) -> tuple[str, str]:
    """(background, text) for t in [-1, 1]: blue = better, white = same, red = worse (RdBu)."""
    t = max(-1.0, min(1.0, t))
    mid, red, blue = (247, 247, 247), (178, 24, 43), (33, 102, 172)
    end = red if t > 0 else blue
    a = abs(t)
    rgb = tuple(round(m + (e - m) * a) for m, e in zip(mid, end, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb), ("#ffffff" if a > 0.6 else "#111111")


HEAT_MAX_COLUMNS = 15  # noisy conditions per heat-map table: a landscape page holds them


def _column_groups(conds: Sequence[str], fam_of: Mapping[str, str]) -> list[list[str]]:
    """The heat map's columns (grouped by family) cut into tables of at most
    HEAT_MAX_COLUMNS, whole families together where they fit, so a printed page keeps
    every cell (a long family is cut in order)."""
    groups: list[list[str]] = []
    for fam in _unique([fam_of[c] for c in conds]):
        cols = [c for c in conds if fam_of[c] == fam]
        while cols:
            if groups and len(groups[-1]) + len(cols) <= HEAT_MAX_COLUMNS:
                groups[-1].extend(cols)
                cols = []
            else:
                groups.append(cols[:HEAT_MAX_COLUMNS])
                cols = cols[HEAT_MAX_COLUMNS:]
    return groups


def _heat_table(
    cases: Sequence[CaseResult], conds: Sequence[str], noisy: Sequence[CaseResult]
) -> str:
    fam_of = {c.condition: c.noise or c.condition for c in noisy}
    lvl_of = {c.condition: c for c in noisy}
    fams = _unique([fam_of[c] for c in conds])
    head1 = "".join(
        f'<th colspan="{sum(1 for c in conds if fam_of[c] == f)}" class="fam">{_e(f)}</th>'
        for f in fams
    )
    levels = {c: lvl_of[c].level for c in conds}
    head2 = "".join(
        f'<th title="{_e(c)}">{_e(c if lv is None else plain_level(lv))}</th>'
        for c, lv in levels.items()
    )
    rows = []
    for target, metric, pcases in _panels(cases):
        by_cond = {c.condition: c for c in pcases}
        base = by_cond.get(CLEAN)
        clean = base.noisy if base is not None else next((c.clean for c in pcases), math.nan)
        cells = []
        for cond in conds:
            c = by_cond.get(cond)
            if c is None:
                cells.append('<td class="heat empty"></td>')
                continue
            sym = VERDICT_TEXT.get(c.verdict, ("?", ""))[0]
            if _ok(c.relative_drop):
                bg, fg = _heat_colour(c.relative_drop / HEAT_SCALE)
            else:
                bg, fg = "#d0d0d0", "#111111"
            cells.append(
                f'<td class="heat" style="background:{bg};color:{fg}" '
                f'title="{_e(c.case_id)}: {_e(c.message)}">'
                f'<span class="sym">{sym}</span><br>{_fmt_signed(c.drop)}</td>'
            )
        unit = unit_of(pcases[0])
        rows.append(
            f'<tr><th class="rowh">{_e(metric)} · {_e(target)}{_unit_note(unit)}</th>'
            f'<td class="num">{_fmt(clean)}</td>{"".join(cells)}</tr>'
        )
    return (
        '<div class="scroll"><table class="heatmap"><thead>'
        f'<tr><th rowspan="2">metric · target</th><th rowspan="2">clean</th>{head1}</tr>'
        f"<tr>{head2}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _heatmap(cases: Sequence[CaseResult]) -> str:
    noisy = [c for c in cases if not c.is_baseline]
    if not noisy:
        return ""
    conds = _unique([c.condition for c in noisy])
    fam_of = {c.condition: c.noise or c.condition for c in noisy}
    tables = "".join(_heat_table(cases, g, noisy) for g in _column_groups(conds, fam_of))
    return tables + (
        '<p class="legend">Cell text: drop (positive = worse, in the row\'s unit) and verdict '
        "(✓ pass, ✗ fail, · no gate, ! error). Colour: relative drop, "
        '<span class="sw" style="background:#b2182b"></span> worse … '
        '<span class="sw" style="background:#f7f7f7"></span> unchanged … '
        '<span class="sw" style="background:#2166ac"></span> better, '
        f"saturating at ±{HEAT_SCALE:.0%}; grey: undefined.</p>"
    )


def _img(item: GalleryItem, cls: str = "") -> str:
    b64 = item.overlay_png or item.image_png
    alt = item.caption or f"{item.image_id} {item.condition}"
    if not _B64_PNG.match(b64):
        return f'<div class="noimg">image not available</div><span class="sr">{_e(alt)}</span>'
    return f'<img class="{_e(cls)}" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _short_caption(item: GalleryItem) -> str:
    """The caption without its leading 'image id · condition · ' (the grid says those)."""
    cap = item.caption
    for prefix in (f"{item.image_id} · {item.condition} · ", f"{item.image_id} · "):
        if cap.startswith(prefix):
            return cap[len(prefix) :]
    return cap


def _cond_header(cond: str, cases: Sequence[CaseResult]) -> str:
    """'quantum<br>0.25' for a noisy condition the cases describe, else the condition id."""
    c = next((c for c in cases if c.condition == cond), None)
    if c is None or c.noise is None or c.level is None:
        return f"<code>{_e(cond)}</code>"
    return f'<span title="{_e(cond)}">{_e(c.noise)}<br>{_e(plain_level(c.level))}</span>'


def _gallery(
    items: Sequence[GalleryItem], conds: Sequence[str], cases: Sequence[CaseResult]
) -> str:
    samples = [g for g in items if g.kind == "sample"]
    worst = [g for g in items if g.kind == "worst"]
    if not samples and not worst:
        return ""
    out = ["<h3>Images</h3>"]
    if any(g.overlay_png for g in items):
        out.append(
            '<p class="legend">Outlines: <span class="sw" style="background:#ff4040"></span> model '
            'prediction, <span class="sw" style="background:#40dc40"></span> ground truth.</p>'
        )
    if samples:
        cols = [c for c in conds if any(g.condition == c for g in samples)]
        ids = _unique([g.image_id for g in samples])
        at = {(g.image_id, g.condition): g for g in samples}
        head = "".join(f"<th>{_cond_header(c, cases)}</th>" for c in cols)
        rows = []
        for i in ids:
            cells = []
            for c in cols:
                g = at.get((i, c))
                if g is None:
                    cells.append("<td></td>")
                else:
                    cells.append(
                        f"<td><figure>{_img(g)}<figcaption>{_e(_short_caption(g))}"
                        "</figcaption></figure></td>"
                    )
            rows.append(f'<tr><th class="rowh"><code>{_e(i)}</code></th>{"".join(cells)}</tr>')
        out.append(
            '<h4>Sample images at every condition</h4><div class="scroll"><table class="gallery">'
            f"<thead><tr><th>image</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
            "</table></div>"
        )
    if worst:
        order = {c: k for k, c in enumerate(conds)}
        worst = sorted(worst, key=lambda g: order.get(g.condition, len(order)))
        figs = "".join(
            f'<figure class="worst"><div class="wc"><code>{_e(g.condition)}</code></div>{_img(g)}'
            f"<figcaption>{_e(g.caption)}</figcaption></figure>"
            for g in worst
        )
        if any(g.overlay_png for g in worst):
            what = "The image with the worst metric under each condition"
        else:  # classification: a set-level metric has no per-image value to rank by
            what = (
                "The image whose score moved furthest toward the wrong answer under each "
                "condition (a positive label's score down, a negative one's up)"
            )
        out.append(
            "<h4>Worst case per condition</h4>"
            f'<p class="muted">{what} (noise repeat 0).</p><div class="strip">{figs}</div>'
        )
    return "\n".join(out)


def _curves(
    task_idx: int, cases: Sequence[CaseResult], frontiers: Sequence[FrontierResult] = ()
) -> str:
    figs = []
    for k, (target, metric, pcases) in enumerate(_panels(cases)):
        baseline, series = _series(pcases)
        if not series:
            continue
        svg = curve_svg(
            f"{metric} · {target}",
            metric,
            pcases[0].higher_is_better,
            baseline,
            series,
            fig_id=f"t{task_idx}f{k}",
            unit=unit_of(pcases[0]),
            frontiers=[f for f in frontiers if f.target == target and f.metric == metric],
        )
        figs.append(f'<figure class="plot">{svg}</figure>')
    if not figs:
        return ""
    return (
        "<h3>Degradation curves</h3>"
        "<p class=\"muted\">Metric against severity step (each family's levels in the suite's "
        "order, labelled under the axis); shaded: CI of the noisy metric; ✗ marks a failed gate"
        + ("; dotted: a family's failure frontier, its CI a light band" if frontiers else "")
        + f'.</p><div class="plots">{"".join(figs)}</div>'
    )


def _uninformative(result: RunResult) -> str:
    """The metrics and targets whose clean performance cannot carry a verdict, apart from
    the gates: one line each, with why and what the suite does with them."""
    groups: dict[tuple[str, str, str], list[CaseResult]] = {}
    for c in result.uninformative:
        groups.setdefault((c.suite, c.metric, c.target), []).append(c)
    if not groups:
        return ""
    items = []
    for (suite, metric, target), cases in groups.items():
        why = cases[0].message.split("; ")[0].removeprefix("uninformative: ")
        failing = sum(c.verdict == "fail" for c in cases)
        fate = f"{failing} failed (the suite fails them)" if failing else "not judged"
        items.append(
            f"<li>{_badge('uninformative')} <code>{_e(suite)}</code> / {_e(metric)} · "
            f"<b>{_e(target)}</b>: {_e(why)} — {len(cases)} cases, {_e(fate)}</li>"
        )
    return (
        f'<section id="uninformative"><h2>Uninformative ({len(groups)} metric · target)</h2>'
        '<p class="muted">The model\'s clean performance here is at chance (its CI contains '
        "it) or below the suite's floor: it has nothing to lose to noise, so its gates say "
        "nothing about robustness.</p><ul>" + "".join(items) + "</ul></section>"
    )


def _frontier_table(frontiers: Sequence[FrontierResult]) -> str:
    """One row per failure frontier: where its gate starts to fail, with the CI."""
    if not frontiers:
        return ""
    rows = []
    for f in frontiers:
        where = "not reached" if not f.reached else plain_number(f.level or 0.0, 4)
        ci = (
            f"[{_fl(f.ci_low)}, {_fl(f.ci_high)}]"
            if f.reached and (f.ci_low is not None or f.ci_high is not None)
            else "—"
        )
        dose = (
            f"{plain_number(f.dose_uGy, 3)} [{_fl(f.ci_low_uGy)}, {_fl(f.ci_high_uGy)}]"
            if f.dose_uGy is not None
            else "—"
        )
        need = "—"
        if f.min_level is not None:
            need = f"{'≥' if f.higher_is_worse else '≤'} {plain_level(f.min_level)}"
        rows.append(
            f'<tr class="r-{_e(f.verdict)}" title="{_e(f.message)}">'
            f'<td class="case"><code>{_e(f.frontier_id)}</code></td>'
            f"<td>{_e(f.gate)} {_e(plain_level(f.limit))} (on {_e(f.on)})</td>"
            f"<td>{_e(f.level_param)}</td>"
            f'<td class="num">{_e(where)}</td><td class="num">{_e(ci)}</td>'
            f'<td class="num">{_e(dose)}</td>'
            f'<td class="num">{f.evaluations}</td><td>{_e(need)}</td>'
            f"<td>{_badge(f.verdict)}</td></tr>"
        )
    return (
        "<h3>Failure frontiers</h3>"
        '<p class="muted">The level at which each gate starts to fail, searched between and '
        "beyond the ladder's levels on the same images, with the patient-bootstrap CI of the "
        "crossing; µGy: detector air kerma (quantum, known pixel spacing); evaluations: levels "
        "evaluated beyond the suite's own.</p>"
        '<div class="scroll"><table class="cases"><thead><tr>'
        "<th>Frontier</th><th>Gate</th><th>Level</th><th>Gate fails from</th>"
        f"<th>{_e(f'{frontiers[0].ci:.0%} CI of the crossing')}</th>"
        "<th>µGy [CI]</th><th>Evaluations</th><th>Required</th><th>Verdict</th>"
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _fl(x: float | None) -> str:
    return "beyond" if x is None else plain_number(x, 3)


def _task_section(idx: int, task: str, result: RunResult) -> str:
    cases = [c for c in result.cases if c.suite == task]
    fronts = [f for f in result.frontiers if f.suite == task]
    items = [g for g in result.gallery if g.suite == task]
    counts = {v: sum(1 for c in cases if c.verdict == v) for v in VERDICT_TEXT}
    summary = " · ".join(f"{counts[v]} {VERDICT_TEXT[v][1]}" for v in VERDICT_TEXT if counts[v])
    tables = "".join(
        _case_table(t, m, pc, [gate_sources(result, c) for c in pc]) for t, m, pc in _panels(cases)
    )
    return "\n".join(
        [
            f'<section class="task" id="task-{idx}">',
            f'<h2>Task <code>{_e(task)}</code> <span class="muted">{_e(summary)}</span></h2>',
            _curves(idx, cases, fronts),
            _frontier_table(fronts),
            "<h3>Heat map of the grid</h3>" + _heatmap(cases) if cases else "",
            "<h3>Cases</h3>" + tables if cases else "",
            _gallery(items, _conditions(cases, items), cases),
            "</section>",
        ]
    )


def _override_note(result: RunResult) -> str:
    overrides = gate_overrides(result)
    if not overrides:
        return ""
    return (
        '<p class="howto"><b>Gates overridden for this run</b> (not the suite\'s own): '
        + "; ".join(f"<code>{_e(o)}</code>" for o in overrides)
        + '. <a href="#gates">Every gate and its source</a>.</p>'
    )


def _gates(result: RunResult) -> str:
    """Every entry of the effective gate tables and where it came from: the suite file, a
    suite it extends, the command line or the ini file (overrides first in mind: they
    change what a verdict means)."""
    rows = gate_table_rows(result)
    if not rows:
        return ""
    body = []
    for suite, path, value, source, level in rows:
        shown = (
            _value(value)
            if value is not None
            else "null (no limits from here on)"
            if level
            else "null (limit removed)"
        )
        cls = ' class="override"' if source.startswith(OVERRIDE_SOURCES) else ""
        body.append(
            f"<tr{cls}><td><code>{_e(suite)}</code></td><td><code>{_e(path)}</code></td>"
            f"<td>{shown}</td><td>{_e(source)}</td></tr>"
        )
    overrides = gate_overrides(result)
    note = (
        "<p><b>Overridden for this run:</b> " + "; ".join(_e(o) for o in overrides) + "</p>"
        if overrides
        else '<p class="muted">No gate was overridden for this run.</p>'
    )
    return (
        '<section id="gates"><h2>Gates</h2>'
        '<p class="muted">The effective gate table of each suite and where each entry came '
        "from. A case takes the limits of the most specific entries: default, metric, "
        "noise, condition.</p>"
        + note
        + '<div class="scroll"><table class="cases gates"><thead><tr><th>Suite</th>'
        "<th>Entry</th><th>Value</th><th>From</th></tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div></section>"
    )


_KNOWN_PROV = {"robusttest_version", "model", "suite", "data", "seed", "repeats", "packages"}


def _kv_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _section(prov: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    v = prov.get(key)
    return v if isinstance(v, Mapping) else {}


def _provenance_one(prov: Mapping[str, Any]) -> str:
    model, suite, data = (_section(prov, k) for k in ("model", "suite", "data"))
    skipped = data.get("skipped") or []
    pk = prov.get("packages")
    packages = (
        " · ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(pk.items()))
        if isinstance(pk, Mapping)
        else _value(pk)
    )
    rows: list[tuple[str, str]] = [
        (
            "model",
            _value(model.get("path"))
            + (f" ({_value(model['backend'])})" if model.get("backend") else ""),
        ),
        ("model sha256", f"<code>{_value(model.get('sha256'))}</code>"),
        (
            "suite",
            _value(suite.get("name"))
            + (
                f' <span class="muted">from {_value(_get(suite, "definition", "source"))}</span>'
                if _get(suite, "definition", "source")
                else ""
            ),
        ),
        ("suite sha256", f"<code>{_value(suite.get('sha256'))}</code>"),
        *(
            [("suite extends", " → ".join(_e(x) for x in suite["extends"]))]
            if isinstance(suite.get("extends"), list) and suite["extends"]
            else []
        ),
        ("data adapter", _value(data.get("adapter"))),
        ("data manifest hash", f"<code>{_value(data.get('manifest_hash'))}</code>"),
        ("images evaluated", _value(data.get("n_images"))),
        *_spacing_row(data.get("pixel_spacing_mm")),
        (
            "images skipped",
            f"{len(skipped)}"
            + (
                f"<details><summary>list</summary>{_json_pre(skipped)}</details>" if skipped else ""
            ),
        ),
        ("seed", _value(prov.get("seed"))),
        ("noise repeats", _value(prov.get("repeats"))),
        ("robusttest", _value(prov.get("robusttest_version"))),
        ("packages", packages),
    ]
    for k in sorted(set(prov) - _KNOWN_PROV):
        rows.append((k, _value(prov[k])))
    extra = []
    if model.get("card") is not None:
        extra.append(f"<details><summary>model card</summary>{_json_pre(model['card'])}</details>")
    if suite.get("definition") is not None:
        extra.append(
            f"<details><summary>suite definition</summary>{_json_pre(suite['definition'])}</details>"
        )
    if data.get("describe") is not None:
        extra.append(
            f"<details><summary>data description</summary>{_json_pre(data['describe'])}</details>"
        )
    return _kv_table(rows) + "".join(extra)


def _spacing_row(sp: Any) -> list[tuple[str, str]]:
    """The pixel spacing the physical noise used: how many images knew theirs, and its range."""
    if not isinstance(sp, Mapping) or not isinstance(sp.get("known"), int):
        return []
    known, unknown = sp["known"], int(sp.get("unknown") or 0)
    text = f"known for {known} of {known + unknown} images"
    if known and isinstance(sp.get("median"), (int, float)):
        text += (
            f": median {plain_number(float(sp['median']), 3)} mm "
            f"(range {plain_number(float(sp['min']), 3)}–{plain_number(float(sp['max']), 3)})"
        )
    if unknown:
        text += "; the others assumed a 430 mm field of view"
    return [("pixel spacing", _e(text))]


def _provenance(prov: Mapping[str, Any]) -> str:
    runs = prov.get("runs")
    if isinstance(runs, list) and set(prov) == {"runs"}:
        parts = [
            f"<h3>Run {k + 1} of {len(runs)}</h3>"
            + (_provenance_one(p) if isinstance(p, Mapping) else _value(p))
            for k, p in enumerate(runs)
        ]
    else:
        parts = [_provenance_one(prov)]
    return (
        '<section id="provenance"><h2>Provenance</h2>'
        '<p class="muted">What was tested, exactly: enough to reproduce the numbers above.</p>'
        + "".join(parts)
        + f"<details><summary>full provenance (JSON)</summary>{_json_pre(prov)}</details>"
        "</section>"
    )


_RUN_ORDER = (
    "started_at",
    "finished_at",
    "seconds_total",
    "seconds_evaluation",
    "command",
    "cwd",
    "model_path",
    "device",
    "gpu",
    "cpu",
    "cpu_count",
    "host",
)


def _run_one(run: Mapping[str, Any]) -> str:
    keys = [k for k in _RUN_ORDER if k in run] + sorted(set(run) - set(_RUN_ORDER))
    rows = [(k, _fmt_seconds(run[k]) if k.startswith("seconds") else _value(run[k])) for k in keys]
    return _kv_table(rows) if rows else '<p class="muted">no run facts recorded</p>'


def _run_block(run: Mapping[str, Any]) -> str:
    runs = run.get("runs")
    if isinstance(runs, list) and set(run) == {"runs"}:
        body = "".join(
            f"<h3>Run {k + 1} of {len(runs)}</h3>"
            + (_run_one(r) if isinstance(r, Mapping) else _value(r))
            for k, r in enumerate(runs)
        )
    else:
        body = _run_one(run)
    return (
        '<section id="run"><h2>Run</h2><p class="muted">Wall-clock facts: they differ between '
        f"otherwise identical runs.</p>{body}</section>"
    )


def _title(result: RunResult) -> str:
    prov = result.provenance
    runs = prov.get("runs")
    if isinstance(runs, list) and set(prov) == {"runs"}:
        return f"{len(runs)} runs: " + ", ".join(str(_get(p, "suite", "name")) for p in runs)
    model = _get(prov, "model", "path") or "model"
    suite = _get(prov, "suite", "name") or "suite"
    return f"{model} on suite {suite}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_html(result: RunResult, *, rendered_at: str | None = None) -> str:
    """The whole report as one HTML string (a pure function of ``result`` and the stamp)."""
    stamp = rendered_at if rendered_at is not None else _now()
    tasks = _tasks(result)
    runs = result.provenance.get("runs")
    first = runs[0] if isinstance(runs, list) and runs else result.provenance
    version = _get(result.provenance, "robusttest_version") or _get(first, "robusttest_version")
    nav = (
        " ".join(f'<a href="#task-{k}">{_e(t)}</a>' for k, t in enumerate(tasks))
        + (' <a href="#gates">gates</a>' if gate_table_rows(result) else "")
        + ' <a href="#provenance">provenance</a> <a href="#run">run</a>'
    )
    title = _title(result)
    failed = result.failed or result.failed_frontiers
    state = "INCOMPLETE" if not result.completed else ("FAILED" if failed else "PASSED")
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="robusttest">',
        f"<title>{state} · robusttest · {_e(title)}</title>",
        f"<style>{CSS}{PRINT_CSS}</style></head><body>",
        "<header>",
        f"<h1>Noise robustness report: {_e(title)}</h1>",
        f'<p class="meta">rendered {_e(stamp)}'
        + (
            f" · run finished {_e(result.run['finished_at'])}"
            if result.run.get("finished_at")
            else ""
        )
        + f" · robusttest {_e(version or '?')} · results schema {_e(result.schema_version)}</p>",
        "</header>",
        _banner(result),
        _override_note(result),
        _coverage(result),
        _uninformative(result),
        HOW_TO_READ,
        f"<nav>Contents: {nav}</nav>",
        *(_task_section(k, t, result) for k, t in enumerate(tasks)),
        _gates(result),
        _provenance(result.provenance),
        _run_block(result.run),
        "<footer>Generated by robusttest from the saved results only (no model or data "
        "needed to re-render). Self-contained: works offline; no scripts.</footer>",
        "</body></html>",
        "",
    ]
    return "\n".join(body)


@register_renderer
class HtmlRenderer(Renderer):
    name = "html"
    suffix = ".html"
    description = "one self-contained HTML report (offline, no scripts)"

    def render(self, result: RunResult, *, rendered_at: str) -> str:
        return render_html(result, rendered_at=rendered_at)


def write_html(result: RunResult, path: str | Path, *, rendered_at: str | None = None) -> Path:
    """Render and write atomically (a reader never sees half a report)."""
    return HtmlRenderer().write(result, path, rendered_at=rendered_at)
