"""Noise families: the ``NoiseFamily`` base, its registry, and the built-in families.

``quantum`` and ``electronic`` perturb detector counts (Beer–Lambert, see ``physics``);
``gaussian`` and ``poisson`` are the image-domain conventions of ImageNet-C / MedMNIST-C.
Each family's formula and defaults are derived in docs/physics.md.

A family is registered by ``@register_noise`` (a ``conftest.py``, a script) or by an
installed package's entry point in the group ``robusttest.noise`` (value: the class, or a
module whose import registers it), so ``pytest`` and the ``robusttest`` command see the same
families.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, overload

import torch

from robusttest.errors import ConfigError, check_range
from robusttest.noise.physics import (
    COUNT_FLOOR,
    LMAX,
    PHOTONS_PER_MM2,
    REFERENCE_SPACING_MM,
    _expected_counts,
    _full_dose_counts,
    reference_kerma_ugy,
)
from robusttest.noise.sampling import (
    NORMAL_APPROX_MIN_VAR,
    _level_key,
    _normal,
    sample_binomial,
    sample_poisson,
)
from robusttest.registry import Registry

ParamValue = float | str
_T = TypeVar("_T", bound="NoiseFamily")


class NoiseFamily(abc.ABC):
    """A registered noise. Subclass, set the class attributes, implement ``_apply``."""

    name: ClassVar[str]
    level_param: ClassVar[str]  # the parameter the level sets ("dose", "sigma", ...)
    level_unit: ClassVar[str] = ""
    summary: ClassVar[str]
    ladders: ClassVar[dict[str, tuple[float, ...]]]
    defaults: ClassVar[dict[str, ParamValue]] = {}
    higher_is_worse: ClassVar[bool] = True  # False when a smaller level is more severe
    # The failure frontier (robusttest.engine.frontier) searches the levels from the mildest
    # to the most severe of ``frontier_range`` (None: the span of the family's ladders), on
    # the level's logarithm when ``frontier_log`` (a dose, a rate, a noise SD over decades).
    frontier_range: ClassVar[tuple[float, float] | None] = None
    frontier_log: ClassVar[bool] = False
    # Other keys a suite may give the levels in, each with its unit (``level_from``).
    level_units: ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    def check_level(self, level: float) -> float:
        """Validate the level (raise ConfigError naming the allowed range)."""

    def check_params(self, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        unknown = set(params) - set(self.defaults)
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "(none)"
            raise ConfigError(
                f"{self.name}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                f"allowed: {allowed}"
            )
        out = dict(self.defaults)
        out.update(params)
        return out

    def is_identity(self, level: float, params: Mapping[str, ParamValue]) -> bool:
        return False

    @abc.abstractmethod
    def _apply(
        self,
        x: torch.Tensor,
        level: float,
        params: Mapping[str, ParamValue],
        gens: Sequence[torch.Generator],
        spacing_mm: torch.Tensor,
    ) -> torch.Tensor:
        """x: N×H×W float32 in [0, 1]; spacing_mm: N float64 (resolved). Returns a new
        N×H×W tensor; must not write to x (a caller may reuse it for other conditions)."""

    def used_params(
        self, level: float, params: Mapping[str, ParamValue], spacing_mm: float
    ) -> dict[str, Any]:
        """The parameters actually applied to an image of this pixel spacing."""
        return {self.level_param: level, **params}

    def slug(self, level: float) -> str:
        return f"{self.name}-{self.level_param}{_level_key(level)}"

    def search_range(self) -> tuple[float, float]:
        """(mildest, most severe) level the failure frontier searches."""
        if self.frontier_range is not None:
            return self.frontier_range
        levels = [lv for ladder in self.ladders.values() for lv in ladder]
        if not levels:
            raise ConfigError(f"{self.name}: no ladder and no frontier_range to search")
        lo, hi = min(levels), max(levels)
        return (lo, hi) if self.higher_is_worse else (hi, lo)

    def level_from(self, key: str, value: float, params: Mapping[str, ParamValue]) -> float:
        """The level of a value given in one of ``level_units`` (ConfigError otherwise)."""
        raise ConfigError(f"{self.name}: {key} is not a unit of its levels")

    def level_in(self, key: str, level: float, params: Mapping[str, ParamValue]) -> float | None:
        """``level`` in the unit ``key`` of ``level_units``; None where it has no meaning."""
        return None


# --- registry --------------------------------------------------------------------------------
class _FamilyRegistry(Registry[NoiseFamily]):
    """The one registry of noise families; an entry's name is its family's ``name``."""

    def add(
        self, name: str, obj: Any, *, replace: bool = False, origin: str | None = None
    ) -> NoiseFamily:
        where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
        if not (isinstance(obj, type) and issubclass(obj, NoiseFamily)):
            raise ConfigError(
                f"{where}: a noise family is a subclass of robusttest.noise.NoiseFamily"
            )
        own = getattr(obj, "name", None)
        if not own:
            raise ConfigError(f"{where}: a noise family needs a non-empty `name`")
        if own != name.strip():
            raise ConfigError(
                f"noise {name.strip()!r}: {where} is named {own!r}; "
                f"register it (or name its entry point) {own!r}"
            )
        return super().add(name, obj, replace=replace, origin=origin)


def _instantiate(cls: type[NoiseFamily]) -> NoiseFamily:
    try:
        return cls()
    except TypeError as exc:  # abstract methods left unimplemented
        raise ConfigError(f"{cls.__qualname__}: {exc}") from None


NOISES: Registry[NoiseFamily] = _FamilyRegistry(
    "noise", make=_instantiate, name_of=lambda fam: fam.name
)


@overload
def register_noise(cls: type[_T], /) -> type[_T]: ...
@overload
def register_noise(*, replace: bool = False) -> Callable[[type[_T]], type[_T]]: ...
def register_noise(
    cls: type[_T] | None = None, /, *, replace: bool = False
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """Class decorator: make a NoiseFamily available by its ``name``.

    ``@register_noise`` or ``@register_noise(replace=True)``; registering the same class
    again is fine, a different class under a taken name needs ``replace=True``.
    """

    def deco(c: type[_T]) -> type[_T]:
        if not getattr(c, "name", None):
            raise ConfigError(f"{c.__name__}: a noise family needs a non-empty `name`")
        NOISES.add(c.name, c, replace=replace)
        return c

    return deco if cls is None else deco(cls)


def get_noise(name: str) -> NoiseFamily:
    """The registered family ``name`` (installed extensions included)."""
    return NOISES.get(name)


def available_noises() -> list[str]:
    return list(NOISES.names())


def iter_families() -> Iterator[NoiseFamily]:
    for _, fam in NOISES.items():
        yield fam


# --- built-in families -------------------------------------------------------------------------
_COUNT_DEFAULTS: dict[str, ParamValue] = {
    "photons_per_mm2": PHOTONS_PER_MM2,
    "lmax": LMAX,
    "sigma_e": 0.0,
    "dose": 1.0,
    "n0": 0.0,  # 0 = derive from photons_per_mm2 and the pixel spacing
    "variant": "thin",
}


class _CountDomain(NoiseFamily):
    """Shared Beer–Lambert mapping of the physical families."""

    defaults: ClassVar[dict[str, ParamValue]] = _COUNT_DEFAULTS

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        # the parameter the level sets is not also a free parameter
        cls.defaults = {k: v for k, v in _COUNT_DEFAULTS.items() if k != cls.level_param}

    def check_params(self, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        lp = self.level_param
        if lp in params:
            raise ConfigError(f"{self.name}.{lp}: set {lp} through the level, not a parameter")
        out = super().check_params(params)
        check_range(
            f"{self.name}.photons_per_mm2", float(out["photons_per_mm2"]), 0, None, low_open=True
        )
        check_range(f"{self.name}.lmax", float(out["lmax"]), 0, 50, low_open=True)
        if "sigma_e" in out:
            check_range(f"{self.name}.sigma_e", float(out["sigma_e"]), 0, None)
        if "dose" in out:
            check_range(f"{self.name}.dose", float(out["dose"]), 0, 1, low_open=True)
        check_range(f"{self.name}.n0", float(out["n0"]), 0, None)
        if out["variant"] not in ("thin", "resample"):
            raise ConfigError(
                f"{self.name}.variant: {out['variant']!r} is not one of 'thin' (dose reduction "
                "of an image that already holds full-dose noise) or 'resample' (image taken "
                "as noise-free)"
            )
        return out

    @staticmethod
    def n0_per_pixel(params: Mapping[str, ParamValue], spacing_mm: float) -> float:
        n0 = float(params["n0"])
        return n0 if n0 > 0 else float(params["photons_per_mm2"]) * spacing_mm**2

    def used_params(
        self, level: float, params: Mapping[str, ParamValue], spacing_mm: float
    ) -> dict[str, Any]:
        p = self._resolved(level, params)
        sigma_ref = float(p["sigma_e"])
        return {
            "dose": float(p["dose"]),
            "variant": p["variant"],
            "n0": self.n0_per_pixel(p, spacing_mm),
            "n0_source": "n0" if float(p["n0"]) > 0 else "photons_per_mm2 x spacing^2",
            "photons_per_mm2": float(p["photons_per_mm2"]),
            "pixel_spacing_mm": spacing_mm,
            "lmax": float(p["lmax"]),
            "sigma_e": sigma_ref,
            "sigma_e_pixel": sigma_ref * spacing_mm / REFERENCE_SPACING_MM,
        }

    def _resolved(self, level: float, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        """Params with the level written into its parameter."""
        return {**params, self.level_param: level}

    def _apply(
        self,
        x: torch.Tensor,
        level: float,
        params: Mapping[str, ParamValue],
        gens: Sequence[torch.Generator],
        spacing_mm: torch.Tensor,
    ) -> torch.Tensor:
        p = self._resolved(level, params)
        dose = float(p["dose"])
        lmax = float(p["lmax"])
        sigma_ref = float(p["sigma_e"])
        if float(p["n0"]) > 0:
            n0 = torch.full_like(spacing_mm, float(p["n0"]))
        else:
            n0 = float(p["photons_per_mm2"]) * spacing_mm.square()
        n0_t = n0.to(device=x.device, dtype=torch.float32).view(-1, 1, 1)
        if p["variant"] == "thin" and dose < 1.0:
            n, sqrt_n = _full_dose_counts(x, n0_t, lmax)  # shared: read only
            k = sample_binomial(n, dose, gens, sqrt_n=sqrt_n)
        else:
            k = _expected_counts(x, n0_t, lmax)
            if p["variant"] == "resample":
                k = sample_poisson(k.mul_(dose), gens, NORMAL_APPROX_MIN_VAR)
            # else no thinning: the image keeps exactly the noise it holds
        if sigma_ref > 0:
            sig = (spacing_mm * (sigma_ref / REFERENCE_SPACING_MM)).to(x.device, torch.float32)
            k.add_(_normal(k.shape, gens, k).mul_(sig.view(-1, 1, 1)))
        # ℓ_a = −ln(k / (a·N0)); p_a = ℓ_a / ℓ_max (ln(a·N0) − ln k in float32 would lose
        # ~10× the precision to cancellation)
        k.clamp_(min=COUNT_FLOOR).div_(n0_t * dose).log_().mul_(-1.0 / lmax)
        return k.clamp_(0.0, 1.0)


@register_noise
class Quantum(_CountDomain):
    """Dose reduction to a fraction of the acquired dose (Poisson statistics)."""

    name = "quantum"
    level_param = "dose"
    summary = (
        "dose reduction to a fraction `dose` of the acquired dose: binomial thinning of the "
        "counts estimated from the image (exact for a Poisson source; variant='resample' "
        "treats the image as noise-free and draws Poisson(dose·k0))"
    )
    ladders: ClassVar[dict[str, tuple[float, ...]]] = {
        "default": (0.5, 0.25, 0.10, 0.05, 0.02),
        "stress": (0.01, 0.005, 0.002, 0.001),
    }
    higher_is_worse = False
    # down to 10⁻⁷ of the reference dose: a few photons per pixel even at 1.6 mm pixels
    frontier_range = (1.0, 1e-7)
    frontier_log = True
    level_units: ClassVar[dict[str, str]] = {
        "dose_uGy": "detector air kerma behind the lung in µGy; dose = kerma / the "
        "reference kerma (2.5 µGy with the default detector)"
    }

    def check_level(self, level: float) -> float:
        return check_range("quantum.dose", level, 0.0, 1.0, low_open=True)

    def level_from(self, key: str, value: float, params: Mapping[str, ParamValue]) -> float:
        if key != "dose_uGy":
            return super().level_from(key, value, params)
        ref = reference_kerma_ugy(params)
        if ref is None:
            raise ConfigError(
                "dose_uGy needs the detector's photons_per_mm2; with n0 set the counts per "
                "pixel are given directly, so give the levels as dose fractions"
            )
        kerma = check_range("quantum.dose_uGy", value, 0.0, None, low_open=True)
        if kerma > ref * (1 + 1e-12):
            raise ConfigError(
                f"quantum.dose_uGy: {value:g} µGy is above the reference exposure "
                f"{ref:g} µGy (quantum reduces the dose; give at most {ref:g})"
            )
        return min(1.0, kerma / ref)

    def level_in(self, key: str, level: float, params: Mapping[str, ParamValue]) -> float | None:
        ref = reference_kerma_ugy(params) if key == "dose_uGy" else None
        return None if ref is None else level * ref

    def is_identity(self, level: float, params: Mapping[str, ParamValue]) -> bool:
        return (
            level == 1.0 and params.get("variant", "thin") == "thin" and not params.get("sigma_e")
        )

    def slug(self, level: float) -> str:
        return f"quantum-dose{_level_key(level * 100)}"


@register_noise
class Electronic(_CountDomain):
    """Additive Gaussian detector read noise in the count domain (Poisson–Gaussian)."""

    name = "electronic"
    level_param = "sigma_e"
    level_unit = "quanta per 0.143 mm pixel"
    summary = (
        "additive detector read noise N(0, sigma_e²) in the count domain before the log; "
        "sigma_e in quanta per 0.143 mm detector element; combine with a lower `dose`"
    )
    # Flat panels read ~1–4 quanta of electronic noise per element; the ladder runs from
    # realistic to 25× that, where it dominates behind the mediastinum.
    ladders: ClassVar[dict[str, tuple[float, ...]]] = {
        "default": (5.0, 10.0, 20.0, 50.0, 100.0),
        "stress": (200.0, 500.0),
    }
    frontier_range = (1.0, 1e5)
    frontier_log = True

    def check_level(self, level: float) -> float:
        return check_range("electronic.sigma_e", level, 0.0, None)

    def is_identity(self, level: float, params: Mapping[str, ParamValue]) -> bool:
        # variant='resample' redraws Poisson counts even at dose 1 with no read noise
        return (
            level == 0.0
            and float(params.get("dose", 1.0)) == 1.0
            and params.get("variant", "thin") == "thin"
        )

    def slug(self, level: float) -> str:
        return f"electronic-sigma{_level_key(level)}"


@register_noise
class Gaussian(NoiseFamily):
    """Image-domain additive Gaussian noise, clipped (ImageNet-C / MedMNIST-C convention)."""

    name = "gaussian"
    level_param = "sigma"
    summary = "image-domain additive noise p + sigma·z, clipped to [0, 1] (the paper's 'electronic (Gaussian)' noise)"
    # MedMNIST-C's ChestMNIST severities; heavier stress levels beyond.
    ladders: ClassVar[dict[str, tuple[float, ...]]] = {
        "default": (0.04, 0.08, 0.12, 0.18, 0.26),
        "stress": (0.35, 0.5),
    }
    frontier_range = (0.0, 1.0)

    def check_level(self, level: float) -> float:
        return check_range("gaussian.sigma", level, 0.0, 1.0)

    def is_identity(self, level: float, params: Mapping[str, ParamValue]) -> bool:
        return level == 0.0

    def _apply(
        self,
        x: torch.Tensor,
        level: float,
        params: Mapping[str, ParamValue],
        gens: Sequence[torch.Generator],
        spacing_mm: torch.Tensor,
    ) -> torch.Tensor:
        z = _normal(x.shape, gens, x)
        return torch.add(x, z, alpha=level, out=z).clamp_(0.0, 1.0)


@register_noise
class ImagePoisson(NoiseFamily):
    """Image-domain shot noise Poisson(p·rate)/rate (ImageNet-C convention).

    It inverts the physics: bright (bone, high-attenuation) pixels get the largest counts
    and so the smallest relative noise, where a detector sees the fewest photons there.
    """

    name = "poisson"
    level_param = "rate"
    summary = "image-domain shot noise Poisson(p·rate)/rate (ImageNet-C); note: bone gets the least noise, the opposite of physics"
    ladders: ClassVar[dict[str, tuple[float, ...]]] = {
        "default": (60.0, 25.0, 12.0, 5.0, 3.0),
        "stress": (2.0, 1.0),
    }
    higher_is_worse = False
    frontier_range = (1e4, 0.1)
    frontier_log = True

    def check_level(self, level: float) -> float:
        return check_range("poisson.rate", level, 0.0, None, low_open=True)

    def _apply(
        self,
        x: torch.Tensor,
        level: float,
        params: Mapping[str, ParamValue],
        gens: Sequence[torch.Generator],
        spacing_mm: torch.Tensor,
    ) -> torch.Tensor:
        return sample_poisson(x * level, gens).div_(level).clamp_(0.0, 1.0)
