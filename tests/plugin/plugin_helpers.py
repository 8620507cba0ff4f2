"""Helpers for the plugin tests: a small suite, test models' paths, reading outputs.

Runs are kept small (4 phantom images of 64², 1 repeat, 100 bootstrap resamples) so the
whole folder runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

# A conftest for inner runs: one log line per evaluation, naming the process that did it.
COUNTER_CONFTEST = """
import os

def pytest_robusttest_evaluated(config, model, suite, result):
    with open(os.path.join(str(config.rootpath), "evaluations.log"), "a") as fh:
        fh.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {model.name} {suite}\\n")
"""


def suite_yaml(
    *,
    name: str = "tiny",
    gate: str = "{min: 0.0}",
    noise: str = "quantum: {dose: [0.1]}\n  gaussian: {sigma: [0.08]}",
) -> str:
    """A segmentation suite on 4 phantom images of 64² with one level per noise."""
    return f"""\
name: {name}
task: segmentation
data: {{adapter: phantom, options: {{n: 4, size: 64, seed: 0}}}}
noise:
  {noise}
repeats: 1
metrics: [dice]
targets: [lungs]
bootstrap: {{resamples: 100}}
gates:
  metrics:
    dice: {gate}
"""


# Inner runs without plugins that are slow to start and unrelated (hypothesis imports
# its whole package at every in-process run's terminal summary).
INI = "[pytest]\naddopts = -p no:hypothesispytest -p no:benchmark -p no:anyio\n"


@dataclass(frozen=True)
class Models:
    seg: Path  # segmentation, structures (lungs,)
    seg2: Path  # the same network under another name (several-model runs)
    cls: Path  # classification, labels = the phantom's findings
    nan: Path  # loads, but outputs NaN: evaluation fails (a ModelError)


def small(model: Path, *extra: str) -> list[str]:
    """Arguments of a small run of one model on tiny.yaml."""
    return [
        f"--model={model}",
        "--suite=tiny.yaml",
        "--robust-limit=4",
        "--robust-repeats=1",
        *extra,
    ]


def evaluations(pytester: pytest.Pytester) -> list[str]:
    log = pytester.path / "evaluations.log"
    return log.read_text().splitlines() if log.exists() else []


def junit_cases(path: Path) -> dict[str, dict[str, str]]:
    """testcase name -> its <property> name/value pairs."""
    out: dict[str, dict[str, str]] = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}
        out[tc.get("name", "")] = props
    return out


def lit(text: str) -> str:
    """``text`` as a literal in an fnmatch pattern (case ids hold brackets)."""
    return text.replace("[", "[[]")
