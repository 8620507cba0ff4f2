"""pytest-xdist: the workers run the evaluation's shards, the controller merges them once
(statistics, gallery, provenance, the hook); the items judge from the merged result; the
numbers are those of ``-n 0``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from plugin_helpers import COUNTER_CONFTEST, Models, evaluations, junit_cases, small

pytest.importorskip("xdist")


def test_n2_matches_n0_and_merges_once_on_the_controller(
    project: pytest.Pytester, models: Models
) -> None:
    project.makeconftest(COUNTER_CONFTEST)
    # a user's test that reads the result through the fixture, on a worker
    project.makepyfile(
        test_mine="""
        def test_mine(robust_eval):
            assert robust_eval().case("lungs-dice[clean]").n == 4
        """
    )
    base = [*small(models.seg), "--robust-no-cache"]
    serial = project.runpytest_subprocess(
        *base, "-n", "0", "--robust-json=n0.json", "--junitxml=n0.xml"
    )
    serial.assert_outcomes(passed=4)
    assert evaluations(project) == ["main seg.onnx tiny"]
    (project.path / "evaluations.log").unlink()

    parallel = project.runpytest_subprocess(
        *base, "-n", "2", "--robust-json=n2.json", "--junitxml=n2.xml", "--robust-shards=3"
    )
    parallel.assert_outcomes(passed=4)
    # one merge, by the controller (a worker's log line would name gw0 or gw1)
    assert evaluations(project) == ["main seg.onnx tiny"]
    parallel.stdout.fnmatch_lines(
        ["seg.onnx × tiny: sha256 *; PASSED: 3 cases: 3 passed, 0 failed*"]
    )

    n0, n2 = (json.loads((project.path / f).read_text()) for f in ("n0.json", "n2.json"))
    # the shards ran on the workers, none on the controller
    shards = n2["run"]["shards"]
    assert (shards["backend"], shards["count"], shards["done"]) == ("xdist", 3, 3)
    assert n0["run"]["shards"]["backend"] == "local"
    assert n0["cases"] == n2["cases"] and n0["records"] == n2["records"]
    assert n0["provenance"] == n2["provenance"]
    j0, j2 = junit_cases(project.path / "n0.xml"), junit_cases(project.path / "n2.xml")
    assert sorted(j0) == sorted(j2) and all(j0[k] == j2[k] for k in j0)
    assert len(j0) == 4 and all(j0[c["case_id"]]["clean"] == repr(c["clean"]) for c in n0["cases"])


def test_n2_deselected_evaluates_nothing_and_cleans_up(
    project: pytest.Pytester, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeconftest(COUNTER_CONFTEST)
    project.makepyfile("def test_plain(): pass")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the exchange folder goes
    result = project.runpytest_subprocess(*small(models.seg), "-n", "2", "-m", "not robusttest")
    result.assert_outcomes(passed=1)  # (xdist's controller does not count deselections)
    result.stdout.fnmatch_lines(["seg.onnx × tiny: not evaluated (no item of it was selected)"])
    assert evaluations(project) == []
    assert list(tmp_path.glob("robusttest-xdist-*")) == []


# Two GPUs, as torch would report them (no CUDA here): each worker notes the device and
# threads it loads its model with, then loads it on the CPU; each shard takes a moment,
# so both workers claim some.
CUDA_CONFTEST = """
import os, time

import torch

torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 2
torch.cuda.current_device = lambda: 0

def pytest_configure(config):
    import pytest_robusttest.session as S
    import pytest_robusttest.xdist_shards as X

    load = S.RobustSession._load

    def _load(self, model, ref, *, device=None, threads=None):
        with open(os.path.join(str(config.rootpath), "devices.log"), "a") as fh:
            who = os.environ.get("PYTEST_XDIST_WORKER", "main")
            fh.write(f"{who} {device} {threads}\\n")
        return load(self, model, ref, device="cpu", threads=threads)

    S.RobustSession._load = _load
    run_shard = X.run_shard

    def slow(ev, shard, progress=None):
        time.sleep(1.0)
        return run_shard(ev, shard, progress)

    X.run_shard = slow
"""


def test_with_device_cuda_worker_i_uses_cuda_i_mod_the_gpus(
    project: pytest.Pytester, models: Models
) -> None:
    project.makeconftest(CUDA_CONFTEST)
    result = project.runpytest_subprocess(
        *small(models.seg, "--robust-no-cache", "--robust-batch-size=1", "--robust-shards=4"),
        "--device=cuda",
        "-n",
        "2",
        "--robust-json=r.json",
    )
    result.assert_outcomes(passed=3)
    lines = (project.path / "devices.log").read_text().splitlines()
    workers = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("gw")}
    assert "main None None" in lines  # the controller: --device as given
    assert workers  # every worker that ran a shard loaded its model once, on its GPU
    for wid, (device, threads) in workers.items():
        assert device == f"cuda:{int(wid[2:]) % 2}"
        assert 1 <= int(threads) <= max(1, (os.cpu_count() or 2) // 2)  # its share of cores
    assert sum(1 for line in lines if line.startswith("gw")) == len(workers)
    doc = json.loads((project.path / "r.json").read_text())
    assert doc["run"]["shards"]["done"] == 4
