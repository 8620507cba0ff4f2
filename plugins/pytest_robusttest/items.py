"""Collectors and items: one item per case of the grid, plus one per baseline comparison.

Items only read results; the session object decides when evaluation happens. A pair that
could not be evaluated (an unreadable image, NaN outputs) fails its items in setup: pytest
reports them as errors (JUnit <error>), not as failed gates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_robusttest.plan import EvaluationError, ModelSuite, PlannedCase

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from pytest_robusttest.session import RobustSession
    from robusttest.results import CaseResult, RunResult

ROOT_NODEID = "robusttest"
MARKERS = {
    "robusttest": "robustness gate of a model under noise (items added by --model)",
    "clean": "robusttest case on the clean (noise-free) images",
    "quantum": "robusttest case under quantum noise (dose reduction)",
    "electronic": "robusttest case under electronic (detector read) noise",
    "gaussian": "robusttest case under image-domain Gaussian noise",
    "poisson": "robusttest case under image-domain Poisson noise",
}


class GateFailure(Exception):
    """A case's gate failed; the message is the whole failure report."""


class BaselineRegression(Exception):
    """The run regressed against --robust-baseline."""


# The JUnit ``type`` of each failure (``robusttest.<class>``), as JUnit tools expect an
# exception type there; the session sets it on pytest's XML (see RobustSession).
FAILURE_TYPES: dict[type[BaseException], str] = {
    GateFailure: "robusttest.GateFailure",
    BaselineRegression: "robusttest.BaselineRegression",
    EvaluationError: "robusttest.EvaluationError",
}


def child_nodeid(parent: pytest.Collector, name: str) -> str:
    """The node id of ``name`` under ``parent``, given as a string so pytest parses it as
    it parses the ids in its cache: a name with ``[...]`` (every case id) then round-trips
    through ``--lf``/``--ff`` (pytest >= 9 compares structured ids)."""
    return f"{parent.nodeid}::{name}"


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.4g}"


def gate_failure_text(case: CaseResult) -> str:
    """The library's one-line verdict first (pytest's short summary shows the first line),
    then every number of the case on one line."""
    lines = [case.message or f"{case.case_id}: {case.verdict}"]
    gate = case.gate.describe() if case.gate is not None else "no gate"
    level = f" level={_fmt(case.level)}" if case.level is not None else ""
    limits = "".join(
        f" limit_{kind}={_fmt(v)}"
        for kind, v in (case.gate.limits().items() if case.gate is not None else ())
    )
    lines.append(
        f"metric={case.metric} target={case.target} noise={case.noise or 'none'}{level} "
        f"clean={_fmt(case.clean)} noisy={_fmt(case.noisy)} drop={_fmt(case.drop)} "
        f"CI=[{_fmt(case.ci_low)}, {_fmt(case.ci_high)}]{limits} n={case.n}"
    )
    lines.append(f"gate: {gate}; verdict: {case.verdict}")
    if case.reason:
        lines.append(f"note: {case.reason}")
    return "\n".join(lines)


def evaluation_errors(result: RunResult) -> list[str]:
    """The lines that make a pair's items errors: empty when its gates can be judged."""
    from robusttest.report import run_errors, run_state

    if run_state(result) != "error":
        return []
    return run_errors(result) or [str(result.run.get("error") or "the evaluation stopped")]


def fail_as_error(lines: list[str]) -> None:
    """Fail the running setup with these lines and no traceback: a pytest error."""
    pytest.fail("\n".join(f"robusttest: {line}" for line in lines), pytrace=False)


class _RobustItemBase(pytest.Item):
    session_obj: RobustSession

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | TerminalRepr:
        # Our own failures carry a complete message: no traceback into the plugin.
        if isinstance(excinfo.value, (GateFailure, BaselineRegression)):
            return str(excinfo.value)
        if isinstance(excinfo.value, EvaluationError):
            return f"robusttest: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)


