"""The zoo: an application on top of the library, installed with ``robusttest[zoo]``.

It trains the committed fixture models and the paper's architectures (``train``, ``nets``)
and replicates arXiv 2509.25265 with them (``replication``); ``robusttest zoo ...`` is its
command line (``cli``). The core never imports this package. Importing it stays light: the
modules below load torch, timm and segmentation-models-pytorch only when used.
"""

from __future__ import annotations

from robusttest import extras

EXTRA = "zoo"
EXTRA_PACKAGES = extras.EXTRAS[EXTRA]  # import name -> distribution name


def missing_packages() -> list[str]:
    """Distribution names of the extra's packages that are not importable."""
    return extras.missing_packages(EXTRA)


def require_extra(what: str = "robusttest zoo") -> None:
    """Raise one clear error naming the extra when its packages are not installed."""
    extras.require_extra(EXTRA, what)


__all__ = ["EXTRA", "EXTRA_PACKAGES", "missing_packages", "require_extra"]
