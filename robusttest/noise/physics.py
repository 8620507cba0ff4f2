"""The detector model of the physical families: defaults, pixel spacing, Beer–Lambert counts.

A display value p ∈ [0, 1] (bone bright) is a log-attenuation ℓ = ℓ_max·p; the detector
counts k0 = N0·exp(−ℓ), with N0 the open-beam photons per pixel, N0 = PHOTONS_PER_MM2 ·
spacing². Each constant below, and where its value comes from, is in docs/physics.md.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from robusttest.errors import InputError, check_range
from robusttest.noise.sampling import _sqrt_counts

DETECTOR_KERMA_UGY = 2.5
PHOTONS_PER_MM2_PER_UGY = 3.0e4
LUNG_PHOTONS_PER_MM2 = DETECTOR_KERMA_UGY * PHOTONS_PER_MM2_PER_UGY  # 7.5e4
LMAX = 5.0
P_LUNG = 0.45
PHOTONS_PER_MM2 = LUNG_PHOTONS_PER_MM2 * math.exp(LMAX * P_LUNG)  # ≈ 7.1e5, open beam
REFERENCE_SPACING_MM = 0.143
DEFAULT_FIELD_MM = 430.0
COUNT_FLOOR = 0.5  # a pixel that records no photon is read as half a photon, not log(0)


def resolve_spacing(
    pixel_spacing_mm: float | Sequence[float | None] | None, n: int, height: int, width: int
) -> list[float]:
    """Per-image pixel spacing; unknown → the 430 mm field-of-view assumption."""
    fallback = DEFAULT_FIELD_MM / max(height, width)
    raw: Any = pixel_spacing_mm  # also numpy scalars, 0-d tensors, arrays
    try:
        if raw is None or np.ndim(raw) == 0:
            vals: list[float | None] = [None if raw is None else float(raw)] * n
        else:
            vals = [None if v is None else float(v) for v in raw]
    except (TypeError, ValueError):
        raise InputError(
            f"pixel_spacing_mm: {pixel_spacing_mm!r} is not a number or a list of numbers"
        ) from None
    if len(vals) != n:
        raise InputError(f"pixel_spacing_mm: {len(vals)} values for {n} images")
    out = []
    for v in vals:
        if v is None or math.isnan(v):
            out.append(fallback)
        else:
            out.append(check_range("pixel_spacing_mm", v, 0.0, 100.0, low_open=True))
    return out


def reference_kerma_ugy(params: Mapping[str, Any]) -> float | None:
    """The detector air kerma behind the lung (µGy) of the full dose, for a count-domain
    family's parameters: the lung fluence photons_per_mm2·exp(−ℓ_max·P_LUNG) over
    PHOTONS_PER_MM2_PER_UGY (DETECTOR_KERMA_UGY = 2.5 µGy with the defaults). None when
    ``n0`` sets the counts per pixel directly (no fluence, so no kerma)."""
    if float(params.get("n0", 0.0) or 0.0) > 0:
        return None
    fluence = float(params.get("photons_per_mm2", PHOTONS_PER_MM2))
    lmax = float(params.get("lmax", LMAX))
    if fluence == PHOTONS_PER_MM2 and lmax == LMAX:
        return DETECTOR_KERMA_UGY  # exactly: dose = kerma / 2.5 without rounding
    return fluence * math.exp(-lmax * P_LUNG) / PHOTONS_PER_MM2_PER_UGY


def _expected_counts(x: torch.Tensor, n0: torch.Tensor, lmax: float) -> torch.Tensor:
    """k0 = N0·exp(−ℓ_max·p): the expected full-dose counts (a new tensor)."""
    return x.mul(-lmax).exp_().mul_(n0)


# The conditions of one batch all read the same checked tensor (engine): its rounded
# full-dose counts and their square roots are made once per (tensor, N0, ℓ_max) and kept
# with it while it lives and is unchanged (its version counter), up to this many pixels
# (the pair costs two batch copies).
_SHARED_COUNTS_MAX_PIXELS = 1 << 24
_SHARED_LOCK = threading.Lock()


def _full_dose_counts(
    x: torch.Tensor, n0: torch.Tensor, lmax: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(round(k0), √round(k0)) for binomial thinning; both read only."""

    def make() -> tuple[torch.Tensor, torch.Tensor]:
        n = _expected_counts(x, n0, lmax).round_()
        return n, _sqrt_counts(n)

    if x.numel() > _SHARED_COUNTS_MAX_PIXELS or x.is_inference():
        return make()  # (inference tensors keep no version counter to check)
    key = (lmax, tuple(n0.flatten().tolist()))
    with _SHARED_LOCK:
        kept: tuple[int, dict[Any, Any]] | None = getattr(x, "_robusttest_counts", None)
        if kept is None or kept[0] != x._version:
            kept = (x._version, {})
            x._robusttest_counts = kept  # type: ignore[attr-defined]
        memo = kept[1]
        hit = memo.get(key)
    if hit is not None:
        return hit
    made = make()  # outside the lock: another lane may make the same pair meanwhile
    with _SHARED_LOCK:
        return memo.setdefault(key, made)
