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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from robusttest import faults
from robusttest.errors import ConfigError, RobustTestError
from robusttest.fsutil import atomic_write_bytes
from robusttest.gates import GateTable, table_entries
from robusttest.registry import Registry
from robusttest.results import CaseResult, RunResult


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


class ReportsInterrupted(KeyboardInterrupt):
    """Ctrl-C while the reports were written; they were written again, marked incomplete
    (``written``: what became of each). The front end exits as interrupted."""

    def __init__(self, written: list[Written]) -> None:
        super().__init__("interrupted while the reports were written")
        self.written = written


def write_reports(
    result: RunResult, outputs: Sequence[tuple[str, Path]], *, rendered_at: str | None = None
) -> list[Written]:
    """Write every (format, path); a failure of one never stops the others.

    A file that cannot be written (permissions, a full disk) and a renderer that breaks
    both come back as a ``Written`` with the reason: the caller fails the run on any.
    Ctrl-C while they are written writes them all again, marked incomplete, and raises
    ``ReportsInterrupted`` (a second Ctrl-C then stops at once).
    """
    stamp = rendered_at or render_stamp()
    try:
        return _write_all(result, outputs, stamp)
    except KeyboardInterrupt:
        marked = mark_interrupted(result, "rendering")
        raise ReportsInterrupted(_write_all(marked, outputs, stamp, checkpoints=False)) from None


def _write_all(
    result: RunResult,
    outputs: Sequence[tuple[str, Path]],
    stamp: str,
    *,
    checkpoints: bool = True,
) -> list[Written]:
    done: list[Written] = []
    for fmt, path in outputs:
        if checkpoints:
            faults.checkpoint("rendering")
        try:
            renderer = get_renderer(fmt)
            done.append(Written(fmt, renderer.write(result, path, rendered_at=stamp)))
        except OSError as exc:
            done.append(Written(fmt, Path(path), exc.strerror or str(exc)))
        except RobustTestError as exc:  # e.g. the pdf renderer finds no Chromium: its line
            done.append(Written(fmt, Path(path), str(exc)))
        except Exception as exc:  # a broken renderer must fail the run, not vanish
            done.append(Written(fmt, Path(path), f"the {fmt} renderer failed: "
                                f"{type(exc).__name__}: {exc}"))  # fmt: skip
    return done


def unit_of(case: CaseResult) -> str:
    """The unit of a case's values ("" for fractions). Results written before cases
    recorded one take the metric's, "mm or px" for a spatial metric (the spacing is lost)."""
    if case.unit is not None:
        return case.unit
    from robusttest.metrics import get_metric

    try:
        return get_metric(case.metric).unit_for(None)
    except RobustTestError:  # a metric of an extension that is not installed here
        return ""


RunState = Literal["passed", "failed", "error", "incomplete", "interrupted"]


def _runs(result: RunResult) -> list[Mapping[str, Any]]:
    """The run blocks of a result (a merged result holds one per model × suite)."""
    runs = result.run.get("runs")
    if isinstance(runs, list):
        return [r for r in runs if isinstance(r, Mapping)] + [result.run]
    return [result.run]


def was_interrupted(result: RunResult) -> bool:
    return any(r.get("interrupted") or r.get("error") == "interrupted" for r in _runs(result))


def run_errors(result: RunResult) -> list[str]:
    """One line per problem that kept the run from judging its gates (each naming the
    file or the model and the fix), in run order."""
    out: list[str] = []
    for r in _runs(result):
        errors = r.get("errors")
        if isinstance(errors, list):
            out += [str(e) for e in errors]
        elif (
            r.get("error") and r.get("error") != "interrupted"
        ):  # results saved before run.errors existed
            out.append(str(r["error"]))
    return out


def run_warnings(result: RunResult) -> list[str]:
    out: list[str] = []
    for r in _runs(result):
        w = r.get("warnings")
        if isinstance(w, list):
            out += [str(x) for x in w]
    return out


