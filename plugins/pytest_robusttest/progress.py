"""The evaluation's progress in pytest's terminal.

The engine reports a ``robusttest.progress.Progress`` after every batch; pytest would
otherwise sit on ``robusttest`` for the whole evaluation. ``TerminalProgress`` writes it
through pytest's terminal reporter:

============  ===========================================  ====================================
verbosity     on a terminal                                 without one (CI logs)
============  ===========================================  ====================================
default, -v   one live line, rewritten at most 4× a second, a line at the start, one every 5 s
              left as the line saying how long it took      and the line saying how long it took
``-q``        the same                                      a line every 30 s, and the last one
``-qq``       nothing                                       nothing
============  ===========================================  ====================================

The evaluation runs inside a test item's setup, where pytest captures output: each write
suspends the capture as pytest's own live logging does. Under pytest-xdist the controller
evaluates in a background thread while xdist's loop writes test results from the main
thread; there the progress comes as whole lines (never a line rewritten in place, which
could overwrite xdist's output) and without touching the capture, which belongs to the
main thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from robusttest.progress import Progress

PREFIX = "robusttest: "
LIVE_INTERVAL = 0.25  # seconds between two rewrites of the live line
LINE_INTERVAL = {0: 5.0, -1: 30.0}  # seconds between two plain lines, by verbosity (>= 0: 0)


class TerminalProgress:
    """A progress listener that writes to pytest's terminal reporter (see the module).

    ``reporter``: pytest's TerminalReporter (its ``write``, ``rewrite``, ``currentfspath``);
    ``capture``: pytest's capture manager, or None; ``main_thread``: whether the
    evaluation (hence every call) runs in the main thread; ``clock``: for tests.
    """

    def __init__(
        self,
        reporter: Any,
        *,
        isatty: bool,
        verbosity: int,
        capture: Any = None,
        main_thread: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reporter = reporter
        self.verbosity = verbosity
        self.capture = capture if main_thread else None
        self.main_thread = main_thread
        self.clock = clock
        self.mode = "off" if verbosity <= -2 else "live" if isatty and main_thread else "lines"
        quiet = max(min(verbosity, 0), -1)
        self.interval = LIVE_INTERVAL if self.mode == "live" else LINE_INTERVAL[quiet]
        self._lock = threading.Lock()
        self._last: float | None = None  # when the last update was written
        self._started = False
        self._ended = False
        self._width = 0  # of the live line as last written
        self._restore = ""  # what pytest had on its line before we began
        self._stage = "images"  # a new stage (statistics, gallery) is shown at once

    def __call__(self, p: Progress) -> None:
        if self.mode == "off" or self._ended:
            return
        with self._lock:
            now = self.clock()
            if not self._started:
                self._started = True
                self._last = now
                with self._uncaptured():
                    self._begin()
                    if self.mode == "live" or self.verbosity >= 0 or p.finished:
                        self._show(p)
                    if p.finished:
                        self._end()
                return
            due = self._last is None or now - self._last >= self.interval
            moved_on = _stage(p) != self._stage and self.verbosity >= 0
            if not (due or p.finished or moved_on):
                return
            self._last = now
            with self._uncaptured():
                self._show(p)
                if p.finished:
                    self._end()

    def close(self) -> None:
        """End the line if the evaluation stopped without its last report (it raised)."""
        with self._lock:
            if self._started and not self._ended:
                with self._uncaptured():
                    self._end()

    # --- writing -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _uncaptured(self) -> Iterator[None]:
        """Suspend pytest's capture (we run inside an item's setup), as live logging does."""
        if self.capture is None:
            yield
            return
        with self.capture.global_and_fixture_disabled():
            yield

    def _begin(self) -> None:
        """Start on a line of our own; remember pytest's prefix to write it back after."""
        r = self.reporter
        if self.main_thread:
            where = getattr(r, "currentfspath", None)
            if isinstance(where, Path):  # `robusttest ` before the results of a file's items
                self._restore = f"{_relative(r.startpath, where)} "
            elif isinstance(where, str):  # -v: the item's location line
                self._restore = where
        if _line_width(r) != 0:
            r.write("\n", flush=True)

    def _show(self, p: Progress) -> None:
        self._stage = _stage(p)
        text = PREFIX + p.line()
        if self.mode == "live":  # one terminal row, or "\r" would not go back to its start
            text = _fit(text, max(_columns() - 1, 20))
            pad = " " * max(self._width - len(text), 0)
            self.reporter.rewrite(text + pad)
            self.reporter.flush()
            self._width = len(text)
        else:
            self.reporter.write(text + "\n", flush=True)

    def _end(self) -> None:
        self._ended = True
        if self.mode == "live":
            self.reporter.write("\n", flush=True)
        if self._restore:
            self.reporter.write(self._restore, flush=True)


def _stage(p: Progress) -> str:
    return "gallery" if p.gallery else "statistics" if p.cases_total else "images"


def _fit(text: str, width: int) -> str:
    """``text`` in ``width`` characters: without the prefix, then cut at the start (the
    numbers and the ETA are at the end)."""
    if len(text) <= width:
        return text
    text = text.removeprefix(PREFIX)
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def _relative(start: Path, path: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return str(path)


def _line_width(reporter: Any) -> int | None:
    """Characters on the terminal's current line (None: not known)."""
    width = getattr(reporter, "_width_of_current_line", None)
    return width if isinstance(width, int) else None


def _columns() -> int:
    return shutil.get_terminal_size(fallback=(80, 24)).columns


def terminal_progress(config: Any, *, main_thread: bool) -> TerminalProgress | None:
    """The listener for this pytest run (None without a terminal reporter, e.g. ``-p
    no:terminal``)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return None
    return TerminalProgress(
        reporter,
        isatty=bool(reporter.isatty()),
        verbosity=int(reporter.verbosity),
        capture=config.pluginmanager.get_plugin("capturemanager"),
        main_thread=main_thread,
    )


__all__ = ["LINE_INTERVAL", "LIVE_INTERVAL", "TerminalProgress", "terminal_progress"]
