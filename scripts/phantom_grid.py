"""Render phantom cases next to real chest X-rays: docs/img/phantom_vs_real.png.

Usage: python scripts/phantom_grid.py [--data ../shared/data] [--out docs/img/phantom_vs_real.png]

Top rows: phantoms (normal and with each finding; lung and heart outlines on some).
Bottom row: real radiographs from the public corpus (read in place, never copied).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from robusttest.phantom import FINDINGS, cardiothoracic_ratio, generate_case

REPO = Path(__file__).resolve().parents[1]

# (title, findings forced on, draw outlines)
PANELS: list[tuple[str, tuple[str, ...], bool]] = [
    ("normal", (), True),
    ("normal", (), False),
    ("effusion", ("effusion",), True),
    ("pneumothorax", ("pneumothorax",), False),
    ("nodule", ("nodule",), False),
    ("cardiomegaly", ("cardiomegaly",), True),
    ("consolidation", ("consolidation",), False),
    ("normal", (), False),
    ("effusion + nodule", ("effusion", "nodule"), False),
    ("normal", (), False),
    ("pneumothorax", ("pneumothorax",), True),
    ("normal", (), False),
]

REAL = [
    "montgomery/CXR_png/MCUCXR_0001_0.png",
    "montgomery/CXR_png/MCUCXR_0003_0.png",
    "shenzhen/CXR_png/CHNCXR_0001_0.png",
    "nih-cxr14/images/00000211_000.png",
    "nih-cxr14/images/00000282_000.png",
    "nih-cxr14/images/00000129_000.png",
]


def _real_images(data: Path, size: int) -> list[tuple[str, np.ndarray]]:
    out = []
    for rel in REAL:
        path = data / rel
        if not path.is_file():
            continue
        img = Image.open(path).convert("L").resize((size, size), Image.Resampling.BILINEAR)
        out.append((f"real: {rel.split('/')[0]}", np.asarray(img, np.float32) / 255.0))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "phantom_vs_real.png")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)

    real = _real_images(args.data, args.size)
    cols = 6
    rows = len(PANELS) // cols + (1 if real else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.35 * rows), dpi=100)
    for k, (title, forced, outline) in enumerate(PANELS):
        case = generate_case(args.seed, k, size=args.size, finding_prob=1.0, findings=forced)
        ax = axes.flat[k]
        ax.imshow(case.image, cmap="gray", vmin=0, vmax=1)
        if outline:
            ax.contour(case.masks["lungs"], levels=[0.5], colors="c", linewidths=0.6)
            ax.contour(case.masks["heart"], levels=[0.5], colors="m", linewidths=0.6)
        on = [f for f in FINDINGS if case.labels[f]]
        ctr = cardiothoracic_ratio(case.masks)
        ax.set_title(f"{', '.join(on) or title}  CTR {ctr:.2f}", fontsize=7)
    for k, (title, img) in enumerate(real[:cols]):
        ax = axes.flat[len(PANELS) + k]
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)  # keeps the PNG well under 600 KB
    plt.close(fig)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
