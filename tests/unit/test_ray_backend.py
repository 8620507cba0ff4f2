"""Shards as Ray tasks, on a local Ray started inside the test (``ray.init(num_cpus=2)``; no
outside service), shut down after: the same JSON as the local backend; a Ray worker process
killed mid-run is retried and the JSON does not change; the front ends reach it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip(
    "ray", reason="ray is not installed: pip install 'robusttest[ray]' (or the dev extra)"
)

from robusttest import engine  # noqa: E402
from robusttest.engine.ray_backend import TASK_NAME, RayExecutor  # noqa: E402
from robusttest.results import RunResult  # noqa: E402
from robusttest.suite import Suite, parse_suite  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "fixtures" / "models" / "lungs_tinyunet.onnx"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A Ray of two CPUs in this process's session, never an outside address."""
    if ray.is_initialized():  # pragma: no cover - another test left one connected
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 1024 * 1024,
    )
    try:
        yield
    finally:
        ray.shutdown()


def _suite(n: int = 12, size: int = 64) -> Suite:
    return parse_suite(
        {
            "name": "ray",
            "task": "segmentation",
            "data": {"adapter": "phantom", "options": {"n": n, "size": size}},
            "noise": {"gaussian": {"sigma": [0.1]}, "quantum": {"dose": [0.25]}},
            "repeats": 2,
            "metrics": ["dice"],
            "targets": ["lungs"],
            "bootstrap": {"resamples": 200},
        }
    )


def _run(suite: Suite, **kw: Any) -> RunResult:
    return engine.run(MODEL, suite, device="cpu", cache=False, progress=False, batch_size=4, **kw)


def test_ray_gives_the_json_of_the_local_backend(local_ray: None) -> None:
    suite = _suite()
    local = _run(suite)
    on_ray = _run(suite, backend="ray", shards=5)
    assert on_ray.run["shards"]["backend"] == "ray"
    assert on_ray.run["shards"]["done"] == 5
    # the tasks ran in Ray's worker processes, not here
    assert all(not w.endswith(f":{os.getpid()}") for w in on_ray.run["shards"]["where"])
    assert on_ray.to_json(include_run=False) == local.to_json(include_run=False)
    assert ray.is_initialized()  # a Ray the caller started is left running


def _kill_first_task(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker process seen running a shard (``ray::robusttest_shard``
    in its process title) once it has run for a moment: a worker dying mid-run."""
    title = f"ray::{TASK_NAME}".encode()
    while not stop.is_set() and not killed:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(title):
                time.sleep(0.3)
                try:
                    if (entry / "cmdline").read_bytes().startswith(title):
                        os.kill(int(entry.name), signal.SIGKILL)
                        killed.append(int(entry.name))
                except OSError:
                    continue
                break
        time.sleep(0.01)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's workers through /proc")
def test_ray_worker_killed_mid_run_is_retried_and_the_json_does_not_change(
    local_ray: None,
) -> None:
    suite = _suite(n=24, size=128)
    local = _run(suite)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_task, args=(killed, stop), daemon=True)
    killer.start()
    try:
        on_ray = _run(suite, backend="ray", shards=4)
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was running a shard to kill"
    assert on_ray.completed and on_ray.run["shards"]["done"] == 4
    assert all(not w.endswith(f":{p}") for w in on_ray.run["shards"]["where"] for p in killed)
    assert on_ray.to_json(include_run=False) == local.to_json(include_run=False)


def test_ray_executor_asks_a_gpu_per_task_on_cuda() -> None:
    from robusttest.engine.ray_backend import task_options

    gpu = task_options("cuda", lanes=1)
    assert gpu["num_gpus"] == 1 and gpu["num_cpus"] == 1
    cpu = task_options("cpu", lanes=2)
    assert cpu["num_gpus"] == 0 and cpu["num_cpus"] == 2
    assert gpu["max_retries"] == cpu["max_retries"] == 3 and not cpu["retry_exceptions"]
    assert RayExecutor().name == "ray"


SUITE_YAML = """\
name: ray-cli
task: segmentation
data: {adapter: phantom, options: {n: 8, size: 64}}
noise:
  gaussian: {sigma: [0.1]}
repeats: 1
metrics: [dice]
targets: [lungs]
bootstrap: {resamples: 100}
gates:
  metrics:
    dice: {min: 0.0}
"""


def _without_run(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    return {k: v for k, v in doc.items() if k not in ("run", "digest")}


def test_robusttest_run_backend_ray(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robusttest.cli import main

    (tmp_path / "s.yaml").write_text(SUITE_YAML)
    monkeypatch.chdir(tmp_path)
    base = ["run", str(MODEL), "--suite", "s.yaml", "--no-cache", "--device", "cpu"]
    assert main([*base, "--json", "local.json"]) == 0
    assert main([*base, "--json", "ray.json", "--backend", "ray", "--shards", "3"]) == 0
    assert json.loads((tmp_path / "ray.json").read_text())["run"]["shards"]["backend"] == "ray"
    assert _without_run(tmp_path / "ray.json") == _without_run(tmp_path / "local.json")


def test_pytest_robust_backend_ray(local_ray: None, pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = -p no:hypothesispytest -p no:benchmark\n")
    pytester.makefile(".yaml", s=SUITE_YAML)
    args = [f"--model={MODEL}", "--suite=s.yaml", "--robust-no-cache", "--device=cpu"]
    local = pytester.runpytest_inprocess(*args, "--robust-json=local.json")
    local.assert_outcomes(passed=2)
    on_ray = pytester.runpytest_inprocess(
        *args, "--robust-json=ray.json", "--robust-backend=ray", "--robust-shards=2"
    )
    on_ray.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "ray.json").read_text())
    assert (doc["run"]["shards"]["backend"], doc["run"]["shards"]["done"]) == ("ray", 2)
    assert _without_run(pytester.path / "ray.json") == _without_run(pytester.path / "local.json")
