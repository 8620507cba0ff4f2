"""Per-image random streams and the count samplers of the noise families.

Every image draws from its own ``torch.Generator``, seeded by (seed, noise, level, image
id, repeat), so its noise does not depend on the batch, its position, the worker or the
process. Binomial thinning is exact (Walker/Vose alias tables) where the count variance is
below ``NORMAL_APPROX_MIN_VAR`` and a rounded normal elsewhere. Poisson is exact at every
rate (alias tables of grid rates plus an exact remainder, Hörmann's PTRS from
``POISSON_TABLE_MAX`` on) unless a caller asks for the rounded normal above a variance.
The error bounds, table sizes and exactness arguments are in docs/physics.md ("Sampling").
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

NORMAL_APPROX_MIN_VAR = 25.0

# Bump when the random streams change (same seed, different draws): keys the output cache.
# 3: gaussian adds σ·z to p in one fused multiply-add (values differ by ≤ 1 ulp from 2).
# 4: rounded-normal thinning as a·(n + √((1−a)/a)·√n·z) (float rounding: a count can
#    round the other way); an image whose counts all take the normal draws one fill (was
#    piece by piece on one thread).
# 5: exact Poisson (alias tables + remainder below 64, PTRS above) in place of torch.poisson
#    and, for the image-domain `poisson` family, of the rounded normal from 25 on.
SAMPLER_VERSION = 5


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
    only the sampler call is per image (in parallel threads on the CPU), so each image's
    stream depends on that image alone.
    """
    n_img = small.shape[0]
    flat = small.reshape(n_img, -1)
    counts = flat.sum(1).tolist()
    if not any(counts):
        return
    idx = flat.reshape(-1).nonzero().squeeze(1)  # row-major: grouped by image, in order
    vals = values.reshape(-1).index_select(0, idx)
    parts = list(vals.split(counts))

    def fill(i: int) -> None:  # each image's draws in parallel threads on the CPU
        if parts[i].numel():
            parts[i] = draw(parts[i], gens[i])

    _each_image(k.device, n_img, fill)
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
    tables (docs/physics.md), or from torch.binomial where those would exceed
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
    mixed = [i for i, only in enumerate(normal_only) if not only]
    # tables built here, not in the threads below (they are cached, not locked)
    tabs = {i: _table_for(a, region, highs[i], device=str(n.device)) for i in mixed}

    def fill(j: int) -> None:  # piece by piece: binary ops on the calling thread only
        i = mixed[j]
        g, tab, n_pieces = gens[i], tabs[i], flat[i].split(piece)
        ranges = [_value_range(nc) for nc in n_pieces] if on_cpu else [(lows[i], highs[i])]
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

    _each_image(n.device, len(mixed), fill)
    return k.round_()  # the normal part; exact draws are integers already


# --- exact Poisson sampler ---------------------------------------------------------------
# Rates below POISSON_TABLE_MAX: Poisson(λ) = Poisson(i·h) + Poisson(δ), i = ⌊λ/h⌋, δ = λ − i·h
# < h, both independent; the first from alias tables of the grid rates i·h, the second by
# inversion, which needs a uniform only for the 1 in 32 pixels whose draw can be nonzero.
# From POISSON_TABLE_MAX on: Hörmann's transformed rejection (PTRS) with its hat widened by
# _PTRS_MARGIN. Why each is exact: docs/physics.md ("Sampling").
POISSON_TABLE_MAX = 64.0
_POIS_GRID_BITS = 5  # grid step h = 2⁻⁵ (a power of two: λ/h and λ − i·h are exact)
_POIS_GRID = float(1 << _POIS_GRID_BITS)  # 1/h
_POIS_WIDTH_BITS = 7  # 128 columns per table row (a power of two: a column is 7 random bits)
_POIS_WIDTH = 1 << _POIS_WIDTH_BITS
_POIS_P_BITS = 47  # keep thresholds to 2⁻⁴⁷
_CAND_MASK = ((1 << _POIS_GRID_BITS) - 1) << _POIS_WIDTH_BITS  # bits 7–11 all set: p = h
_PTRS_MARGIN = 1.01  # the published hat falls 0.25 % short at λ = 64 (physics.md): α × 1.01


