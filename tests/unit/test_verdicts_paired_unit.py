"""Issue 14, point 6: paired tests at the patient level, the unit the bootstrap resamples;
the JSON says which unit each test used.

Checked against independent computations: scipy's signed-rank test on patient means, a
loop-by-loop Obuchowski (1997) clustered DeLong, and a patient bootstrap of the AUROC
difference's standard error.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sps

import robusttest
from robusttest import stats as S
from robusttest.phantom import generate_case

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"


def test_paired_unit_wilcoxon_on_patient_means_the_issues_example() -> None:
    # 10 patients × 3 images, every image a little worse under noise
    rng = np.random.default_rng(0)
    pids = np.repeat([f"p{k}" for k in range(10)], 3)
    clean = rng.uniform(0.90, 0.95, 30)
    noisy = clean - rng.uniform(0.01, 0.03, 30)
    images = S.wilcoxon_paired(clean, noisy)
    patients = S.wilcoxon_paired(clean, noisy, pids)
    means = [(clean[pids == p].mean() - noisy[pids == p].mean()) for p in np.unique(pids)]
    assert patients.p_value == pytest.approx(sps.wilcoxon(means).pvalue, rel=1e-12)
    assert patients.p_value == pytest.approx(2 / 2**10)  # all 10 patients worse: p = 0.002
    assert images.p_value < 1e-6  # counting images as independent overstates the evidence
    # one image per patient: exactly the image-level test
    one = S.wilcoxon_paired(clean, noisy, [f"q{i}" for i in range(30)])
    assert one == images


def test_paired_unit_patient_means_skip_undefined_images() -> None:
    c = np.array([1.0, np.nan, 3.0, 4.0])
    z = np.array([0.5, 1.0, np.nan, 3.0])
    mc, mz = S.patient_means(c, z, ["a", "a", "b", "b"])
    np.testing.assert_allclose(mc, [1.0, 4.0])
    np.testing.assert_allclose(mz, [0.5, 3.0])


def _obuchowski_loops(
    y: np.ndarray, s1: np.ndarray, s2: np.ndarray, g: np.ndarray
) -> tuple[float, float]:
    """(AUROC difference, its standard error), Obuchowski (1997), written loop by loop."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    M, N = len(pos), len(neg)
    clusters = sorted(set(g))
    aucs, xs, ys = [], [], []
    for s in (s1, s2):
        v10 = {i: sum(1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0 for j in neg) / N
               for i in pos}  # fmt: skip
        v01 = {j: sum(1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0 for i in pos) / M
               for j in neg}  # fmt: skip
        aucs.append(sum(v10.values()) / M)
        xs.append({k: sum(v10[i] for i in pos if g[i] == k) for k in clusters})
        ys.append({k: sum(v01[j] for j in neg if g[j] == k) for k in clusters})
    m = {k: sum(1 for i in pos if g[i] == k) for k in clusters}
    n = {k: sum(1 for j in neg if g[j] == k) for k in clusters}
    i10 = sum(1 for k in clusters if m[k] > 0)
    i01 = sum(1 for k in clusters if n[k] > 0)
    big_i = len(clusters)

    def cov(r: int, t: int) -> float:
        s10 = (
            i10
            / ((i10 - 1) * M)
            * sum((xs[r][k] - m[k] * aucs[r]) * (xs[t][k] - m[k] * aucs[t]) for k in clusters)
        )
        s01 = (
            i01
            / ((i01 - 1) * N)
            * sum((ys[r][k] - n[k] * aucs[r]) * (ys[t][k] - n[k] * aucs[t]) for k in clusters)
        )
        s11 = (
            big_i
            / (big_i - 1)
            * sum((xs[r][k] - m[k] * aucs[r]) * (ys[t][k] - n[k] * aucs[t]) for k in clusters)
        )
        s11t = (
            big_i
            / (big_i - 1)
            * sum((xs[t][k] - m[k] * aucs[t]) * (ys[r][k] - n[k] * aucs[r]) for k in clusters)
        )
        return s10 / M + s01 / N + (s11 + s11t) / (M * N)

    var = cov(0, 0) + cov(1, 1) - 2 * cov(0, 1)
    return aucs[0] - aucs[1], math.sqrt(var)