def run_state(result: RunResult) -> RunState:
    """interrupted (Ctrl-C), error (something could not be evaluated: the gates are not
    judged), incomplete (some selected cases got no verdict: a lost xdist worker, ``-x``),
    failed (a gate failed) or passed, in that order of precedence."""
    if was_interrupted(result):
        return "interrupted"
    if run_errors(result) or any(c.verdict == "error" for c in result.cases):
        return "error"
    if not result.completed:
        return "incomplete"
    return "failed" if result.failed or result.failed_frontiers else "passed"


def mark_interrupted(result: RunResult, phase: str) -> RunResult:
    """The same result marked interrupted in ``phase`` (e.g. while the reports were
    written): incomplete, with everything it had finished."""
    run = {**result.run, "error": "interrupted", "interrupted": True}
    if not run.get("stopped_in"):
        run["stopped_in"] = phase
    return replace(result, completed=False, run=run)


def verdict_word(result: RunResult) -> str:
    """PASSED, FAILED, ERROR or INCOMPLETE: the run's state in one word."""
    return {
        "interrupted": "INCOMPLETE",
        "incomplete": "INCOMPLETE",
        "error": "ERROR",
        "failed": "FAILED",
        "passed": "PASSED",
    }[run_state(result)]


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
    selected = [sel for _, sel in result.selections()]
    n_sel = sum(int(s.get("n_selected", 0)) for s in selected)
    n_grid = sum(int(s.get("n_grid", 0)) for s in selected)
    if selected and n_sel < n_grid:
        line += f"; {n_sel} of {n_grid} cases selected"
    skipped = list(dict.fromkeys(t for _, t, _ in result.not_evaluated()))
    if skipped:
        line += f"; not evaluated: {', '.join(skipped)}"
    if result.frontiers:
        fails = len(result.failed_frontiers)
        line += f"; {len(result.frontiers)} frontiers" + (f" ({fails} failed)" if fails else "")
    n = len({r.image_id for r in result.records})
    state = run_state(result)
    if state == "interrupted":
        where = result.run.get("stopped_in")
        during = f" during {where}" if where else ""
        line += f" (interrupted{during} after {n} images; the reports say so)"
    elif state == "incomplete":
        why = "; ".join(result.incomplete_reasons())
        line += f" ({why}; {n} images evaluated; the reports say so)"
    elif state == "error":
        errors = run_errors(result)
        if not result.completed:
            line += f" (the evaluation stopped after {n} images; the reports say why)"
        elif errors:
            why = result.run.get("error") or f"{len(errors)} errors"
            line += f" ({why}; the reports list them)"
    return line


# the first words of a gate source that did not come from a suite file (robusttest.suite.
# layers spells them): such gates are overrides, which the reports point out
OVERRIDE_SOURCES = ("command line:", "ini:", "argument:")


def _suite_provenance(result: RunResult, suite: str) -> Mapping[str, Any] | None:
    for prov in result.run_provenances():
        block = prov.get("suite")
        if isinstance(block, Mapping) and block.get("name") == suite:
            return block
    return None


def gate_sources(result: RunResult, case: CaseResult) -> dict[str, str]:
    """Where each limit of a case's gate (and its judge mode, ``on``) came from, by kind:
    ``suite: lungs.yaml``, ``extended suite: ...``, ``command line: --robust-gate ...``,
    ``ini: robusttest_gate ...``; empty when the results do not say (older files)."""
    block = _suite_provenance(result, case.suite)
    if block is None or not isinstance(block.get("gate_sources"), Mapping):
        return {}
    sources: Mapping[str, Any] = block["gate_sources"]
    definition = block.get("definition")
    gates = definition.get("gates") if isinstance(definition, Mapping) else None
    if not isinstance(gates, Mapping):
        return {}
    try:
        table = GateTable.from_dict(gates)
        paths = table.explain(case.metric, case.condition, case.noise)
    except (TypeError, ValueError, AttributeError):  # a malformed table: say nothing
        return {}
    return {kind: str(sources.get(path, "default")) for kind, path in paths.items()}


def gate_source_text(sources: Mapping[str, str]) -> str:
    """``min: suite: lungs.yaml; max_drop: command line: --robust-gate dice.max_drop=0.03``."""
    return "; ".join(f"{kind}: {src}" for kind, src in sources.items())