@functools.lru_cache(maxsize=1)
def _poisson_table_cpu(tail: float = ALIAS_TAIL_MASS) -> torch.Tensor:
    """Alias tables of Poisson(i·h), i < POISSON_TABLE_MAX/h, as rows × 128 int64 entries.

    Entry (i, j) = T·2¹⁶ + alias·2⁸ + own: column j returns the count own = lo_i + j with
    probability T/2⁴⁷ (T < 2⁴⁷, the alias method's keep probability) and the count alias
    otherwise; both counts are < 256. A draw compares (r | 0xFFFF) with the entry, r a
    63-bit random integer whose bits 16–62 are the 47-bit uniform c: c < T ⇔
    c·2¹⁶ + 0xFFFF < T·2¹⁶ + (alias·2⁸ + own), since the low part is below 2¹⁶.
    Row i covers the shortest window leaving out less than tail/2 on each side (scipy's cdf
    and sf); the window is renormalised (total variation < tail).
    """
    from scipy import stats  # a project dependency; imported here to keep the import light

    rows = int(POISSON_TABLE_MAX * _POIS_GRID)
    lam = np.arange(rows) / _POIS_GRID
    half = tail / 2
    lo = np.nan_to_num(stats.poisson.ppf(half, lam)).astype(np.int64)
    hi = np.nan_to_num(stats.poisson.isf(half, lam)).astype(np.int64)
    # ppf/isf are inverted numerically: make both conditions hold and the window minimal
    for _ in range(4):
        lo = np.where(stats.poisson.cdf(lo - 1, lam) >= half, lo - 1, lo)
        lo = np.where(stats.poisson.cdf(lo, lam) < half, lo + 1, lo)
        hi = np.where(stats.poisson.sf(hi, lam) >= half, hi + 1, hi)
        hi = np.where((hi > 0) & (stats.poisson.sf(hi - 1, lam) < half), hi - 1, hi)
    lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
    assert (stats.poisson.cdf(lo - 1, lam) < half).all()
    assert (stats.poisson.sf(hi, lam) < half).all()
    width = _POIS_WIDTH
    assert (hi - lo).max() < width and hi.max() < 256
    k = lo[:, None] + np.arange(width)[None, :]
    pmf = np.where(k <= hi[:, None], stats.poisson.pmf(k, lam[:, None]), 0.0)
    pmf[0, 1:] = 0.0  # Poisson(0) is the count 0 (scipy gives nan for rate 0)
    pmf[0, 0] = 1.0
    pmf /= pmf.sum(1, keepdims=True)  # renormalise: the window holds ≥ 1 − tail of the mass
    prob, alias = _vose(pmf * width)
    keep = np.minimum(np.rint(np.ldexp(prob, _POIS_P_BITS)), 2.0**_POIS_P_BITS - 1)
    own = np.minimum(k, 255)  # columns past the window have prob 0: own is never returned
    alias_k = lo[:, None] + alias
    keep = np.where(alias_k == own, 0.0, keep).astype(np.int64)  # same count either way
    entries = (keep << 16) | (alias_k << 8) | own
    return torch.from_numpy(entries.reshape(-1))


@functools.lru_cache(maxsize=8)
def _poisson_table(device: str) -> torch.Tensor:
    """As _poisson_table_cpu, moved to ``device`` once and kept there."""
    tab = _poisson_table_cpu()
    return tab if device == "cpu" else tab.to(torch.device(device))


