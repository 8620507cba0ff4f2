"""The replication document is generated from saved runs: its numbers are the runs' numbers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from report_factory import make_result

from robusttest.gates import CLEAN
from robusttest.results import CaseResult, RunResult
from robusttest.zoo import replication as R
from robusttest.zoo import sections as S


def test_doc_tables_carry_the_run_numbers(tmp_path: Path) -> None:
    run = make_result()
    results = {"unet": run}
    curves = R.plot_curves(results, tmp_path / "img" / "curves.png")
    assert curves.stat().st_size > 1000
    zoo = {
        "unet": {
            "config": {"task": "segmentation", "epochs": 6},
            "datasets": ["montgomery", "shenzhen"],
            "train_images": 358,
            "test": {"n": 80, "dice/lungs": {"mean": 0.95, "ci_low": 0.94, "ci_high": 0.96}},
        }
    }
    doc = R.write_doc(results, zoo, tmp_path / "replication.md", curves, native=results)
    text = doc.read_text()
    assert (
        "| unet | segmentation | montgomery, shenzhen | 358 | 6 | dice/lungs 0.950 [0.940, 0.960] |"
        in text
    )
    dice = [c for c in run.cases if c.metric == "dice" and c.noise]
    for c in dice:
        row = f"| {c.condition} | {c.severity or ''} | {c.clean:.3f} | {c.noisy:.3f} "
        assert row in text, row
    assert "## Side by side with the paper" in text
    assert "](img/curves.png)" in text


# --- the cross-model sections ---------------------------------------------------------------
def _case(metric: str, target: str, cond: str, clean: float, drop: float, ci: tuple[float, float],
          clean_ci: tuple[float, float] = (0.0, 1.0)) -> CaseResult:  # fmt: skip
    base = make_result().cases[0]
    noisy = clean - drop
    return replace(
        base,
        case_id=f"{target}-{metric}[{cond}]",
        metric=metric,
        target=target,
        condition=cond,
        clean=clean,
        noisy=noisy,
        drop=drop,
        ci_low=ci[0],
        ci_high=ci[1],
        noisy_ci_low=clean_ci[0] if cond == CLEAN else noisy - 0.01,
        noisy_ci_high=clean_ci[1] if cond == CLEAN else noisy + 0.01,
        n=80,
    )


def _run(*cases: CaseResult) -> RunResult:
    return RunResult(cases=cases, records=(), provenance={})


def _seg() -> dict[str, RunResult]:
    return {
        "unet": _run(
            _case("dice", "lungs", CLEAN, 0.95, 0.0, (0.0, 0.0)),
            _case("dice", "lungs", "gaussian-sigma0.26", 0.95, 0.85, (0.83, 0.87)),
            _case("dice", "lungs", "poisson-rate3", 0.95, 0.80, (0.76, 0.84)),
        )
    }


def _tb(clean: float, clean_ci: tuple[float, float], drop: float, ci: tuple[float, float]) -> RunResult:  # fmt: skip
    return _run(
        _case("auroc", "Tuberculosis", CLEAN, clean, 0.0, (0.0, 0.0), clean_ci),
        _case("auroc", "Tuberculosis", "gaussian-sigma0.26", clean, drop, ci),
        _case("auroc", "Tuberculosis", "poisson-rate3", clean, drop, ci),
    )


def test_finding_yes_when_every_classifier_loses_less_beyond_the_cis() -> None:
    # TB: clean 0.85, drop 0.10 [0.02, 0.18] of the 0.35 above chance: 29% [6%, 51%];
    # Dice: 0.85/0.95 = 89% [87%, 92%] and 0.80/0.95 = 84% [80%, 88%]
    runs = {**_seg(), "tb-resnet18": _tb(0.85, (0.75, 0.93), 0.10, (0.02, 0.18))}
    text = "\n".join(S.finding(runs, None))
    assert "| unet | dice lungs | gaussian-sigma0.26 | 0.950 | 0.100 | 0.850 [0.830, 0.870] " \
        "| 89% [87%, 92%] |" in text  # fmt: skip
    assert "| tb-resnet18 | auroc Tuberculosis | poisson-rate3 | 0.850 | 0.750 | " \
        "0.100 [0.020, 0.180] | 29% [6%, 51%] |" in text  # fmt: skip
    assert (
        "**Yes, as the paper found**" in text and "51% < the lowest segmentation bound 80%" in text
    )
    assert "Clean TB AUROC [95% CI]: tb-resnet18 0.850 [0.750, 0.930] (n=80)." in text


def test_finding_not_clearly_when_the_cis_overlap_and_none_at_chance() -> None:
    # drop 0.30 [0.25, 0.34] of 0.35: 86% [71%, 97%], overlapping Dice's 80%–92%
    runs = {**_seg(), "tb": _tb(0.85, (0.75, 0.93), 0.30, (0.25, 0.34))}
    assert "**Not clearly**" in "\n".join(S.finding(runs, None))
    # a classifier whose clean CI contains 0.5 has no share to lose: not counted
    runs = {**_seg(), "tb": _tb(0.58, (0.45, 0.70), 0.05, (0.0, 0.1))}
    assert "**Cannot be answered here**" in "\n".join(S.finding(runs, None))
    assert S.finding(_seg(), None) == []  # no classifier: no section


def test_nih_table_has_the_positives_and_marks_chance() -> None:
    zoo = {
        name: {
            "config": {"task": "classification"},
            "datasets": ["nih-cxr14"],
            "train_images": 507,
            "test": {
                "n": 114,
                "auroc/Hernia": {"mean": m, "ci_low": m - 0.2, "ci_high": m + 0.2, "positives": 4},
                "auroc/Effusion": {"mean": 0.8, "ci_low": 0.7, "ci_high": 0.9, "positives": 15},
            },
        }
        for name, m in (("densenet121", 0.6), ("resnet18", 0.75))
    }
    text = "\n".join(S.nih_table(zoo))
    assert "| Hernia | 4 | 0.600 [0.400, 0.800] ° | 0.750 [0.550, 0.950] |" in text
    assert "| Effusion | 15 | 0.800 [0.700, 0.900] | 0.800 [0.700, 0.900] |" in text
    assert "densenet121 1 of 2 labels, resnet18 0 of 2 labels" in text


def test_timing_adds_the_recorded_seconds() -> None:
    zoo = {"unet": {"seconds": 600.0, "config": {"epochs": 10}}}
    run = replace(_seg()["unet"], run={"seconds_total": 90.0, "host": "h"})
    text = "\n".join(S.timing(zoo, {"unet": run}, {"unet": run}))
    assert "Training 10 min and the replication 3 min" in text
    assert "| unet | 10 | 10.0 | 3.0 |" in text
