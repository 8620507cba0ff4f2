"""Paired statistics for clean-vs-noisy comparisons (gates judge them: robusttest.gates).

Every comparison is paired: the same images are scored clean and noisy, so the quantity
of interest is the *drop* and its uncertainty comes from which images (patients) were
sampled, not from two independent samples.

- :func:`paired_bootstrap` / :func:`paired_bootstrap_auroc`: percentile CIs of the drop
  by resampling **patients** with replacement (images of one patient are correlated;
  resampling images would make the CI too narrow). Vectorised: each chunk of resamples
  is one matrix of per-patient counts, so there is no Python loop over resamples.
  The same seed gives the same resample matrix for every noise level, so the CIs of a
  degradation curve share their random numbers and the curve is not jagged by chance.
- :func:`delong_paired`: DeLong's test for two correlated AUROCs (Sun & Xu's midrank
  algorithm); with patient ids, Obuchowski's clustered variance (patients, not images, are
  the independent units, as in the bootstrap).
- :func:`wilcoxon_paired`: the signed-rank test, on patient means with patient ids;
  :func:`patient_means`, :func:`average_repeats`, :func:`holm`: small helpers.

Orientation: a *drop* is always "how much worse noisy is than clean", in the metric's
units: ``clean − noisy`` when higher is better (Dice, AUROC), ``noisy − clean`` when
lower is better (HD95). A positive drop is a degradation.
"""

from __future__ import annotations

from robusttest.stats.bootstrap import (
    BootstrapResult,
    paired_bootstrap,
    paired_bootstrap_auroc,
    paired_bootstrap_statistic,
)
from robusttest.stats.paired_tests import (
    DeLongResult,
    WilcoxonResult,
    average_repeats,
    delong_paired,
    holm,
    patient_means,
    wilcoxon_paired,
)

__all__ = [
    "BootstrapResult",
    "DeLongResult",
    "WilcoxonResult",
    "average_repeats",
    "delong_paired",
    "holm",
    "paired_bootstrap",
    "paired_bootstrap_auroc",
    "paired_bootstrap_statistic",
    "patient_means",
    "wilcoxon_paired",
]