class RobustCaseItem(_RobustItemBase):
    """One case: passes when its gate holds (or it has none), fails with the numbers."""

    def __init__(
        self,
        *,
        session_obj: RobustSession,
        model_suite: ModelSuite,
        case: PlannedCase,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.session_obj = session_obj
        self.model_suite = model_suite
        self.case = case
        # seconds setup spent evaluating (or waiting for the controller): the session books
        # the case's share of the evaluation instead (RobustSession._book_share)
        self.evaluation_seconds: float | None = None
        self.add_marker("robusttest")
        self.add_marker(case.family)

    def setup(self) -> None:
        t0 = time.perf_counter()
        try:
            result = self.session_obj.result(self.model_suite.key)
        except EvaluationError as exc:
            fail_as_error([str(exc)])
        self.evaluation_seconds = time.perf_counter() - t0
        errors = evaluation_errors(result)
        if errors:
            fail_as_error(errors)

    def runtest(self) -> None:
        from robusttest.report import gate_sources
        from robusttest.report.junit import case_properties

        result = self.session_obj.result(self.model_suite.key)
        if self.case.frontier:
            self._run_frontier(result)
            return
        try:
            case = result.case(self.case.case_id)
        except KeyError:  # not among the cases evaluated (the selection changed under xdist)
            raise EvaluationError(f"case {self.case.case_id} was not evaluated") from None
        # Properties first, so a failing case has its numbers in the JUnit XML too.
        for name, value in case_properties(case, gate_sources(result, case)).items():
            self.user_properties.append((name, value))
        if case.verdict == "fail":
            raise GateFailure(gate_failure_text(case))
        if case.verdict == "error":  # not judged (see setup); never a pass
            raise EvaluationError(case.message)
        if case.verdict == "uninformative":  # the suite reports these apart; not a pass
            pytest.skip(case.message.split("\n")[0])

    def _run_frontier(self, result: RunResult) -> None:
        """A frontier item: fails when the crossing's CI reaches past the suite's
        required level (``frontier:`` ... ``min_level``)."""
        try:
            front = result.frontier(self.case.case_id)
        except KeyError:
            raise EvaluationError(
                f"{self.case.case_id}: the frontier was not searched "
                f"({result.run.get('error') or 'the run stopped before it'})"
            ) from None
        for name, value in front.properties().items():
            self.user_properties.append((name, value))
        if front.verdict == "fail":
            raise GateFailure(front.message)
        if front.verdict == "error":
            raise EvaluationError(front.message)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        source = Path(self.model_suite.suite_source)
        return (source if source.is_file() else self.path), None, self.name


class BaselineItem(_RobustItemBase):
    """``robust-baseline[<model>]``: fails listing the regressions against the baseline."""

    def __init__(self, *, session_obj: RobustSession, model: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.session_obj = session_obj
        self.model = model
        self.add_marker("robusttest")

    def setup(self) -> None:
        try:
            results = self.session_obj.results_for_model(self.model)
        except EvaluationError as exc:
            fail_as_error([str(exc)])
        errors = [e for r in results for e in evaluation_errors(r)]
        if errors:
            fail_as_error(errors)

    def runtest(self) -> None:
        from robusttest.compare import compare
        from robusttest.results import merge

        base = self.session_obj.baseline
        assert base is not None
        settings = self.session_obj.settings
        new = merge(self.session_obj.results_for_model(self.model))
        common, per_metric = settings.baseline_tolerances()
        comparison = compare(
            base,
            new,
            tolerance=common,
            tolerances=per_metric,
            fail_on_ungated=settings.baseline_fail_on_ungated,
        )
        if not comparison.ok:
            # summary first (the short test summary shows the first line), then the cases
            # that regressed, newly fail or went missing
            raise BaselineRegression(
                f"{self.model.name} against {self.session_obj.settings.baseline}: "
                f"{comparison.summary()}\n{comparison.format_text(all_cases=False)}"
            )

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.model, None, self.name


def _case_items(
    parent: pytest.Collector, session_obj: RobustSession, ms: ModelSuite
) -> Iterable[pytest.Item]:
    for case in ms.cases:
        name = session_obj.item_name(ms, case)
        yield RobustCaseItem.from_parent(
            parent,
            name=name,
            nodeid=child_nodeid(parent, name),
            session_obj=session_obj,
            model_suite=ms,
            case=case,
        )


class RobustSuiteCollector(pytest.Collector):
    """The cases of the session-level model × suite pairs that share one suite name."""

    def __init__(
        self, *, session_obj: RobustSession, model_suites: list[ModelSuite], **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.session_obj = session_obj
        self.model_suites = model_suites

    def collect(self) -> Iterable[pytest.Item]:
        for ms in self.model_suites:
            yield from _case_items(self, self.session_obj, ms)


class RobustRootCollector(pytest.Collector):
    """``robusttest``: suites from --suite (or the card's default) and baseline items.

    A session-level node (not a file), added in pytest_collection_modifyitems so that
    ``pytest --model m.onnx`` works in an empty folder; its nodeid is fixed so every
    xdist worker collects the same ids.
    """

    def __init__(self, *, session_obj: RobustSession, include_suites: bool, **kw: Any) -> None:
        super().__init__(**kw)
        self.session_obj = session_obj
        self.include_suites = include_suites

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        out: list[pytest.Item | pytest.Collector] = []
        if self.include_suites:
            by_suite: dict[str, list[ModelSuite]] = {}
            for t in self.session_obj.session_level():
                by_suite.setdefault(t.suite_name, []).append(t)
            for name, pairs in by_suite.items():
                out.append(
                    RobustSuiteCollector.from_parent(
                        self, name=name, session_obj=self.session_obj, model_suites=pairs
                    )
                )
        if self.session_obj.baseline is not None:
            seen: list[Path] = []
            for t in self.session_obj.model_suites:
                if t.model not in seen:
                    seen.append(t.model)
                    name = f"robust-baseline[{t.label}]"
                    out.append(
                        BaselineItem.from_parent(
                            self,
                            name=name,
                            nodeid=child_nodeid(self, name),
                            session_obj=self.session_obj,
                            model=t.model,
                        )
                    )
        return out


class RobustSuiteFile(pytest.File):
    """A suite YAML file given as a test path (``pytest suites/lungs.yaml --model m.onnx``)."""

    def __init__(self, *, session_obj: RobustSession, **kw: Any) -> None:
        super().__init__(**kw)
        self.session_obj = session_obj

    def collect(self) -> Iterable[pytest.Item]:
        for ms in self.session_obj.for_file(self.path.resolve()):
            yield from _case_items(self, self.session_obj, ms)
