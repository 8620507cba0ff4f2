"""Radiographic noise families (DESIGN.md §2), vectorised in torch on CPU or CUDA.

Images are display values p ∈ [0, 1], high where attenuation is high (bone bright). The
physical families (`quantum`, `electronic`) map p to detector counts with Beer–Lambert,

    ℓ = ℓ_max · p,   k0 = N0 · exp(−ℓ),

perturb the counts, and map back. The image-domain families (`gaussian`, `poisson`) follow
the machine-learning conventions (ImageNet-C, MedMNIST-C) used by arXiv 2509.25265.

Every image gets its own random stream, seeded by (seed, noise, level, image id, repeat),
so the noise an image receives does not depend on the batch it sits in, its position, the
worker or the process.

Physical defaults and where they come from
------------------------------------------
* ``DETECTOR_KERMA_UGY = 2.5``: detector air kerma behind the lung for a PA chest under
  automatic exposure control (typical DR values are 2–3 µGy).
* ``PHOTONS_PER_MM2_PER_UGY = 3.0e4``: photon fluence per unit air kerma for the RQA5–RQA9
  beam qualities (IEC 62220-1 tabulates 29,653 for RQA5 and 31,077 for RQA9).
  Hence ≈ 7.5×10⁴ photons/mm² reach the detector behind the lung.
* ``LMAX = 5.0``: the log-attenuation at p = 1. Measured on the public Montgomery and
  Shenzhen images, lung parenchyma sits at p ≈ 0.28–0.61 (median 0.45) and the mediastinum
  at p ≈ 0.88, so Δp ≈ 0.45 between them. The mediastinum passes 5–20× fewer photons than
  the lung, ln(10)/0.45 ≈ 5.1; we take 5.0 (p = 1 transmits e⁻⁵ ≈ 0.7% of the open beam).
* ``P_LUNG = 0.45``: the lung display value at which the 7.5×10⁴ photons/mm² apply, so
  the unattenuated fluence is ``PHOTONS_PER_MM2 = 7.5e4 · exp(LMAX · P_LUNG) ≈ 7.1×10⁵``.
* Counts scale with pixel area: N0 = PHOTONS_PER_MM2 · spacing². At the 0.143 mm pixels
  of the NIH detector that is ≈ 1.5×10⁴ unattenuated, ≈ 1.5×10³ behind the lung.
* When the pixel spacing is unknown we assume the image spans a 430 mm detector (the
  standard 35×43 cm cassette) along its longer side: spacing = 430 / max(H, W).
* Electronic noise is given in quanta per 0.143 mm detector element; binning m×m
  elements sums m² independent reads, so σ_e scales with spacing / 0.143.

Sampling: exact and approximate (documented error bounds)
---------------------------------------------------------
Where the count variance is below ``NORMAL_APPROX_MIN_VAR`` = 25 the draws are exact:

* Binomial thinning (``quantum``, variant 'thin'): k ~ Binomial(n, a), n integral, a fixed
  per call. The exact region n·a(1−a) < 25 is n < 25/(a(1−a)): n ≤ 1,275 at a = 0.02,
  n ≤ 25,025 at a = 0.001. For each a the sampler builds once (cached on CPU, and per device)
  Walker/Vose alias tables for every n of that region: row n covers the counts lo[n] …
  lo[n]+K−1, the shortest window that leaves out less than 5×10⁻¹³ in each tail
  (``ALIAS_TAIL_MASS`` = 10⁻¹² together, from scipy's binomial cdf and sf); K ≤ 70 for the
  default threshold at any a. One float64 uniform u from the image's own generator gives
  the column j = ⌊u·K⌋, and its fraction u·K − j keeps j or takes j's alias: one table
  gather per pixel, ≈ 10 ns on one CPU core where torch.binomial takes ≈ 70–100 ns. The only
  departures from Binomial(n, a) are the truncated tails (the window is renormalised:
  total-variation distance < 10⁻¹²) and float64 rounding (each column's keep probability
  is stored to ≈ 10⁻¹³; u has 2⁻⁵³ resolution). Tables hold at most ``ALIAS_MAX_ROWS`` =
  65,536 rows and ``ALIAS_MAX_ENTRIES`` = 2²² entries (32 MiB): when the whole exact region
  does not fit (a(1−a) below about 4×10⁻⁴) an image uses a table sized to its own largest
  count (rounded up to a power of two), and where even that does not fit, torch.binomial.
  Either way an image's draws depend only on its own counts and generator, never on the
  rest of the batch.
* Poisson (variant 'resample', and the image-domain ``poisson`` family): torch.poisson. The
  rates are continuous, so there is no finite set of tables to build.

Elsewhere the draw is a rounded normal with the same mean and variance. The approximation
keeps the mean exactly and the variance to within 1/12 of a count (rounding); by the
Berry–Esseen bound its distribution function differs from the exact one by at most
0.4748·(1−2a(1−a))/σ ≤ 0.095 for σ² ≥ 25 (≤ 0.048 for σ² ≥ 100), and by far less in
practice (≈ 0.013 at σ² = 25: the skewness term is what remains, and it shrinks as 1/σ). In
p units the error is far below one 8-bit grey level at those counts.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from robusttest.errors import ConfigError, InputError, UnknownNameError, check_range

# --- physical defaults (derivations in the module docstring) -------------------------
DETECTOR_KERMA_UGY = 2.5
PHOTONS_PER_MM2_PER_UGY = 3.0e4
LUNG_PHOTONS_PER_MM2 = DETECTOR_KERMA_UGY * PHOTONS_PER_MM2_PER_UGY  # 7.5e4
LMAX = 5.0
P_LUNG = 0.45
PHOTONS_PER_MM2 = LUNG_PHOTONS_PER_MM2 * math.exp(LMAX * P_LUNG)  # ≈ 7.1e5, open beam
REFERENCE_SPACING_MM = 0.143
DEFAULT_FIELD_MM = 430.0
NORMAL_APPROX_MIN_VAR = 25.0
COUNT_FLOOR = 0.5  # a pixel that records no photon is read as half a photon, not log(0)

# Bump when the random streams change (same seed, different draws): keys the output cache.
# 3: gaussian adds σ·z to p in one fused multiply-add (values differ by ≤ 1 ulp from 2).
# 4: rounded-normal thinning as a·(n + √((1−a)/a)·√n·z) (float rounding: a count can
#    round the other way); an image whose counts all take the normal draws one fill (was
#    piece by piece on one thread).
SAMPLER_VERSION = 4

SEVERITY_NAMES = ("minimal", "mild", "moderate", "marked", "severe")

ParamValue = float | str
_T = TypeVar("_T", bound="NoiseFamily")


# --- seeding ---------------------------------------------------------------------------
def _level_key(level: float) -> str:
    return format(float(level), ".12g")


def noise_seed(seed: int, noise: str, level: float, image_id: str, repeat: int) -> int:
    """64-bit seed of one image's noise stream; stable across processes and platforms."""
    key = f"robusttest-noise-v1|{int(seed)}|{noise}|{_level_key(level)}|{image_id}|{int(repeat)}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1


