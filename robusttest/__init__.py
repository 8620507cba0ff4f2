"""robusttest: how a chest X-ray model behaves under radiographic noise."""

from __future__ import annotations

from robusttest.errors import RobustTestError

__version__ = "0.1.0"

__all__ = ["RobustTestError", "__version__"]
