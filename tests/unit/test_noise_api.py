"""Identity levels, monotone ladders, seeding, validation, registry and slugs of
``robusttest.noise``."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import ClassVar

import numpy as np
import pytest
import torch

import robusttest.noise as noise_mod
from robusttest.errors import ConfigError, InputError, RobustTestError, UnknownNameError
from robusttest.noise import (
    NoiseFamily,
    NoiseSpec,
    ParamValue,
    apply_noise,
    available_noises,
    ladder,
    noise_seed,
    register_noise,
)

FAMILIES = ("quantum", "electronic", "gaussian", "poisson")
# one level per family, plus low-dose native-pixel quantum settings that use both the exact
# and the approximate samplers
SPECS = [
    NoiseSpec("quantum", 0.1),
    NoiseSpec("quantum", 0.02),
    NoiseSpec("quantum", 0.25, {"variant": "resample"}),
    NoiseSpec("electronic", 20.0, {"dose": 0.1}),
    NoiseSpec("gaussian", 0.12),
    NoiseSpec("poisson", 12.0),
    NoiseSpec("poisson", 60.0),
]
SPEC_IDS = [
    f"{s.slug}{'-' + str(s.params['variant']) if s.params.get('variant') == 'resample' else ''}"
    for s in SPECS
]


def smooth_batch(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """n distinct chest-like images in [0.05, 0.95]: smooth blobs over a vertical ramp."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    out = []
    for _ in range(n):
        c = torch.rand(4, 2, generator=g) * 1.6 - 0.8
        img = 0.3 + 0.2 * yy
        for cx, cy in c:
            img = img + 0.25 * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.1)
        out.append(img.clamp(0.05, 0.95))
    return torch.stack(out).float()


# --- 2. identities and monotone ladders ------------------------------------------------------
def test_quantum_full_dose_is_bit_identical() -> None:
    x = smooth_batch(3, 48)
    y = NoiseSpec("quantum", 1.0).apply(x, seed=5)
    assert y.dtype == torch.float32 and torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    x1 = x[:, None]
    assert torch.equal(NoiseSpec("quantum", 1.0).apply(x1), x1)


def test_electronic_zero_sigma_full_dose_is_identity() -> None:
    x = smooth_batch(2, 32)
    assert torch.equal(NoiseSpec("electronic", 0.0).apply(x, seed=1), x)
    # but not with a dose cut, nor in the resample variant (which redraws the counts)
    assert not torch.equal(NoiseSpec("electronic", 0.0, {"dose": 0.5}).apply(x), x)
    assert not torch.equal(NoiseSpec("electronic", 0.0, {"variant": "resample"}).apply(x), x)


def test_resample_variant_at_full_dose_is_not_identity() -> None:
    x = smooth_batch(2, 32)
    assert not torch.equal(NoiseSpec("quantum", 1.0, {"variant": "resample"}).apply(x), x)
    assert torch.equal(NoiseSpec("gaussian", 0.0).apply(x), x)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("spacing", [0.143, None], ids=["0.143mm", "fov430"])
def test_noise_grows_along_the_ladder(name: str, spacing: float | None) -> None:
    # 2 × 64² = 8192 pixels: the SD of (output − input) has SE ≈ SD/√(2m) ≈ 0.8 %, while
    # consecutive levels differ in SD by ≥ 25 % (quantum √((1−a)/a), electronic σ_e, gaussian
    # σ (less clipping), poisson 1/√r), so a 10 % step is > 10 SE from either side
    x = smooth_batch(2, 64)
    sds = [float((s.apply(x, seed=2, pixel_spacing_mm=spacing) - x).std()) for s in ladder(name)]
    assert all(b > 1.1 * a for a, b in itertools.pairwise(sds)), f"{name}: {sds}"
    assert sds[0] > 0


