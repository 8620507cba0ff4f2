"""The zoo: an application on top of the library, installed with ``robusttest[zoo]``.

It trains the committed fixture models and the paper's architectures (``train``, ``nets``)
and replicates arXiv 2509.25265 with them (``replication``); ``robusttest zoo ...`` is its
command line (``cli``). The core never imports this package. Importing it stays light: the
modules below load torch, timm and segmentation-models-pytorch only when used.
"""

from __future__ import annotations

import importlib.util

from robusttest.errors import RobustTestError

EXTRA = "zoo"
# import name -> distribution name, for the packages the extra brings
EXTRA_PACKAGES: dict[str, str] = {
    "timm": "timm",
    "segmentation_models_pytorch": "segmentation-models-pytorch",
}


def missing_packages() -> list[str]:
    """Distribution names of the extra's packages that are not importable."""
    return [dist for mod, dist in EXTRA_PACKAGES.items() if importlib.util.find_spec(mod) is None]


def require_extra(what: str = "robusttest zoo") -> None:
    """Raise one clear error naming the extra when its packages are not installed."""
    missing = missing_packages()
    if missing:
        raise RobustTestError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed; install the zoo extra: pip install 'robusttest[{EXTRA}]'"
        )


__all__ = ["EXTRA", "EXTRA_PACKAGES", "missing_packages", "require_extra"]