def _generators(
    device: torch.device, seed: int, noise: str, level: float, ids: Sequence[str], repeat: int
) -> list[torch.Generator]:
    gens = []
    for image_id in ids:
        g = torch.Generator(device=device)
        g.manual_seed(noise_seed(seed, noise, level, image_id, repeat))
        gens.append(g)
    return gens


# --- per-image random draws across cores ------------------------------------------------
_POOL_LOCK = threading.Lock()
_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _draw_pool(device: torch.device, n_images: int) -> ThreadPoolExecutor | None:
    """Threads for the per-image random fills on the CPU; None: fill them one by one.

    A generator fills its image serially, so a batch's fills would use one core; torch
    releases the GIL inside the fill, and each image's own generator and slice make the
    result independent of which thread fills it.
    """
    global _POOL
    threads = torch.get_num_threads()
    if device.type != "cpu" or n_images < 2 or threads < 2:
        return None
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != threads:
            if _POOL is not None:
                _POOL[1].shutdown(wait=False)
            _POOL = (threads, ThreadPoolExecutor(threads, thread_name_prefix="robusttest-draw"))
        return _POOL[1]


def _each_image(device: torch.device, n_images: int, fill: Callable[[int], None]) -> None:
    """fill(i) for every image i, in parallel threads on the CPU."""
    pool = _draw_pool(device, n_images)
    if pool is None:
        for i in range(n_images):
            fill(i)
        return
    for done in [pool.submit(fill, i) for i in range(n_images)]:
        done.result()


