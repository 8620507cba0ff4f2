"""robusttest: how a chest X-ray model behaves under radiographic noise.

``robusttest.run(model, suite)`` evaluates a model; the pytest plugin, the ``robusttest``
command and this function share one engine. Importing the package stays light (no torch):
``run`` imports the engine on its first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robusttest.errors import RobustTestError

if TYPE_CHECKING:
    from robusttest.results import RunResult

__version__ = "0.1.0"


def run(model: Any, suite: Any = None, **options: Any) -> RunResult:
    """Evaluate ``model`` under ``suite``: see ``robusttest.engine.run`` for the options.

    >>> result = robusttest.run("fixtures/models/lungs_tinyunet.onnx")  # doctest: +SKIP
    >>> result.passed, result.counts()                                  # doctest: +SKIP
    """
    from robusttest.engine import run as _run

    return _run(model, suite, **options)


__all__ = ["RobustTestError", "__version__", "run"]
