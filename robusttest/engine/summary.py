"""Per-case statistics: the records of a run become the grid's CaseResults, judged.

Paired by construction: every case compares the same images clean and noisy; the
bootstrap resamples patients, and the paired tests take the patient as their unit too
(Wilcoxon on patient means, DeLong with Obuchowski's clustered variance; ``test_unit``
says so); p-values are Holm-adjusted across the cases judged (the grid, or a selection).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from robusttest import metrics as M
from robusttest import stats as S
from robusttest.engine.loading import TaskPlan, plan_cases
from robusttest.gates import CLEAN, judge_case, judge_floor, mark_uninformative
from robusttest.noise import severity_name
from robusttest.results import CaseResult, ImageRecord
from robusttest.suite import CaseSpec, Suite


class _ByCondition:
    """Records grouped by condition (each group in the records' order), and the arrays
    read from them, made once per summarise: a case reads its own group, not the whole
    run (a 14-label grid at 2,000 images re-read 32,000 records ~600 times)."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        self.groups: dict[str, list[ImageRecord]] = defaultdict(list)
        for r in records:
            self.groups[r.condition].append(r)
        self._arrays: dict[tuple[str, str, int], tuple[list[str], list[str], np.ndarray]] = {}

    def arrays(
        self, key: str, condition: str, repeats: int
    ) -> tuple[list[str], list[str], np.ndarray]:
        """``_arrays`` of one condition's group; the result is shared: read it only."""
        got = self._arrays.get((key, condition, repeats))
        if got is None:
            got = _arrays(self.groups.get(condition, []), key, repeats)
            self._arrays[(key, condition, repeats)] = got
        return got


def _arrays(
    records: Sequence[ImageRecord], key: str, repeats: int
) -> tuple[list[str], list[str], np.ndarray]:
    """Image ids, patient ids and an N×K matrix of one value (records of one condition)."""
    ids: dict[str, int] = {}
    pids: list[str] = []
    rows: dict[int, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.image_id not in ids:
            ids[r.image_id] = len(ids)
            pids.append(r.patient_id)
        rows[ids[r.image_id]][r.repeat] = r.values.get(key, math.nan)
    mat = np.full((len(ids), repeats), math.nan)
    for i, per in rows.items():
        for k, v in per.items():
            if k < repeats:
                mat[i, k] = v
    return list(ids), pids, mat


def _targets(by_cond: _ByCondition, label: str) -> dict[str, int]:
    return {r.image_id: int(r.targets.get(label, 0)) for r in by_cond.groups.get(CLEAN, [])}


def summarise(
    records: Sequence[ImageRecord],
    suite: Suite,
    plan: TaskPlan,
    cases: Collection[str] | None = None,
    *,
    spacing_known: bool | None = None,
) -> list[CaseResult]:
    """Per-case statistics and verdicts, Holm-adjusted p-values across the cases judged.

    ``cases``: the case ids to judge (None: the plan's whole grid). ``spacing_known``
    (``Evaluator.spacing_known``) decides a spatial metric's unit.
    """
    cases_ = iter_cases(records, suite, plan, cases, spacing_known=spacing_known)
    return adjust_p_values(list(cases_))


def iter_cases(
    records: Sequence[ImageRecord],
    suite: Suite,
    plan: TaskPlan,
    cases: Collection[str] | None = None,
    *,
    spacing_known: bool | None = None,
) -> Iterator[CaseResult]:
    """The grid's cases one by one, before the Holm adjustment (``adjust_p_values``): an
    interrupted run keeps the cases finished so far, unadjusted."""
    results: list[CaseResult] = []
    pairs = {f"{a}-vs-{b}": (a, b) for a, b in plan.pairwise}
    specs = plan_cases(suite, plan)
    if cases is not None:
        wanted = set(cases)
        kept = {(s.metric, s.target) for s in specs if s.case_id in wanted}
        # a selected case's clean baseline is computed even when not selected itself: it
        # decides whether the case is informative (it is then not reported)
        specs = [
            s
            for s in specs
            if s.case_id in wanted or (s.condition == CLEAN and (s.metric, s.target) in kept)
        ]
    else:
        wanted = {s.case_id for s in specs}
    by_cond = _ByCondition(records)
    # (metric, target) -> why its clean value makes its cases uninformative; the clean case
    # of each comes first in the grid
    uninformative: dict[tuple[str, str], str | None] = {}
    for cs in specs:
        K = 1 if cs.condition == CLEAN else suite.repeats
        metric = M.get_metric(cs.metric)
        hib = metric.higher_is_better
        boot, p_value, test = case_bootstrap(by_cond, suite, cs, pairs.get(cs.target))
        judged = judge_case(
            cs.gate, boot, metric=cs.metric, target=cs.target, condition=cs.condition
        )
        if cs.condition == CLEAN:
            uninformative[(cs.metric, cs.target)] = judge_floor(
                boot.clean,
                boot.noisy_ci_low,
                boot.noisy_ci_high,
                metric=cs.metric,
                target=cs.target,
                higher_is_better=hib,
                chance=metric.chance,
                floor=suite.gates.floor.get(cs.metric),
                ci=suite.ci,
            )
        if cs.case_id not in wanted:
            continue
        why = uninformative.get((cs.metric, cs.target))
        if why is not None:
            judged = mark_uninformative(judged, why, suite.gates.uninformative)
        spec = cs.noise
        results.append(
            CaseResult(
                case_id=cs.case_id,
                suite=suite.name,
                metric=cs.metric,
                target=cs.target,
                condition=cs.condition,
                noise=spec.name if spec else None,
                level=spec.level if spec else None,
                severity=severity_name(spec.name, spec.level) if spec else None,
                higher_is_better=hib,
                clean=boot.clean,
                noisy=boot.noisy,
                drop=boot.estimate,
                ci_low=boot.ci_low,
                ci_high=boot.ci_high,
                noisy_ci_low=boot.noisy_ci_low,
                noisy_ci_high=boot.noisy_ci_high,
                relative_drop=boot.relative,
                p_value=None if p_value is None or math.isnan(p_value) else float(p_value),
                p_adjusted=None,
                test=test,
                n=boot.n,
                n_patients=boot.n_groups,
                repeats=K,
                gate=cs.gate,
                verdict=judged.verdict,
                message=judged.message,
                reason=boot.reason,
                failed_limits=judged.failed,
                unit=metric.unit_for(spacing_known),
                relative_ci_low=boot.relative_ci_low,
                relative_ci_high=boot.relative_ci_high,
                test_unit=None if test is None else "patient",
                chance=metric.chance,
            )
        )
        yield results[-1]


def case_bootstrap(
    by_cond: _ByCondition,
    suite: Suite,
    cs: CaseSpec,
    pair: tuple[str, str] | None = None,
) -> tuple[S.BootstrapResult, float | None, str | None]:
    """One case's paired patient bootstrap, and its paired test (p-value, name) when the
    case is noisy. ``pair``: (positive, negative) when the target is a pairwise task."""
    K = 1 if cs.condition == CLEAN else suite.repeats
    boot_kw: dict[str, Any] = {
        "n_resamples": suite.resamples,
        "seed": suite.seed,
        "ci": suite.ci,
    }
    metric = M.get_metric(cs.metric)
    if isinstance(metric, M.SegmentationMetric):
        key = f"{cs.metric}/{cs.target}"
        ids, pids, clean = by_cond.arrays(key, CLEAN, 1)
        c_ids, _, noisy_m = by_cond.arrays(key, cs.condition, K)
        order = {i: n for n, i in enumerate(c_ids)}
        noisy = S.average_repeats(noisy_m[[order[i] for i in ids]])
        cvec = clean[:, 0]
        boot = S.paired_bootstrap(
            cvec, noisy, pids, higher_is_better=metric.higher_is_better, **boot_kw
        )
        if cs.condition == CLEAN:
            return boot, None, None
        w = S.wilcoxon_paired(cvec, noisy, pids)  # on patient means: the bootstrap's unit
        return boot, w.p_value, "wilcoxon"
    return _set_case(M.classification_metric(cs.metric), by_cond, cs, pair, K, boot_kw)


def adjust_p_values(results: list[CaseResult]) -> list[CaseResult]:
    """Holm across every noisy case judged that has a p-value."""
    results = list(results)
    idx = [i for i, r in enumerate(results) if r.p_value is not None]
    if idx:
        adj = S.holm([float(results[i].p_value or 0.0) for i in idx])
        for i, a in zip(idx, adj, strict=True):
            results[i] = replace(results[i], p_adjusted=float(a))
    return results


def _set_case(
    metric: M.ClassificationMetric,
    by_cond: _ByCondition,
    cs: CaseSpec,
    pair: tuple[str, str] | None,
    K: int,
    boot_kw: Mapping[str, Any],
) -> tuple[S.BootstrapResult, float | None, str | None]:
    """A set-level metric (AUROC) clean vs noisy for a label or a pairwise task; K repeats
    pooled."""
    if pair is not None:
        pos, neg = pair
        labels = [pos, neg]
    else:
        pos, neg, labels = cs.target, "", [cs.target]
    keys = [f"score/{lab}" for lab in labels]
    ids, pids, _ = by_cond.arrays(keys[0], CLEAN, 1)
    tg = _targets(by_cond, labels[0])
    tg2 = _targets(by_cond, labels[1]) if len(labels) == 2 else {}
    clean_s = np.stack([by_cond.arrays(k, CLEAN, 1)[2][:, 0] for k in keys], axis=1)
    noisy_s = []
    for k in keys:
        c_ids, _, mat = by_cond.arrays(k, cs.condition, K)
        order = {i: n for n, i in enumerate(c_ids)}
        noisy_s.append(mat[[order[i] for i in ids]])
    noisy = np.stack(noisy_s, axis=1)  # N×labels×K
    if len(labels) == 2:
        y2 = np.stack([[tg[i] for i in ids], [tg2[i] for i in ids]], axis=1)
        task = M.pairwise_task(clean_s, y2, labels, positive=pos, negative=neg)
        sel = np.asarray(task.subset_index)
        y = np.asarray(task.targets)
        s_clean = np.asarray(task.scores)
        s_noisy = np.stack(
            [
                np.asarray(
                    M.pairwise_task(noisy[:, :, k], y2, labels, positive=pos, negative=neg).scores
                )
                for k in range(K)
            ],
            axis=1,
        )
        groups = np.asarray(pids)[sel]
    else:
        y = np.asarray([tg[i] for i in ids])
        s_clean = clean_s[:, 0]
        s_noisy = noisy[:, 0, :]
        groups = np.asarray(pids)
    # Pool the K repeats: every repeat is a draw of the noisy scoring; the clean score is
    # repeated alongside so AUROC(clean) is unchanged and the bootstrap keeps a patient's
    # repeats together.
    yk = np.tile(y, K)
    ck = np.tile(s_clean, K)
    nk = s_noisy.T.reshape(-1)
    gk = np.tile(groups, K)
    boot = metric.paired_bootstrap(yk, ck, nk, gk, **boot_kw)
    boot = replace(boot, n=len(y))  # images, not image × repeat draws
    if cs.condition == CLEAN:
        return boot, None, None
    tested = metric.paired_test(y, s_clean, s_noisy[:, 0], groups)
    if tested is None:
        return boot, None, None
    return boot, tested[0], f"{tested[1]} (repeat 0)"