# --- samplers (per image, own generator) -------------------------------------------------
def _normal(
    shape: torch.Size,
    gens: Sequence[torch.Generator],
    like: torch.Tensor,
    skip: Sequence[bool] | None = None,
) -> torch.Tensor:
    """N(0, 1) per pixel, image i from gens[i]; images with skip[i] get zeros, no draw."""
    # empty, not zeros: a parallel zero-fill just before would leave OpenMP workers
    # spinning on the cores the fills below want
    z = torch.empty(shape, dtype=torch.float32, device=like.device)

    def fill(i: int) -> None:
        if skip is None or not skip[i]:
            torch.randn(shape[1:], generator=gens[i], out=z[i], dtype=torch.float32)
        else:
            z[i].zero_()

    _each_image(like.device, len(gens), fill)
    return z


def _exact_part(
    k: torch.Tensor,
    small: torch.Tensor,
    values: torch.Tensor,
    gens: Sequence[torch.Generator],
    draw: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
) -> None:
    """Overwrite k where ``small`` with exact draws; image i uses gens[i] only.

    The gather and scatter run once for the whole batch (index_select / index_copy_);
    only the sampler call is per image, so each image's stream depends on that image alone.
    """
    n_img = small.shape[0]
    flat = small.reshape(n_img, -1)
    counts = flat.sum(1).tolist()
    if not any(counts):
        return
    idx = flat.reshape(-1).nonzero().squeeze(1)  # row-major: grouped by image, in order
    vals = values.reshape(-1).index_select(0, idx)
    parts = [
        draw(part, g) if part.numel() else part
        for part, g in zip(vals.split(counts), gens, strict=True)
    ]
    k.view(-1).index_copy_(0, idx, torch.cat(parts))


# --- exact binomial sampler: Walker/Vose alias tables -----------------------------------
ALIAS_TAIL_MASS = 1e-12  # probability left out of each table row (both tails together)
ALIAS_MAX_ROWS = 1 << 16  # a table holds counts n = 0 … rows−1; larger needs → torch.binomial
ALIAS_MAX_ENTRIES = 1 << 22  # rows × width ≤ 4.2M (32 MiB float64); larger → torch.binomial


@dataclass(frozen=True)
class _AliasTable:
    """Alias tables of Binomial(n, a) for n = 0 … rows−1, one row of ``width`` columns each.

    Row n covers the counts lo[n] … lo[n]+width−1. Entry (n, j) is one float64,
    ``table[n·width + j] = (d + width) + prob/2``, with d = j − alias[n, j] (an integer,
    |d| < width, so d + width ≥ 1) and prob ∈ [0, 1] the probability of keeping column j.
    Truncation to an integer returns d + width exactly, and the remainder is exactly prob/2
    (Sterbenz: T and its integer part lie within a factor 2), so one gather serves both.
    ``lo`` (int64) is None when every row starts at 0.
    """

    a: float
    rows: int
    width: int
    table: torch.Tensor  # float64, rows·width
    lo: torch.Tensor | None  # int64, rows

    def to(self, device: torch.device) -> _AliasTable:
        lo = None if self.lo is None else self.lo.to(device)
        return _AliasTable(self.a, self.rows, self.width, self.table.to(device), lo)


def _binomial_windows(a: float, rows: int, tail: float) -> tuple[np.ndarray, np.ndarray]:
    """Per n < rows the smallest [lo, hi] with P(k < lo) < tail/2 and P(k > hi) < tail/2."""
    from scipy import stats  # a project dependency; imported here to keep the import light

    n = np.arange(rows)
    half = tail / 2
    lo = np.clip(np.nan_to_num(stats.binom.ppf(half, n, a)), 0, n).astype(np.int64)
    hi = np.clip(np.nan_to_num(stats.binom.isf(half, n, a)), 0, n).astype(np.int64)
    # ppf/isf are inverted numerically: make both conditions hold and the window minimal
    for _ in range(4):
        lo = np.where(stats.binom.cdf(lo - 1, n, a) >= half, lo - 1, lo)
        lo = np.where((lo < n) & (stats.binom.cdf(lo, n, a) < half), lo + 1, lo)
        hi = np.where(stats.binom.sf(hi, n, a) >= half, hi + 1, hi)
        hi = np.where((hi > 0) & (stats.binom.sf(hi - 1, n, a) < half), hi - 1, hi)
    assert (stats.binom.cdf(lo - 1, n, a) < half).all()
    assert (stats.binom.sf(hi, n, a) < half).all()
    return lo, hi


