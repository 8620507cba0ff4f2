"""Issue 16, point 1: progress under pytest.

On a terminal a live line (images done / total, conditions, ETA) is rewritten while the
evaluation runs; without one (CI logs) a plain line comes every few seconds; ``-q`` is
quieter, ``-qq`` silent. The writer is unit-tested on a recording reporter with a fake
clock; real runs check both modes end to end (a pseudo-terminal for the live line).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_helpers import Models, small
from pytest_robusttest.progress import LINE_INTERVAL, LIVE_INTERVAL, TerminalProgress

from robusttest.progress import Progress


class Reporter:
    """The parts of pytest's TerminalReporter the writer uses, recording each call."""

    def __init__(self, width: int = 11, currentfspath: Any = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self._width_of_current_line = width
        self.currentfspath = currentfspath
        self.startpath = Path("/project")

    def write(self, content: str, *, flush: bool = False) -> None:
        self.calls.append(("write", content))

    def rewrite(self, line: str) -> None:
        self.calls.append(("rewrite", line))

    def flush(self) -> None:
        pass


class Capture:
    """pytest's capture manager: counts the writes made with capture suspended."""

    def __init__(self) -> None:
        self.suspended = 0

    @contextlib.contextmanager
    def global_and_fixture_disabled(self) -> Iterator[None]:
        self.suspended += 1
        yield


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def state(done: int, fraction: float, **kw: Any) -> Progress:
    return Progress("m.onnx × s", done, 8, 4, 1, elapsed=fraction * 10, fraction=fraction, **kw)


def feed(writer: TerminalProgress, clock: Clock, steps: list[tuple[float, Progress]]) -> None:
    for t, p in steps:
        clock.now = t
        writer(p)


STEPS = [
    (0.0, state(0, 0.0)),
    (0.1, state(0, 0.1)),  # too soon after the first
    (0.3, state(0, 0.3)),
    (0.4, state(4, 0.5)),  # too soon (terminal); too soon (log)
    (6.0, state(4, 0.7)),  # due in every mode but -q's
    (6.1, state(8, 1.0, cases_done=1, cases_total=3)),  # a new stage: shown at once
    (6.2, state(8, 1.0, cases_done=3, cases_total=3, finished=True)),
]


def texts(rep: Reporter, kind: str) -> list[str]:
    return [t for k, t in rep.calls if k == kind]


def test_terminal_rewrites_one_line_then_gives_pytest_its_line_back() -> None:
    rep, clock, cap = Reporter(currentfspath=Path("/project/robusttest")), Clock(), Capture()
    w = TerminalProgress(rep, isatty=True, verbosity=0, capture=cap, clock=clock)
    feed(w, clock, STEPS)
    lines = texts(rep, "rewrite")
    assert [line.split(": ", 1)[0] for line in lines] == ["robusttest"] * 5
    assert "0/8 images × 4 conditions (0%)" in lines[0]
    assert "(30%)" in lines[1] and "(70%)" in lines[2]
    assert "statistics 1/3 cases" in lines[3]
    assert lines[4].rstrip() == "robusttest: m.onnx × s: 8/8 images × 4 conditions, 3 cases in 0:10"
    # a fresh line first (pytest had written "robusttest " on its own), the line ended
    # after, and pytest's prefix written back so its "." results continue after it
    assert rep.calls[0] == ("write", "\n")
    assert rep.calls[-2:] == [("write", "\n"), ("write", "robusttest ")]
    assert cap.suspended == 5  # every write made with pytest's capture suspended
    assert LIVE_INTERVAL <= 0.25


def test_without_a_terminal_a_plain_line_every_few_seconds() -> None:
    rep, clock = Reporter(width=0), Clock()
    w = TerminalProgress(rep, isatty=False, verbosity=0, clock=clock)
    feed(w, clock, STEPS)
    assert not texts(rep, "rewrite")
    lines = texts(rep, "write")
    assert all(
        line.startswith("robusttest: m.onnx × s: ") and line.endswith("\n") for line in lines
    )
    # the start, the one due after LINE_INTERVAL[0] = 5 s, the statistics, the end
    assert [re.search(r"\((\d+)%\)|statistics|in 0:10", x)[0] for x in lines] == [  # type: ignore[index]
        "(0%)",
        "(70%)",
        "statistics",
        "in 0:10",
    ]
    assert LINE_INTERVAL[0] == 5.0


def test_quieter_with_q_and_silent_with_qq() -> None:
    rep, clock = Reporter(width=0), Clock()
    w = TerminalProgress(rep, isatty=False, verbosity=-1, clock=clock)
    steps = [(0.0, state(0, 0.0)), (6.0, state(4, 0.5)), (31.0, state(6, 0.8))]
    feed(w, clock, [*steps, (32.0, state(8, 1.0, cases_done=3, cases_total=3))])
    feed(w, clock, [(33.0, state(8, 1.0, cases_done=3, cases_total=3, finished=True))])
    lines = texts(rep, "write")
    # no start line, nothing at 6 s, one line at 30 s, no stage line, the end
    assert len(lines) == 2 and "(80%)" in lines[0] and "3 cases in 0:10" in lines[1]
    silent = Reporter()
    w = TerminalProgress(silent, isatty=True, verbosity=-2, clock=clock)
    feed(w, clock, STEPS)
    assert silent.calls == []


def test_a_background_thread_writes_whole_lines_and_leaves_the_capture_alone() -> None:
    rep, clock, cap = Reporter(), Clock(), Capture()
    # the pytest-xdist controller evaluates in a thread while xdist writes results
    w = TerminalProgress(rep, isatty=True, verbosity=0, capture=cap, main_thread=False, clock=clock)
    feed(w, clock, STEPS)
    assert not texts(rep, "rewrite") and cap.suspended == 0
    assert texts(rep, "write")[-1].endswith("3 cases in 0:10\n")


def test_close_ends_a_line_the_evaluation_left_open() -> None:
    rep, clock = Reporter(width=0), Clock()
    w = TerminalProgress(rep, isatty=True, verbosity=0, clock=clock)
    w(state(0, 0.0))
    w.close()  # the evaluation raised before its last report
    assert rep.calls[-1] == ("write", "\n")
    w.close()
    w(state(8, 1.0, finished=True))
    assert rep.calls[-1] == ("write", "\n") and len(texts(rep, "write")) == 1


# --- real runs ---------------------------------------------------------------------------
LINE = re.compile(r"robusttest: seg\.onnx × tiny: (\d+)/4 images × 3 conditions")


def test_progress_lines_in_a_pytest_run(project: pytest.Pytester, models: Models) -> None:
    result = project.runpytest(*small(models.seg))
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    lines = [line for line in out.splitlines() if LINE.search(line)]
    assert lines[0].endswith("(0%), 0:00, ETA ?")
    assert re.search(r"4/4 images × 3 conditions, 3 cases in \d:\d\d$", lines[-1])
    # pytest's results go on after the last line, with their file prefix
    after = out.splitlines()[out.splitlines().index(lines[-1]) + 1]
    assert after.startswith("robusttest ...")


@pytest.mark.parametrize("quiet,expected", [("-q", 1), ("-qq", 0)])
def test_quiet_runs(project: pytest.Pytester, models: Models, quiet: str, expected: int) -> None:
    result = project.runpytest(*small(models.seg), quiet)
    assert result.ret == 0  # -qq prints no "3 passed" line to parse
    lines = [line for line in result.stdout.str().splitlines() if LINE.search(line)]
    assert len(lines) == expected  # -q: the last line only (a short run); -qq: none


def _run_in_a_terminal(args: list[str], cwd: Path, timeout: float = 240.0) -> bytes:
    """Run a command with stdout and stderr on a pseudo-terminal; everything it wrote."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    env = {**os.environ, "COLUMNS": "160"}
    proc = subprocess.Popen(
        args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                raise AssertionError(f"no output for {timeout} s: {out[-2000:]!r}")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            out += chunk
    finally:
        proc.wait(timeout=60)
        os.close(master)
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_live_line_on_a_terminal(project: pytest.Pytester, models: Models) -> None:
    args = [sys.executable, "-m", "pytest", *small(models.seg), "-p", "no:cacheprovider"]
    out = _run_in_a_terminal(args, project.path).decode("utf-8", "replace")
    assert "3 passed" in out
    # each update returns to the start of the line and rewrites it
    updates = re.findall(r"\r(robusttest: seg\.onnx × tiny: [^\r\n]*)", out)
    assert len(updates) >= 3, out
    assert "ETA" in updates[0] and re.search(r"3 cases in \d:\d\d", updates[-1])
    # the live line ends with a newline, and pytest's "robusttest " comes back before its dots
    tail = out[out.rindex(updates[-1]) + len(updates[-1]) :]
    assert re.match(r"\s*\r?\nrobusttest ", tail), tail[:80]


def test_under_xdist_the_controller_writes_the_lines(
    project: pytest.Pytester, models: Models
) -> None:
    result = project.runpytest_subprocess(*small(models.seg), "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    lines = [line for line in result.stdout.str().splitlines() if LINE.search(line)]
    assert lines[0].startswith("robusttest: seg.onnx × tiny: 0/4 images")
    assert re.search(r"4/4 images × 3 conditions, 3 cases in \d:\d\d$", lines[-1])
