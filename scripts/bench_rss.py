"""Peak RSS of one engine run at N images, in a fresh process per N (issue: bounded memory).

    python scripts/bench_rss.py 200 2000

Each N runs the fixture lung model on N phantom images (256²) × (clean + 10 conditions:
the default quantum and gaussian ladders), Dice only, no cache, no gallery. Prints the
peak resident set size (ru_maxrss) and the wall time of each run, and the ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from robusttest import engine
from robusttest.suite import parse_suite
n = int(sys.argv[1])
suite = parse_suite({"name": "rss", "task": "segmentation",
    "data": {"adapter": "phantom", "options": {"n": n, "size": 256}},
    "noise": {"quantum": "default", "gaussian": "default"},
    "metrics": ["dice"], "targets": ["lungs"], "repeats": 1}, "rss.yaml")
runner, s, ds = engine.prepare(sys.argv[2], suite, device="cpu")
t = time.perf_counter()
r = engine.evaluate(runner, s, ds, engine.EngineOptions(cache=False, gallery=0))
print(json.dumps({"n": n, "records": len(r.records), "seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv: list[str]) -> int:
    model = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "lungs_tinyunet.onnx"
    rows = []
    for n in argv or ["200", "2000"]:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, n, str(model)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    if len(rows) >= 2:
        print(f"peak RSS ratio {rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