# --- 3. determinism -------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_same_seed_and_ids_same_noise(spec: NoiseSpec) -> None:
    x = smooth_batch(3, 40)
    ids = ["a", "b", "c"]
    y1 = spec.apply(x, seed=7, image_ids=ids, pixel_spacing_mm=0.143)
    y2 = spec.apply(x.clone(), seed=7, image_ids=ids, pixel_spacing_mm=0.143)
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, x)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_noise_independent_of_batch_and_order(spec: NoiseSpec) -> None:
    x = smooth_batch(16, 40, seed=1)
    ids = [f"img{i:02d}" for i in range(16)]
    batch = spec.apply(x, seed=3, image_ids=ids, pixel_spacing_mm=0.143)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    shuffled = spec.apply(x[perm], seed=3, image_ids=[ids[i] for i in perm], pixel_spacing_mm=0.143)
    assert torch.equal(shuffled, batch[perm])
    for i in (0, 9):
        alone = spec.apply(x[i], seed=3, image_ids=[ids[i]], pixel_spacing_mm=0.143)
        assert alone.shape == x[i].shape and torch.equal(alone, batch[i])


def test_per_image_spacing_applies_to_its_image_only() -> None:
    x = smooth_batch(3, 32)
    spec = NoiseSpec("quantum", 0.05)
    ids = ["a", "b", "c"]
    mixed = spec.apply(x, image_ids=ids, pixel_spacing_mm=[0.143, 0.5, None])
    for i, sp in enumerate([0.143, 0.5, None]):
        assert torch.equal(mixed[i], spec.apply(x[i], image_ids=[ids[i]], pixel_spacing_mm=sp))


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_different_seed_or_repeat_different_noise(spec: NoiseSpec) -> None:
    x = smooth_batch(2, 40)
    base = spec.apply(x, seed=1, image_ids=["a", "b"], repeat=0)
    assert not torch.equal(base, spec.apply(x, seed=2, image_ids=["a", "b"], repeat=0))
    assert not torch.equal(base, spec.apply(x, seed=1, image_ids=["a", "b"], repeat=1))
    # and images with the same content but different ids get different noise
    same = spec.apply(torch.stack([x[0], x[0]]), seed=1, image_ids=["a", "z"])
    assert not torch.equal(same[0], same[1])


def test_without_ids_the_batch_index_keys_the_noise() -> None:
    x = smooth_batch(2, 32)
    spec = NoiseSpec("gaussian", 0.1)
    assert torch.equal(spec.apply(x, seed=4), spec.apply(x, seed=4, image_ids=["0", "1"]))


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_noise_independent_of_thread_count(spec: NoiseSpec) -> None:
    x = smooth_batch(2, 160)  # 51,200 pixels: above torch's parallel grain size (32,768)
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out.append(spec.apply(x, seed=9, image_ids=list("ab"), pixel_spacing_mm=0.143))
    assert torch.equal(out[0], out[1])


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("shape", [(3, 256, 256), (2, 181, 181), (2, 7, 4683)], ids=str)
@pytest.mark.parametrize("dose", [0.5, 0.05])
def test_high_count_thinning_same_on_one_thread_and_batch_wide(
    shape: tuple[int, int, int], dose: float
) -> None:
    # counts ≥ 3×10⁴ everywhere: every pixel takes the rounded normal, one fill per image
    # (with two threads the fills run side by side) and one batch-wide transform; the
    # shapes leave a last CPU piece of 0, 32,761 and 13 pixels, which once took other paths
    g = torch.Generator().manual_seed(3)
    x = 0.2 + 0.6 * torch.rand(shape, generator=g)
    spec = NoiseSpec("quantum", dose)
    ids = [f"im{i}" for i in range(shape[0])]
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out.append(spec.apply(x, seed=5, image_ids=ids, pixel_spacing_mm=1.6))
    assert torch.equal(out[0], out[1])
    assert not torch.equal(out[0], x.clamp(0, 1))


