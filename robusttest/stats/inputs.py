"""Input checks shared by the statistics: vectors, binary targets, patient codes."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from robusttest.errors import ConfigError, InputError, check_range

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


def _vector(x: npt.ArrayLike, name: str, *, allow_nan: bool) -> FloatArray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise InputError(f"{name}: shape {a.shape} is not one-dimensional (one value per image)")
    if not (
        np.issubdtype(a.dtype, np.floating)
        or np.issubdtype(a.dtype, np.integer)
        or a.dtype == np.bool_
    ):
        raise InputError(f"{name}: dtype {a.dtype} is not numeric")
    a = a.astype(np.float64)
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)
    if bool(bad.any()):
        raise InputError(f"{name}: contains {'inf' if allow_nan else 'NaN or inf'}")
    return a


def _binary(x: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    a = np.asarray(x)
    if a.ndim != 1:
        raise InputError(f"{name}: shape {a.shape} is not one-dimensional (one value per image)")
    if a.dtype == np.bool_:
        return a
    ok = (a == 0) | (a == 1)
    if not bool(np.all(ok)):
        raise InputError(f"{name}: holds {a[~ok][0].item()!r}; binary targets must be 0/1 or bool")
    return a != 0


def _same_length(**arrays: npt.NDArray[Any]) -> int:
    sizes = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise InputError(
            "paired inputs differ in length: " + ", ".join(f"{k}={v}" for k, v in sizes.items())
        )
    return next(iter(sizes.values()))


def _group_codes(groups: npt.ArrayLike | None, n: int) -> tuple[IntArray, int]:
    """Dense integer codes 0..G-1 for patient ids (any hashable); None: one per image."""
    if groups is None:
        return np.arange(n, dtype=np.intp), n
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n:
        raise InputError(f"groups: shape {g.shape}, expected ({n},): one patient id per image")
    if g.dtype == object:
        g = g.astype(str)  # mixed ids (e.g. int and str) cannot be sorted by np.unique
    _, codes = np.unique(g, return_inverse=True)
    codes = codes.reshape(-1).astype(np.intp)
    return codes, int(codes.max()) + 1 if n else 0


def _check_resampling(n_resamples: int, seed: int, ci: float) -> None:
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
        raise ConfigError(f"n_resamples: {n_resamples!r} must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed: {seed!r} must be an integer >= 0")
    check_range("ci", ci, 0.0, 1.0, low_open=True, high_open=True)