class _TableDraw:
    """Table draws Poisson(⌊λ/h⌋·h) for 0 ≤ λ < POISSON_TABLE_MAX, up to ``size`` rates at a
    time, with scratch tensors kept across the pieces of an image (in cache, no allocation).

    One 63-bit random integer per draw: bits 0–6 pick the column, 16–62 decide keep or
    alias, bits 7–11 all set (probability h) mark a candidate: only a candidate's first
    arrival can come before h (see _poisson_remainder). Integer ops, casts and gathers
    only (no parallel region on the CPU, see _alias_draw).
    """

    def __init__(self, size: int, table: torch.Tensor, dtype: torch.dtype) -> None:
        self.table, self.size = table, size
        self.buffers = (
            *(torch.empty(size, dtype=torch.int64, device=table.device) for _ in range(5)),
            torch.empty(size, dtype=torch.bool, device=table.device),
            torch.empty(size, dtype=dtype, device=table.device),
        )

    def __call__(self, lam: torch.Tensor, g: torch.Generator, out: torch.Tensor) -> torch.Tensor:
        """out ← the draws for lam (1-D, the dtype given; out: lam's length, any dtype);
        returns the positions that are candidates for a remainder arrival."""
        n = lam.numel()
        bufs = self.buffers if n == self.size else tuple(b[:n] for b in self.buffers)
        r, row, idx, e, t, keep, scaled = bufs
        r.random_(generator=g)
        row.copy_(torch.mul(lam, _POIS_GRID, out=scaled))  # exact; truncation = floor
        torch.bitwise_and(r, _POIS_WIDTH - 1, out=t)
        torch.index_select(self.table, 0, torch.add(t, row, alpha=_POIS_WIDTH, out=idx), out=e)
        torch.lt(torch.bitwise_or(r, 0xFFFF, out=t), e, out=keep)  # c < T: _poisson_table_cpu
        torch.where(keep, e, torch.bitwise_right_shift(e, 8, out=t), out=idx)
        out.copy_(idx.bitwise_and_(255))
        torch.eq(torch.bitwise_and(r, _CAND_MASK, out=t), _CAND_MASK, out=keep)
        return keep.nonzero().squeeze(1)


