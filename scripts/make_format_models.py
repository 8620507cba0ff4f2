"""One lung model's weights in three formats (ONNX, TorchScript, ``.pt2``) for
``scripts/gpu_check.py``: a TinyUNet trained briefly with the lung fixture's config.

    python scripts/make_format_models.py OUT_DIR [EPOCHS] [DATA_ROOT]

DATA_ROOT holds ``montgomery/`` and ``shenzhen/`` (default: $ROBUSTTEST_DATA, else
``../shared/data``); EPOCHS defaults to 8 (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from robusttest.data import open_dataset
from robusttest.models import export_onnx, save_pt2, save_torchscript
from robusttest.zoo import train as zoo

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    default_root = os.environ.get("ROBUSTTEST_DATA") or str(REPO.parent / "shared" / "data")
    root = Path(sys.argv[3] if len(sys.argv) > 3 else default_root)
    out.mkdir(parents=True, exist_ok=True)
    cfg = zoo.TrainConfig(
        arch="tinyunet",
        task="segmentation",
        input_size=128,
        epochs=epochs,
        base=8,
        structures=("lungs",),
        extra={"suite": "lungs"},
    )
    t0 = time.perf_counter()
    x, y, _ = zoo.load_tensors(
        [open_dataset(n, root / n, split="train") for n in ("montgomery", "shenzhen")], cfg
    )
    model = zoo.train(cfg, x, y, device="cpu", progress=False)
    card = zoo.card_for(cfg, "lungs-tinyunet-formats", f"quick retrain ({epochs} epochs)")
    for path in (
        export_onnx(model, out / "lungs.onnx", card),
        # traced: a scripted file carries torch.nn.functional's source, whose newer ops an
        # older torch cannot load (seen: 2.14 -> 2.11, aten::_upsample_lanczos2d_aa)
        save_torchscript(model, out / "lungs.ts", card, method="trace"),
        save_pt2(model, out / "lungs.pt2", card),
    ):
        print(path, path.stat().st_size, "bytes")
    print(f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
