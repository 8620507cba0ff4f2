"""Sections of docs/replication.md that compare across models, computed from the runs.

- :func:`finding`: is classification (TB vs normal) more resilient than segmentation (lung
  Dice) under the paper's severe noise, with CIs, and the answer in one sentence.
- :func:`nih_table`: the NIH classifiers per label, with the positives beside each AUROC.
- :func:`timing`: how long training and the replication took, from the recorded seconds.

Drops are compared on each metric's own scale of what there is to lose: Dice from its
clean value down to 0, AUROC from its clean value down to chance (0.5), so "lost 100%"
means the same thing for both (the model no longer does the task).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from robusttest.gates import CLEAN
from robusttest.results import CaseResult, RunResult

# the paper's "severe" electronic and quantum noise, as our ladders' top levels
SEVERE: tuple[str, ...] = ("gaussian-sigma0.26", "poisson-rate3")
TB = "Tuberculosis"


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.0%}"


@dataclass(frozen=True)
class Loss:
    """One model's loss at one condition: the drop and the share of what it had to lose."""

    model: str
    case: CaseResult
    chance: float  # the metric's floor of usefulness: 0 for Dice, 0.5 for AUROC

    @property
    def room(self) -> float:
        return self.case.clean - self.chance

    def share(self, x: float) -> float:
        return x / self.room if self.room > 0 else math.nan

    @property
    def lost(self) -> tuple[float, float, float]:
        """Share lost: point, CI (the drop's CI over the clean room)."""
        c = self.case
        return self.share(c.drop), self.share(c.ci_low), self.share(c.ci_high)

    def row(self) -> str:
        c = self.case
        p, lo, hi = self.lost
        return (
            f"| {self.model} | {c.metric} {c.target} | {c.condition} | {_fmt(c.clean)} | "
            f"{_fmt(c.noisy)} | "
            f"{_fmt(c.drop)} [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}] | "
            f"{_pct(p)} [{_pct(lo)}, {_pct(hi)}] |"
        )


def _losses(
    results: Mapping[str, RunResult], metric: str, target: str, chance: float
) -> list[Loss]:
    out = []
    for name, r in results.items():
        for c in r.cases:
            if c.metric == metric and c.target == target and c.condition in SEVERE:
                out.append(Loss(name, c, chance))
    return sorted(out, key=lambda x: (SEVERE.index(x.case.condition), x.model))


def _clean(result: RunResult, metric: str, target: str) -> CaseResult | None:
    for c in result.cases:
        if c.metric == metric and c.target == target and c.condition == CLEAN:
            return c
    return None


