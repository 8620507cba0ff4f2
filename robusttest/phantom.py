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

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from robusttest.errors import ConfigError, UnknownNameError, check_range

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

FINDINGS: tuple[str, ...] = ("effusion", "pneumothorax", "nodule", "cardiomegaly", "consolidation")
#: Masks of every case. right_lung/left_lung are the patient's sides (image left/right).
STRUCTURES: tuple[str, ...] = ("lungs", "heart", "right_lung", "left_lung", "clavicles")

F32 = npt.NDArray[np.float32]
Bool = npt.NDArray[np.bool_]

# --- Physical constants ------------------------------------------------------------
# Linear attenuation coefficients in 1/mm at the ~60 keV effective energy of a
# 110–125 kVp chest beam (NIST XCOM mass attenuation × density):
#   water/soft tissue 0.206 cm²/g × 1.00 g/cm³; inflated lung (ICRU lung tissue at
#   0.26 g/cm³); cortical bone 0.315 cm²/g × 1.92 g/cm³; vertebral/rib spongiosa
#   ≈ 1.18 g/cm³ → about 0.030 /mm. Air (0.0012 g/cm³) is taken as 0.
MU_SOFT = 0.0206
MU_LUNG = 0.0054
MU_BONE = 0.060
MU_TRABECULAR = 0.030
#: Side of the square detector field the phantom models (mm); pixel = FIELD_MM / size.
FIELD_MM = 400.0

_D_LUNG = MU_SOFT - MU_LUNG  # what 1 mm of lung removes relative to soft tissue
_D_BONE = MU_BONE - MU_SOFT  # what 1 mm of cortical bone adds
_D_TRAB = MU_TRABECULAR - MU_SOFT
# ℓ_max: a 230 mm soft-tissue abdomen plus the spine is ≈ 5.2; a little headroom keeps
# the brightest bone just below 1 for typical exposures.
_L_MAX = 5.3

_MIN_SIZE, _MAX_SIZE = 64, 2048


@dataclass(frozen=True)
class PhantomCase:
    """One synthetic PA chest radiograph with exact masks and finding labels."""

    image: np.ndarray  # float32 H×W in [0, 1], MONOCHROME2
    masks: dict[str, np.ndarray]  # structure -> bool H×W
    labels: dict[str, int]  # finding -> 0/1, every name in FINDINGS
    pixel_spacing_mm: float
    patient_id: str
    image_id: str


# --- Analytic building blocks ----------------------------------------------------------


def ellipsoid_thickness(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    cx: float,
    cy: float,
    a: float,
    b: float,
    c: float,
    angle: float = 0.0,
) -> F32:
    """Chord length of an ellipsoid along the beam (z), projected onto (x, y).

    The ellipsoid has semi-axes a, b in the image plane (rotated by ``angle`` radians)
    and c along the beam; the chord is 2·c·sqrt(1 − r²), r² = (u/a)² + (v/b)².
    """
    dx = np.asarray(x, dtype=np.float32) - np.float32(cx)
    dy = np.asarray(y, dtype=np.float32) - np.float32(cy)
    ca, sa = math.cos(angle), math.sin(angle)
    u = (ca * dx + sa * dy) / a
    v = (-sa * dx + ca * dy) / b
    r2 = u * u + v * v
    return np.asarray(2.0 * c * np.sqrt(np.maximum(1.0 - r2, 0.0)), dtype=np.float32)


def _tube(d: F32, radius: float, cortex: float) -> F32:
    """Bone added by a tubular bone (cortical shell + spongiosa) at distance d from its axis.

    A hollow cylinder seen side-on: the shell is brightest at its edges, which is what
    makes rib and clavicle cortices visible on a film.
    """
    r2 = np.float32(radius * radius)
    inner = max(radius - cortex, 0.1)
    d2 = d * d
    outer_c = np.sqrt(np.maximum(r2 - d2, 0.0))
    inner_c = np.sqrt(np.maximum(np.float32(inner * inner) - d2, 0.0))
    # (outer − inner) chords are cortex, the inner chord spongiosa.
    return np.asarray(2.0 * (_D_BONE * (outer_c - inner_c) + _D_TRAB * inner_c), dtype=np.float32)


def _ramp(t: F32) -> F32:
    """Smoothstep of t clipped to [0, 1]."""
    s = np.clip(t, 0.0, 1.0)
    return np.asarray(s * s * (3.0 - 2.0 * s), dtype=np.float32)