def _clustered_data(seed: int, n_patients: int, per: int) -> tuple[np.ndarray, ...]:
    """Patients with a shared effect on their images' scores and mixed labels."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_patients), per)
    y = rng.integers(0, 2, g.size)
    shared = rng.normal(0, 1.0, n_patients)[g]
    s1 = 1.2 * y + shared + rng.normal(0, 0.7, g.size)
    # the noise moves a patient's images together (e.g. one exposure per patient)
    s2 = s1 + rng.normal(0, 0.3, g.size) + rng.normal(0, 1.0, n_patients)[g]
    s1[:6] = np.round(s1[:6], 1)  # some ties
    s2[:6] = s1[:6]
    return y, s1, s2, g


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_unit_clustered_delong_equals_obuchowski_by_hand(seed: int) -> None:
    y, s1, s2, g = _clustered_data(seed, 15, 3)
    res = S.delong_paired(y, s1, s2, groups=g)
    diff, se = _obuchowski_loops(y, s1, s2, g)
    assert res.clustered and res.n_groups == 15
    assert res.diff == pytest.approx(diff, abs=1e-12)
    assert res.se == pytest.approx(se, rel=1e-10)
    assert res.p_value == pytest.approx(2 * sps.norm.sf(abs(diff / se)), rel=1e-9)
    # one image per patient: exactly DeLong
    single = S.delong_paired(y, s1, s2, groups=np.arange(y.size))
    plain = S.delong_paired(y, s1, s2)
    assert not single.clustered and single.se == plain.se and single.p_value == plain.p_value
    assert _obuchowski_loops(y, s1, s2, np.arange(y.size))[1] == pytest.approx(plain.se, rel=1e-10)


def test_paired_unit_clustered_delong_se_matches_a_patient_bootstrap() -> None:
    # the clustered SE estimates what resampling patients measures; the image-level one is
    # too small when a patient's images share an effect
    y, s1, s2, g = _clustered_data(7, 60, 4)
    res = S.delong_paired(y, s1, s2, groups=g)
    boot = S.paired_bootstrap_auroc(y, s1, s2, g, n_resamples=4000, seed=3)
    assert res.se == pytest.approx(boot.se, rel=0.05)
    assert S.delong_paired(y, s1, s2).se < 0.9 * boot.se


def _manifest(folder: Path, task: str, per_patient: int = 3, n: int = 18) -> Path:
    rows = []
    for i in range(n):
        case = generate_case(7 if task == "classification" else 0, i, size=64)
        name = f"img{i:02d}.png"
        Image.fromarray((np.clip(case.image, 0, 1) * 65535).astype(np.uint16)).save(folder / name)
        row = {"image": name, "patient_id": f"p{i // per_patient}"}
        if task == "segmentation":
            mask = f"mask{i:02d}.png"
            Image.fromarray(case.masks["lungs"].astype(np.uint8) * 255).save(folder / mask)
            row["mask"] = mask
        else:
            row.update(case.labels)
        rows.append(row)
    path = folder / "m.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    suite = folder / "s.yaml"
    metrics = "[dice]" if task == "segmentation" else "[auroc]"
    suite.write_text(
        f"""\
name: s
task: {task}
data: {{adapter: manifest, root: {path}}}
noise:
  gaussian: {{sigma: [0.12, 0.2]}}
repeats: 1
metrics: {metrics}
bootstrap: {{resamples: 100}}
"""
    )
    return suite


def test_paired_unit_engine_wilcoxon_on_patient_means(tmp_path: Path) -> None:
    suite = _manifest(tmp_path, "segmentation")
    result = robusttest.run(MODELS / "lungs_tinyunet.onnx", suite, cache=False, progress=False)
    noisy_cases = [c for c in result.cases if c.noise is not None]
    for case in noisy_cases:
        assert (case.test, case.test_unit) == ("wilcoxon", "patient")
        assert case.n == 18 and case.n_patients == 6
        recs = {
            (r.condition, r.image_id): r
            for r in result.records
            if r.condition in ("clean", case.condition)
        }
        pids = sorted({r.patient_id for r in result.records})
        diffs = []
        for p in pids:
            ids = [i for (cond, i), r in recs.items() if cond == "clean" and r.patient_id == p]
            c = np.mean([recs[("clean", i)].values["dice/lungs"] for i in ids])
            z = np.mean([recs[(case.condition, i)].values["dice/lungs"] for i in ids])
            diffs.append(c - z)
        assert case.p_value == pytest.approx(sps.wilcoxon(diffs).pvalue, rel=1e-12)
    ps = [c.p_value for c in noisy_cases]
    np.testing.assert_allclose([c.p_adjusted for c in noisy_cases], S.holm(ps))
    assert all(c.test_unit is None for c in result.cases if c.noise is None)


def test_paired_unit_engine_delong_clustered_by_patient(tmp_path: Path) -> None:
    suite = _manifest(tmp_path, "classification")
    result = robusttest.run(MODELS / "findings_tinycnn.onnx", suite, cache=False, progress=False)
    case = next(
        c
        for c in result.cases
        if c.noise is not None and c.p_value is not None and c.target == "nodule"
    )
    assert case.test == "delong (clustered, Obuchowski) (repeat 0)" and case.test_unit == "patient"
    clean = {r.image_id: r for r in result.records if r.condition == "clean"}
    noisy = {r.image_id: r for r in result.records if r.condition == case.condition}
    ids = sorted(clean)
    y = np.array([clean[i].targets["nodule"] for i in ids])
    s1 = np.array([clean[i].values["score/nodule"] for i in ids])
    s2 = np.array([noisy[i].values["score/nodule"] for i in ids])
    g = np.array([clean[i].patient_id for i in ids])
    diff, se = _obuchowski_loops(y, s1, s2, g)
    assert case.p_value == pytest.approx(2 * sps.norm.sf(abs(diff / se)), rel=1e-9)
