"""One exception family for everything a user can get wrong.

Every message names the offending parameter, file or value and says what is allowed
or how to fix it, so the CLI and the pytest plugin can print it in one line.
"""

from __future__ import annotations

from collections.abc import Iterable


class RobustTestError(Exception):
    """Base class: a problem with the user's input, configuration, model or data."""


class ConfigError(RobustTestError, ValueError):
    """A parameter value is out of range or of the wrong type."""


class UnknownNameError(ConfigError, KeyError):
    """A name (noise, metric, adapter, suite, label) is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"unknown {kind} {name!r}; known {kind}s: {', '.join(self.known) or '(none)'}"
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class InputError(RobustTestError, ValueError):
    """An image or tensor handed to the library is malformed (rank, dtype, NaN...)."""


class DataError(RobustTestError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


class ModelError(RobustTestError):
    """A model file cannot be loaded, or its inputs/outputs do not fit the task."""


class SuiteError(ConfigError):
    """A suite file fails validation."""


class RobustTestWarning(UserWarning):
    """Something went wrong and the run went on (an image skipped, the cache bypassed);
    the message is one line naming the file and what to do. ``robusttest`` prints it as
    ``robusttest: warning: ...``."""


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as float or raise ConfigError naming ``name`` and the interval."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {value!r} is not a number") from None
    lo_b = "(" if low_open else "["
    hi_b = ")" if high_open else "]"
    lo_s = "-inf" if low is None else f"{low:g}"
    hi_s = "inf" if high is None else f"{high:g}"
    interval = f"{lo_b}{lo_s}, {hi_s}{hi_b}"
    bad = v != v or v in (float("inf"), float("-inf"))  # NaN, ±inf
    if low is not None and (v < low or (low_open and v == low)):
        bad = True
    if high is not None and (v > high or (high_open and v == high)):
        bad = True
    if bad:
        finite = "; give a finite number" if v in (float("inf"), float("-inf")) else ""
        raise ConfigError(f"{name}: {value!r} is not in {interval}{finite}")
    return v
