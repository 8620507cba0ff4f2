"""Radiographic noise families (DESIGN.md §2), vectorised in torch on CPU or CUDA.

``NoiseSpec(name, level, params).apply(images, seed=..., image_ids=...)`` puts one noise
condition on a batch of display images p ∈ [0, 1]; every image gets its own random stream,
so its noise does not depend on the batch. The physics behind each family and default is
in docs/physics.md.

Modules: ``sampling`` (per-image streams, exact binomial and Poisson samplers),
``physics`` (detector defaults, pixel spacing, Beer–Lambert counts), ``families`` (the
``NoiseFamily`` base, its registry and the built-in families), ``spec`` (``NoiseSpec``,
ladders, severity names).
"""

from __future__ import annotations

from robusttest.noise.families import (
    NOISES,
    Electronic,
    Gaussian,
    ImagePoisson,
    NoiseFamily,
    ParamValue,
    Quantum,
    available_noises,
    get_noise,
    iter_families,
    register_noise,
)
from robusttest.noise.physics import (
    COUNT_FLOOR,
    DEFAULT_FIELD_MM,
    DETECTOR_KERMA_UGY,
    LMAX,
    LUNG_PHOTONS_PER_MM2,
    P_LUNG,
    PHOTONS_PER_MM2,
    PHOTONS_PER_MM2_PER_UGY,
    REFERENCE_SPACING_MM,
    reference_kerma_ugy,
    resolve_spacing,
)
from robusttest.noise.sampling import (
    ALIAS_MAX_ENTRIES,
    ALIAS_MAX_ROWS,
    ALIAS_TAIL_MASS,
    NORMAL_APPROX_MIN_VAR,
    POISSON_TABLE_MAX,
    SAMPLER_VERSION,
    noise_seed,
    sample_binomial,
    sample_poisson,
)
from robusttest.noise.spec import (
    SEVERITY_NAMES,
    NoiseSpec,
    apply_noise,
    check_images,
    ladder,
    severity_name,
)

__all__ = [
    "ALIAS_MAX_ENTRIES",
    "ALIAS_MAX_ROWS",
    "ALIAS_TAIL_MASS",
    "COUNT_FLOOR",
    "DEFAULT_FIELD_MM",
    "DETECTOR_KERMA_UGY",
    "LMAX",
    "LUNG_PHOTONS_PER_MM2",
    "NOISES",
    "NORMAL_APPROX_MIN_VAR",
    "PHOTONS_PER_MM2",
    "PHOTONS_PER_MM2_PER_UGY",
    "POISSON_TABLE_MAX",
    "P_LUNG",
    "REFERENCE_SPACING_MM",
    "SAMPLER_VERSION",
    "SEVERITY_NAMES",
    "Electronic",
    "Gaussian",
    "ImagePoisson",
    "NoiseFamily",
    "NoiseSpec",
    "ParamValue",
    "Quantum",
    "apply_noise",
    "available_noises",
    "check_images",
    "get_noise",
    "iter_families",
    "ladder",
    "noise_seed",
    "reference_kerma_ugy",
    "register_noise",
    "resolve_spacing",
    "sample_binomial",
    "sample_poisson",
    "severity_name",
]