@pytest.mark.parametrize("variant", ["thin", "resample"])
def test_quantum_ladder_shares_counts_of_one_batch_without_changing_results(
    variant: str,
) -> None:
    # the engine applies every condition to one checked tensor: the rounded full-dose counts
    # and their square roots are made once for it, and must give what a fresh tensor gives
    x = noise_mod.check_images(smooth_batch(3, 64))
    ids = list("abc")

    def fresh(spec: NoiseSpec, t: torch.Tensor) -> torch.Tensor:
        return spec.apply(t.clone(), seed=4, image_ids=ids, pixel_spacing_mm=0.2)

    specs = [NoiseSpec("quantum", d, {"variant": variant}) for d in (0.5, 0.1, 0.02)]
    specs.append(NoiseSpec("electronic", 20.0, {"dose": 0.25, "variant": variant}))
    for spec in specs + specs:  # the second round reads the shared counts
        got = spec.apply_checked(x, seed=4, image_ids=ids, pixel_spacing_mm=0.2)
        assert torch.equal(got, fresh(spec, x)), spec.slug
    memo = getattr(x, "_robusttest_counts", None)
    assert (memo is not None) == (variant == "thin")
    # changed in place (its version counter moves): the counts are made again
    x.mul_(0.5)
    for spec in specs:
        got = spec.apply_checked(x, seed=4, image_ids=ids, pixel_spacing_mm=0.2)
        assert torch.equal(got, fresh(spec, x)), spec.slug
    # an inference tensor has no version counter: nothing is kept with it
    with torch.inference_mode():
        y = x.clone()
    got = specs[0].apply_checked(y, seed=4, image_ids=ids, pixel_spacing_mm=0.2)
    assert torch.equal(got, fresh(specs[0], x)) and not hasattr(y, "_robusttest_counts")
    # a different N0 (spacing) is a different entry, not a stale hit
    other = specs[0].apply_checked(x, seed=4, image_ids=ids, pixel_spacing_mm=0.4)
    assert torch.equal(
        other, specs[0].apply(x.clone(), seed=4, image_ids=ids, pixel_spacing_mm=0.4)
    )
    assert not torch.equal(
        other, specs[0].apply_checked(x, seed=4, image_ids=ids, pixel_spacing_mm=0.2)
    )


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_apply_checked_equals_apply_and_leaves_the_batch_alone(spec: NoiseSpec) -> None:
    x = smooth_batch(3, 48)
    checked = noise_mod.check_images(x)
    before = checked.clone()
    got = spec.apply_checked(checked, seed=2, image_ids=list("abc"), pixel_spacing_mm=0.3)
    assert torch.equal(got, spec.apply(x, seed=2, image_ids=list("abc"), pixel_spacing_mm=0.3))
    assert torch.equal(checked, before)  # the engine reuses the batch for every condition
    with pytest.raises(InputError, match="NaN or infinite"):
        noise_mod.check_images(torch.full((2, 4, 4), math.nan))


def test_noise_seed_is_a_pinned_blake2b_value() -> None:
    key = "robusttest-noise-v1|0|quantum|0.1|MCUCXR_0001_0|0"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    assert digest.hex() == "6d2c8a13f9beb114"
    expected = int.from_bytes(digest, "little") >> 1
    assert expected == 745591464310150710
    assert noise_seed(0, "quantum", 0.1, "MCUCXR_0001_0", 0) == expected
    # 63-bit (a valid torch seed), and every key component matters
    assert 0 <= expected < 2**63
    variants = {
        noise_seed(1, "quantum", 0.1, "MCUCXR_0001_0", 0),
        noise_seed(0, "gaussian", 0.1, "MCUCXR_0001_0", 0),
        noise_seed(0, "quantum", 0.05, "MCUCXR_0001_0", 0),
        noise_seed(0, "quantum", 0.1, "MCUCXR_0002_0", 0),
        noise_seed(0, "quantum", 0.1, "MCUCXR_0001_0", 1),
    }
    assert len(variants) == 5 and expected not in variants
    # a level written another way is the same level
    assert noise_seed(0, "quantum", 0.1000000000000001, "MCUCXR_0001_0", 0) == expected


