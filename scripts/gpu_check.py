"""One prepared check of the CUDA paths, for a session that is lent a GPU.

    PYTHONPATH=.:plugins python scripts/gpu_check.py [OUT_DIR]

Records, as JSON in OUT_DIR (default: $OUT, else ./gpu-check):
* the device, torch / onnxruntime versions and onnxruntime's providers;
* noise throughput on the GPU (16 images of 1024², every default level) against the CPU;
* the fixture lung model on 64 phantom images × the default lungs suite on ``cuda`` and on
  ``cpu``: seconds, and the largest Dice difference per condition (noise streams differ by
  device type, so the numbers agree statistically, not bit for bit);
* whether the same seed gives the same bytes twice on the GPU.

Exits 0 with ``{"cuda": false}`` written when torch sees no GPU (CI, this machine).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "fixtures" / "models" / "lungs_tinyunet.onnx"


def _timed(fn: object, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "gpu-check"))
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"cuda": torch.cuda.is_available(), "torch": torch.__version__}
    if not torch.cuda.is_available():
        (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2))
        print("no CUDA device: nothing to check")
        return 0

    import onnxruntime as ort

    from robusttest import engine
    from robusttest.noise import ladder

    report.update(
        device=torch.cuda.get_device_name(0),
        onnxruntime=ort.__version__,
        providers=ort.get_available_providers(),
    )

    # noise throughput: GPU vs CPU, same images
    x_cpu = torch.rand(16, 1024, 1024) * 0.6 + 0.2
    ids = [f"im{i}" for i in range(16)]
    noise: dict[str, dict[str, float]] = {}
    for family in ("quantum", "gaussian", "poisson", "electronic"):
        for spec in ladder(family):
            row: dict[str, float] = {}
            for dev in ("cuda", "cpu"):
                x = x_cpu.to(dev)
                row[dev] = _timed(
                    lambda x=x, spec=spec: spec.apply(
                        x, seed=0, image_ids=ids, pixel_spacing_mm=0.143
                    )
                )
            row["speedup"] = row["cpu"] / row["cuda"]
            noise[spec.slug] = row
    report["noise_seconds_16x1024sq"] = noise

    # the engine on both devices
    runs = {}
    for dev in ("cuda", "cpu"):
        t0 = time.perf_counter()
        r = engine.run(MODEL, "lungs", device=dev, limit=64, cache=False, gallery=0)
        runs[dev] = (r, time.perf_counter() - t0)
    again = engine.run(MODEL, "lungs", device="cuda", limit=64, cache=False, gallery=0)
    gpu, cpu = runs["cuda"][0], runs["cpu"][0]
    report["engine"] = {
        "seconds": {dev: round(s, 3) for dev, (_, s) in runs.items()},
        "backend": {dev: r.provenance["model"]["backend"] for dev, (r, _) in runs.items()},
        "lanes": {dev: r.run["lanes"] for dev, (r, _) in runs.items()},
        "same_bytes_twice_on_gpu": gpu.to_json(include_run=False)
        == again.to_json(include_run=False),
        "max_abs_case_difference": {
            c.case_id: float(np.abs(c.noisy - cpu.case(c.case_id).noisy))
            for c in gpu.cases
            if c.noisy is not None and cpu.case(c.case_id).noisy is not None
        },
    }
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
