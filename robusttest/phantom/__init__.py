"""Procedural chest radiographs: the embedded default dataset.

Each case is a Beer–Lambert projection of simple analytic anatomy. Every structure is a
thickness map t(x, y) (mm of tissue along the PA beam) of an ellipsoid, tube or
superellipse, and the line integral of attenuation is

    ℓ(x, y) = Σ_tissues μ_t · t_t(x, y)

computed *relative to soft tissue*: the body is soft tissue, lungs and air subtract
(μ_soft − μ_lung)·t, bone adds (μ_bone − μ_soft)·t. The display value is p = ℓ / ℓ_max
(MONOCHROME2: bone and mediastinum bright, lungs dark, air outside the body black) with a
mild per-case gamma, the way a real film's processing varies. The images are noise-free:
``robusttest.noise`` treats an input as the acquired full-dose image and adds noise to it.

Geometry lives in a *model frame* in millimetres (x to image right, y down, origin at the
field centre); a per-case scale, rotation and shift maps it onto the 400 mm detector
field, so the same (seed, index) gives the same patient at every image size.

Orientation is that of a PA film viewed as usual: the patient's right is on the image
left. ``right_lung`` therefore lies on the image left, like the masks of the JSRT,
Montgomery and Shenzhen sets, and the heart sits left of the patient's midline (image
right).

Masks are exact (computed from the same analytic shapes). The ``lungs`` mask is the lung
field a reader would trace: the projected area of each hemithorax above the diaphragm that
holds air — aerated lung, consolidated lung and pleural air of a pneumothorax — minus the
cardiac silhouette and minus pleural fluid (where an effusion makes the base opaque, the
mask follows the meniscus).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robusttest.errors import ConfigError, UnknownNameError, check_range
from robusttest.phantom.anatomy import (
    _MAX_SIZE,
    _MIN_SIZE,
    FIELD_MM,
    FINDINGS,
    MU_BONE,
    MU_LUNG,
    MU_SOFT,
    MU_TRABECULAR,
    STRUCTURES,
    PhantomCase,
    _draw_anatomy,
    _draw_findings,
    ellipsoid_thickness,
)
from robusttest.phantom.render import _render

__all__ = [
    "FIELD_MM",
    "FINDINGS",
    "MU_BONE",
    "MU_LUNG",
    "MU_SOFT",
    "MU_TRABECULAR",
    "STRUCTURES",
    "PhantomCase",
    "cardiothoracic_ratio",
    "ellipsoid_thickness",
    "generate_case",
]

# --- Public entry point --------------------------------------------------------------------------


def cardiothoracic_ratio(masks: dict[str, np.ndarray]) -> float:
    """Heart width / thorax width from the ``heart`` and ``lungs`` masks (widest extents)."""

    def width(m: np.ndarray) -> int:
        cols = np.flatnonzero(np.asarray(m).any(axis=0))
        return int(cols[-1] - cols[0] + 1) if cols.size else 0

    thorax = width(masks["lungs"])
    return width(masks["heart"]) / thorax if thorax else float("nan")


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name}: {value!r} is not an integer")
    v = int(value)
    if v < low or (high is not None and v > high):
        hi = "inf" if high is None else str(high)
        raise ConfigError(f"{name}: {v} is not in [{low}, {hi}]")
    return v


def _presence(
    seed: int, index: int, finding_prob: float, findings: Sequence[str] | None
) -> tuple[np.random.SeedSequence, dict[str, bool]]:
    """Validate the arguments; the case's seed sequence and which findings it has.

    Presence is drawn from its own child stream (child 1 of the case's SeedSequence), so
    the labels are known without rendering the image.
    """
    seed = _check_int("seed", seed, 0)
    index = _check_int("index", index, 0)
    prob = check_range("finding_prob", finding_prob, 0.0, 1.0)
    if findings is None:
        allowed = set(FINDINGS)
    else:
        names = (findings,) if isinstance(findings, str) else tuple(findings)
        for name in names:
            if name not in FINDINGS:
                raise UnknownNameError("finding", str(name), FINDINGS)
        allowed = set(names)
    ss = np.random.SeedSequence([seed, index])
    pres_ss = ss.spawn(2)[1]  # children depend only on their position: same as generate_case's
    draws = np.random.default_rng(pres_ss).random(len(FINDINGS))
    present = {n: bool(n in allowed and u < prob) for n, u in zip(FINDINGS, draws, strict=True)}
    return np.random.SeedSequence([seed, index]), present


def case_labels(
    seed: int, index: int, finding_prob: float = 0.3, findings: Sequence[str] | None = None
) -> dict[str, int]:
    """The labels ``generate_case`` gives the same arguments, without rendering."""
    return {n: int(v) for n, v in _presence(seed, index, finding_prob, findings)[1].items()}


def generate_case(
    seed: int,
    index: int,
    size: int = 256,
    finding_prob: float = 0.3,
    findings: Sequence[str] | None = None,
) -> PhantomCase:
    """Render phantom case ``index`` of the series ``seed``.

    Deterministic in its arguments and independent of call order: every random choice
    comes from generators seeded by (seed, index). The anatomy does not depend on
    ``size``, ``finding_prob`` or ``findings``, and each finding draws from its own
    stream, so switching one finding on changes only that finding.

    ``findings``: the findings that may appear (default: all of FINDINGS; a single name
    may be given as a string); each appears independently with probability
    ``finding_prob``; the others are 0.
    """
    size = _check_int("size", size, _MIN_SIZE, _MAX_SIZE)
    ss, present = _presence(seed, index, finding_prob, findings)
    anat_ss, _, *find_ss = ss.spawn(2 + len(FINDINGS))
    anat = _draw_anatomy(np.random.default_rng(anat_ss))
    rngs = {n: np.random.default_rng(s) for n, s in zip(FINDINGS, find_ss, strict=True)}
    fnd = _draw_findings(present, anat, rngs)
    image, masks = _render(anat, fnd, size)
    return PhantomCase(
        image=image,
        masks={k: masks[k] for k in STRUCTURES},
        labels={n: int(present[n]) for n in FINDINGS},
        pixel_spacing_mm=FIELD_MM / size,
        patient_id=f"phantom-{int(seed)}-p{int(index):05d}",
        image_id=f"phantom-{int(seed)}-{int(index):05d}",
    )
