"""Noise conditions: ``NoiseSpec`` (family × level × parameters), input checks, ladders and
severity names; ``NoiseSpec.apply`` is the one entry point that puts noise on images."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from robusttest.errors import InputError, UnknownNameError
from robusttest.noise.families import NoiseFamily, ParamValue, get_noise
from robusttest.noise.physics import resolve_spacing
from robusttest.noise.sampling import _generators

SEVERITY_NAMES = ("minimal", "mild", "moderate", "marked", "severe")


def _as_batch(
    images: torch.Tensor | np.ndarray,
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Validate and view as N×H×W float32; return the inverse reshape."""
    if isinstance(images, np.ndarray):
        if images.dtype.kind not in "f":
            raise InputError(
                f"images: dtype {images.dtype} is not floating point; convert to float in [0, 1] "
                "(e.g. x.astype('float32') / 255)"
            )
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise InputError(
            f"images: expected a torch.Tensor or numpy array, got {type(images).__name__}"
        )
    if not images.is_floating_point():
        raise InputError(
            f"images: dtype {images.dtype} is not floating point; convert to float in [0, 1] "
            "(e.g. x.float() / 255)"
        )
    shape = images.shape
    if images.ndim == 2:
        x = images.unsqueeze(0)
    elif images.ndim == 3:
        x = images
    elif images.ndim == 4 and shape[1] == 1:
        x = images[:, 0]
    else:
        raise InputError(
            f"images: shape {tuple(shape)} is not H×W, N×H×W or N×1×H×W (grayscale radiographs)"
        )
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise InputError(f"images: shape {tuple(shape)} has an empty spatial dimension")
    x = x.to(torch.float32)
    if x.numel() == 0:
        raise InputError(f"images: shape {tuple(shape)} holds no pixels")
    # one pass: NaN propagates through min/max, and ±inf shows up as a bound
    lo_t, hi_t = torch.aminmax(x)
    lo, hi = float(lo_t), float(hi_t)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist()
        raise InputError(f"images: NaN or infinite pixels in image(s) at batch index {bad}")
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(f"images: values span [{lo:g}, {hi:g}]; expected [0, 1] display values")
    x = x.clamp(0.0, 1.0)

    def back(y: torch.Tensor) -> torch.Tensor:
        return y.reshape(shape)

    return x, back


def check_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Validate grey images (H×W, N×H×W or N×1×H×W float in [0, 1]) as ``NoiseSpec.apply``
    does; returns an N×H×W float32 copy clipped to [0, 1], for ``apply_checked``."""
    return _as_batch(images)[0]


@dataclass(frozen=True)
class NoiseSpec:
    """One noise condition: a family, a level and optional parameters."""

    name: str
    level: float
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        fam = get_noise(self.name)
        object.__setattr__(self, "level", fam.check_level(self.level))
        object.__setattr__(
            self, "params", dict(sorted(fam.check_params(dict(self.params)).items()))
        )

    @property
    def family(self) -> NoiseFamily:
        return get_noise(self.name)

    @property
    def slug(self) -> str:
        """Readable, stable id, e.g. ``quantum-dose10`` or ``gaussian-sigma0.08``."""
        return self.family.slug(self.level)

    @property
    def overrides(self) -> dict[str, ParamValue]:
        """Parameters that differ from the family's defaults."""
        d = self.family.defaults
        return {k: v for k, v in self.params.items() if d.get(k) != v}

    def describe(
        self, pixel_spacing_mm: float | None = None, shape: tuple[int, int] = (512, 512)
    ) -> dict[str, Any]:
        spacing = resolve_spacing(pixel_spacing_mm, 1, *shape)[0]
        return {
            "noise": self.name,
            "level": self.level,
            **self.family.used_params(self.level, self.params, spacing),
        }

    def apply(
        self,
        images: torch.Tensor | np.ndarray,
        *,
        seed: int = 0,
        image_ids: Sequence[str] | None = None,
        repeat: int = 0,
        pixel_spacing_mm: float | Sequence[float | None] | None = None,
    ) -> torch.Tensor:
        """Noisy copy of ``images`` (H×W, N×H×W or N×1×H×W float in [0, 1]).

        ``image_ids`` key each image's random stream; without them the batch index is
        used, so the noise then depends on the image's position in the batch.
        """
        x, back = _as_batch(images)
        return back(
            self.apply_checked(
                x, seed=seed, image_ids=image_ids, repeat=repeat, pixel_spacing_mm=pixel_spacing_mm
            )
        )

    def apply_checked(
        self,
        x: torch.Tensor,
        *,
        seed: int = 0,
        image_ids: Sequence[str] | None = None,
        repeat: int = 0,
        pixel_spacing_mm: float | Sequence[float | None] | None = None,
    ) -> torch.Tensor:
        """``apply`` for a batch already through ``check_images`` (N×H×W float32 in [0, 1]):
        a caller that puts one batch through many conditions checks it once. ``x`` is
        only read; binomial thinning keeps its full-dose counts with it (two copies, while
        ``x`` lives unchanged, up to 2²⁴ pixels) for the next dose of the ladder."""
        n, h, w = x.shape
        ids = [str(i) for i in range(n)] if image_ids is None else [str(i) for i in image_ids]
        if len(ids) != n:
            raise InputError(f"image_ids: {len(ids)} ids for {n} images")
        fam = self.family
        if fam.is_identity(self.level, self.params):
            return x.clone()
        spacing = torch.tensor(resolve_spacing(pixel_spacing_mm, n, h, w), dtype=torch.float64)
        gens = _generators(x.device, seed, self.name, self.level, ids, repeat)
        return fam._apply(x, self.level, self.params, gens, spacing)


def apply_noise(
    images: torch.Tensor | np.ndarray,
    noise: str,
    level: float,
    *,
    seed: int = 0,
    image_ids: Sequence[str] | None = None,
    repeat: int = 0,
    pixel_spacing_mm: float | Sequence[float | None] | None = None,
    **params: ParamValue,
) -> torch.Tensor:
    """Functional form of :meth:`NoiseSpec.apply`."""
    return NoiseSpec(noise, level, params).apply(
        images, seed=seed, image_ids=image_ids, repeat=repeat, pixel_spacing_mm=pixel_spacing_mm
    )


def ladder(noise: str, which: str = "default", **params: ParamValue) -> list[NoiseSpec]:
    """The named ladder of a family, mildest level first."""
    fam = get_noise(noise)
    try:
        levels = fam.ladders[which]
    except KeyError:
        raise UnknownNameError(f"{noise} ladder", which, fam.ladders) from None
    return [NoiseSpec(noise, lv, params) for lv in levels]


def severity_name(noise: str, level: float) -> str | None:
    """'minimal' … 'severe' for a level of a family's default ladder, else None."""
    levels = get_noise(noise).ladders.get("default", ())
    for i, lv in enumerate(levels):
        if math.isclose(lv, level) and len(levels) == len(SEVERITY_NAMES):
            return SEVERITY_NAMES[i]
    return None
