"""One prepared check of the CUDA paths, for a session that is lent a GPU.

    PYTHONPATH=.:plugins python scripts/gpu_check.py [OUT_DIR] [MODELS_DIR]

Records, as JSON in OUT_DIR (default: $OUT, else ./gpu-check), written after each part so
a part that fails or runs out of time keeps what came before:
* the device, torch / onnxruntime versions and onnxruntime's providers;
* noise throughput on the GPU (16 images of 1024², every default level) against the CPU;
* the fixture lung model (ONNX) on 64 images × the default lungs suite with ``cuda`` and
  ``cpu``: seconds, backend, and the largest difference per case. Noise streams differ by
  device type, so noisy numbers agree statistically, not bit for bit;
* with MODELS_DIR holding ``lungs.onnx``, ``lungs.ts`` and ``lungs.pt2`` (one model's
  weights in three formats, see ``scripts/make_format_models.py``): each format on
  ``cuda`` and ``cpu``; the clean per-image Dice of every run against ONNX on the CPU
  (same weights and inputs, so equal to float tolerance), and the suite on 256 phantom
  images (256²) with TorchScript on each device for throughput;
* whether the same seed gives the same bytes twice on the GPU (ONNX and TorchScript).

Exits 0 with ``{"cuda": false}`` written when torch sees no GPU (CI, this machine).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "fixtures" / "models" / "lungs_tinyunet.onnx"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _clean_dice(result: Any) -> dict[str, float]:
    return {
        r.image_id: float(r.values["dice/lungs"]) for r in result.records if r.condition == "clean"
    }


def _max_clean_difference(a: Any, b: Any) -> float:
    da, db = _clean_dice(a), _clean_dice(b)
    if da.keys() != db.keys():
        raise AssertionError("the two runs scored different images")
    return max(abs(da[k] - db[k]) for k in da)


def _case_differences(a: Any, b: Any) -> dict[str, float]:
    return {
        c.case_id: abs(float(c.noisy) - float(b.case(c.case_id).noisy))
        for c in a.cases
        if np.isfinite(c.noisy) and np.isfinite(b.case(c.case_id).noisy)
    }


def main() -> int:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "gpu-check"))
    models_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"cuda": torch.cuda.is_available(), "torch": torch.__version__}
    target = out_dir / "gpu_check.json"

    def save() -> None:
        target.write_text(json.dumps(report, indent=2, default=str))

    if not torch.cuda.is_available():
        save()
        print("no CUDA device: nothing to check")
        return 0

    import onnxruntime as ort

    from robusttest import engine
    from robusttest.noise import ladder

    report.update(
        device=torch.cuda.get_device_name(0),
        onnxruntime=ort.__version__,
        providers=ort.get_available_providers(),
        cpu_threads=torch.get_num_threads(),
    )
    save()

    def part(name: str, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                report[name] = fn()
            if caught:
                report[f"{name}_warnings"] = sorted({str(w.message) for w in caught})
        except Exception:
            report[f"{name}_error"] = traceback.format_exc()
        report[f"{name}_part_seconds"] = round(time.perf_counter() - t0, 2)
        save()
        print(f"[{name}] {report[f'{name}_part_seconds']} s", flush=True)

    def noise_throughput() -> dict[str, dict[str, float]]:
        x_cpu = torch.rand(16, 1024, 1024) * 0.6 + 0.2
        ids = [f"im{i}" for i in range(16)]
        rows: dict[str, dict[str, float]] = {}
        for family in ("quantum", "gaussian", "poisson", "electronic"):
            for spec in ladder(family):
                row: dict[str, float] = {}
                outs = {}
                for dev in ("cuda", "cpu"):
                    x = x_cpu.to(dev)
                    row[dev] = _timed(
                        lambda x=x, spec=spec: spec.apply(
                            x, seed=0, image_ids=ids, pixel_spacing_mm=0.143
                        )
                    )
                    outs[dev] = spec.apply(x, seed=0, image_ids=ids, pixel_spacing_mm=0.143)
                row["speedup"] = row["cpu"] / row["cuda"]
                # same distribution on both devices: the noise's mean and spread agree
                d = {k: (v.float().cpu() - x_cpu) for k, v in outs.items()}
                row["noise_std"] = {k: float(v.std()) for k, v in d.items()}  # type: ignore[assignment]
                row["noise_mean"] = {k: float(v.mean()) for k, v in d.items()}  # type: ignore[assignment]
                rows[spec.slug] = row
        return rows

    def run(model: Path, dev: str, **kw: Any) -> tuple[Any, float]:
        kw.setdefault("limit", 64)
        t0 = time.perf_counter()
        r = engine.run(
            model,
            kw.pop("suite", "lungs"),
            device=dev,
            cache=False,
            gallery=0,
            progress=False,
            **kw,
        )
        return r, time.perf_counter() - t0

    def engine_onnx() -> dict[str, Any]:
        runs = {dev: run(MODEL, dev) for dev in ("cuda", "cpu")}
        again, _ = run(MODEL, "cuda")
        gpu, cpu = runs["cuda"][0], runs["cpu"][0]
        return {
            "seconds": {dev: round(s, 3) for dev, (_, s) in runs.items()},
            "backend": {dev: r.provenance["model"]["backend"] for dev, (r, _) in runs.items()},
            "lanes": {dev: r.run["lanes"] for dev, (r, _) in runs.items()},
            "run_device": {dev: r.run["device"] for dev, (r, _) in runs.items()},
            "same_bytes_twice_on_gpu": gpu.to_json(include_run=False)
            == again.to_json(include_run=False),
            "max_clean_dice_difference": _max_clean_difference(gpu, cpu),
            "max_abs_case_difference": _case_differences(gpu, cpu),
            "verdicts": {dev: r.counts() for dev, (r, _) in runs.items()},
        }

    def formats() -> dict[str, Any]:
        assert models_dir is not None
        ref, ref_s = run(models_dir / "lungs.onnx", "cpu")
        res: dict[str, Any] = {}
        for name in ("lungs.onnx", "lungs.ts", "lungs.pt2"):
            for dev in ("cuda", "cpu"):
                is_ref = (name, dev) == ("lungs.onnx", "cpu")
                r, s = (ref, ref_s) if is_ref else run(models_dir / name, dev)
                res[f"{name}@{dev}"] = {
                    "seconds": round(s, 3),
                    "backend": r.provenance["model"]["backend"],
                    "max_clean_dice_difference_vs_onnx_cpu": _max_clean_difference(r, ref),
                    "max_case_difference_vs_onnx_cpu": max(
                        _case_differences(r, ref).values(), default=float("nan")
                    ),
                    "clean_dice": float(r.cases[0].clean),
                }
        again1, _ = run(models_dir / "lungs.ts", "cuda")
        again2, _ = run(models_dir / "lungs.ts", "cuda")
        res["torchscript_same_bytes_twice_on_gpu"] = again1.to_json(
            include_run=False
        ) == again2.to_json(include_run=False)
        return res

    def throughput() -> dict[str, Any]:
        from robusttest.suite import parse_suite

        assert models_dir is not None
        # the engine benchmark's suite (tests/benchmarks/test_bench_engine.py), 256 images
        suite = parse_suite(
            {
                "name": "throughput",
                "task": "segmentation",
                "data": {"adapter": "phantom", "options": {"n": 256, "size": 256}},
                "noise": {"quantum": "default", "gaussian": "default"},
                "repeats": 1,
                "metrics": ["dice"],
                "targets": ["lungs"],
                "bootstrap": {"resamples": 1000},
                "gates": {"default": {"max_drop": 0.1}},
            }
        )
        res: dict[str, Any] = {}
        for dev, bs in (("cuda", 16), ("cuda", 64), ("cpu", 16)):
            run(models_dir / "lungs.ts", dev, suite=suite, limit=None, batch_size=bs)  # warm
            r, s = run(models_dir / "lungs.ts", dev, suite=suite, limit=None, batch_size=bs)
            res[f"{dev}_batch{bs}"] = {
                "seconds": round(s, 3),
                "images_x_conditions_per_s": round(len(r.records) / s, 1),
                "lanes": r.run["lanes"],
            }
        return res

    part("noise_seconds_16x1024sq", noise_throughput)
    part("engine_fixture_onnx", engine_onnx)
    if models_dir is not None and (models_dir / "lungs.ts").is_file():
        part("model_formats", formats)
        part("throughput_phantom256_torchscript", throughput)
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