# --- 5. bad input -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "level", "params", "fragments"),
    [
        ("quantum", 0.0, {}, ["quantum.dose", "0", "(0, 1]"]),
        ("quantum", 1.5, {}, ["quantum.dose", "1.5", "(0, 1]"]),
        ("quantum", math.nan, {}, ["quantum.dose", "nan"]),
        ("gaussian", -0.1, {}, ["gaussian.sigma", "-0.1", "[0, 1]"]),
        ("poisson", 0.0, {}, ["poisson.rate", "0", "(0, inf]"]),
        ("electronic", -1.0, {}, ["electronic.sigma_e", "-1", "[0, inf]"]),
        ("electronic", 5.0, {"dose": 0.0}, ["electronic.dose", "(0, 1]"]),
        ("quantum", 0.1, {"lmax": 0.0}, ["quantum.lmax", "(0, 50]"]),
        ("quantum", 0.1, {"photons_per_mm2": -1.0}, ["quantum.photons_per_mm2"]),
        ("quantum", 0.1, {"n0": -5.0}, ["quantum.n0", "-5"]),
        ("quantum", 0.1, {"variant": "bogus"}, ["quantum.variant", "'bogus'", "thin", "resample"]),
        ("quantum", 0.1, {"dose": 0.5}, ["quantum.dose", "level"]),
        ("electronic", 5.0, {"sigma_e": 1.0}, ["electronic.sigma_e", "level"]),
        ("quantum", 0.1, {"sigma": 0.1}, ["quantum", "sigma", "allowed", "lmax", "variant"]),
        ("gaussian", 0.1, {"rate": 3.0}, ["gaussian", "rate", "(none)"]),
    ],
)
def test_bad_configuration_raises_config_error(
    name: str, level: float, params: dict[str, ParamValue], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        NoiseSpec(name, level, params)
    msg = str(err.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


def test_unknown_noise_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError) as err:
        NoiseSpec("speckle", 0.1)
    msg = str(err.value)
    assert "'speckle'" in msg
    for name in FAMILIES:
        assert name in msg
    assert isinstance(err.value, KeyError) and isinstance(err.value, RobustTestError)
    with pytest.raises(UnknownNameError, match=r"quantum ladder 'extreme'.*default.*stress"):
        ladder("quantum", "extreme")


def good() -> np.ndarray:
    return np.full((2, 8, 8), 0.5, dtype=np.float32)


def with_pixel(value: float) -> np.ndarray:
    x = good()
    x[1, 3, 4] = value
    return x


@pytest.mark.parametrize(
    ("images", "kwargs", "fragments"),
    [
        (with_pixel(math.nan), {}, ["NaN or infinite", "[1]"]),
        (torch.from_numpy(with_pixel(math.inf)), {}, ["NaN or infinite", "[1]"]),
        (with_pixel(-math.inf), {}, ["NaN or infinite"]),
        (np.zeros((1, 1, 1, 8, 8), np.float32), {}, ["(1, 1, 1, 8, 8)", "H×W, N×H×W or N×1×H×W"]),
        (np.zeros((2, 3, 8, 8), np.float32), {}, ["(2, 3, 8, 8)"]),
        (np.zeros(8, np.float32), {}, ["(8,)"]),
        (np.zeros((2, 8, 8), np.uint8), {}, ["uint8", "floating point"]),
        (torch.zeros((2, 8, 8), dtype=torch.uint8), {}, ["torch.uint8", "floating point"]),
        (torch.zeros((2, 8, 8), dtype=torch.int64), {}, ["floating point"]),
        ([[0.5, 0.5]], {}, ["torch.Tensor or numpy array", "list"]),
        (with_pixel(1.5), {}, ["1.5", "[0, 1]"]),
        (with_pixel(255.0), {}, ["255", "[0, 1]"]),
        (with_pixel(-0.2), {}, ["-0.2", "[0, 1]"]),
        (good(), {"image_ids": ["a", "b", "c"]}, ["image_ids", "3 ids for 2 images"]),
        (good(), {"image_ids": ["a"]}, ["1 ids for 2 images"]),
        (good(), {"pixel_spacing_mm": [0.1]}, ["pixel_spacing_mm", "1 values for 2 images"]),
        (good(), {"pixel_spacing_mm": 0.0}, ["pixel_spacing_mm", "(0, 100]"]),
        (good(), {"pixel_spacing_mm": [0.1, -1.0]}, ["pixel_spacing_mm", "-1"]),
        (np.zeros((2, 0, 8), np.float32), {}, ["empty"]),
        (np.zeros((0, 8, 8), np.float32), {}, ["(0, 8, 8)", "no pixels"]),
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "rank5",
        "rgb",
        "rank1",
        "uint8-np",
        "uint8-torch",
        "int64",
        "list",
        "above1",
        "255",
        "below0",
        "ids-too-many",
        "ids-too-few",
        "spacing-count",
        "spacing-zero",
        "spacing-negative",
        "empty",
        "empty-batch",
    ],
)
@pytest.mark.parametrize("name", ["quantum", "gaussian"])
def test_bad_images_raise_input_or_config_error(
    name: str, images: object, kwargs: dict[str, object], fragments: list[str]
) -> None:
    spec = NoiseSpec(name, ladder(name)[2].level)
    with pytest.raises((InputError, ConfigError)) as err:
        spec.apply(images, **kwargs)  # type: ignore[arg-type]
    msg = str(err.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    if "spacing" not in str(kwargs):
        assert isinstance(err.value, InputError)


def test_values_within_rounding_of_the_range_are_accepted() -> None:
    x = np.array([[1.0 + 1e-7, -1e-7]], dtype=np.float64)
    y = NoiseSpec("gaussian", 0.0).apply(x)
    assert y.tolist() == [[1.0, 0.0]]


def test_apply_noise_functional_form_matches_spec() -> None:
    x = smooth_batch(2, 32)
    y = apply_noise(x, "quantum", 0.1, seed=3, image_ids=["a", "b"], variant="resample")
    spec = NoiseSpec("quantum", 0.1, {"variant": "resample"})
    assert torch.equal(y, spec.apply(x, seed=3, image_ids=["a", "b"]))
    with pytest.raises(ConfigError, match="unknown parameter"):
        apply_noise(x, "gaussian", 0.1, bogus=1.0)


# --- 6. registry ----------------------------------------------------------------------------
@pytest.fixture
def clean_registry() -> Iterator[None]:
    before = set(noise_mod.NOISES.names())
    try:
        yield
    finally:
        for name in set(noise_mod.NOISES.names()) - before:
            noise_mod.NOISES.remove(name)


@pytest.mark.usefixtures("clean_registry")
def test_register_a_custom_family_end_to_end() -> None:
    @register_noise
    class SaltPepper(NoiseFamily):
        name = "mine"
        level_param = "fraction"
        summary = "replace a fraction of pixels by 0 or 1"
        ladders: ClassVar[dict[str, tuple[float, ...]]] = {"default": (0.01, 0.05)}
        defaults: ClassVar[dict[str, ParamValue]] = {"salt": 0.5}

        def check_level(self, level: float) -> float:
            from robusttest.errors import check_range

            return check_range("mine.fraction", level, 0.0, 1.0)

        def _apply(
            self,
            x: torch.Tensor,
            level: float,
            params: Mapping[str, ParamValue],
            gens: Sequence[torch.Generator],
            spacing_mm: torch.Tensor,
        ) -> torch.Tensor:
            y = x.clone()
            for i, g in enumerate(gens):
                u = torch.rand(x.shape[1:], generator=g)
                hit = u < level
                y[i][hit] = (u[hit] < level * float(params["salt"])).float()
            return y

    assert "mine" in available_noises()
    spec = NoiseSpec("mine", 0.5)
    assert spec.slug == "mine-fraction0.5" and spec.params == {"salt": 0.5}
    x = torch.full((2, 64, 64), 0.5)
    y = spec.apply(x, seed=1, image_ids=["a", "b"])
    hit = y != 0.5
    assert 0.4 < float(hit.float().mean()) < 0.6  # 8192 pixels: SE of the fraction ≈ 0.006
    assert set(torch.unique(y[hit]).tolist()) == {0.0, 1.0}
    # seeded per image like the built-ins
    assert torch.equal(y[1], spec.apply(x[1], seed=1, image_ids=["b"]))
    assert [s.level for s in ladder("mine")] == [0.01, 0.05]
    with pytest.raises(ConfigError, match=r"mine.fraction: 2\.0 is not in \[0, 1\]"):
        NoiseSpec("mine", 2.0)
    with pytest.raises(ConfigError, match="allowed: salt"):
        NoiseSpec("mine", 0.1, {"pepper": 1.0})


def test_custom_family_is_gone_after_teardown() -> None:
    assert "mine" not in available_noises()
    assert set(FAMILIES) <= set(available_noises())


@pytest.mark.usefixtures("clean_registry")
def test_register_requires_a_name() -> None:
    with pytest.raises(ConfigError, match=r"Nameless.*name"):

        @register_noise
        class Nameless(NoiseFamily):
            def check_level(self, level: float) -> float:
                return level

            def _apply(
                self,
                x: torch.Tensor,
                level: float,
                params: Mapping[str, ParamValue],
                gens: Sequence[torch.Generator],
                spacing_mm: torch.Tensor,
            ) -> torch.Tensor:
                return x


@pytest.mark.usefixtures("clean_registry")
def test_a_taken_name_needs_replace() -> None:
    class First(NoiseFamily):
        name = "mine-dup"
        level_param = "sigma"
        summary = "first"
        ladders: ClassVar[dict[str, tuple[float, ...]]] = {"default": (0.1,)}

        def check_level(self, level: float) -> float:
            return float(level)

        def _apply(
            self,
            x: torch.Tensor,
            level: float,
            params: Mapping[str, ParamValue],
            gens: Sequence[torch.Generator],
            spacing_mm: torch.Tensor,
        ) -> torch.Tensor:
            return x.clone()

    class Second(First):
        summary = "second"

    register_noise(First)
    register_noise(First)  # the same class again (a module imported twice): fine
    with pytest.raises(ConfigError, match=r"'mine-dup' is already registered by .*First; pass"):
        register_noise(Second)
    assert noise_mod.get_noise("mine-dup").summary == "first"
    register_noise(replace=True)(Second)
    assert noise_mod.get_noise("mine-dup").summary == "second"
    with pytest.raises(ConfigError, match=r"int: a noise family is a subclass of .*NoiseFamily"):
        noise_mod.NOISES.add("int", type("int", (), {"name": "int"}))


# --- 7. slugs and ladders ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "level", "slug"),
    [
        ("quantum", 0.1, "quantum-dose10"),
        ("quantum", 0.02, "quantum-dose2"),
        ("quantum", 0.5, "quantum-dose50"),
        ("quantum", 0.07, "quantum-dose7"),
        ("quantum", 0.005, "quantum-dose0.5"),
        ("gaussian", 0.08, "gaussian-sigma0.08"),
        ("poisson", 25.0, "poisson-rate25"),
        ("poisson", 3, "poisson-rate3"),
        ("electronic", 20.0, "electronic-sigma20"),
    ],
)
def test_slugs(name: str, level: float, slug: str) -> None:
    assert NoiseSpec(name, level).slug == slug


def test_ladder_returns_the_defaults_in_order() -> None:
    specs = ladder("quantum")
    assert [s.level for s in specs] == [0.5, 0.25, 0.10, 0.05, 0.02]
    assert [s.slug for s in specs] == [
        "quantum-dose50",
        "quantum-dose25",
        "quantum-dose10",
        "quantum-dose5",
        "quantum-dose2",
    ]
    assert all(isinstance(s, NoiseSpec) and s.name == "quantum" for s in specs)
    assert [s.level for s in ladder("quantum", "stress")] == [0.01, 0.005, 0.002, 0.001]
    # parameters pass through to every level
    assert all(s.params["variant"] == "resample" for s in ladder("quantum", variant="resample"))
    assert noise_mod.severity_name("quantum", 0.05) == "marked"
    assert noise_mod.severity_name("quantum", 0.3) is None


def test_overrides_and_describe() -> None:
    spec = NoiseSpec("quantum", 0.1, {"variant": "resample", "lmax": 5.0})
    assert spec.overrides == {"variant": "resample"}
    d = spec.describe(pixel_spacing_mm=0.2)
    assert d["noise"] == "quantum" and d["level"] == 0.1 and d["dose"] == 0.1
    assert d["variant"] == "resample" and d["lmax"] == 5.0
    assert NoiseSpec("gaussian", 0.08).describe() == {
        "noise": "gaussian",
        "level": 0.08,
        "sigma": 0.08,
    }


def test_pixel_spacing_accepts_numpy_and_tensor_scalars() -> None:
    """Spacing read from a DICOM header or a table often arrives as np.float32 or a 0-d
    tensor; it must act like the float it holds, and junk must be a one-line InputError."""
    import numpy as np
    import torch

    from robusttest.errors import InputError
    from robusttest.noise import NoiseSpec

    x = torch.full((2, 16, 16), 0.5)
    spec = NoiseSpec("quantum", 0.1)
    want = spec.apply(x, image_ids=["a", "b"], pixel_spacing_mm=0.25)
    for v in (np.float32(0.25), np.float64(0.25), torch.tensor(0.25), np.array([0.25, 0.25])):
        got = spec.apply(x, image_ids=["a", "b"], pixel_spacing_mm=v)  # type: ignore[arg-type]
        assert torch.equal(got, want)
    with pytest.raises(InputError, match="pixel_spacing_mm: 'wide' is not a number"):
        spec.apply(x, image_ids=["a", "b"], pixel_spacing_mm="wide")  # type: ignore[arg-type]
