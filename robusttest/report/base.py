"""Report renderers: one abstract class, one subclass per output format, one registry.

A renderer is a pure function of a ``RunResult`` (a report can be re-rendered from the
saved JSON without the model or the data). The pytest plugin, ``robusttest run`` and
``robusttest report`` all write through :func:`write_reports`, and say what happened in
:func:`summary_line`. An installed package adds a format through the entry-point group
``robusttest.renderers`` (or ``@register_renderer`` in a conftest.py):

    @register_renderer
    class CsvRenderer(Renderer):
        name = "csv"
        suffix = ".csv"
        description = "one row per case"

        def render(self, result: RunResult, *, rendered_at: str) -> str:
            ...
"""

from __future__ import annotations

import abc
import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from robusttest.errors import ConfigError
from robusttest.fsutil import atomic_write_bytes
from robusttest.registry import Registry
from robusttest.results import RunResult


class Renderer(abc.ABC):
    """One output format of a RunResult."""

    name: ClassVar[str]
    suffix: ClassVar[str]
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def render(self, result: RunResult, *, rendered_at: str) -> str | bytes:
        """The whole document (text is written as UTF-8)."""

    def write(self, result: RunResult, path: str | Path, *, rendered_at: str | None = None) -> Path:
        """Render and write atomically (a reader never sees half a report)."""
        out = self.render(result, rendered_at=rendered_at or render_stamp())
        return atomic_write_bytes(path, out.encode("utf-8") if isinstance(out, str) else out)


RENDERERS: Registry[Renderer] = Registry("renderer", make=lambda cls: cls())


def register_renderer(cls: type[Any]) -> type[Any]:
    """Class decorator: make a Renderer subclass available by its ``name``."""
    return RENDERERS.register()(cls)


def get_renderer(name: str) -> Renderer:
    return RENDERERS.get(name)


def render_stamp() -> str:
    """Render time: SOURCE_DATE_EPOCH when set (reproducible builds), else now, in UTC."""
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde:
        try:
            t = _dt.datetime.fromtimestamp(int(sde), _dt.timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise ConfigError(
                f"SOURCE_DATE_EPOCH={sde!r}: must be whole seconds since 1970"
            ) from None
    else:
        t = _dt.datetime.now(_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Written:
    """What became of one requested report: written, or the one-line reason it was not."""

    format: str
    path: Path
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        if self.ok:
            return f"{self.format.upper()} report: {self.path}"
        return f"{self.format.upper()} report not written: {self.path}: {self.error}"


def write_reports(
    result: RunResult, outputs: Sequence[tuple[str, Path]], *, rendered_at: str | None = None
) -> list[Written]:
    """Write every (format, path); a failure of one never stops the others.

    A file that cannot be written (permissions, a full disk) and a renderer that breaks
    both come back as a ``Written`` with the reason: the caller fails the run on any.
    """
    stamp = rendered_at or render_stamp()
    done: list[Written] = []
    for fmt, path in outputs:
        try:
            renderer = get_renderer(fmt)
            done.append(Written(fmt, renderer.write(result, path, rendered_at=stamp)))
        except OSError as exc:
            done.append(Written(fmt, Path(path), exc.strerror or str(exc)))
        except Exception as exc:  # a broken renderer must fail the run, not vanish
            done.append(Written(fmt, Path(path), f"the {fmt} renderer failed: "
                                f"{type(exc).__name__}: {exc}"))  # fmt: skip
    return done


def verdict_word(result: RunResult) -> str:
    """PASSED, FAILED or INCOMPLETE: the run's state in one word."""
    if not result.completed:
        return "INCOMPLETE"
    return "FAILED" if result.failed else "PASSED"


def summary_line(result: RunResult) -> str:
    """The one summary line every front end prints."""
    c = result.counts()
    failed_uninformative = sum(1 for x in result.uninformative if x.verdict == "fail")
    parts = [f"{c['pass']} passed", f"{c['fail']} failed"]
    if failed_uninformative:
        parts[-1] += f" ({failed_uninformative} of them uninformative)"
    if c["error"]:
        parts.append(f"{c['error']} errors")
    parts.append(f"{c['no-gate']} reported without a gate")
    if c["uninformative"]:
        parts.append(
            f"{c['uninformative']} uninformative (clean performance at chance or below the floor)"
        )
    line = f"{verdict_word(result)}: {len(result.cases)} cases: " + ", ".join(parts)
    if not result.completed:
        n = len({r.image_id for r in result.records})
        why = result.run.get("error") or "interrupted"
        line += f" ({why} after {n} images; the reports say so)"
    return line


__all__ = [
    "RENDERERS",
    "Renderer",
    "Written",
    "get_renderer",
    "register_renderer",
    "render_stamp",
    "summary_line",
    "verdict_word",
    "write_reports",
]
