"""The phantom's physics constants, analytic shapes, per-case anatomy and findings."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
