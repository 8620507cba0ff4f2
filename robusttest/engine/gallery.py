"""The report gallery: a few images at every condition and the worst cases, as thumbnails
of the image with the prediction (and truth) outlined."""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from collections.abc import Sequence
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
    for cond in ev.condition_names:
        for image_id in ids_sorted[:n_show]:
            wanted[image_id].append((cond, "sample"))
        if seg and key is not None and cond != CLEAN:
            vals = [
                (r.values.get(key, math.nan), r.image_id)
                for r in records
                if r.condition == cond and r.repeat == 0
            ]
            vals = [v for v in vals if not math.isnan(v[0])]
            if vals:
                worst = min(vals) if hib else max(vals)
                wanted[worst[1]].append((cond, "worst"))
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
                    scores = ", ".join(
                        f"{t} {float(probs[j, k]):.2f}" for k, t in enumerate(ev.plan.targets[:4])
                    )
                    caption = f"{image_id} · {cond} · {scores}"
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
