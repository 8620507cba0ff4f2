"""Realistic ``RunResult`` objects for renderer tests (HTML, JUnit, JSON, compare).

No model and no data: the numbers are made up but shaped like the engine's output
(case ids, condition slugs, gates, Holm-adjusted p-values, records, gallery thumbnails as
real base64 PNGs, provenance and run blocks).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import replace

from PIL import Image, ImageDraw

from robusttest.gates import CLEAN, GateSpec
from robusttest.results import (
    CaseResult,
    GalleryItem,
    ImageRecord,
    RunResult,
    merge,
)

EVIL = "<script>alert(1)</script>"
SEVERITIES = ("minimal", "mild", "moderate", "marked", "severe")

# (family, slug stem, levels, drop per level as a fraction of the worst drop)
NoiseDef = tuple[str, str, Sequence[float]]
DEFAULT_NOISES: tuple[NoiseDef, ...] = (
    ("quantum", "dose", (0.5, 0.25, 0.1)),
    ("gaussian", "sigma", (0.04, 0.08, 0.12)),
)
# How hard each family hits, per level (a gaussian sigma 0.12 fails the 0.05 dice gate).
_SEVERITY_SCALE = {"quantum": (0.05, 0.15, 0.4), "gaussian": (0.15, 0.45, 1.0)}


def tiny_png(seed: int, size: int = 48, outline: bool = False) -> str:
    """A small grey 'radiograph' (two dark lung fields), optionally with red/green outlines."""
    g = 150 + (seed * 37) % 60
    im = Image.new("RGB", (size, size), (g, g, g))
    d = ImageDraw.Draw(im)
    for x0 in (size // 8, size // 2 + size // 16):
        box = (x0, size // 6, x0 + size // 3, size - size // 6)
        d.ellipse(box, fill=(60, 60, 60))
        if outline:
            d.ellipse(box, outline=(64, 220, 64))
            d.ellipse((box[0] + 2, box[1] + 2, box[2] - 1, box[3] - 2), outline=(255, 64, 64))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _slug(stem: str, family: str, level: float) -> str:
    if family == "quantum":
        return f"quantum-dose{round(level * 100):d}"
    return f"{family}-{stem}{level:g}"


def _judged(case: CaseResult) -> CaseResult:
    """The case with the verdict, failed limits and message its numbers and gate give (what
    the engine writes; `robusttest report` refuses anything else)."""
    v = case.rejudge()
    return replace(case, verdict=v.verdict, failed_limits=v.failed, message=v.message)


def _gate_msg(metric: str, target: str, cond: str, drop: float, lo: float, hi: float) -> str:
    return f"{metric} {target} [{cond}]: drop {drop:.4g} [95% CI {lo:.4g}, {hi:.4g}]"


def make_result(
    *,
    task: str = "lungs",
    target: str = "lungs",
    noises: Sequence[NoiseDef] = DEFAULT_NOISES,
    n_images: int = 4,
    completed: bool = True,
    fail: bool = True,
    image_prefix: str = "MCUCXR_",
    caption_extra: str = "",
    model_name: str = "unet_lungs.onnx",
    shift: float = 0.0,
) -> RunResult:
    """A segmentation run: Dice (gated) and HD95 (ungated) for each noise condition.

    ``fail`` makes the heaviest Gaussian level fail its Dice drop gate; ``shift`` subtracts
    from every noisy Dice (and adds 10× to HD95) to fake a regressed model.
    """
    metrics = {"dice": (0.931, True), "hd95": (8.5, False)}
    gates = {"dice": GateSpec(min=0.75, max_drop=0.05), "hd95": None}
    conditions: list[tuple[str, str | None, float | None, str | None, float]] = [
        (CLEAN, None, None, None, 0.0)
    ]
    for family, stem, levels in noises:
        scale = _SEVERITY_SCALE.get(family, (0.1, 0.3, 0.6, 0.8, 1.0))
        for i, lv in enumerate(levels):
            frac = scale[min(i, len(scale) - 1)]
            conditions.append((_slug(stem, family, lv), family, lv, SEVERITIES[i], frac))
    image_ids = [f"{image_prefix}{i:04d}" for i in range(n_images)]
    cases: list[CaseResult] = []
    records: list[ImageRecord] = []
    p_raw = 0.5
    for metric, (clean, hib) in metrics.items():
        for cond, noise, level, sev, frac in conditions:
            worst = 0.09 if fail else 0.04
            if metric == "dice":
                drop = worst * frac + (shift if noise else 0.0)
            else:
                drop = 9.0 * frac + (10 * shift if noise else 0.0)
            noisy = clean - drop if hib else clean + drop
            half = 0.02 * abs(drop) + (0.004 if metric == "dice" else 0.4)
            lo, hi = (drop - half, drop + half) if noise else (0.0, 0.0)
            gate = gates[metric]
            if gate is not None and noise is None:
                gate = GateSpec(min=gate.min)
            if gate is None:
                verdict = "no-gate"
                msg = _gate_msg(metric, target, cond, drop, lo, hi) + "; no gate"
            else:
                ok = (gate.max_drop is None or hi <= gate.max_drop) and (
                    gate.min is None or noisy - half >= gate.min
                )
                verdict = "pass" if ok else "fail"
                msg = _gate_msg(metric, target, cond, drop, lo, hi) + (
                    f" {'≤' if ok else '>'} limit {gate.max_drop:g}"
                    if gate.max_drop is not None
                    else f"; floor {gate.min:g}"
                )
            p_raw = p_raw / 3 if noise else p_raw
            cases.append(
                CaseResult(
                    case_id=f"{target}-{metric}[{cond}]",
                    suite=task,
                    metric=metric,
                    target=target,
                    condition=cond,
                    noise=noise,
                    level=level,
                    severity=sev,
                    higher_is_better=hib,
                    clean=clean,
                    noisy=noisy,
                    drop=drop,
                    ci_low=lo,
                    ci_high=hi,
                    noisy_ci_low=noisy - half,
                    noisy_ci_high=noisy + half,
                    relative_drop=drop / clean,
                    p_value=p_raw if noise else None,
                    p_adjusted=min(1.0, p_raw * 6) if noise else None,
                    test="wilcoxon" if noise else None,
                    n=n_images,
                    n_patients=n_images,
                    repeats=1 if noise is None else 2,
                    gate=gate,
                    verdict=verdict,  # type: ignore[arg-type]
                    message=msg,
                    relative_ci_low=lo / clean,
                    relative_ci_high=hi / clean,
                    test_unit="patient" if noise else None,
                )
            )
            cases[-1] = _judged(cases[-1])
    for k, image_id in enumerate(image_ids):
        for cond, noise, _lv, _sev, frac in conditions:
            for rep in range(1 if noise is None else 2):
                d = 0.09 * frac + 0.003 * k + (shift if noise else 0.0)
                records.append(
                    ImageRecord(
                        suite=task,
                        image_id=image_id,
                        patient_id=f"P{k // 2:03d}",
                        condition=cond,
                        repeat=rep,
                        values={f"dice/{target}": 0.93 - d, f"hd95/{target}": 8.5 + 100 * d},
                    )
                )
    gallery: list[GalleryItem] = []
    for k, image_id in enumerate(image_ids[:2]):
        for j, (cond, _noise, _lv, _sev, frac) in enumerate(conditions):
            v = 0.93 - 0.09 * frac - 0.003 * k
            gallery.append(
                GalleryItem(
                    suite=task,
                    image_id=image_id,
                    condition=cond,
                    kind="sample",
                    value=v,
                    image_png=tiny_png(10 * k + j),
                    overlay_png=tiny_png(10 * k + j, outline=True),
                    caption=f"{image_id} · {cond} · dice {v:.3f}{caption_extra}",
                )
            )
    for j, (cond, noise, _lv, _sev, frac) in enumerate(conditions):
        if noise is None:
            continue
        v = 0.93 - 0.09 * frac - 0.003 * (n_images - 1)
        gallery.append(
            GalleryItem(
                suite=task,
                image_id=image_ids[-1],
                condition=cond,
                kind="worst",
                value=v,
                image_png=tiny_png(100 + j),
                overlay_png=tiny_png(100 + j, outline=True),
                caption=f"{image_ids[-1]} · {cond} · dice {v:.3f}{caption_extra}",
            )
        )
    provenance = {
        "robusttest_version": "0.1.0",
        "model": {
            "path": model_name,
            "sha256": "3f" * 32,
            "backend": "onnxruntime",
            "card": {"task": "segmentation", "structures": [target], "input_size": [256, 256]},
        },
        "suite": {
            "name": task,
            "sha256": "ab" * 32,
            "definition": {
                "name": task,
                "task": "segmentation",
                "noise": [
                    {"noise": f, "level": lv, "params": {}} for f, _s, lvs in noises for lv in lvs
                ],
                "metrics": list(metrics),
                "targets": [target],
                "gates": {"on": "ci", "metrics": {"dice": {"min": 0.75, "max_drop": 0.05}}},
            },
        },
        "data": {
            "adapter": "montgomery",
            "manifest_hash": "cd" * 32,
            "n_images": n_images,
            "skipped": [["MCUCXR_bad.png", "truncated PNG"]],
            "describe": {"root": "/data/montgomery", "split": "test"},
        },
        "seed": 0,
        "repeats": 2,
        "packages": {"python": "3.11.9", "robusttest": "0.1.0", "numpy": "2.1.0", "torch": "2.4.0"},
    }
    run = {
        "started_at": "2025-01-02T10:00:00+00:00",
        "finished_at": "2025-01-02T10:03:12+00:00",
        "seconds_evaluation": 181.5,
        "seconds_total": 192.25,
        "device": "cpu",
        "host": "ci-runner-7",
        "platform": "Linux-6.1-x86_64",
        "batch_size": 16,
        "workers": 2,
        "cache": True,
        "error": None if completed else "interrupted",
    }
    if not completed:
        run["n_images_total"] = n_images + 6
    return RunResult(
        cases=tuple(cases),
        records=tuple(records),
        provenance=provenance,
        run=run,
        gallery=tuple(gallery),
        completed=completed,
    )


def make_classification_result(
    *, task: str = "findings", labels: Sequence[str] = ("Effusion", "Nodule"), n_images: int = 6
) -> RunResult:
    """A classifier run: AUROC per label, all passing a 0.10 max_drop gate, no overlays."""
    noises = DEFAULT_NOISES
    cases: list[CaseResult] = []
    records: list[ImageRecord] = []
    gallery: list[GalleryItem] = []
    conds: list[tuple[str, str | None, float | None, str | None, float]] = [
        (CLEAN, None, None, None, 0.0)
    ]
    for family, stem, levels in noises:
        for i, lv in enumerate(levels):
            conds.append((_slug(stem, family, lv), family, lv, SEVERITIES[i], 0.01 * (i + 1)))
    for j, lab in enumerate(labels):
        clean = 0.88 - 0.05 * j
        for cond, noise, level, sev, drop in conds:
            cases.append(
                CaseResult(
                    case_id=f"{lab}-auroc[{cond}]",
                    suite=task,
                    metric="auroc",
                    target=lab,
                    condition=cond,
                    noise=noise,
                    level=level,
                    severity=sev,
                    higher_is_better=True,
                    clean=clean,
                    noisy=clean - drop,
                    drop=drop,
                    ci_low=drop - 0.02 if noise else 0.0,
                    ci_high=drop + 0.02 if noise else 0.0,
                    noisy_ci_low=clean - drop - 0.04,
                    noisy_ci_high=min(1.0, clean - drop + 0.04),
                    relative_drop=drop / clean,
                    p_value=0.2 if noise else None,
                    p_adjusted=0.9 if noise else None,
                    test="delong (repeat 0)" if noise else None,
                    n=n_images,
                    n_patients=n_images,
                    repeats=1,
                    gate=GateSpec(max_drop=0.10) if noise else None,
                    verdict="pass" if noise else "no-gate",
                    message=f"auroc {lab} [{cond}]: drop {drop:.3g}",
                    reason=None,
                    relative_ci_low=(drop - 0.02) / clean if noise else 0.0,
                    relative_ci_high=(drop + 0.02) / clean if noise else 0.0,
                    test_unit="patient" if noise else None,
                )
            )
            cases[-1] = _judged(cases[-1])
    for k in range(n_images):
        for cond, _noise, _lv, _sev, drop in conds:
            records.append(
                ImageRecord(
                    suite=task,
                    image_id=f"{k:08d}_000.png",
                    patient_id=f"{k:08d}",
                    condition=cond,
                    repeat=0,
                    values={f"score/{lab}": 0.5 + 0.05 * k - drop for lab in labels},
                    targets={lab: (k + j) % 2 for j, lab in enumerate(labels)},
                )
            )
    for cond, _noise, _lv, _sev, _drop in conds:
        gallery.append(
            GalleryItem(
                suite=task,
                image_id="00000000_000.png",
                condition=cond,
                kind="sample",
                value=None,
                image_png=tiny_png(7),
                overlay_png="",
                caption=f"00000000_000.png · {cond} · "
                + ", ".join(f"{lab} 0.{50 + j:d}" for j, lab in enumerate(labels)),
            )
        )
    base = make_result()
    prov = dict(base.provenance)
    prov["model"] = {"path": "densenet_findings.onnx", "sha256": "9e" * 32, "backend": "torch"}
    prov["suite"] = {"name": task, "sha256": "ef" * 32, "definition": {"name": task}}
    prov["data"] = {"adapter": "phantom", "manifest_hash": "01" * 32, "n_images": n_images}
    return RunResult(
        cases=tuple(cases),
        records=tuple(records),
        provenance=prov,
        run=base.run,
        gallery=tuple(gallery),
    )


def make_merged() -> RunResult:
    """Two tasks in one result, as ``results.merge`` builds it."""
    return merge([make_result(), make_classification_result()])


def with_nan_case(result: RunResult) -> RunResult:
    """Replace the last case by one whose noisy metric is undefined (with a reason)."""
    last = result.cases[-1]
    bad = replace(
        last,
        noisy=math.nan,
        drop=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        noisy_ci_low=math.nan,
        noisy_ci_high=math.nan,
        relative_drop=math.nan,
        p_value=None,
        p_adjusted=None,
        verdict="error",
        message=f"{last.metric} {last.target} [{last.condition}]: undefined",
        reason="empty prediction mask on every image",
    )
    return replace(result, cases=(*result.cases[:-1], bad))
