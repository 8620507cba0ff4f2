"""Golden results: the built-in suites on the fixture models give the recorded numbers.

The reference files in tests/golden/ were written by `robusttest run MODEL --suite S
--no-cache --json` before the architecture change (issue 13), which moved code and
changed no number. A change that is meant to change a number regenerates them and says
why in its commit (`python tests/unit/test_golden.py --write`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
MODELS = REPO / "fixtures" / "models"
RUNS = {
    "lungs": MODELS / "lungs_tinyunet.onnx",
    "findings": MODELS / "findings_tinycnn.onnx",
}
# Everything numeric a case reports, and its verdict.
FIELDS = (
    "metric",
    "target",
    "condition",
    "noise",
    "level",
    "clean",
    "noisy",
    "drop",
    "ci_low",
    "ci_high",
    "noisy_ci_low",
    "noisy_ci_high",
    "relative_drop",
    "p_value",
    "p_adjusted",
    "n",
    "n_patients",
    "repeats",
    "verdict",
    "failed_limits",
)


def _run(suite: str) -> dict[str, Any]:
    import robusttest

    result = robusttest.run(RUNS[suite], suite, cache=False, progress=False)
    return json.loads(result.to_json(include_run=False))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@pytest.mark.slow
@pytest.mark.parametrize("suite", sorted(RUNS))
def test_built_in_suite_numbers_unchanged(suite: str) -> None:
    ref = json.loads((GOLDEN / f"{suite}_cases.json").read_text())
    got = _run(suite)
    ref_cases = {c["case_id"]: c for c in ref["cases"]}
    got_cases = {c["case_id"]: c for c in got["cases"]}
    assert list(got_cases) == list(ref_cases)
    diffs = [
        f"{cid}.{f}: {ref_cases[cid].get(f)!r} -> {got_cases[cid].get(f)!r}"
        for cid in ref_cases
        for f in FIELDS
        if not _same(ref_cases[cid].get(f), got_cases[cid].get(f))
    ]
    assert not diffs, "\n".join(diffs[:20])
    assert len(got["records"]) == ref["n_records"]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    for name in sorted(RUNS):
        d = _run(name)
        out = {"cases": d["cases"], "summary": d["summary"], "n_records": len(d["records"])}
        path = GOLDEN / f"{name}_cases.json"
        path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")
