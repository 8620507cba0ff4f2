"""Property tests of ``robusttest.noise``: any valid input layout and dtype gives a float32
image of the same shape, finite and within [0, 1], for every family."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from robusttest.noise import NoiseSpec, ladder

FAMILIES = ("quantum", "electronic", "gaussian", "poisson")
DTYPES = (np.float16, np.float32, np.float64)


@st.composite
def noisy_inputs(draw: st.DrawFn) -> tuple[np.ndarray, str]:
    layout = draw(st.sampled_from(["HW", "NHW", "N1HW"]))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    n = draw(st.integers(1, 4))
    shape = {"HW": (h, w), "NHW": (n, h, w), "N1HW": (n, 1, h, w)}[layout]
    dtype = draw(st.sampled_from(DTYPES))
    elements = st.floats(0.0, 1.0, width=np.dtype(dtype).itemsize * 8)
    # mostly arbitrary pixels; sometimes the extremes 0 and 1 (counts at N0 or N0·e^−ℓmax)
    fill = st.sampled_from([0.0, 1.0]) | elements
    arr = draw(hnp.arrays(dtype, shape, elements=elements, fill=fill))
    return arr, layout


SPEC = st.one_of(
    *[
        st.builds(
            NoiseSpec,
            st.just(name),
            st.sampled_from(
                [s.level for s in ladder(name)] + [s.level for s in ladder(name, "stress")]
            ),
        )
        for name in FAMILIES
    ],
    st.builds(
        lambda lv, var: NoiseSpec("quantum", lv, {"variant": var}),
        st.sampled_from([1.0, 0.5, 0.02, 0.001]),
        st.sampled_from(["thin", "resample"]),
    ),
    st.builds(
        lambda sg, dose: NoiseSpec("electronic", sg, {"dose": dose}),
        st.sampled_from([0.0, 5.0, 500.0]),
        st.sampled_from([1.0, 0.1, 0.002]),
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=noisy_inputs(),
    spec=SPEC,
    as_torch=st.booleans(),
    spacing=st.sampled_from([None, 0.1, 0.143, 2.0]),
    seed=st.integers(0, 2**31),
)
def test_output_shape_dtype_and_range(
    data: tuple[np.ndarray, str],
    spec: NoiseSpec,
    as_torch: bool,
    spacing: float | None,
    seed: int,
) -> None:
    arr, _ = data
    original = arr.copy()
    images: np.ndarray | torch.Tensor = torch.from_numpy(arr) if as_torch else arr
    y = spec.apply(images, seed=seed, pixel_spacing_mm=spacing)
    assert isinstance(y, torch.Tensor)
    assert tuple(y.shape) == arr.shape
    assert y.dtype == torch.float32
    assert bool(torch.isfinite(y).all())
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert np.array_equal(arr, original)  # the input is never modified in place


@settings(max_examples=25, deadline=None)
@given(data=noisy_inputs(), seed=st.integers(0, 2**31))
def test_layouts_get_the_same_noise(data: tuple[np.ndarray, str], seed: int) -> None:
    """H×W, N×H×W and N×1×H×W views of the same pixels receive the same noise."""
    arr, layout = data
    spec = NoiseSpec("quantum", 0.05)
    flat = arr.reshape((-1, *arr.shape[-2:]))
    y = spec.apply(arr, seed=seed)
    y_flat = spec.apply(flat, seed=seed)
    assert torch.equal(y.reshape(y_flat.shape), y_flat)
    if layout != "HW":
        assert torch.equal(spec.apply(flat[:, None], seed=seed)[:, 0], y_flat)
