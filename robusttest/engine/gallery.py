"""The report gallery: a few images at every condition and the worst case per condition.

Segmentation: thumbnails with the prediction (and truth) outlined; the worst case is the
image with the worst metric. Classification: thumbnails captioned with the ground truth
and the score of every label; the worst case is the image whose score moved furthest
toward the wrong answer (a positive label's score down, a negative one's up), since a
set-level metric such as AUROC has no per-image value to rank by.
"""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from robusttest import metrics as M
from robusttest.gates import CLEAN
from robusttest.results import GalleryItem, ImageRecord

if TYPE_CHECKING:
    from robusttest.engine.evaluation import Evaluator

THUMB = 176
PRED_RGB = (255, 64, 64)  # prediction outline
TRUTH_RGB = (64, 220, 64)  # ground-truth outline


def _resize(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    mode = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    if img.dtype == bool:
        im = Image.fromarray(img.astype(np.uint8) * 255)
        return np.asarray(im.resize(size, Image.Resampling.NEAREST)) > 127
    im = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(im.resize(size, mode)).astype(np.float32) / 255.0


def _size(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = shape[:2]
    s = THUMB / max(h, w)
    return max(1, round(w * s)), max(1, round(h * s))


def _png_b64(arr: np.ndarray) -> str:
    im = Image.fromarray(arr)
    if im.mode == "RGB":  # grey + two outline colours: a palette PNG is a third the size
        im = im.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, iterations=1, border_value=0)


def image_png(image: np.ndarray) -> str:
    """Base64 PNG of a grayscale image in [0, 1], downsized to the thumbnail size."""
    small = _resize(image, _size(image.shape))
    return _png_b64((small * 255 + 0.5).astype(np.uint8))


def overlay_png(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None) -> str:
    """Base64 PNG: image with the predicted mask (red) and the truth (green) outlined."""
    size = _size(image.shape)
    small = _resize(image, size)
    g = (small * 255 + 0.5).astype(np.uint8)
    rgb = np.stack([g, g, g], axis=-1)
    if truth is not None:
        rgb[_edge(_resize(truth.astype(bool), size))] = TRUTH_RGB
    rgb[_edge(_resize(pred.astype(bool), size))] = PRED_RGB
    return _png_b64(rgb)


def _worst_segmentation(
    records: Sequence[ImageRecord], cond: str, key: str, higher_is_better: bool
) -> str | None:
    """The image with the worst ``key`` under ``cond`` (repeat 0); ties: the first id."""
    vals = [
        (r.values.get(key, math.nan), r.image_id)
        for r in records
        if r.condition == cond and r.repeat == 0
    ]
    vals = [v for v in vals if not math.isnan(v[0])]
    if not vals:
        return None
    return (min(vals) if higher_is_better else max(vals))[1]


@dataclass(frozen=True)
class Shift:
    """How far one label's score moved toward the wrong answer under noise."""

    image_id: str
    label: str
    truth: int
    clean: float
    noisy: float

    @property
    def toward_wrong(self) -> float:
        return self.clean - self.noisy if self.truth else self.noisy - self.clean


def worst_shift(records: Sequence[ImageRecord], cond: str, labels: Sequence[str]) -> Shift | None:
    """The largest move toward the wrong answer of any label of any image under ``cond``
    (noise repeat 0, against the same image clean); ties: the first image, then label."""
    clean = {r.image_id: r for r in records if r.condition == CLEAN}
    best: Shift | None = None
    for r in sorted(records, key=lambda r: r.image_id):
        if r.condition != cond or r.repeat != 0 or r.image_id not in clean:
            continue
        c = clean[r.image_id]
        for label in labels:
            key = f"score/{label}"
            sc, sn = c.values.get(key, math.nan), r.values.get(key, math.nan)
            if math.isnan(sc) or math.isnan(sn):
                continue
            shift = Shift(r.image_id, label, int(c.targets.get(label, 0)), sc, sn)
            if best is None or shift.toward_wrong > best.toward_wrong:
                best = shift
    return best


def classification_caption(
    image_id: str,
    cond: str,
    labels: Sequence[str],
    scores: Sequence[float],
    truth: Mapping[str, int],
    shift: Shift | None = None,
) -> str:
    """'id · condition · truth: ...' then, per line, the moved score (worst cases) and the
    score of every label, the true ones marked ●."""
    positives = [t for t in labels if truth.get(t, 0)]
    lines = [f"{image_id} · {cond} · truth: {', '.join(positives) or 'none of the labels'}"]
    if shift is not None:
        lines.append(
            f"{shift.label} {shift.clean:.2f} → {shift.noisy:.2f} "
            f"(truth {shift.truth}; {shift.toward_wrong:+.2f} toward wrong)"
        )
    lines.append(
        ", ".join(
            f"{'●' if truth.get(t, 0) else ''}{t} {float(v):.2f}"
            for t, v in zip(labels, scores, strict=True)
        )
    )
    return "\n".join(lines)


def make_gallery(ev: Evaluator, records: Sequence[ImageRecord]) -> list[GalleryItem]:
    """Thumbnails of a few images at every condition, plus the worst case per condition.

    Runs after the main pass on a handful of images: noise is keyed per image, so the
    re-computed noisy image is identical to the one evaluated.
    """
    n_show = ev.options.gallery
    if n_show <= 0:
        return []
    seg = ev.plan.task == "segmentation"
    target = ev.plan.targets[0] if ev.plan.targets else None
    key = f"{ev.plan.metrics[0]}/{target}" if seg else None
    hib = M.get_metric(ev.plan.metrics[0]).higher_is_better if seg else True
    ids_sorted = sorted({r.image_id for r in records})
    wanted: dict[str, list[tuple[str, str]]] = defaultdict(list)  # image -> (condition, kind)
    shifts: dict[str, Shift] = {}  # classification: the worst move per condition
    for cond in ev.condition_names:
        for image_id in ids_sorted[:n_show]:
            wanted[image_id].append((cond, "sample"))
        if cond == CLEAN:
            continue
        worst: str | None = None
        if seg and key is not None:
            worst = _worst_segmentation(records, cond, key, hib)
        elif not seg:
            shift = worst_shift(records, cond, ev.plan.targets)
            if shift is not None:
                shifts[cond], worst = shift, shift.image_id
        if worst is not None:
            wanted[worst].append((cond, "worst"))
    by_id = {r.image_id: r for r in ev.dataset.records}
    value_of = {
        (r.image_id, r.condition): r.values.get(key, math.nan) if key else math.nan
        for r in records
        if r.repeat == 0
    }
    samples = {i: ev.dataset.load(by_id[i]) for i in sorted(wanted)}
    per_cond: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for image_id, entries in wanted.items():
        for cond, kind in entries:
            per_cond[cond].append((image_id, kind))
    items: list[GalleryItem] = []
    for cond in ev.condition_names:
        spec = ev.suite.noise_spec(cond)
        entries = per_cond.get(cond, [])
        # same-shaped images go through noise and the model together
        by_shape: dict[tuple[int, ...], list[tuple[str, str]]] = defaultdict(list)
        for image_id, kind in entries:
            by_shape[samples[image_id].image.shape].append((image_id, kind))
        for group in by_shape.values():
            ids = [i for i, _ in group]
            ss = [samples[i] for i in ids]
            x = ev.batch_tensor(ss)
            xin = ev.noisy(x, spec, ids, 0, [s.pixel_spacing_mm for s in ss])
            with torch.inference_mode():
                out = ev.infer(xin, ids, out_size=(x.shape[-2], x.shape[-1]))
                probs = out.float().cpu().numpy()
            imgs = xin.float().cpu().numpy()
            for j, ((image_id, kind), sample) in enumerate(zip(group, ss, strict=True)):
                v = value_of.get((image_id, cond), math.nan)
                if seg and target is not None:
                    pred = np.asarray(M.binarize(probs[j, 0], ev.suite.threshold))
                    overlay = overlay_png(imgs[j], pred, (sample.masks or {}).get(target))
                    caption = f"{image_id} · {cond} · {ev.plan.metrics[0]} {v:.3f}"
                else:
                    overlay = ""
                    caption = classification_caption(
                        image_id,
                        cond,
                        ev.plan.targets,
                        [float(p) for p in probs[j]],
                        sample.labels or {},
                        shifts.get(cond) if kind == "worst" else None,
                    )
                items.append(
                    GalleryItem(
                        suite=ev.suite.name,
                        image_id=image_id,
                        condition=cond,
                        kind=kind,  # type: ignore[arg-type]
                        value=None if math.isnan(v) else v,
                        image_png=image_png(imgs[j]),
                        overlay_png=overlay,
                        caption=caption,
                    )
                )
    items.sort(key=lambda g: (g.kind, g.image_id, ev.condition_names.index(g.condition)))
    return items
