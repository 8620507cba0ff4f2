"""Optional extras: which packages each brings, and one clear error when one is missing.

Checked with ``importlib.util.find_spec`` before use, so a missing extra is a message that
names the install command, never a caught ImportError halfway through a run.
"""

from __future__ import annotations

import importlib.util

from robusttest.errors import RobustTestError

# extra -> {import name: distribution name}
EXTRAS: dict[str, dict[str, str]] = {
    "zoo": {"timm": "timm", "segmentation_models_pytorch": "segmentation-models-pytorch"},
    "dicom": {"pydicom": "pydicom"},
    "ray": {"ray": "ray"},  # shards as tasks on a Ray cluster (engine.ray_backend)
}


def missing_packages(extra: str) -> list[str]:
    """Distribution names of the extra's packages that are not importable."""
    return [d for mod, d in EXTRAS[extra].items() if importlib.util.find_spec(mod) is None]


def require_extra(extra: str, what: str) -> None:
    """Raise one clear error naming the extra when its packages are not installed."""
    missing = missing_packages(extra)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise RobustTestError(
            f"{what} needs {', '.join(missing)}, which {verb} not installed; install the "
            f"{extra} extra: pip install 'robusttest[{extra}]'"
        )


__all__ = ["EXTRAS", "missing_packages", "require_extra"]
