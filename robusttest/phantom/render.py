"""Rendering a phantom case: the Beer–Lambert projection of its anatomy, and exact masks."""

from __future__ import annotations

import math

import numpy as np

from robusttest.phantom.anatomy import (
    _BANK_N,
    _D_BONE,
    _D_LUNG,
    _D_TRAB,
    _L_MAX,
    F32,
    FIELD_MM,
    MU_LUNG,
    MU_SOFT,
    Bool,
    _Anatomy,
    _axis_mm,
    _Findings,
    _heart_geometry,
    _lung_depth,
    _lung_shape,
    _ramp,
    _Side,
    _smooth_field,
    _tube,
    _vessel_bank,
    ellipsoid_thickness,
)

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