# --- Cached grids and texture banks ------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _axis_mm(size: int) -> F32:
    """Pixel-centre coordinates (mm) across the field, origin at its centre."""
    spacing = FIELD_MM / size
    ax = (np.arange(size, dtype=np.float64) + 0.5) * spacing - FIELD_MM / 2
    out = ax.astype(np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def _upsampler(size: int, knots: int) -> F32:
    """size×knots Gaussian interpolation matrix: U @ G @ U.T is a smooth random field."""
    t = (np.arange(size) + 0.5) / size
    k = (np.arange(knots) + 0.5) / knots
    w = np.exp(-0.5 * ((t[:, None] - k[None, :]) * knots / 0.85) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    # Rescale so the field has roughly unit standard deviation.
    w *= math.sqrt(knots / 2.2)
    out = w.astype(np.float32)
    out.flags.writeable = False
    return out


def _smooth_field(size: int, knots: np.ndarray) -> F32:
    """U @ G @ U.T as a sum of outer products.

    Not a BLAS matmul: a threaded BLAS stalls on a busy machine, and this is
    bit-for-bit reproducible everywhere.
    """
    up = _upsampler(size, knots.shape[0])
    g = knots.astype(np.float32)
    left = np.zeros((size, g.shape[1]), np.float32)
    for j in range(g.shape[0]):
        left += up[:, j, None] * g[None, j, :]
    out = np.zeros((size, size), np.float32)
    for k in range(knots.shape[0]):
        out += left[:, k, None] * up[None, :, k]
    return out


_BANK_N = 512  # power of two: indices wrap with a bit mask


@functools.lru_cache(maxsize=1)
def _vessel_bank() -> F32:
    """Texture of vascular markings in (angle, radius) coordinates around a hilum.

    Ridges of a band-passed random field stretched along the radius: mapped back to the
    image they are streaks radiating from the hilum, like pulmonary vessels. Fixed seed:
    cases differ by where they sample it.
    """
    from scipy.ndimage import gaussian_filter

    g = np.random.default_rng(20240917).standard_normal((_BANK_N, _BANK_N))
    fine = gaussian_filter(g, (1.3, 4.0), mode="wrap")
    fine /= fine.std()
    coarse = gaussian_filter(g[::-1].copy(), (2.6, 7.0), mode="wrap")
    coarse /= coarse.std()
    ridge = 0.7 * np.exp(-((fine / 0.4) ** 2)) + np.exp(-((coarse / 0.35) ** 2))
    ridge -= ridge.mean()
    out: F32 = np.asarray(ridge, dtype=np.float32)
    out.flags.writeable = False
    return out


# --- Per-case parameters -------------------------------------------------------------------


@dataclass(frozen=True)
class _Side:
    """One hemithorax in the model frame; xs = distance from the midline, outward."""

    sign: int  # -1: patient's right (image left); +1: patient's left (image right)
    apex_y: float  # top of the lung
    apex_x: float  # xs of the apex
    lat_x: float  # lateral lung border
    med_x: float  # medial lung border
    wide_y: float  # level where the lung reaches full width
    dome_y: float  # top of the hemidiaphragm
    dome_x: float  # xs of the dome top
    dome_k: float  # how far the dome falls to the costophrenic angle (mm)
    depth: float  # AP depth of the lung (mm)
    hilum_y: float
    rib_y0: float  # level of the first posterior rib at the spine
    rib_dy: float  # posterior rib spacing at the spine (mm)
    rib_grow: float  # relative spacing increase per rib
    clav_y: float  # clavicle medial end
    clav_rise: float  # how far the clavicle rises laterally
    tex_off: tuple[int, int]  # offset into the vessel bank

    def dome(self, xs: F32) -> F32:
        u = (xs - self.dome_x) / (self.lat_x - self.dome_x)
        return np.asarray(self.dome_y + self.dome_k * u * u, dtype=np.float32)


@dataclass(frozen=True)
class _Anatomy:
    scale: float
    angle: float  # radians, model → image
    shift: tuple[float, float]  # mm, model origin in the image field
    body_w: float  # half-width of the chest
    body_d: float  # AP depth of the chest
    neck_w: float
    right: _Side
    left: _Side
    heart: tuple[float, float, float, float, float]  # ctr, aspect, tilt, right share, dy
    spine_w: float
    spine_bend: float
    spine_phase: float
    vert_h: float
    gastric: tuple[float, float, float] | None  # cx, cy, radius of the stomach bubble
    breasts: float  # 0 = none, else soft-tissue depth (mm)
    exposure: float  # ℓ_max multiplier
    gamma: float
    s_curve: float  # weight of the S-shaped display curve, 0 = linear
    texture: np.ndarray  # knots×knots normal field for the smooth tissue texture
    vessel_gain: float


def _draw_side(rng: np.random.Generator, sign: int, width: float) -> _Side:
    right = sign < 0
    lat = width * rng.uniform(0.80, 0.85)
    dome_y = rng.uniform(20.0, 45.0) + (0.0 if right else rng.uniform(8.0, 20.0))
    return _Side(
        sign=sign,
        apex_y=rng.uniform(-162.0, -145.0),
        apex_x=rng.uniform(50.0, 62.0),
        lat_x=lat,
        med_x=rng.uniform(22.0, 30.0),
        wide_y=rng.uniform(-25.0, 5.0),
        dome_y=dome_y,
        dome_x=rng.uniform(45.0, 65.0),
        dome_k=rng.uniform(40.0, 65.0),
        depth=rng.uniform(160.0, 185.0),
        hilum_y=rng.uniform(-35.0, -15.0),
        rib_y0=rng.uniform(-178.0, -166.0),
        rib_dy=rng.uniform(19.0, 23.0),
        rib_grow=rng.uniform(0.02, 0.045),
        clav_y=rng.uniform(-132.0, -118.0),
        clav_rise=rng.uniform(18.0, 32.0),
        tex_off=(int(rng.integers(_BANK_N)), int(rng.integers(_BANK_N))),
    )


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    body_w = rng.uniform(160.0, 180.0)
    right = _draw_side(rng, -1, body_w)
    left = _draw_side(rng, +1, body_w)
    heart = (
        rng.uniform(0.39, 0.45),  # cardiothoracic ratio of a normal heart
        rng.uniform(0.78, 0.92),  # short/long axis
        rng.uniform(0.45, 0.75),  # tilt of the long axis (rad), apex to image right-down
        rng.uniform(0.22, 0.34),  # fraction of the heart's half-width right of the midline
        rng.uniform(-8.0, 6.0),  # vertical offset (mm)
    )
    gastric = None
    if rng.random() < 0.7:
        gastric = (rng.uniform(50.0, 85.0), rng.uniform(25.0, 45.0), rng.uniform(12.0, 22.0))
    return _Anatomy(
        scale=rng.uniform(0.92, 1.05),
        angle=math.radians(rng.uniform(-3.0, 3.0)),
        shift=(rng.uniform(-10.0, 10.0), rng.uniform(-8.0, 12.0)),
        body_w=body_w,
        body_d=rng.uniform(205.0, 235.0),
        neck_w=rng.uniform(50.0, 62.0),
        right=right,
        left=left,
        heart=heart,
        spine_w=rng.uniform(19.0, 23.0),
        spine_bend=rng.uniform(-5.0, 5.0),
        spine_phase=rng.uniform(0.0, 1.0),
        vert_h=rng.uniform(23.0, 28.0),
        gastric=gastric,
        breasts=rng.uniform(8.0, 18.0) if rng.random() < 0.35 else 0.0,
        exposure=rng.uniform(0.93, 1.07),
        gamma=rng.uniform(0.9, 1.1),
        s_curve=rng.uniform(0.1, 0.45),
        texture=rng.standard_normal((8, 8)),
        vessel_gain=rng.uniform(0.7, 1.2),
    )


# --- Findings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Findings:
    effusion: tuple[int, ...] = ()  # signs of the affected sides
    effusion_h: float = 0.0  # height of the meniscus above the costophrenic angle (mm)
    pneumothorax: int = 0  # side sign, 0 = none
    ptx_k: float = 1.0  # how far the lung shrinks towards the hilum
    nodule: tuple[float, float, float] | None = None  # x, y, radius (model mm)
    ctr: float | None = None  # forced cardiothoracic ratio
    consolidation: tuple[float, float, float, float] | None = None  # x, y, a, b
    cons_texture: np.ndarray | None = None


def _pick_side(rng: np.random.Generator) -> int:
    return -1 if rng.random() < 0.55 else 1


def _side_of(anat: _Anatomy, sign: int) -> _Side:
    return anat.right if sign < 0 else anat.left


def _lung_shape(side: _Side, xs: F32, y: F32) -> F32:
    """Normalised radius e of the hemithorax outline: e < 1 inside (diaphragm not applied).

    Upper part: half-ellipses from the apex down to the level of full width, wider
    laterally than medially; below that level the borders run straight down.
    """
    dxs = xs - side.apex_x
    u = np.maximum(dxs, 0.0) / (side.lat_x - side.apex_x) + np.minimum(dxs, 0.0) / (
        side.apex_x - side.med_x
    )
    v = np.minimum(y - side.wide_y, 0.0) / (side.wide_y - side.apex_y)
    return np.asarray(u * u + v * v, dtype=np.float32)


def _lung_depth(side: _Side, e: F32, y: F32) -> F32:
    """AP depth (mm) of aerated lung from the outline radius e: deep centrally and at the base."""
    grow = np.clip((y - side.apex_y) * (1.0 / 160.0), 0.0, 1.0)
    return np.asarray(
        side.depth * np.maximum(1.0 - e, 0.0) ** 0.4 * (0.5 + 0.5 * grow), dtype=np.float32
    )


def _heart_geometry(anat: _Anatomy, ctr: float) -> tuple[float, float, float, float, float]:
    """(cx, cy, a, b, tilt) of the cardiac ellipse giving the cardiothoracic ratio ``ctr``.

    Thorax width = distance between the lateral lung borders, as on a film.
    """
    _, aspect, tilt, right_share, dy = anat.heart
    half_w = 0.5 * ctr * (anat.right.lat_x + anat.left.lat_x)
    c, s = math.cos(tilt), math.sin(tilt)
    a = half_w / math.sqrt(c * c + (aspect * s) ** 2)
    b = a * aspect
    half_h = math.sqrt((a * s) ** 2 + (b * c) ** 2)
    cx = half_w * (1.0 - 2.0 * right_share)
    cy = anat.left.dome_y - 0.4 * half_h + dy
    return cx, cy, a, b, tilt


def _in_lung_points(
    anat: _Anatomy, sign: int, xs: np.ndarray, y: np.ndarray, margin: float
) -> Bool:
    """Which candidate points (model mm) lie ``margin`` mm inside the lung field, off the heart."""
    side = _side_of(anat, sign)
    xs32 = xs.astype(np.float32)
    y32 = y.astype(np.float32)
    scale = 1.0 + margin / 60.0  # crude inward margin in the normalised outline
    e = _lung_shape(side, xs32, y32)
    ok = (e * scale * scale < 1.0) & (y32 < side.dome(xs32) - margin)
    cx, cy, a, b, tilt = _heart_geometry(anat, anat.heart[0])
    h = ellipsoid_thickness(sign * xs32, y32, cx, cy, a + margin, b + margin, 1.0, tilt)
    return np.asarray(ok & (h <= 0.0), dtype=np.bool_)


def _draw_point(
    rng: np.random.Generator, anat: _Anatomy, sign: int, margin: float, y_range: tuple[float, float]
) -> tuple[float, float]:
    """A random point inside one lung (model frame, signed x), by rejection."""
    side = _side_of(anat, sign)
    for _ in range(20):
        xs = rng.uniform(side.med_x, side.lat_x, 64)
        y = rng.uniform(y_range[0], y_range[1], 64)
        ok = np.flatnonzero(_in_lung_points(anat, sign, xs, y, margin))
        if ok.size:
            return float(sign * xs[ok[0]]), float(y[ok[0]])
    return float(sign * (side.apex_x + 0.3 * (side.lat_x - side.apex_x))), side.hilum_y - 30.0


def _draw_findings(
    present: dict[str, bool], anat: _Anatomy, rngs: dict[str, np.random.Generator]
) -> _Findings:
    kw: dict[str, object] = {}
    if present["effusion"]:
        r = rngs["effusion"]
        u = r.random()
        kw["effusion"] = (-1,) if u < 0.45 else (1,) if u < 0.8 else (-1, 1)
        kw["effusion_h"] = r.uniform(20.0, 70.0)
    if present["pneumothorax"]:
        r = rngs["pneumothorax"]
        kw["pneumothorax"] = _pick_side(r)
        kw["ptx_k"] = r.uniform(0.55, 0.8)
    ctr = anat.heart[0]
    if present["cardiomegaly"]:
        ctr = rngs["cardiomegaly"].uniform(0.56, 0.66)
        kw["ctr"] = ctr
    if present["nodule"]:
        r = rngs["nodule"]
        radius = math.exp(r.uniform(math.log(2.5), math.log(15.0)))  # 5–30 mm across
        sign = _pick_side(r)
        anat_h = anat if ctr == anat.heart[0] else _with_ctr(anat, ctr)
        x, y = _draw_point(r, anat_h, sign, radius + 4.0, (-140.0, 60.0))
        kw["nodule"] = (x, y, radius)
    if present["consolidation"]:
        r = rngs["consolidation"]
        sign = _pick_side(r)
        zone = int(r.integers(3))  # upper, middle, lower zone
        y_lo, y_hi = ((-130.0, -70.0), (-70.0, -10.0), (-10.0, 50.0))[zone]
        anat_h = anat if ctr == anat.heart[0] else _with_ctr(anat, ctr)
        x, y = _draw_point(r, anat_h, sign, 10.0, (y_lo, y_hi))
        kw["consolidation"] = (x, y, r.uniform(30.0, 50.0), r.uniform(25.0, 40.0))
        kw["cons_texture"] = r.standard_normal((12, 12))
    return _Findings(**kw)  # type: ignore[arg-type]


def _with_ctr(anat: _Anatomy, ctr: float) -> _Anatomy:
    h = anat.heart
    return dataclasses.replace(anat, heart=(ctr, h[1], h[2], h[3], h[4]))


# --- Rendering -----------------------------------------------------------------------------


class _Frame:
    """The model ↔ image mapping of one case on one grid size."""

    def __init__(self, anat: _Anatomy, size: int) -> None:
        self.size = size
        self.spacing = FIELD_MM / size
        self.cos = math.cos(anat.angle)
        self.sin = math.sin(anat.angle)
        self.scale = anat.scale
        self.ox, self.oy = anat.shift
        ax = _axis_mm(size)
        inv = 1.0 / anat.scale
        # xm = (c·(X−ox) + s·(Y−oy))/sc, ym = (−s·(X−ox) + c·(Y−oy))/sc, as outer sums.
        cx = ax - np.float32(self.ox)
        cy = ax - np.float32(self.oy)
        self.xm_col = (cx * np.float32(self.cos * inv))[None, :]
        self.xm_row = (cy * np.float32(self.sin * inv))[:, None]
        self.ym_col = (cx * np.float32(-self.sin * inv))[None, :]
        self.ym_row = (cy * np.float32(self.cos * inv))[:, None]
        # The model midline crosses the centre row at image x = ox.
        self.mid = int(np.clip(round((self.ox + FIELD_MM / 2) / self.spacing), 1, size - 1))

    def coords(self, rows: slice, cols: slice) -> tuple[F32, F32]:
        """Model-frame (x, y) of the pixels in a box."""
        xm = self.xm_col[:, cols] + self.xm_row[rows]
        ym = self.ym_col[:, cols] + self.ym_row[rows]
        return xm, ym

    def box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """Pixel box (rows, cols) covering the model-frame rectangle [x0, x1]×[y0, y1]."""
        xs = np.array([x0, x1, x0, x1])
        ys = np.array([y0, y0, y1, y1])
        gx = self.ox + self.scale * (self.cos * xs - self.sin * ys) + FIELD_MM / 2
        gy = self.oy + self.scale * (self.sin * xs + self.cos * ys) + FIELD_MM / 2
        c0 = int(np.clip(math.floor(gx.min() / self.spacing) - 1, 0, self.size))
        c1 = int(np.clip(math.ceil(gx.max() / self.spacing) + 1, 0, self.size))
        r0 = int(np.clip(math.floor(gy.min() / self.spacing) - 1, 0, self.size))
        r1 = int(np.clip(math.ceil(gy.max() / self.spacing) + 1, 0, self.size))
        return slice(r0, r1), slice(c0, c1)


_LUT_Y0 = -300.0


def _body(anat: _Anatomy, xm: F32, ym: F32) -> F32:
    """Soft-tissue thickness (mm) of neck, shoulders and trunk: an elliptic-ish cross-section."""
    w = anat.body_w
    ky = np.array([-260.0, -205.0, -180.0, -165.0, -145.0, -110.0, -60.0, 0.0, 260.0])
    kw = np.array(
        [anat.neck_w, anat.neck_w + 8, anat.neck_w + 45, w - 5, w + 25, w + 32, w + 12, w, 0.93 * w]
    )
    kd = np.array([110.0, 120.0, 130.0, 0.7, 0.8, 0.95, 1.0, 1.04, 1.1])
    kd[3:] *= anat.body_d
    # Piecewise-linear profiles of y, looked up in a 1 mm table (np.interp on the whole
    # grid is several times slower).
    grid = np.arange(_LUT_Y0, -_LUT_Y0 + 1.0, 1.0)
    idx = np.clip((ym - np.float32(_LUT_Y0)).astype(np.intp), 0, grid.size - 1)
    half_w = np.interp(grid, ky, kw).astype(np.float32).take(idx)
    depth = np.interp(grid, ky, kd).astype(np.float32).take(idx)
    u = xm / half_w
    return np.asarray(depth * np.sqrt(np.maximum(1.0 - u * u, 0.0)), dtype=np.float32)


def _spine(anat: _Anatomy, fr: _Frame, ell: F32) -> None:
    """Vertebral column and trachea, added in place to ℓ inside their box."""
    w = anat.spine_w
    rows, cols = fr.box(-w - 20.0, w + 20.0, -210.0 / anat.scale, 210.0 / anat.scale)
    xm, ym = fr.coords(rows, cols)
    xc = anat.spine_bend * np.sin((ym + 200.0) * (math.pi / 400.0))
    dx = xm - xc
    ww = w * (0.72 + 0.28 * np.clip((ym + 200.0) * (1.0 / 180.0), 0.0, 1.0))
    un = dx / ww
    body = np.sqrt(np.maximum(1.0 - un * un, 0.0))
    # Vertebral bodies separated by discs; phase 0 = upper endplate.
    ph = (ym * (1.0 / anat.vert_h) + anat.spine_phase) % 1.0
    gap = np.clip((0.84 - ph) * 12.0, 0.0, 1.0) * np.clip(ph * 12.0, 0.0, 1.0)
    vb = body * gap * (2.0 * 14.0 * _D_TRAB)
    # Cortical rim of each body: brightest near the lateral margins and endplates.
    rim = (
        np.abs(un) ** 6 + np.exp(-(((ph - 0.04) * 14.0) ** 2)) + np.exp(-(((ph - 0.8) * 14.0) ** 2))
    )
    vb += body * gap * rim * (2.0 * 0.7 * _D_BONE)
    # Pedicles: cortical rings lateral in the upper half of each body.
    pr = ((np.abs(dx) - 0.62 * ww) * (1.0 / 4.0)) ** 2 + ((ph - 0.3) * (anat.vert_h / 6.0)) ** 2
    vb += np.exp(-(((pr - 1.0) * 1.6) ** 2)) * (1.6 * _D_BONE)
    # Spinous process: a teardrop on the midline, projecting lower on the body.
    sp = (dx * (1.0 / 3.5)) ** 2 + ((ph - 0.62) * (anat.vert_h / 8.0)) ** 2
    vb += np.sqrt(np.maximum(1.0 - sp, 0.0)) * (2.0 * _D_BONE)
    # Trachea: an air column down to the carina, over the upper spine.
    carina = min(anat.right.hilum_y, anat.left.hilum_y) - 25.0
    tw = 9.5
    tr = np.sqrt(np.maximum(tw * tw - dx * dx, 0.0)) * np.clip((carina - ym) * 0.1, 0.0, 1.0)
    vb -= tr * (4.0 * MU_SOFT)
    ell[rows, cols] += vb


def _ribs(side: _Side, xs: F32, y: F32) -> F32:
    """Posterior and anterior ribs of one side (bone ℓ); xs = distance from midline."""
    lat = side.lat_x
    # Posterior ribs: level sets of Φ = y − A(y)·q(xs), arching up from the spine then
    # falling along the lateral wall; upper ribs are more curved (larger A).
    xp = 38.0
    qd = (xs - xp) * (1.0 / (lat - xp))
    amp = 85.0 - 30.0 * np.clip((y + 150.0) * (1.0 / 250.0), 0.0, 1.0)
    phi = y - amp * qd * qd
    g = side.rib_grow
    lg = math.log1p(g)
    arg = np.maximum(1.0 + (phi - side.rib_y0) * (g / side.rib_dy), 1e-3)
    k = np.log(arg) * (1.0 / lg)
    dk_dphi = (g / (side.rib_dy * lg)) / arg
    frac = k - np.rint(k)
    slope = amp * qd * (2.0 / (lat - xp))
    d = frac / (dk_dphi * np.sqrt(1.0 + slope * slope))
    inside = np.clip((11.5 - k) * 2.0, 0.0, 1.0) * np.clip((k + 0.5) * 2.0, 0.0, 1.0)
    reach = np.clip((xs - 16.0) * 0.12, 0.0, 1.0) * np.clip((lat + 12.0 - xs) * 0.15, 0.0, 1.0)
    tangential = 1.0 + 1.3 * np.clip((xs - 0.72 * lat) * (1.0 / (0.28 * lat)), 0.0, 1.0)
    # Ribs differ in build; the floating ribs (11, 12) are thin.
    build = (1.0 + 0.22 * np.sin(np.rint(k) * 2.7 + side.rib_y0)) * np.clip(
        (12.5 - k) * (1.0 / 4.0), 0.25, 1.0
    )
    post = _tube(d, 5.5, 2.0) * (inside * reach * tangential * build)
    # Anterior ribs: straighter, sloping down towards the sternum, fainter and wider,
    # ending at the costal cartilage (invisible) about halfway in.
    ua = xs * (1.0 / lat)
    phia = y + 60.0 * ua * (0.7 + 0.3 * ua)
    ka = (phia - (side.rib_y0 + 42.0)) * (1.0 / 31.0)
    fa = (ka - np.rint(ka)) * (31.0 / math.sqrt(1.0 + 0.6**2 * 4.0))
    ins_a = np.clip((6.5 - ka) * 2.0, 0.0, 1.0) * np.clip((ka + 0.5) * 2.0, 0.0, 1.0)
    reach_a = np.clip((ua - 0.42) * 8.0, 0.0, 1.0) * np.clip((lat + 8.0 - xs) * 0.15, 0.0, 1.0)
    ant = _tube(fa.astype(np.float32), 7.0, 1.0) * (0.3 * ins_a * reach_a)
    return np.asarray(post + ant, dtype=np.float32)


def _clavicle(side: _Side, xs: F32, y: F32) -> tuple[F32, Bool]:
    """Clavicle bone ℓ and mask: an S-curved tube from the sternum to the acromion."""
    x0, x1 = 14.0, side.lat_x + 25.0
    u = (xs - x0) * (1.0 / (x1 - x0))
    yc = (
        side.clav_y - side.clav_rise * u - 7.0 * np.sin(u * math.pi) + 4.0 * np.sin(u * 2 * math.pi)
    )
    slope = side.clav_rise / (x1 - x0)
    d = (y - yc) * (1.0 / math.sqrt(1.0 + slope * slope))
    ends = np.clip(u * 25.0, 0.0, 1.0) * np.clip((1.0 - u) * 25.0, 0.0, 1.0)
    radius = 7.5 + 2.0 * np.clip(1.0 - 4.0 * u, 0.0, 1.0)  # wider sternal end
    inside = (np.abs(d) < radius) & (ends > 0.0)
    r = np.float32(7.5)
    bone = _tube(np.asarray(d * (r / radius), dtype=np.float32), 7.5, 2.5) * ends
    return np.asarray(bone, dtype=np.float32), np.asarray(inside, dtype=np.bool_)


def _render(anat: _Anatomy, fnd: _Findings, size: int) -> tuple[F32, dict[str, Bool]]:
    fr = _Frame(anat, size)
    full = slice(0, size)
    xm, ym = fr.coords(full, full)
    ell = _body(anat, xm, ym) * np.float32(MU_SOFT)
    body_t = ell.copy()

    # Smooth tissue-density texture (±~2 %), only where there is tissue.
    tex = _smooth_field(size, anat.texture)
    ell += tex * body_t * np.float32(0.025)

    # Heart: an ellipsoid in the lower mediastinum; it displaces lung.
    ctr = fnd.ctr if fnd.ctr is not None else anat.heart[0]
    hx, hy, ha, hb, ht = _heart_geometry(anat, ctr)
    hc = 0.9 * hb  # AP half-depth
    heart_t = np.zeros((size, size), np.float32)
    rows, cols = fr.box(hx - ha - 2, hx + ha + 2, hy - ha - 2, hy + ha + 2)
    bx, by = fr.coords(rows, cols)
    heart_t[rows, cols] = ellipsoid_thickness(bx, by, hx, hy, ha, hb, hc, ht)
    heart_mask = heart_t > 0.0
    # Aortic knob: the arch seen end-on left of the trachea (image right).
    kx, ky = 22.0 + 0.1 * ha, anat.left.hilum_y - 45.0
    rows, cols = fr.box(kx - 20, kx + 20, ky - 25, ky + 25)
    bx, by = fr.coords(rows, cols)
    heart_t[rows, cols] += ellipsoid_thickness(bx, by, kx, ky, 17.0, 22.0, 30.0)
    # Main pulmonary artery: fills the notch between the knob and the heart.
    px, py = kx - 5.0, ky + 32.0
    rows, cols = fr.box(px - 20, px + 20, py - 26, py + 26)
    bx, by = fr.coords(rows, cols)
    heart_t[rows, cols] += ellipsoid_thickness(bx, by, px, py, 16.0, 24.0, 30.0)

    _spine(anat, fr, ell)

    masks: dict[str, Bool] = {
        "right_lung": np.zeros((size, size), np.bool_),
        "left_lung": np.zeros((size, size), np.bool_),
        "clavicles": np.zeros((size, size), np.bool_),
    }
    bank = _vessel_bank()
    cons_field: F32 | None = None
    if fnd.consolidation is not None and fnd.cons_texture is not None:
        cons_field = _smooth_field(size, fnd.cons_texture)

    for side in (anat.right, anat.left):
        sl = slice(0, fr.mid) if side.sign < 0 else slice(fr.mid, size)
        sx = xm[:, sl] * np.float32(side.sign)
        sy = ym[:, sl]
        e = _lung_shape(side, sx, sy)
        dome = side.dome(sx)
        below = np.clip((dome - sy) * (1.0 / 4.0), 0.0, 1.0)
        field = (e < 1.0) & (sy < dome)
        t_lung = _lung_depth(side, e, sy) * below
        # The heart fills the middle of the chest: only a thin retrocardiac lung remains.
        t_lung = np.maximum(t_lung - 2.5 * heart_t[:, sl], 0.06 * t_lung)
        aerated = t_lung  # lung tissue the beam crosses (smaller under pneumothorax)
        if fnd.pneumothorax == side.sign:
            # The lung shrinks towards the hilum at the apex and the side, not at the base.
            hxs, hys = side.apex_x, side.hilum_y
            k = fnd.ptx_k + (1.0 - fnd.ptx_k) * _ramp((sy - hys) * (1.0 / (side.dome_y - hys)))
            inv_k = np.asarray(1.0 / k, dtype=np.float32)
            e_c = _lung_shape(side, (sx - hxs) * inv_k + hxs, (sy - hys) * inv_k + hys)
            aerated = np.minimum(_lung_depth(side, e_c, sy) * below, t_lung)
            # Visceral pleural line at the collapsed lung's edge, seen tangentially.
            ell[:, sl] += np.clip(1.0 - np.abs(e_c - 1.0) * 25.0, 0.0, 1.0) * field * 0.25
            # Pleural air holds no lung tissue: it is darker than the lung it replaces;
            # the collapsed lung keeps its mass in less volume, so it is denser.
            ell[:, sl] -= (t_lung - aerated) * np.float32(MU_SOFT)
            ell[:, sl] += aerated * np.float32(MU_LUNG * (1.0 / fnd.ptx_k - 1.0))
        lung_frac = np.ones_like(sy)
        if side.sign in fnd.effusion:
            # Fluid layers at the base and climbs the lateral wall: a meniscus that is
            # highest laterally and hides the costophrenic angle and the dome.
            span = side.lat_x - side.med_x
            un = np.clip((sx - side.med_x) * (1.0 / span), 0.0, 1.0)
            top = side.dome_y + 10.0 - fnd.effusion_h * (0.3 + 0.7 * un * un)
            fluid = _ramp((sy - top) * (1.0 / 18.0))
            lung_frac = lung_frac - 0.97 * fluid
            field &= fluid < 0.5
        if cons_field is not None and fnd.consolidation is not None:
            cx, cy, ca, cb = fnd.consolidation
            if cx * side.sign > 0:
                r2 = ((sx - cx * side.sign) / ca) ** 2 + ((sy - cy) / cb) ** 2
                # Patchy: a smooth random field thresholded softly inside a lobe-sized blob.
                patch = _ramp((cons_field[:, sl] * 0.5 + 0.75 - r2) * 0.9)
                lung_frac = lung_frac - 0.7 * patch * lung_frac
        ell[:, sl] -= aerated * lung_frac * np.float32(_D_LUNG)

        # Vascular markings, radiating from the hilum, only in aerated lung.
        # The polar origin sits medially, under the mediastinum, so the streaks never
        # visibly converge; the hilar vessels themselves are a blob further out.
        hxs = side.med_x + 28.0
        dxo = sx - np.float32(0.4 * side.med_x)
        dyh = sy - side.hilum_y
        ang = np.arctan2(dyh, dxo) + tex[:, sl] * np.float32(0.25)
        dxh = sx - hxs
        rho = np.sqrt(dxh * dxh + dyh * dyh)
        i = (ang * np.float32(_BANK_N / (2 * math.pi))).astype(np.intp) + side.tex_off[0]
        j = (rho * np.float32(1.0 / 1.1)).astype(np.intp) + side.tex_off[1]
        ves = bank.ravel().take(((i & (_BANK_N - 1)) * _BANK_N) | (j & (_BANK_N - 1)))
        amp = np.float32(0.25 * anat.vessel_gain) * np.exp(rho * np.float32(-1.0 / 60.0))
        amp += np.float32(0.05)
        ell[:, sl] += ves * amp * np.clip(aerated * lung_frac * (1.0 / 50.0), 0.0, 1.0)
        # Hilar vessels: the pulmonary arteries at the root of each lung.
        ell[:, sl] += (
            np.exp(-(dxh * dxh * (1.0 / 260.0) + dyh * dyh * (1.0 / 700.0)))
            * np.clip(t_lung * (1.0 / 40.0), 0.0, 1.0)
            * np.float32(0.35)
        )

        ell[:, sl] += _ribs(side, sx, sy)
        lung_mask = field & ~heart_mask[:, sl]
        name = "right_lung" if side.sign < 0 else "left_lung"
        masks[name][:, sl] = lung_mask

        # Clavicle, in a band of rows.
        top = side.clav_y - side.clav_rise - 30.0
        x_lo, x_hi = (-(side.lat_x + 30.0), 0.0) if side.sign < 0 else (0.0, side.lat_x + 30.0)
        rows, cols = fr.box(x_lo, x_hi, top, side.clav_y + 25.0)
        bx, by = fr.coords(rows, cols)
        bone, cmask = _clavicle(side, bx * np.float32(side.sign), by)
        ell[rows, cols] += bone
        masks["clavicles"][rows, cols] |= cmask
        # Humeral head, at the top corner.
        hhx, hhy = side.sign * (anat.body_w + 22.0), side.clav_y - side.clav_rise - 5.0
        rows, cols = fr.box(hhx - 30, hhx + 30, hhy - 30, hhy + 30)
        bx, by = fr.coords(rows, cols)
        dd = np.sqrt((bx - hhx) ** 2 + (by - hhy) ** 2).astype(np.float32)
        ell[rows, cols] += _tube(dd, 26.0, 6.0) * np.float32(0.35)
        if anat.breasts > 0:
            bxc, byc = side.sign * 0.55 * side.lat_x, side.dome_y + 5.0
            rows, cols = fr.box(bxc - 80, bxc + 80, byc - 70, byc + 70)
            bx, by = fr.coords(rows, cols)
            ell[rows, cols] += ellipsoid_thickness(
                bx, by, bxc, byc, 75.0, 62.0, anat.breasts
            ) * np.float32(MU_SOFT)

    if anat.gastric is not None:
        gx, gdy, gr = anat.gastric
        gy = anat.left.dome_y + gdy
        rows, cols = fr.box(gx - 1.4 * gr, gx + 1.4 * gr, gy - gr, gy + gr)
        bx, by = fr.coords(rows, cols)
        ell[rows, cols] -= ellipsoid_thickness(bx, by, gx, gy, 1.3 * gr, 0.8 * gr, gr) * np.float32(
            MU_SOFT
        )

    if fnd.nodule is not None:
        nx, ny, nr = fnd.nodule
        rows, cols = fr.box(nx - nr, nx + nr, ny - nr, ny + nr)
        bx, by = fr.coords(rows, cols)
        ell[rows, cols] += ellipsoid_thickness(bx, by, nx, ny, nr, nr, nr) * np.float32(_D_LUNG)

    lmax = np.float32(_L_MAX * anat.exposure)
    p = np.clip(ell * (1.0 / lmax), 0.0, 1.0) ** np.float32(anat.gamma)
    # Film-like characteristic curve: a mild S (toe and shoulder), monotone in ℓ.
    p += np.float32(anat.s_curve) * (p * p * (3.0 - 2.0 * p) - p)
    masks["heart"] = heart_mask
    masks["lungs"] = masks["right_lung"] | masks["left_lung"]
    return np.asarray(p, dtype=np.float32), masks


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