def _poisson_remainder(lam: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Poisson(δ), δ = lam − ⌊lam/h⌋·h < h, for candidates (1-D float64 rates), as int64.

    A candidate's uniform v is 1 − h·w', w' = 1 − w ∈ (0, 1] (w fresh; uniform on
    [1 − h, 1) is what the candidate bits leave); by inversion, the count is the number of
    j ≥ 0 with 1 − v ≤ S_j = P(Poisson(δ) > j). The S_j come from the series of 1 − e^(−δ)
    and its terms: binary ops only, absolute error ≈ 10⁻¹⁶, which is the error of each
    probability.
    """
    delta = lam.mul(_POIS_GRID).to(torch.int64).double().div_(-_POIS_GRID).add_(lam)  # exact
    y = torch.rand(lam.shape, dtype=torch.float64, device=lam.device, generator=g)
    y.sub_(1.0).div_(-_POIS_GRID)  # h·(1 − w) ∈ (0, h]
    # S_0 = 1 − e^(−δ) = δ·(1 − δ/2·(1 − δ/3·(…))): for δ < 1/32 eight terms reach 2·10⁻¹⁷
    one = torch.ones((), dtype=torch.float64, device=lam.device)
    s = torch.ones_like(delta)
    for n in range(8, 1, -1):
        torch.addcmul(one, s, delta, value=-1.0 / n, out=s)
    s.mul_(delta)
    hit = y <= s
    count = hit.to(torch.int64)
    act = hit.nonzero().squeeze(1)
    s, y, d = s.index_select(0, act), y.index_select(0, act), delta.index_select(0, act)
    term = torch.sub(1.0, s)  # P(Poisson(δ) = 0) = e^(−δ)
    j = 1
    while act.numel():
        term.mul_(d).div_(j)  # P(Poisson(δ) = j)
        s.sub_(term)  # S_j
        more = (y <= s).nonzero().squeeze(1)
        act = act.index_select(0, more)
        count.index_add_(0, act, torch.ones_like(act))
        term, s, y, d = (t.index_select(0, more) for t in (term, s, y, d))
        j += 1
    return count


# log(k!) − (k·ln k − k + ½·ln(2πk)) for k < 16 (the series below is used from 16 on)
_STIRLING_ERR = tuple(
    0.0 if k == 0 else math.lgamma(k + 1) - (k * math.log(k) - k + 0.5 * math.log(2 * math.pi * k))
    for k in range(16)
)


def _log_poisson_pmf(k: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """ln P(K = k) for K ~ Poisson(lam), k ≥ 0 integral (float64), lam > 0: as
    −[k·ln(k/λ) − (k − λ)] − ½·ln(2πk) − stirlerr(k) with ln(k/λ) = log1p((k − λ)/λ), so the
    large terms of −λ + k·ln λ − ln k! never cancel (absolute error ≈ 10⁻¹⁶·|k − λ|)."""
    k1 = k.clamp(min=1.0)
    d = k1 - lam
    core = torch.log1p(d / lam).mul_(k1).sub_(d)
    z = k1.reciprocal()
    z2 = z * z
    series = z * (1 / 12 - z2 * (1 / 360 - z2 * (1 / 1260 - z2 * (1 / 1680 - z2 / 1188))))
    small = torch.tensor(_STIRLING_ERR, dtype=k.dtype, device=k.device)
    stirl = torch.where(k1 < 16, small[k1.clamp(max=15).to(torch.int64)], series)
    out = core.neg_().sub_(torch.log(k1 * (2 * math.pi)).mul_(0.5)).sub_(stirl)
    return torch.where(k == 0, -lam, out)


def _poisson_ptrs(lam: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Exact Poisson(lam) for lam ≥ POISSON_TABLE_MAX (1-D float64), as int64, from g.

    Hörmann's PTRS (1993): U uniform on (−½, ½), us = ½ − |U|, k = ⌊(2a/us + b)·U + λ +
    0.43⌋, accepted when V·α/(a/us² + b) ≤ P(k), V uniform on [0, 1), with its quick
    accept (us ≥ 0.07, V ≤ v_r) and quick reject (us < 0.013, V > us). α is raised by
    _PTRS_MARGIN so that the hat dominates, v_r lowered by its square so that the quick
    accept stays inside the acceptance region with room to spare (physics.md). Rejected
    draws are redrawn, in order, from the same generator.
    """
    k = torch.empty(lam.shape, dtype=torch.int64, device=lam.device)
    todo = torch.arange(lam.numel(), device=lam.device)
    lam_t = lam
    while todo.numel():
        b = lam_t.rsqrt().mul_(lam_t).mul_(2.53).add_(0.931)  # √λ as λ·rsqrt(λ): see _sqrt_counts
        a = b.mul(0.02483).sub_(0.059)
        u = torch.rand(todo.shape, dtype=torch.float64, device=lam.device, generator=g)
        v = torch.rand(todo.shape, dtype=torch.float64, device=lam.device, generator=g)
        u.sub_(0.5)
        us = u.abs().neg_().add_(0.5)
        x = torch.addcdiv(b, a, us, value=2.0).mul_(u).add_(lam_t).add_(0.43)
        kk = x.clamp(max=2.0**62).to(torch.int64)  # truncation = floor where x ≥ 0
        vr = b.sub(2.0).reciprocal_().mul_(-3.6224).add_(0.9277).div_(_PTRS_MARGIN**2)
        ok = (us >= 0.07) & (v <= vr)
        test = (~ok) & (x >= 0) & ((us >= 0.013) | (v <= us))
        ti = test.nonzero().squeeze(1)
        if ti.numel():
            bt, at, ust = b.index_select(0, ti), a.index_select(0, ti), us.index_select(0, ti)
            alpha = bt.sub(3.4).reciprocal_().mul_(1.1328).add_(1.1239).mul_(_PTRS_MARGIN)
            lhs = torch.log(v.index_select(0, ti).mul_(alpha).div_(at / (ust * ust) + bt))
            rhs = _log_poisson_pmf(kk.index_select(0, ti).double(), lam_t.index_select(0, ti))
            ok.index_copy_(0, ti, lhs <= rhs)
        done = ok.nonzero().squeeze(1)
        k.index_copy_(0, todo.index_select(0, done), kk.index_select(0, done))
        rest = (~ok).nonzero().squeeze(1)
        todo, lam_t = todo.index_select(0, rest), lam_t.index_select(0, rest)
    return k