def gate_table_rows(result: RunResult) -> list[tuple[str, str, Any, str, bool]]:
    """Every entry of each evaluated suite's effective gate table: (suite, path, value,
    source, whether it is a whole level), in table order; a level appears itself only when
    it is null (no limits from there on)."""
    rows: list[tuple[str, str, Any, str, bool]] = []
    seen: set[str] = set()
    for prov in result.run_provenances():
        block = prov.get("suite")
        if not isinstance(block, Mapping) or not isinstance(block.get("gate_sources"), Mapping):
            continue
        name = str(block.get("name"))
        if name in seen:
            continue
        seen.add(name)
        sources: Mapping[str, Any] = block["gate_sources"]
        gates = _get_gates(block)
        levels = {p for p, v in table_entries(gates) if isinstance(v, Mapping) or v is None}
        levels.discard("on")
        for path, value in table_entries(gates):
            if isinstance(value, Mapping) or (value is None and path not in sources):
                continue  # a level holding limits (listed below it), or one nobody set
            source = str(sources.get(path, "default"))
            rows.append((name, path, value, source, path in levels))
    return rows


def _get_gates(block: Mapping[str, Any]) -> Any:
    definition = block.get("definition")
    return definition.get("gates") if isinstance(definition, Mapping) else None


def gate_overrides(result: RunResult) -> list[str]:
    """The gate overrides a run applied (command line, ini, argument), once each."""
    out: list[str] = []
    for prov in result.run_provenances():
        block = prov.get("suite")
        sources = block.get("gate_sources") if isinstance(block, Mapping) else None
        if isinstance(sources, Mapping):
            out += [str(s) for s in sources.values() if str(s).startswith(OVERRIDE_SOURCES)]
    return list(dict.fromkeys(out))


def suite_extends(result: RunResult) -> list[str]:
    """The suites the evaluated suites extend ("ref (path)"), once each."""
    out: list[str] = []
    for prov in result.run_provenances():
        block = prov.get("suite")
        chain = block.get("extends") if isinstance(block, Mapping) else None
        if isinstance(chain, list):
            out += [str(x) for x in chain]
    return list(dict.fromkeys(out))


def case_seconds(result: RunResult) -> list[float | None]:
    """Each case's share of its evaluation's time (``run.case_seconds``), in case order;
    None where the results do not say. A merged result's cases come run by run."""
    blocks = [b.get("case_seconds") for b in _runs(result) if b is not result.run]
    if not blocks:
        blocks = [result.run.get("case_seconds")]
    tables = [b if isinstance(b, Mapping) else {} for b in blocks]
    used: list[set[str]] = [set() for _ in tables]
    out: list[float | None] = []
    j = 0
    for c in result.cases:
        found = next(
            (
                k
                for k in range(j, len(tables))
                if c.case_id in tables[k] and c.case_id not in used[k]
            ),
            None,
        )
        if found is None:
            out.append(None)
            continue
        j = found
        used[j].add(c.case_id)
        v = tables[j][c.case_id]
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None)
    return out


def coverage_lines(result: RunResult) -> list[str]:
    """What the cases cover, one line each: a selection smaller than the grid (and how it
    was made), and every name of the model or the data that got no case, with why."""
    lines = []
    for suite, sel in result.selections():
        k, n = int(sel.get("n_selected", 0)), int(sel.get("n_grid", 0))
        if k < n:
            by = f" by {sel['by']}" if sel.get("by") else ""
            lines.append(f"{suite}: {k} of the grid's {n} cases selected{by}")
    for suite, target, why in result.not_evaluated():
        lines.append(f"{suite}: {target} not evaluated: {why}")
    return lines


__all__ = [
    "RENDERERS",
    "Renderer",
    "ReportsInterrupted",
    "RunState",
    "Written",
    "case_seconds",
    "coverage_lines",
    "gate_overrides",
    "gate_source_text",
    "gate_sources",
    "gate_table_rows",
    "get_renderer",
    "mark_interrupted",
    "register_renderer",
    "render_stamp",
    "run_errors",
    "run_state",
    "run_warnings",
    "suite_extends",
    "summary_line",
    "unit_of",
    "verdict_word",
    "was_interrupted",
    "write_reports",
]