def finding(results: Mapping[str, RunResult], native: Mapping[str, RunResult] | None) -> list[str]:
    """The classification-vs-segmentation finding: TB AUROC against lung Dice."""
    seg = _losses(results, "dice", "lungs", 0.0)
    cls = _losses(results, "auroc", TB, 0.5)
    if not seg or not cls:
        return []
    tb_models = sorted({x.model for x in cls})
    n_seg = sorted({x.case.n for x in seg})
    n_cls = sorted({x.case.n for x in cls})
    out = [
        "## The finding: is classification more resilient than segmentation?",
        "",
        "The paper found lung segmentation far more brittle than disease classification. "
        f"Here the classifiers are the {len(tb_models)} architectures trained for "
        "tuberculosis vs normal on Montgomery + Shenzhen, the segmenters the "
        f"{len({x.model for x in seg})} lung models, all evaluated on the held-out split of "
        f"the same two sets ({'/'.join(map(str, n_cls))} images for TB, "
        f"{'/'.join(map(str, n_seg))} with lung masks).",
        "",
        "Clean TB AUROC [95% CI]: "
        + "; ".join(
            f"{m} {_fmt(c.clean)} [{_fmt(c.noisy_ci_low)}, {_fmt(c.noisy_ci_high)}] (n={c.n})"
            for m in tb_models
            if (c := _clean(results[m], "auroc", TB)) is not None
        )
        + ".",
        "",
        "At the paper's severe levels, noise added at the model's input. *Lost* is the drop "
        "as a share of what the model had to lose (Dice: its clean value; AUROC: its clean "
        "value above chance, 0.5), with the drop's CI over the same denominator.",
        "",
        "| model | metric | condition | clean | noisy | drop [95% CI] | lost [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    out += [x.row() for x in seg + cls]
    out += ["", *verdict(seg, _informative(results, cls)), ""]
    if native:
        nseg = _losses(native, "dice", "lungs", 0.0)
        ncls = _losses(native, "auroc", TB, 0.5)
        if nseg and ncls:
            out += [
                "The same noise added at the images' native 512² instead (before the resize "
                "to 128², which averages it down by about 4):",
                "",
                "| model | metric | condition | clean | noisy | drop [95% CI] | lost [95% CI] |",
                "|---|---|---|---|---|---|---|",
                *(x.row() for x in nseg + ncls),
                "",
                *verdict(nseg, _informative(native, ncls)),
                "",
            ]
    return out


def _informative(results: Mapping[str, RunResult], cls: Sequence[Loss]) -> list[Loss]:
    """Classifiers whose clean AUROC is above chance beyond its CI: only they have
    something to lose (a share of nothing is not a number)."""
    out = []
    for x in cls:
        c = _clean(results[x.model], "auroc", TB)
        if c is not None and c.noisy_ci_low > 0.5 and not math.isnan(x.case.drop):
            out.append(x)
    return out


def verdict(seg: Sequence[Loss], cls: Sequence[Loss]) -> list[str]:
    """The answer, from the CIs of the shares lost (computed, never written by hand)."""
    seg = [x for x in seg if not math.isnan(x.case.drop)]
    if not seg or not cls:
        return [
            "**Cannot be answered here**: no TB classifier is above chance beyond its CI "
            "(or no segmentation case is defined)."
        ]
    s_lo = min(x.lost[1] for x in seg)
    s_hi = max(x.lost[2] for x in seg)
    c_lo = min(x.lost[1] for x in cls)
    c_hi = max(x.lost[2] for x in cls)
    s_pts = [x.lost[0] for x in seg]
    c_pts = [x.lost[0] for x in cls]
    ranges = (
        f"segmentation lost {_pct(min(s_pts))}–{_pct(max(s_pts))} of its Dice, the TB "
        f"classifiers {_pct(min(c_pts))}–{_pct(max(c_pts))} of their AUROC above chance"
    )
    if c_hi < s_lo:
        answer = (
            "**Yes, as the paper found**: at both severe levels every TB classifier lost "
            "less than every segmentation model, beyond the CIs (the highest classifier "
            f"bound {_pct(c_hi)} < the lowest segmentation bound {_pct(s_lo)}); {ranges}."
        )
    elif s_hi < c_lo:
        answer = (
            "**No, the opposite of the paper**: every segmentation model lost less than "
            f"every TB classifier, beyond the CIs ({_pct(s_hi)} < {_pct(c_lo)}); {ranges}."
        )
    else:
        lower = sum(1 for x in cls if x.lost[2] < s_lo)
        answer = (
            f"**Not clearly**: the CIs overlap ({ranges}; {lower} of {len(cls)} classifier "
            f"cases lie below every segmentation case beyond the CIs; classifier bounds "
            f"{_pct(c_lo)}–{_pct(c_hi)}, segmentation {_pct(s_lo)}–{_pct(s_hi)})."
        )
    return [answer]


# --- NIH -----------------------------------------------------------------------------------
def nih_table(zoo_metrics: Mapping[str, Any]) -> list[str]:
    """Per label: positives among the held-out images and each NIH model's clean AUROC."""
    models = [
        n
        for n, m in sorted(zoo_metrics.items())
        if "nih-cxr14" in m.get("datasets", [])
        and m.get("config", {}).get("task") == ("classification")
    ]
    if not models:
        return []
    tests = {n: zoo_metrics[n].get("test", {}) for n in models}
    labels = [k.split("/", 1)[1] for k in tests[models[0]] if k.startswith("auroc/")]
    n_test = tests[models[0]].get("n", "")
    lines = [
        "## The NIH classifiers: data-limited",
        "",
        f"Trained on {zoo_metrics[models[0]].get('train_images', '?')} NIH images and "
        f"evaluated on {n_test}, these classifiers say little: most labels have a handful "
        "of positive cases, and a label's AUROC whose CI contains 0.5 (marked °) cannot be "
        "told from chance. Their rows below are kept for completeness; the classification "
        "finding rests on the TB task. The suite marks such heads `uninformative`.",
        "",
        "| label | positives | " + " | ".join(f"{m} AUROC [95% CI]" for m in models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    chance = dict.fromkeys(models, 0)
    for lb in labels:
        cells = []
        pos = ""
        for m in models:
            v = tests[m].get(f"auroc/{lb}", {})
            pos = str(v.get("positives", pos))
            mean, lo, hi = v.get("mean"), v.get("ci_low"), v.get("ci_high")
            at_chance = lo is not None and hi is not None and lo <= 0.5 <= hi
            chance[m] += int(at_chance)
            cells.append(f"{_fmt(mean)} [{_fmt(lo)}, {_fmt(hi)}]" + (" °" if at_chance else ""))
        lines.append(f"| {lb} | {pos} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "At chance (CI contains 0.5): "
        + ", ".join(f"{m} {chance[m]} of {len(labels)} labels" for m in models)
        + ".",
        "",
    ]
    return lines


# --- time ----------------------------------------------------------------------------------
def timing(
    zoo_metrics: Mapping[str, Any],
    results: Mapping[str, RunResult],
    native: Mapping[str, RunResult] | None,
) -> list[str]:
    """Training seconds per model (zoo/metrics.json) and evaluation seconds per run."""
    train = {n: float(m.get("seconds", math.nan)) for n, m in zoo_metrics.items()}
    evals: dict[str, float] = {}
    for runs in (results, native or {}):
        for n, r in runs.items():
            evals[n] = evals.get(n, 0.0) + float(r.run.get("seconds_total", math.nan))
    names = sorted(set(train) | set(evals))
    if not names:
        return []

    def minutes(x: float) -> str:
        return "–" if math.isnan(x) else f"{x / 60:.1f}"

    total_t = sum(v for v in train.values() if not math.isnan(v))
    total_e = sum(v for v in evals.values() if not math.isnan(v))
    hosts = sorted({str(r.run.get("host", "")) for r in results.values()} - {""})
    lines = [
        "## How long it took",
        "",
        f"Training {total_t / 60:.0f} min and the replication {total_e / 60:.0f} min "
        "(both placements of the noise), as recorded by `robusttest zoo train` (per model, "
        "in `zoo/metrics.json`) and by each run (`seconds_total`)"
        + (f" on {', '.join(hosts)}" if hosts else "")
        + ". The README gives the machine and the wall time of the commands.",
        "",
        "| model | epochs | training (min) | replication (min) |",
        "|---|---|---|---|",
    ]
    for n in names:
        ep = zoo_metrics.get(n, {}).get("config", {}).get("epochs", "")
        lines.append(
            f"| {n} | {ep} | {minutes(train.get(n, math.nan))} | "
            f"{minutes(evals.get(n, math.nan))} |"
        )
    lines.append("")
    return lines