def _vose(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias construction for every row of q (rows × K, each row summing to K) at once.

    Each step pairs, in every row still open, the top of its "small" stack (q < 1) with the
    top of its "large" stack (q ≥ 1): the small column keeps probability q, the rest of its
    cell goes to the large one, which may then turn small. At most K steps; the columns left
    over hold q = 1 up to rounding and keep probability 1.
    """
    rows, width = q.shape
    q = q.copy()
    small = q < 1.0
    small_stack = np.argsort(~small, axis=1, kind="stable")  # small columns first
    large_stack = np.argsort(small, axis=1, kind="stable")  # large columns first
    n_small = small.sum(1)
    n_large = width - n_small
    prob = np.ones((rows, width))
    alias = np.broadcast_to(np.arange(width), (rows, width)).copy()
    while True:
        r = np.nonzero((n_small > 0) & (n_large > 0))[0]
        if r.size == 0:
            return prob, alias
        s = small_stack[r, n_small[r] - 1]
        big = large_stack[r, n_large[r] - 1]
        qs = q[r, s]
        prob[r, s] = qs
        alias[r, s] = big
        q_big = q[r, big] + (qs - 1.0)
        q[r, big] = q_big
        n_small[r] -= 1
        turned = q_big < 1.0
        rt = r[turned]
        n_large[rt] -= 1
        small_stack[rt, n_small[rt]] = big[turned]
        n_small[rt] += 1


@functools.lru_cache(maxsize=32)
def _alias_table_cpu(a: float, rows: int, tail: float = ALIAS_TAIL_MASS) -> _AliasTable | None:
    """The alias tables of Binomial(n, a), n < rows (CPU); None when they would be too large."""
    from scipy import stats

    if rows > ALIAS_MAX_ROWS:
        return None
    lo, hi = _binomial_windows(a, rows, tail)
    width = int((hi - lo).max()) + 1
    if rows * width > ALIAS_MAX_ENTRIES:
        return None
    n = np.arange(rows)[:, None]
    k = lo[:, None] + np.arange(width)[None, :]
    pmf = np.where(k <= hi[:, None], stats.binom.pmf(k, n, a), 0.0)
    pmf /= pmf.sum(1, keepdims=True)  # renormalise: the window holds ≥ 1 − tail of the mass
    prob, alias = _vose(pmf * width)
    d = np.arange(width)[None, :] - alias
    table = torch.from_numpy((d + width + 0.5 * prob).reshape(-1))
    lo_t = torch.from_numpy(lo) if lo.any() else None
    return _AliasTable(a, rows, width, table, lo_t)


@functools.lru_cache(maxsize=32)
def _alias_table(a: float, rows: int, device: str) -> _AliasTable | None:
    """As _alias_table_cpu, moved to ``device`` once and kept there."""
    tab = _alias_table_cpu(a, rows)
    return tab if tab is None or device == "cpu" else tab.to(torch.device(device))


def _alias_draw(n: torch.Tensor, tab: _AliasTable, g: torch.Generator) -> torch.Tensor:
    """Binomial(n, tab.a) for integral counts 0 ≤ n < tab.rows (1-D), as int64, from g only.

    One float64 uniform per draw: u·width = j + f picks the column j, and its fraction f
    keeps j (f < prob) or takes the alias. Only casts and binary ops: ATen's float unary
    kernels (floor, round, sqrt, …) split work above 2048 elements across threads, and on a
    loaded machine every such parallel region can wait for a descheduled worker.
    """
    width = tab.width
    x = torch.rand(n.shape, dtype=torch.float64, device=n.device, generator=g).mul_(width)
    j = x.to(torch.int64).clamp_(max=width - 1)  # floor (x ≥ 0); u·width < width anyway
    f = x.sub_(j)  # uniform on [0, 1), independent of j
    rows = n.to(torch.int64)
    t = tab.table.index_select(0, torch.add(j, rows, alpha=width))
    dw = t.to(torch.int64)  # d + width ≥ 1: truncation is floor
    p = t.sub_(dw).mul_(2.0)  # exact, see _AliasTable
    k = j.sub_(dw.sub_(width).mul_(f >= p))  # j, or j − d = alias where f ≥ prob
    if tab.lo is not None:
        k.add_(tab.lo.index_select(0, rows))
    return k


def _exact_region_rows(a: float, min_var: float) -> int:
    """Number of counts n = 0, 1, … with n·a·(1−a) < min_var (the exact region)."""
    return max(1, math.ceil(min_var / (a * (1.0 - a))))


def _table_for(a: float, region: int, high: float, device: str) -> _AliasTable | None:
    """The alias table an image uses: one per (a, min_var) covering the whole exact region
    when that fits; otherwise one sized to the image's largest count (a power of two), so
    its draws still depend on that image alone; None (torch.binomial) when neither fits."""
    tab = _alias_table(a, region, device) if region <= ALIAS_MAX_ROWS else None
    if tab is None:
        rows = 1 << int(min(high, region - 1)).bit_length()
        if rows < region and rows <= ALIAS_MAX_ROWS:
            tab = _alias_table(a, rows, device)
    return tab


def _binomial_exact(
    n: torch.Tensor, a: float, tab: _AliasTable | None, g: torch.Generator
) -> torch.Tensor:
    """Exact Binomial(n, a) draws (1-D n, dtype kept) from g: alias tables, or torch.binomial."""
    if tab is None:
        return torch.binomial(n, torch.full_like(n, a), generator=g)
    return _alias_draw(n, tab, g).to(n.dtype)


def _value_range(x: torch.Tensor) -> tuple[float, float]:
    """(min, max) of x as Python floats."""
    lo, hi = torch.aminmax(x)
    return float(lo), float(hi)


# CPU work unit of the per-image loops: ATen runs element-wise binary ops and casts of
# ≤ GRAIN_SIZE (32768) elements on the calling thread, so the loops open no parallel region
# (see _alias_draw), and their temporaries stay in cache
_CPU_PIECE = 1 << 15


def _sqrt_counts(n: torch.Tensor) -> torch.Tensor:
    """√n for counts n ≥ 0, as v·rsqrt(v) with v = max(n, 1e-30) (so n = 0 gives ≈ 0):
    ATen runs rsqrt on the calling thread, sqrt (and pow) in parallel regions (see
    _alias_draw)."""
    v = n.clamp(min=1e-30)
    return v.rsqrt().mul_(v)


def _binomial_normal(
    n: torch.Tensor,
    a: float,
    g: torch.Generator,
    out: torch.Tensor,
    sqrt_n: torch.Tensor | None = None,
) -> None:
    """out ← clamp(a·n + √(a(1−a)n)·z, 0, n), z ~ N(0, 1) from g, NOT yet rounded; out may
    be n. ``sqrt_n`` as in ``_binomial_from_normal``."""
    z = torch.randn(n.shape, generator=g, dtype=n.dtype, device=n.device)
    _binomial_from_normal(n, a, z, out, sqrt_n)


def _binomial_from_normal(
    n: torch.Tensor,
    a: float,
    z: torch.Tensor,
    out: torch.Tensor,
    sqrt_n: torch.Tensor | None = None,
) -> None:
    """out ← clamp(a·(n + √((1−a)/a)·√n·z), 0, n) from standard normals z (overwritten);
    ``sqrt_n``: √n as ``_sqrt_counts`` gives it, when the caller has it already."""
    s = _sqrt_counts(n) if sqrt_n is None else sqrt_n
    torch.addcmul(n, s, z, value=math.sqrt((1.0 - a) / a), out=z).mul_(a)
    zero = torch.zeros((), dtype=n.dtype, device=n.device)  # (a number and a tensor bound
    torch.clamp(z, min=zero, max=n, out=out)  # do not mix); one pass for both bounds


def sample_binomial(
    n: torch.Tensor,
    a: float,
    gens: Sequence[torch.Generator],
    min_var: float = NORMAL_APPROX_MIN_VAR,
    *,
    out: torch.Tensor | None = None,
    sqrt_n: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binomial(n, a) per pixel; exact where n·a·(1−a) < min_var, rounded normal elsewhere.

    ``n`` is N×H×W (float, integral values ≥ 0); image i draws from ``gens[i]`` only, so its
    counts do not depend on the rest of the batch. An image whose counts all take the
    rounded normal (the usual case at native resolution) draws one normal per pixel in one
    fill; an image that needs exact draws goes piece by piece, the exact ones from alias
    tables (module docstring), or from torch.binomial where those would exceed
    ALIAS_MAX_ROWS rows or ALIAS_MAX_ENTRIES entries. ``out`` (contiguous, n's shape and
    dtype; may be ``n`` itself) receives the counts; ``sqrt_n`` is √n as ``_sqrt_counts``
    computes it, when the caller holds it already (the quantum ladder of one batch shares
    its counts).
    """
    if a <= 0.0 or a >= 1.0 or n.numel() == 0:
        k = torch.empty_like(n) if out is None else out
        return k.zero_() if a <= 0.0 else k.copy_(n)
    region = _exact_region_rows(a, min_var)  # n < region ⇔ n·a·(1−a) < min_var, n integral
    flat = n.reshape(n.shape[0], -1)
    on_cpu = n.device.type == "cpu"
    lows = flat.amin(dim=1).tolist()  # (aminmax with a dim is 10× slower here)
    normal_only = [lo >= region for lo in lows]
    if all(normal_only):
        # one fill per image, then one batch-wide transform (in place: z becomes the counts)
        z = _normal(n.shape, gens, n)
        k = z if out is None else out
        _binomial_from_normal(n, a, z, k, sqrt_n)
        return k.round_()
    k = torch.empty_like(n) if out is None else out
    k_flat = k.view(k.shape[0], -1)
    highs = flat.amax(dim=1).tolist()
    piece = _CPU_PIECE if on_cpu else flat.shape[1]
    s_flat = None if sqrt_n is None else sqrt_n.reshape(n.shape[0], -1)
    for i, g in enumerate(gens):
        if normal_only[i]:  # the same numbers as in a batch of such images
            _binomial_normal(flat[i], a, g, k_flat[i], None if s_flat is None else s_flat[i])
            continue
        n_pieces = flat[i].split(piece)
        ranges = [_value_range(nc) for nc in n_pieces] if on_cpu else [(lows[i], highs[i])]
        tab = _table_for(a, region, highs[i], device=str(n.device))
        for nc, kc, (lo, hi) in zip(n_pieces, k_flat[i].split(piece), ranges, strict=True):
            if lo >= region:  # rounded normal only
                _binomial_normal(nc, a, g, kc)
            elif hi < region:  # exact only
                kc.copy_(_binomial_exact(nc, a, tab, g))
            else:
                sc = nc < region
                vals = nc.masked_select(sc)  # a copy: kc may be nc itself
                _binomial_normal(nc, a, g, kc)
                kc.masked_scatter_(sc, _binomial_exact(vals, a, tab, g))
    return k.round_()  # the normal part; exact draws are integers already


def sample_poisson(
    lam: torch.Tensor, gens: Sequence[torch.Generator], min_var: float = NORMAL_APPROX_MIN_VAR
) -> torch.Tensor:
    """Poisson(lam) per pixel; exact where lam < min_var, rounded normal elsewhere."""
    small = lam < min_var
    all_small = small.reshape(small.shape[0], -1).all(1).tolist()
    k = _normal(lam.shape, gens, lam, skip=all_small)
    k.mul_(lam.sqrt()).add_(lam).round_().clamp_(min=0.0)

    def draw(rates: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return torch.poisson(rates, generator=g)

    _exact_part(k, small, lam, gens, draw)
    return k


# --- families ----------------------------------------------------------------------------
class NoiseFamily(abc.ABC):
    """A registered noise. Subclass, set the class attributes, implement ``_apply``."""

    name: ClassVar[str]
    level_param: ClassVar[str]  # the parameter the level sets ("dose", "sigma", ...)
    level_unit: ClassVar[str] = ""
    summary: ClassVar[str]
    ladders: ClassVar[dict[str, tuple[float, ...]]]
    defaults: ClassVar[dict[str, ParamValue]] = {}
    higher_is_worse: ClassVar[bool] = True  # False when a smaller level is more severe

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


_REGISTRY: dict[str, NoiseFamily] = {}


def register_noise(cls: type[_T]) -> type[_T]:
    """Class decorator: make a NoiseFamily available by its ``name``."""
    if not getattr(cls, "name", None):
        raise ConfigError(f"{cls.__name__}: a noise family needs a non-empty `name`")
    _REGISTRY[cls.name] = cls()
    return cls


def get_noise(name: str) -> NoiseFamily:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("noise", name, _REGISTRY) from None


def available_noises() -> list[str]:
    return sorted(_REGISTRY)


_COUNT_DEFAULTS: dict[str, ParamValue] = {
    "photons_per_mm2": PHOTONS_PER_MM2,
    "lmax": LMAX,
    "sigma_e": 0.0,
    "dose": 1.0,
    "n0": 0.0,  # 0 = derive from photons_per_mm2 and the pixel spacing
    "variant": "thin",
}


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
                k = sample_poisson(k.mul_(dose), gens)
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

    def check_level(self, level: float) -> float:
        return check_range("quantum.dose", level, 0.0, 1.0, low_open=True)

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


# --- public API ----------------------------------------------------------------------------
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


def iter_families() -> Iterator[NoiseFamily]:
    for name in available_noises():
        yield _REGISTRY[name]
