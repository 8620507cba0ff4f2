"""Progress of an evaluation: what the engine reports, and the bar of the command line.

The engine calls a ``ProgressListener`` with a ``Progress`` snapshot when the evaluation
starts, after every batch (each image done under every condition and repeat) and when it
ends; each front end shows it its own way: ``robusttest run`` as a tqdm bar on a
terminal, the pytest plugin through pytest's terminal reporter (``pytest_robusttest.
progress``). A listener may be called from the thread that evaluates, which need not be
the main thread (the pytest-xdist controller evaluates in a background thread).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One moment of an evaluation.

    ``images_done``: images evaluated under every condition (``conditions`` of them,
    clean included, each noise ``repeats`` times) out of ``images_total``; ``fraction``:
    the share of that work done, batch × condition by batch × condition (what the ETA
    extrapolates); ``cases_done`` / ``cases_total``: the statistics, once the images are
    done (``cases_total`` 0 before); ``elapsed``: seconds since the start; ``finished``:
    the last report, also after an interrupt or an error (``images_done`` may then stay
    below ``images_total``, as it does when unreadable images are skipped).
    """

    label: str
    images_done: int
    images_total: int
    conditions: int
    repeats: int
    elapsed: float
    fraction: float = 0.0
    cases_done: int = 0
    cases_total: int = 0
    gallery: bool = False
    finished: bool = False

    @property
    def eta(self) -> float | None:
        """Seconds until the images are done, at the rate so far (None before the first
        batch × condition, and once the images are done)."""
        if (
            self.finished
            or self.cases_total
            or self.gallery
            or self.fraction <= 0.0
            or self.fraction >= 1.0
        ):
            return None
        return self.elapsed / self.fraction * (1.0 - self.fraction)

    def work(self) -> str:
        """``images × 19 conditions × 2 repeats`` (no repeats when there is one)."""
        reps = f" × {self.repeats} repeats" if self.repeats > 1 else ""
        s = "" if self.conditions == 1 else "s"
        return f"images × {self.conditions} condition{s}{reps}"

    def line(self) -> str:
        """One line, e.g. ``lungs.onnx × lungs: 12/24 images × 19 conditions (52%), 0:12,
        ETA 0:11``; then ``...; statistics 3/32 cases, 0:25``; at the end ``... in 0:31``."""
        images = f"{self.images_done}/{self.images_total} {self.work()}"
        if self.finished:
            cases = f", {self.cases_done} cases" if self.cases_total else ""
            return f"{self.label}: {images}{cases} in {clock(self.elapsed)}"
        if self.gallery:
            return (
                f"{self.label}: {images}, {self.cases_done} cases; gallery, {clock(self.elapsed)}"
            )
        if self.cases_total:
            stats = f"statistics {self.cases_done}/{self.cases_total} cases"
            return f"{self.label}: {images}; {stats}, {clock(self.elapsed)}"
        eta = self.eta
        left = f"ETA {clock(eta)}" if eta is not None else "ETA ?"
        pct = f"{min(self.fraction, 1.0):.0%}"
        return f"{self.label}: {images} ({pct}), {clock(self.elapsed)}, {left}"


ProgressListener = Callable[[Progress], None]


def clock(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``: whole seconds, as a clock shows a duration."""
    s = max(round(seconds), 0)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def tqdm_bar(enabled: bool | None) -> tuple[ProgressListener | None, Callable[[], None]]:
    """The command line's bar (tqdm on stderr): ``None`` shows it only when stderr is a
    terminal. Returns the listener (None when off) and what closes the bar."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bars: list[Any] = []

    def show(p: Progress) -> None:
        if not bars:
            bars.append(
                tqdm(
                    total=p.images_total,
                    desc=f"{p.label} ({p.conditions} conditions)",
                    file=sys.stderr,
                    leave=False,
                    # images' worth of work (batch × condition by batch × condition)
                    bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} images "
                    "[{elapsed}<{remaining}{postfix}]",
                )
            )
        bar = bars[0]
        bar.update(min(p.fraction, 1.0) * p.images_total - bar.n)
        if p.gallery:
            bar.set_postfix_str("gallery", refresh=False)
        elif p.cases_total:
            bar.set_postfix_str(f"statistics {p.cases_done}/{p.cases_total}", refresh=False)

    def close() -> None:
        for bar in bars:
            bar.close()

    return show, close


__all__ = ["Progress", "ProgressListener", "clock", "tqdm_bar"]
