"""Named checkpoints in a run, where a test injects an interrupt deterministically.

Each phase of a run after evaluation begins calls ``checkpoint(phase)`` in the thread a
real Ctrl-C would land in (the main thread): ``decode`` before each image is taken from
the decoding threads, ``inference`` before each batch × condition's outputs are taken,
``statistics`` after each case's statistics, ``gallery`` before the thumbnails,
``rendering`` before each report is written. Arming one makes it raise
``KeyboardInterrupt`` exactly as Ctrl-C would, at a chosen hit, with no timer:

    ROBUSTTEST_FAULT=gallery            # the first time the gallery is reached
    ROBUSTTEST_FAULT=decode@3           # before the third image is taken
    ROBUSTTEST_FAULT=statistics@2,rendering@1

(in a test: ``monkeypatch.setenv``; a subprocess inherits it). Unarmed, a checkpoint is
one environment lookup. tests/reliability/ interrupts every phase this way under both
``robusttest run`` and ``pytest --model``.
"""

from __future__ import annotations

import os
import threading

from robusttest.errors import ConfigError

ENV = "ROBUSTTEST_FAULT"
PHASES: tuple[str, ...] = ("decode", "inference", "statistics", "gallery", "rendering")

_lock = threading.Lock()
_armed_spec = ""
_hits: dict[str, int] = {}


def parse(spec: str) -> dict[str, int]:
    """``"decode@3,gallery"`` → {"decode": 3, "gallery": 1}; a bad spec is a ConfigError."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        phase, _, at = part.partition("@")
        if phase not in PHASES:
            raise ConfigError(
                f"{ENV}={spec!r}: unknown phase {phase!r}; phases: {', '.join(PHASES)}"
            )
        try:
            n = int(at) if at else 1
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"{ENV}={spec!r}: {part!r}: give PHASE or PHASE@N with N >= 1")
        out[phase] = n
    return out


def checkpoint(phase: str) -> None:
    """Raise KeyboardInterrupt if ``phase`` is armed and this is its armed hit."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    global _armed_spec
    with _lock:
        if spec != _armed_spec:  # armed anew: count from zero
            _armed_spec = spec
            _hits.clear()
        armed = parse(spec)
        if phase not in armed:
            return
        _hits[phase] = _hits.get(phase, 0) + 1
        fire = _hits[phase] == armed[phase]
    if fire:
        raise KeyboardInterrupt(f"{ENV}: interrupted at {phase}")


def reset() -> None:
    """Count hits from zero again (tests that arm the same spec twice in one process)."""
    global _armed_spec
    with _lock:
        _armed_spec = ""
        _hits.clear()


__all__ = ["ENV", "PHASES", "checkpoint", "parse", "reset"]