def _poisson_exact(
    lam: torch.Tensor, g: torch.Generator, table: torch.Tensor, out: torch.Tensor
) -> None:
    """out ← exact Poisson(lam) for one image's rates (1-D, float, ≥ 0; out 1-D, float),
    from g only.

    On the CPU in pieces of _CPU_PIECE (one piece elsewhere): first the table draws of every
    piece, then the remainders of all candidates, then PTRS for rates ≥ POISSON_TABLE_MAX;
    so the stream an image consumes depends on its rates alone.
    """
    n = lam.numel()
    piece = _CPU_PIECE if lam.device.type == "cpu" else max(n, 1)
    draw = _TableDraw(min(piece, n), table, lam.dtype)
    cands: list[torch.Tensor] = []
    bigs: list[torch.Tensor] = []
    for start in range(0, n, piece):
        lp, kp = lam[start : start + piece], out[start : start + piece]
        lo, hi = _value_range(lp)
        if lo >= POISSON_TABLE_MAX:
            bigs.append(torch.arange(start, start + lp.numel(), device=lam.device))
            continue
        if hi < POISSON_TABLE_MAX:
            cand = draw(lp, g, kp)
        else:
            small = lp < POISSON_TABLE_MAX
            at = small.nonzero().squeeze(1)
            kt = torch.empty(at.shape, dtype=out.dtype, device=out.device)
            cand = at.index_select(0, draw(lp.index_select(0, at), g, kt))
            kp.index_copy_(0, at, kt)
            bigs.append((~small).nonzero().squeeze(1).add_(start))
        cands.append(cand.add_(start))
    for part in torch.cat(cands).split(piece) if cands else ():  # ≤ a piece at a time
        if part.numel():
            extra = _poisson_remainder(lam.index_select(0, part).double(), g)
            out.index_add_(0, part, extra.to(out.dtype))
    for part in torch.cat(bigs).split(piece) if bigs else ():
        out.index_copy_(0, part, _poisson_ptrs(lam.index_select(0, part).double(), g).to(out.dtype))


def sample_poisson(
    lam: torch.Tensor, gens: Sequence[torch.Generator], min_var: float = math.inf
) -> torch.Tensor:
    """Poisson(lam) per pixel; exact where lam < min_var (everywhere by default), a rounded
    normal elsewhere (the count-domain families pass NORMAL_APPROX_MIN_VAR).

    ``lam`` is N×H×W (float, ≥ 0); image i draws from ``gens[i]`` only, so its counts do
    not depend on the rest of the batch. Exact draws: alias tables below
    POISSON_TABLE_MAX, PTRS above (docs/physics.md, "Sampling").
    """
    table = _poisson_table(str(lam.device))
    n_img = lam.shape[0]
    if math.isinf(min_var):
        k = torch.empty_like(lam)
        lam_flat, k_flat = lam.reshape(n_img, -1), k.view(n_img, -1)

        def fill(i: int) -> None:
            _poisson_exact(lam_flat[i], gens[i], table, k_flat[i])

        _each_image(lam.device, n_img, fill)
        return k
    lows = lam.reshape(n_img, -1).amin(dim=1).tolist()
    if min(lows) >= min_var:  # the rounded normal only (the same numbers as below)
        k = _normal(lam.shape, gens, lam)
        return k.mul_(lam.sqrt()).add_(lam).round_().clamp_(min=0.0)
    small = lam < min_var
    all_small = small.reshape(n_img, -1).all(1).tolist()
    k = _normal(lam.shape, gens, lam, skip=all_small)
    k.mul_(lam.sqrt()).add_(lam).round_().clamp_(min=0.0)

    def draw(rates: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        counts = torch.empty_like(rates)
        _poisson_exact(rates, g, table, counts)
        return counts

    _exact_part(k, small, lam, gens, draw)
    return k
