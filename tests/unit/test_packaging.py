"""What a user installs: dependencies, the zoo extra, shipped files, ``python -m robusttest``.

The metadata checked is this checkout's (pyproject.toml, and a wheel built from it), not
whatever robusttest happens to be installed in the test environment.
"""

from __future__ import annotations

import ast
import email.parser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself needs tomli before 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
ZOO_ONLY = {"timm", "segmentation-models-pytorch"}
ORACLES = {"torchmetrics", "torchvision"}  # test oracles, never imported by the library
IMPORT_NAME = {
    "pillow": "PIL",
    "pyyaml": "yaml",
    "segmentation-models-pytorch": "segmentation_models_pytorch",
}


def _pyproject() -> dict[str, Any]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _names(reqs: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in reqs}


def test_plain_install_brings_neither_the_zoo_nor_the_oracles() -> None:
    project = _pyproject()["project"]
    runtime = _names(project["dependencies"])
    assert not runtime & (ZOO_ONLY | ORACLES)
    extras = project["optional-dependencies"]
    assert _names(extras["zoo"]) == ZOO_ONLY
    # the dev extra runs the whole test suite: the zoo's tests and the oracles too
    assert _names(extras["dev"]) >= ZOO_ONLY | ORACLES


def _imports(files: list[Path]) -> dict[Path, set[str]]:
    """Top-level modules each file imports (absolute imports only)."""
    out: dict[Path, set[str]] = {}
    for f in files:
        mods: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mods.add(node.module)
        out[f] = mods
    return out


def _core_files() -> list[Path]:
    zoo = REPO / "robusttest" / "zoo"
    files = [*(REPO / "robusttest").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]
    return [f for f in files if zoo not in f.parents]


def test_the_core_never_imports_the_zoo() -> None:
    for f, mods in _imports(_core_files()).items():
        top = {m.split(".")[0] for m in mods}
        assert not top & {"timm", "segmentation_models_pytorch", "torchmetrics", "torchvision"}, f
        zoo = {m for m in mods if m == "robusttest.zoo" or m.startswith("robusttest.zoo.")}
        # the one hook: `robusttest zoo ...` registers its subcommands from the zoo's cli
        allowed = {"robusttest.zoo.cli"} if f == REPO / "robusttest" / "cli.py" else set()
        assert zoo <= allowed, (f, zoo)


def test_every_runtime_dependency_is_imported_by_the_core() -> None:
    used = {m.split(".")[0] for mods in _imports(_core_files()).values() for m in mods}
    for name in _names(_pyproject()["project"]["dependencies"]):
        assert IMPORT_NAME.get(name, name.replace("-", "_")) in used, name


def _env_with(path: Path) -> dict[str, str]:
    """The environment with only ``path`` on PYTHONPATH (the code under test)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), str(path / "plugins")])
    return env


def test_python_dash_m_is_the_command(tmp_path: Path) -> None:
    from robusttest import __version__

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "robusttest", *argv]
        return subprocess.run(
            cmd, cwd=tmp_path, env=_env_with(REPO), capture_output=True, text=True, timeout=120
        )

    version = run("--version")
    assert (version.returncode, version.stdout) == (0, f"robusttest {__version__}\n")
    bad = run("suite", "show", "nope")  # a library error: one line, exit status 2
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "robusttest: error: unknown suite 'nope'; known suites: "
        + ", ".join(sorted(p.stem for p in (REPO / "suites").glob("*.yaml")))
    ]


# --- a real wheel ------------------------------------------------------------------------
def _build_inputs() -> list[str]:
    """Top-level paths the build reads: the readme and every package-dir folder."""
    cfg = _pyproject()
    dirs = {v.split("/")[0] for v in cfg["tool"]["setuptools"]["package-dir"].values()}
    return sorted({"pyproject.toml", cfg["project"]["readme"], *dirs})


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built offline from a copy of this checkout (the build writes build/ and
    *.egg-info beside its sources; the copy keeps them out of the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in _build_inputs():
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(p, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-index", "-q", "-w", str(root / "dist"), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (whl,) = (root / "dist").glob("robusttest-*.whl")
    return whl


@pytest.mark.slow
def test_the_wheel_carries_the_suites_and_the_fixture_models(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for p in (REPO / "suites").glob("*.yaml"):
        assert f"robusttest/suites/{p.name}" in names
    for p in [
        *(REPO / "fixtures" / "models").glob("*.onnx"),
        REPO / "fixtures/models/metrics.json",
    ]:
        assert f"robusttest/fixtures/models/{p.name}" in names
    assert "robusttest/zoo/train.py" in names and "robusttest/__main__.py" in names
    # every module of the library and the plugin (a package left out of pyproject's list
    # would install without it)
    for pkg, where in (
        ("robusttest", "robusttest"),
        ("pytest_robusttest", "plugins/pytest_robusttest"),
    ):
        for py in (REPO / where).rglob("*.py"):
            assert f"{pkg}/{py.relative_to(REPO / where).as_posix()}" in names, py
    assert not any(n.startswith(("share/", "suites/", "fixtures/")) or ".data/" in n for n in names)


@pytest.mark.slow
def test_the_wheel_metadata_of_a_plain_install(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    plain = {r.name.lower() for r in reqs if r.marker is None}
    assert "torch" in plain and not plain & (ZOO_ONLY | ORACLES)
    zoo = {
        r.name.lower() for r in reqs if r.marker is not None and r.marker.evaluate({"extra": "zoo"})
    }
    assert zoo == ZOO_ONLY
    assert "zoo" in (meta.get_all("Provides-Extra") or [])


@pytest.mark.slow
def test_an_installed_wheel_finds_its_suites_and_models(wheel: Path, tmp_path: Path) -> None:
    """Installed with ``pip install --target`` (no share/ folder, no checkout beside it)."""
    target = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q"]
    done = subprocess.run(
        [*cmd, "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    code = (
        "from robusttest import resources as r\n"
        "print(*r.suite_dirs(), r.resolve_model_ref('robusttest:lungs'), sep='\\n')\n"
        "print(*sorted(r.builtin_suites()), sep=',')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    env.pop("ROBUSTTEST_SUITES", None)
    got = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr
    suites_dir, lungs, names = got.stdout.splitlines()
    assert Path(suites_dir) == target / "robusttest" / "suites"
    assert Path(lungs) == target / "robusttest" / "fixtures" / "models" / "lungs_tinyunet.onnx"
    assert names.split(",") == sorted(p.stem for p in (REPO / "suites").glob("*.yaml"))
    listed = subprocess.run(
        [sys.executable, "-m", "robusttest", "fixtures"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[-1] for line in listed.stdout.splitlines()] == [
        str(target / "robusttest" / "fixtures" / "models" / n)
        for n in ("findings_tinycnn.onnx", "lungs_tinyunet.onnx")
    ]
