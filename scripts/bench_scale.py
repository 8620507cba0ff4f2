"""Scale-out cost model (docs/scale.md): per-shard throughput, merge overhead, statistics
and the driver's peak memory at N streamed phantom images × 11 conditions.

    PYTHONPATH=.:plugins python scripts/bench_scale.py 2000 [--workers 2] [--out FILE]

The grid is the engine benchmark's (tests/benchmarks/test_bench_engine.py): phantom images
of 256², generated in the worker that evaluates them (streamed: nothing is held but a
batch), clean + the default quantum and gaussian ladders (11 conditions), Dice per image,
1000 bootstrap resamples per case, the fixture lung model (ONNX) on the CPU.

The run is the pytest-xdist mechanism without pytest (plugins/pytest_robusttest/
xdist_shards.py): this process is the driver (it plans the shards, waits for their
outcome files, merges them, computes the statistics and the gallery); ``--workers``
child processes claim and run the shards, one lane each. Printed and written as JSON:

* a phase profile on 64 images in one thread: ms per image for decoding (rendering the
  phantom), and per image × condition for noise, preprocessing + inference +
  postprocessing, and scoring;
* per shard: images, seconds, images × conditions per second;
* the driver: reading and parsing the outcome files, merging (concatenate and sort),
  statistics (bootstrap, paired tests, Holm), gallery, total; its peak RSS (ru_maxrss),
  and the workers' largest peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "fixtures" / "models" / "lungs_tinyunet.onnx"


def suite_doc(n: int) -> dict[str, Any]:
    return {
        "name": "scale",
        "task": "segmentation",
        "data": {"adapter": "phantom", "options": {"n": n, "size": 256}},
        "noise": {"quantum": "default", "gaussian": "default"},
        "repeats": 1,
        "metrics": ["dice"],
        "targets": ["lungs"],
        "bootstrap": {"resamples": 1000},
        "gates": {"default": {"max_drop": 0.1}},
    }


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's at fork)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(folder: Path, n: int, wid: str) -> int:
    """A shard worker: claims and runs shards until the driver says stop."""
    from pytest_robusttest.xdist_shards import Exchange, ShardWorker

    from robusttest import engine
    from robusttest.suite import parse_suite

    runner, suite, dataset = engine.prepare(
        MODEL, parse_suite(suite_doc(n)), device="cpu", threads=1
    )
    opts = engine.EngineOptions(cache=False, gallery=0, lanes=1, progress=False)
    ex = Exchange(folder, "t0")
    w = ShardWorker(ex, wid, lambda cases: engine.Evaluator(runner, dataset, suite, opts, cases))
    while not ex.stopped():
        if not w.step():
            time.sleep(0.05)
    print(json.dumps({"worker": wid, "peak_rss_mb": _peak_mb()}), flush=True)
    return 0


def profile(n_images: int = 64) -> dict[str, float]:
    """ms per image (decode) and per image × condition (noise, inference, score), one thread."""
    import torch

    from robusttest import engine
    from robusttest.suite import parse_suite

    torch.set_num_threads(1)
    runner, suite, dataset = engine.prepare(
        MODEL, parse_suite(suite_doc(n_images)), device="cpu", threads=1
    )
    ev = engine.Evaluator(runner, dataset, suite, engine.EngineOptions(cache=False))
    t: dict[str, float] = dict.fromkeys(("decode", "noise", "inference", "score"), 0.0)
    for start in range(0, n_images, 16):
        t0 = time.perf_counter()
        batch = [dataset.load(r) for r in dataset.records[start : start + 16]]
        t["decode"] += time.perf_counter() - t0
        x = ev.batch_tensor(batch)
        truth = ev.truth(batch)
        ids = [s.image_id for s in batch]
        spacing = [s.pixel_spacing_mm for s in batch]
        for _, spec, repeat in ev.conditions:
            t0 = time.perf_counter()
            xin = ev.noisy(x, spec, ids, repeat, spacing)
            t1 = time.perf_counter()
            with torch.inference_mode():
                probs = ev.infer(xin, ids, out_size=(x.shape[-2], x.shape[-1]))
            t2 = time.perf_counter()
            ev.score(probs, batch, truth)
            t3 = time.perf_counter()
            t["noise"] += t1 - t0
            t["inference"] += t2 - t1
            t["score"] += t3 - t2
    n_cond = len(ev.conditions)
    return {
        "decode_ms_per_image": 1000 * t["decode"] / n_images,
        "noise_ms_per_item": 1000 * t["noise"] / (n_images * n_cond),
        "inference_ms_per_item": 1000 * t["inference"] / (n_images * n_cond),
        "score_ms_per_item": 1000 * t["score"] / (n_images * n_cond),
    }


def driver(n: int, workers: int, shards: int | None) -> dict[str, Any]:
    import threading as _threading

    from pytest_robusttest.xdist_shards import Exchange, XdistExecutor

    from robusttest import engine
    from robusttest.engine import pipeline
    from robusttest.engine.shards import plan_shards
    from robusttest.suite import parse_suite

    timers: dict[str, float] = {"read_outcomes": 0.0, "statistics": 0.0, "gallery": 0.0}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[name] += time.perf_counter() - t0

        return wrapper

    def timed_iter(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            it = iter(fn(*a, **k))
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    timers[name] += time.perf_counter() - t0
                    return
                timers[name] += time.perf_counter() - t0
                yield item

        return wrapper

    pipeline.iter_cases = timed_iter("statistics", pipeline.iter_cases)  # type: ignore[assignment]
    pipeline.adjust_p_values = timed("statistics", pipeline.adjust_p_values)  # type: ignore[assignment]
    pipeline.make_gallery = timed("gallery", pipeline.make_gallery)  # type: ignore[assignment]
    Exchange.read_outcome = timed("read_outcomes", Exchange.read_outcome)  # type: ignore[method-assign]

    folder = Path(tempfile.mkdtemp(prefix="robusttest-scale-"))
    runner, suite, dataset = engine.prepare(MODEL, parse_suite(suite_doc(n)), device="cpu")
    rss_loaded = _peak_mb()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(n), "--worker", str(folder), "--id", f"w{i}"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(workers)
    ]
    opts = engine.EngineOptions(cache=False, gallery=2, progress=False, shards=shards)
    ex = XdistExecutor(Exchange(folder, "t0"), workers, _threading.Event())
    t0 = time.perf_counter()
    result = engine.evaluate(runner, suite, dataset, opts, executor=ex)
    total = time.perf_counter() - t0
    worker_rss = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        worker_rss.append(json.loads(out.strip().splitlines()[-1])["peak_rss_mb"])
    sh = result.run["shards"]
    n_cond = 11
    per_shard = []
    plan = plan_shards(n, [(c, 0) for c in suite.conditions], sh["count"], align=opts.batch_size)
    for s, secs in zip(plan, sh["seconds"], strict=True):
        per_shard.append(
            {
                "images": s.n_images,
                "seconds": secs,
                "items_per_s": round(s.n_images * n_cond / secs, 1) if secs else None,
            }
        )
    return {
        "n_images": n,
        "records": len(result.records),
        "workers": workers,
        "shards": sh["count"],
        "seconds_total": round(total, 2),
        "seconds_evaluation": result.run["seconds_evaluation"],
        "seconds_read_outcomes": round(timers["read_outcomes"], 3),
        "seconds_merge": sh["seconds_merge"],
        "seconds_statistics": round(timers["statistics"], 2),
        "seconds_gallery": round(timers["gallery"], 2),
        "per_shard": per_shard,
        "items_per_s_overall": round(len(result.records) / result.run["seconds_evaluation"], 1),
        "driver_peak_rss_mb_after_loading": round(rss_loaded, 1),
        "driver_peak_rss_mb": round(_peak_mb(), 1),
        "worker_peak_rss_mb": round(max(worker_rss), 1),
        "verdicts": result.counts(),
        "load_1min": os.getloadavg()[0],
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="phantom images")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shards", type=int, default=None, help="default: the xdist default")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--profile-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--id", default="w0", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.n, args.id)
    if args.profile_only:
        print(json.dumps(profile()), flush=True)
        return 0
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if not args.no_profile:  # in a process of its own: the driver's memory stays its own
        out = subprocess.run(
            [sys.executable, __file__, "0", "--profile-only"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        report["profile_one_thread"] = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(report["profile_one_thread"]), flush=True)
    stop = threading.Event()
    loads: list[float] = []

    def sample() -> None:
        while not stop.wait(30):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    report["run"] = driver(args.n, args.workers, args.shards)
    stop.set()
    report["load_1min_samples"] = {
        "min": min(loads, default=None),
        "median": sorted(loads)[len(loads) // 2] if loads else None,
        "max": max(loads, default=None),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
