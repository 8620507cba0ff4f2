"""docs/ci: the GitHub Actions workflow and the GitLab job run, as written, in an empty project.

Each file's shell commands are taken from the YAML (``run:`` steps, ``script:`` lines),
the install line is dropped (the package under test is already installed) and the rest
runs in a temporary folder holding only the model the files name. Then every path the
files hand to the CI (the cache folder, the JUnit test report, the kept artifacts) must
exist, so the examples cannot rot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from robusttest.resources import fixture_models

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "docs" / "ci"
INSTALL = re.compile(r"^(python3? -m )?pip install\b.*\brobusttest\b")
# A smoke run: the ini keys a project would not set, so the commands stay as written.
SMOKE_INI = "[pytest]\nrobusttest_limit = 4\nrobusttest_repeats = 1\n"


def _github() -> dict[str, Any]:
    doc = yaml.safe_load((CI / "github-actions.yml").read_text(encoding="utf-8"))
    (job,) = doc["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    return {
        "commands": [s["run"] for s in steps if "run" in s],
        "cache_paths": [
            uses[a]["with"]["path"] for a in ("actions/cache/restore", "actions/cache/save")
        ],
        "report": uses["mikepenz/action-junit-report"]["with"]["report_paths"],
        "artifacts": uses["actions/upload-artifact"]["with"]["path"].split(),
        "always": [s for s in steps if s.get("name", "").startswith(("Save", "Publish", "Keep"))],
    }


def _gitlab() -> dict[str, Any]:
    doc = yaml.safe_load((CI / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    (job,) = doc.values()
    return {
        "commands": job["script"],
        "cache_paths": [p.rstrip("/") for p in job["cache"]["paths"]],
        "report": job["artifacts"]["reports"]["junit"],
        "artifacts": job["artifacts"]["paths"],
        "always": [job["cache"], job["artifacts"]],
    }


CI_FILES = {"github": _github, "gitlab": _gitlab}


def _run_commands(commands: list[str], cwd: Path) -> list[int]:
    env = dict(os.environ)
    # `pytest` and `robusttest` resolve to the environment running these tests
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    codes = []
    for cmd in commands:
        proc = subprocess.run(
            ["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode in (0, 1), f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        codes.append(proc.returncode)
    return codes


@pytest.mark.slow
@pytest.mark.parametrize("which", sorted(CI_FILES))
def test_ci_file_runs_as_written(which: str, tmp_path: Path) -> None:
    spec = CI_FILES[which]()
    commands: list[str] = spec["commands"]
    installs = [c for c in commands if INSTALL.match(c)]
    assert installs, f"{which}: no `pip install robusttest` step"
    to_run = [c for c in commands if not INSTALL.match(c)]
    assert to_run and all("pytest" in c for c in to_run)
    # the project: the model the commands name (the shipped lung model stands in for it)
    for model in {m for c in to_run for m in re.findall(r"--model=(\S+)", c)}:
        (tmp_path / model).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fixture_models()["lungs"], tmp_path / model)
    (tmp_path / "pytest.ini").write_text(SMOKE_INI, encoding="utf-8")

    codes = _run_commands(to_run, tmp_path)

    # pytest exits 1 exactly when a gate failed: the CI job fails on a failing gate
    (results,) = [tmp_path / a for a in spec["artifacts"] if a.endswith(".json")]
    data = json.loads(results.read_text(encoding="utf-8"))
    failed = data["summary"]["fail"] + data["summary"]["error"]
    assert codes[-1] == (1 if failed else 0)
    # everything the CI keeps exists where the file says
    junit = tmp_path / spec["report"]
    assert junit.is_file() and "<testcase" in junit.read_text(encoding="utf-8")
    for artifact in spec["artifacts"]:
        assert (tmp_path / artifact).is_file(), artifact
    html = [a for a in spec["artifacts"] if a.endswith(".html")]
    assert html and "Noise robustness report" in (tmp_path / html[0]).read_text(encoding="utf-8")
    # the output cache: the folder pytest wrote is the one the CI restores and saves
    for path in spec["cache_paths"]:
        assert any(f"--robust-cache-dir {path}" in c for c in to_run)
        assert any(p.is_file() for p in (tmp_path / path).rglob("*")), path
    # kept when the job fails (a failed gate) too
    for step in spec["always"]:
        assert "always" in json.dumps(step), step


def test_ci_files_are_the_readme_snippet() -> None:
    """The README's CI section shows the pytest line of the workflows."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/ci/github-actions.yml" in readme and "docs/ci/.gitlab-ci.yml" in readme
    gh = " ".join(_github()["commands"][-1].split())
    assert gh in " ".join(readme.split())
