"""Where the shipped files are: built-in suites and fixture models, whatever the install.

The repository keeps them in its top-level ``suites/`` and ``fixtures/`` folders; setuptools
maps those into the package as ``robusttest.suites`` and ``robusttest.fixtures`` (see
pyproject.toml), so a wheel, a ``pip install --user`` or a ``--target`` install carries them
inside ``robusttest/`` and ``importlib.resources`` finds them there. A shipped model is
named ``robusttest:<name>`` wherever a model path is taken (``robusttest run
robusttest:lungs``); ``robusttest fixtures`` lists them.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from pathlib import Path

from robusttest.errors import UnknownNameError

SUITES_PACKAGE = "robusttest.suites"
FIXTURES_PACKAGE = "robusttest.fixtures"
MODEL_REF_PREFIX = "robusttest:"
_CHECKOUT = Path(__file__).resolve().parents[1]


def _shipped(package: str, folder: str) -> Path | None:
    """The folder holding ``package``'s files, or None when it is not there."""
    # A source checkout (editable install, or PYTHONPATH) reads its own folders, never
    # those of another robusttest installed in the same environment.
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / folder).is_dir():
        return _CHECKOUT / folder
    if importlib.util.find_spec(package) is None:
        return None
    root = importlib.resources.files(package)
    # a file-system install gives a Path; a zip import has no file paths to hand out
    return root if isinstance(root, Path) else None


# --- suites ------------------------------------------------------------------------------
def suite_dirs() -> list[Path]:
    """Folders searched for built-in suites: ROBUSTTEST_SUITES first, then the shipped one."""
    dirs: list[Path] = []
    env = os.environ.get("ROBUSTTEST_SUITES")
    if env:
        dirs.append(Path(env))
    shipped = _shipped(SUITES_PACKAGE, "suites")
    if shipped is not None:
        dirs.append(shipped)
    return [d for d in dirs if d.is_dir()]


def builtin_suites() -> dict[str, Path]:
    """Built-in suite files by name (the file stem); an earlier folder wins a name."""
    out: dict[str, Path] = {}
    for d in reversed(suite_dirs()):
        for p in sorted(d.glob("*.yaml")):
            out[p.stem] = p
    return out


# --- fixture models ----------------------------------------------------------------------
def fixtures_dir() -> Path | None:
    """The folder of the shipped fixture models (with their metrics.json), if shipped."""
    root = _shipped(FIXTURES_PACKAGE, "fixtures")
    models = root / "models" if root is not None else None
    return models if models is not None and models.is_dir() else None


def fixture_models() -> dict[str, Path]:
    """Shipped models by short name: the file stem up to its first ``_`` (``lungs`` for
    ``lungs_tinyunet.onnx``), or the whole stem where two files share that prefix."""
    d = fixtures_dir()
    paths = sorted(d.glob("*.onnx")) if d is not None else []
    prefixes = [p.stem.split("_", 1)[0] for p in paths]
    return {
        (short if prefixes.count(short) == 1 else p.stem): p
        for short, p in zip(prefixes, paths, strict=True)
    }


def resolve_model_ref(ref: str | Path) -> Path:
    """The file a model reference names: ``robusttest:<name>`` is a shipped model (its
    short name or its file stem, e.g. ``robusttest:lungs``, ``robusttest:lungs_tinyunet``);
    anything else is a path and comes back unchanged."""
    text = os.fspath(ref)
    if not text.startswith(MODEL_REF_PREFIX):
        return Path(ref)
    name = text[len(MODEL_REF_PREFIX) :]
    known = fixture_models()
    known.update({p.stem: p for p in list(known.values())})
    if name not in known:
        raise UnknownNameError(
            "fixture model", text, [f"{MODEL_REF_PREFIX}{n}" for n in sorted(known)]
        )
    return known[name]


__all__ = [
    "FIXTURES_PACKAGE",
    "MODEL_REF_PREFIX",
    "SUITES_PACKAGE",
    "builtin_suites",
    "fixture_models",
    "fixtures_dir",
    "resolve_model_ref",
    "suite_dirs",
]
