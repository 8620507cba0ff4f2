"""One object per active pytest session: the plan, the lazily computed results, the reports.

Registered as a plugin only when ``--model`` is given (see plugin.py), so its hooks run
only then and need no "is robusttest active" guard.

The plan is the list of model × suite pairs, each with its grid of cases. It is resolved
at session start (so a bad model, suite or device is a usage error before anything is
collected), but nothing is evaluated until an item asks for its result: ``--collect-only``
and fully deselected runs evaluate nothing.

Selection: once pytest has filtered the items (``-k``, ``-m``, ``--lf``, ``--ff``, node
ids, ``--deselect``), the selected case items say which cases each pair evaluates: only
their conditions are computed, only they are judged, and the reports cover exactly them
and record the selection (a user's test with ``robust_eval`` needs the whole grid, which
is then evaluated, but the reports still cover the selected cases only). A selected case
that pytest never judged (a lost xdist worker, ``-x``, Ctrl-C) makes the run incomplete,
with the reason, so the exit code and every report agree.

With pytest-xdist the workers evaluate and the controller merges (xdist_shards.py). The
controller hands each worker the plan (through ``node.workerinput``) and a folder to
exchange files in; every worker writes which cases its selected items need when its
collection finishes; the controller plans those cases' shards, once, and waits for them
in a background thread (xdist's own loop keeps running, so a worker lost meanwhile is
handled as xdist handles any crash). A worker whose item needs the result runs unclaimed
shards until none is left; the controller merges their outcomes, computes the statistics
and the gallery once, and saves the RunResult as JSON for the workers' items to judge
from. So ``-n 2`` does no duplicate work, splits the evaluation across the workers and
gives the numbers of ``-n 0``. With ``--robust-backend ray`` the shards run on Ray
instead and the workers only wait.

Nothing is lost: the reports are written at session finish whatever happened, marked
incomplete after Ctrl-C (the JUnit XML too: a testsuite property and one error testcase);
a pair that could not be evaluated (an unreadable image, NaN outputs) makes its items
pytest errors and the session exit with ``EXIT_ROBUSTTEST_ERROR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_robusttest.items import (
    FAILURE_TYPES,
    MARKERS,
    ROOT_NODEID,
    BaselineItem,
    RobustCaseItem,
    RobustRootCollector,
    RobustSuiteFile,
    _RobustItemBase,
)
from pytest_robusttest.plan import (
    PAYLOAD_KEY,
    PAYLOAD_VERSION,
    EvaluationError,
    ModelSuite,
    PlannedCase,
)
from pytest_robusttest.progress import TerminalProgress, terminal_progress
from robusttest.options import RunSettings

# pytest's own exit statuses are 0-6 (6: --max-warnings, pytest 9); robusttest adds this one,
# well clear of them: the run began but a model × suite could not be evaluated (an
# unreadable image, NaN outputs) or a report not written.
EXIT_ROBUSTTEST_ERROR = 10
EXIT_CODES_HELP = (
    "exit status: 0 every gate held; 1 a gate (or another test) failed; 2 interrupted "
    "(reports written, marked incomplete); 4 usage error; 10 robusttest could not evaluate "
    "(an unreadable image, NaN outputs) or could not write a report"
)
RUN_NODEID = "robusttest::robusttest-run"  # the JUnit error testcase of an interrupted run

if TYPE_CHECKING:
    from pytest_robusttest.xdist_shards import ShardWorker
    from robusttest.data import Dataset
    from robusttest.engine import EngineOptions, Evaluator
    from robusttest.engine.shards import ShardExecutor
    from robusttest.models import ModelRunner
    from robusttest.progress import ProgressListener
    from robusttest.results import RunResult
    from robusttest.suite import Suite


@dataclass
class _Loaded:
    runner: ModelRunner
    suite: Suite
    dataset: Dataset


@dataclass
class Selection:
    """What the selected items need, JSON-able (an xdist worker hands it to the controller).

    ``cases``: per pair, the case ids of the selected case items (grid order); the reports
    cover exactly these. ``needs``: per pair, the case ids to evaluate (None: the whole
    grid, for ``robust_eval`` or a baseline item without case items). ``items``: node id
    of each selected case item -> (pair, case id). ``by``: the pytest options that made it.
    """

    cases: dict[str, list[str]] = field(default_factory=dict)
    needs: dict[str, list[str] | None] = field(default_factory=dict)
    items: dict[str, tuple[str, str]] = field(default_factory=dict)
    by: str = "pytest"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "needs": self.needs,
            "items": {k: list(v) for k, v in self.items.items()},
            "by": self.by,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Selection:
        return cls(
            cases={str(k): [str(c) for c in v] for k, v in d["cases"].items()},
            needs={
                str(k): None if v is None else [str(c) for c in v] for k, v in d["needs"].items()
            },
            items={str(k): (str(v[0]), str(v[1])) for k, v in d["items"].items()},
            by=str(d["by"]),
        )

    def update(self, other: Selection, grid: Mapping[str, Sequence[str]]) -> None:
        """Add what another worker selected (workers collect alike; this is a union)."""
        for key, ids in other.cases.items():
            have = set(self.cases.get(key, [])) | set(ids)
            self.cases[key] = [c for c in grid[key] if c in have]
        for key, need in other.needs.items():
            mine = self.needs.get(key, [])
            if need is None or mine is None:
                self.needs[key] = None
            else:
                have = set(mine) | set(need)
                self.needs[key] = [c for c in grid[key] if c in have]
        self.items.update(other.items)
        self.by = other.by


def selection_by(config: pytest.Config, node_args: Sequence[str] = ()) -> str:
    """The pytest options that selected the items, as a command line fragment."""
    o = config.option
    parts: list[str] = []
    if getattr(o, "keyword", ""):
        parts += ["-k", o.keyword]
    if getattr(o, "markexpr", ""):
        parts += ["-m", o.markexpr]
    if getattr(o, "lf", False):
        parts.append("--lf")
    if getattr(o, "failedfirst", False):
        parts.append("--ff")
    for d in getattr(o, "deselect", None) or []:
        parts += ["--deselect", str(d)]
    parts += [a for a in [*config.args, *node_args] if "::" in a]
    return "pytest " + shlex.join(parts) if parts else "pytest"


def model_labels(models: Sequence[Path]) -> list[str]:
    """File stems, made unique with an index where two models share a stem."""
    stems = [m.stem if not str(m).startswith("robusttest:") else str(m)[11:] for m in models]
    return [s if stems.count(s) == 1 else f"{s}-{i}" for i, s in enumerate(stems)]


def looks_like_suite(path: Path) -> bool:
    """A YAML test path is a suite when it is a mapping with ``task`` or a task variant.

    Unparseable YAML counts as a suite, so that loading it reports the line and column.
    """
    from robusttest.suite import TASKS, read_yaml

    try:
        doc = read_yaml(path.read_text(encoding="utf-8"))
    except Exception:
        return True
    return isinstance(doc, Mapping) and ("task" in doc or any(t in doc for t in TASKS))


class RobustSession:
    """Owns the plan, the results (computed or loaded once) and the report writing."""

    def __init__(self, config: pytest.Config, settings: RunSettings) -> None:
        self.config = config
        self.settings = settings
        self.model_suites: list[ModelSuite] = []
        self.is_worker = hasattr(config, "workerinput")
        self.exchange_dir: Path | None = None  # xdist: where results and needs are exchanged
        self._own_exchange_dir = False
        self._loaded: dict[str, _Loaded] = {}
        self._results: dict[str, RunResult] = {}
        self._errors: dict[str, str] = {}
        self.evaluated: list[str] = []  # keys evaluated in this process, in order
        self.notes: list[str] = []  # lines for the terminal summary
        self.report_lines: list[str] = []
        self.baseline: RunResult | None = None
        self.reports_failed = False  # a requested report could not be written
        self.interrupted_in: str | None = None  # the phase Ctrl-C stopped, if it did
        self.selection = Selection()
        self.node_args: list[str] = []
        self.outcomes: dict[str, str] = {}  # node id of a case item -> its pytest outcome
        self.crashed: dict[str, str] = {}  # node id -> why pytest never judged it
        self.lost_workers: list[str] = []
        self._reported: dict[str, RunResult] = {}  # per pair, what the reports cover
        self._pool: ThreadPoolExecutor | None = None  # the xdist controller's evaluation
        self._pending: list[Future[None]] = []
        self._stop = threading.Event()
        self.n_workers = 1  # xdist workers (the controller learns it as they are configured)
        self._workers_gone = threading.Event()  # set at session end: no worker claims a shard
        self._shard_workers: dict[str, ShardWorker] = {}  # a worker's side, per pair

    # --- hooks -------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Load models and suites and plan the grid; any library error is a usage error.

        Here rather than in pytest_configure: every plugin is configured by now (so pytest's
        clean-up after a usage error is safe), ``--help`` never gets here, and tryfirst puts
        it before xdist's own sessionstart, which starts the workers and needs the plan.
        """
        from robusttest.errors import RobustTestError

        try:
            self.prepare()
        except RobustTestError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.node_args = self._take_node_args()
        for family in self.families():
            if family not in MARKERS:  # a user-registered noise family
                self.config.addinivalue_line(
                    "markers", f"{family}: robusttest case under {family} noise"
                )

    def _take_node_args(self) -> list[str]:
        """Node ids of session-level items given as test paths (``robusttest::lungs::...``,
        as pytest prints them): pytest would look for a file ``robusttest``, so they leave
        ``config.args`` and select the items themselves (pytest_collection_modifyitems)."""
        suites = {ms.suite_name for ms in self.session_level()}
        ours = [
            a
            for a in self.config.args
            if a.split("::")[0] == ROOT_NODEID
            and len(a.split("::")) > 1
            and (a.split("::")[1] in suites or a.split("::")[1].startswith("robust-baseline["))
        ]
        for a in ours:
            self.config.args.remove(a)
        return ours

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return [
            f"robusttest: {ms.model.name} × suite {ms.suite_name} ({len(ms.cases)} cases)"
            for ms in self.model_suites
        ]

    def pytest_collect_file(
        self, file_path: Path, parent: pytest.Collector
    ) -> pytest.Collector | None:
        """A suite YAML given as a test path becomes a test file."""
        if file_path.suffix not in (".yaml", ".yml"):
            return None
        if not self.for_file(file_path.resolve()):
            return None
        return RobustSuiteFile.from_parent(parent, path=file_path, session_obj=self)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Add the session-level items (tryfirst: before -k, -m and --deselect filter)."""
        include_suites = bool(self.session_level())
        if not include_suites and self.baseline is None:
            return
        root = RobustRootCollector.from_parent(
            session,
            name=ROOT_NODEID,
            nodeid=ROOT_NODEID,
            session_obj=self,
            include_suites=include_suites,
        )
        # genitems fires the collect reports, so "collected N items" counts these items.
        added = list(session.genitems(root))
        if self.node_args:  # only the items named (or under a collector named) on the line
            keep = [i for i in added if any(_names(i.nodeid, a) for a in self.node_args)]
            dropped = [i for i in added if i not in keep]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
            added = keep
        items.extend(added)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The items are final (-k, -m, --lf, node ids, --deselect applied): record which
        cases they select and what must be evaluated; an xdist worker tells the controller.

        tryfirst: this must be on disk before xdist's own hook reports the collection.
        """
        self.selection = self.select(session.items)
        if self.is_worker:
            self.write_needs(self.selection)

    def select(self, items: Sequence[pytest.Item]) -> Selection:
        grid = self.grid()
        chosen: dict[str, set[str]] = {}
        full: set[str] = set()
        baseline_models: set[Path] = set()
        sel = Selection(by=selection_by(self.config, self.node_args))
        for item in items:
            if isinstance(item, RobustCaseItem):
                key = item.model_suite.key
                chosen.setdefault(key, set()).add(item.case.case_id)
                sel.items[item.nodeid] = (key, item.case.case_id)
            elif isinstance(item, BaselineItem):
                baseline_models.add(item.model)
            elif "robust_eval" in getattr(item, "fixturenames", ()):
                full |= set(grid)
        for ms in self.model_suites:
            if ms.model in baseline_models and ms.key not in chosen:
                full.add(ms.key)  # the baseline item compares the whole grid
        for key in grid:
            if key in chosen:
                sel.cases[key] = [c for c in grid[key] if c in chosen[key]]
            if key in full:
                sel.needs[key] = None
            elif key in chosen:
                whole = len(chosen[key]) == len(grid[key])
                sel.needs[key] = None if whole else sel.cases[key]
        return sel

    def grid(self) -> dict[str, list[str]]:
        """Per pair, its case ids in grid order."""
        return {ms.key: [c.case_id for c in ms.cases] for ms in self.model_suites}

    # --- what pytest made of each selected case ------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if isinstance(item, _RobustItemBase) and call.excinfo is not None:
            kind = FAILURE_TYPES.get(call.excinfo.type)
            if kind is not None:  # a plain attribute: it travels with the report under xdist
                report.robusttest_failure_type = kind  # type: ignore[attr-defined]
        if isinstance(item, RobustCaseItem) and call.when == "setup":
            self._book_share(item, report)
        return report

    def _book_share(self, item: RobustCaseItem, report: pytest.TestReport) -> None:
        """A case's setup time: its share of the evaluation (``run.case_seconds``), not the
        evaluation itself, which the first item to ask would otherwise hold whole (and, under
        xdist, each worker's first item its wait). JUnit, pytest-html and ``--durations``
        read this duration; the shares add up to the evaluation's wall time."""
        waited = item.evaluation_seconds
        result = self._results.get(item.model_suite.key)
        if waited is None or result is None:
            return
        share = (result.run.get("case_seconds") or {}).get(item.case.case_id)
        if isinstance(share, (int, float)) and not isinstance(share, bool):
            report.duration = max(report.duration - waited, 0.0) + float(share)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record each selected case's outcome (a case pytest never judged makes the run
        incomplete); give a robusttest failure its JUnit ``type`` (trylast: after pytest's
        junitxml has added the failure element)."""
        if self.is_worker:
            return
        nodeid = report.nodeid
        if nodeid in self.selection.items:
            if report.when == "call" or (report.when == "setup" and not report.passed):
                self.outcomes[nodeid] = report.outcome
            elif report.when not in ("setup", "teardown") and report.failed:
                # pytest-xdist's report of an item whose worker died under it
                self.crashed[nodeid] = str(report.longrepr)
        kind = getattr(report, "robusttest_failure_type", None)
        if kind and report.failed and report.when == "call":
            _junit_failure_type(self.config, report, kind)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Finish the controller's evaluation, then write the reports whatever happened;
        say in the JUnit XML when the run was interrupted; exit with EXIT_ROBUSTTEST_ERROR
        when something could not be evaluated.

        tryfirst: before pytest's junitxml writes its file (which gets the testsuite
        properties) and the terminal prints its summary.
        """
        if self.is_worker:
            return
        from robusttest.report import ReportsInterrupted

        self.finish_evaluation(
            interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED
            or bool(session.shouldstop or session.shouldfail)
        )
        combined = self.combined(session)
        if combined is not None:
            _junit_suite_properties(self.config, combined)
        interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED
        try:
            self.write_reports(combined, interrupted=interrupted)
        except ReportsInterrupted as exc:  # Ctrl-C while writing: written again, marked
            self._mark_interrupted_while_writing()
            self.report_lines += [w.line() for w in exc.written]
            self.reports_failed |= not all(w.ok for w in exc.written)
            self.interrupted_in = self.interrupted_in or "rendering"
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        except KeyboardInterrupt:  # a second Ctrl-C while they were written again: stop
            self.notes.append(
                "reports: interrupted twice while they were written; each one is whole "
                "(written atomically) or missing, the ones written say incomplete"
            )
            self._mark_interrupted_while_writing()
            self.interrupted_in = self.interrupted_in or "rendering"
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        incomplete = combined is not None and not combined.completed
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            self._junit_incomplete(session)
        elif self.has_errors() and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.TESTS_FAILED,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = EXIT_ROBUSTTEST_ERROR
        elif incomplete and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _mark_interrupted_while_writing(self) -> None:
        from robusttest.report import mark_interrupted

        self._results = {k: mark_interrupted(r, "rendering") for k, r in self._results.items()}
        self._reported = {k: mark_interrupted(r, "rendering") for k, r in self._reported.items()}

    def has_errors(self) -> bool:
        """A pair could not be evaluated (or only in part), or a report not written."""
        from robusttest.report import run_state

        return (
            bool(self._errors)
            or self.reports_failed
            or any(run_state(r) == "error" for r in self._results.values())
        )

    def _junit_incomplete(self, session: pytest.Session) -> None:
        """The JUnit XML of an interrupted run: a testsuite property and one error testcase
        (pytest's junitxml writes the file after this hook)."""
        from _pytest.junitxml import xml_key  # no public handle on the XML being written

        if self.config.stash.get(xml_key, None) is None:
            return
        xml = self.config.stash[xml_key]
        where = self.interrupted_in or "the test session"
        xml.add_global_property("robusttest_completed", "false")
        xml.add_global_property("robusttest_interrupted_in", where)
        combined = self.combined(session)
        from robusttest.report import summary_line

        text = (
            summary_line(combined)
            if combined is not None
            else "interrupted before any evaluation finished"
        )
        report = pytest.TestReport(
            nodeid=RUN_NODEID,
            location=(ROOT_NODEID, None, "robusttest-run"),
            keywords={},
            outcome="failed",
            longrepr=f"robusttest: interrupted during {where}: {text}",
            when="setup",  # a failed setup: an <error>, not a <failure>
        )
        # to the XML only: the terminal already says INCOMPLETE in robusttest's section
        xml.pytest_runtest_logreport(report)

    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
    ) -> None:
        if self.is_worker or not self.model_suites:
            return
        terminalreporter.write_sep("-", "robusttest")
        for line in self.summary_lines():
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.finish_evaluation()
        if self._own_exchange_dir and self.exchange_dir is not None:
            shutil.rmtree(self.exchange_dir, ignore_errors=True)

    # --- planning ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Resolve the plan: from the controller's payload on an xdist worker, else by loading
        every model and suite (RobustTestError propagates: the caller makes it a usage error)."""
        payload = self.config.workerinput.get(PAYLOAD_KEY) if self.is_worker else None  # type: ignore[attr-defined]
        if payload is not None and payload.get("version") == PAYLOAD_VERSION:
            self.model_suites = [ModelSuite.from_dict(t) for t in payload["model_suites"]]
            self.exchange_dir = Path(payload["dir"])
        else:
            self._check_device()
            self.model_suites = self._plan()
        self._load_baseline()

    def _check_device(self) -> None:
        device = self.settings.device
        if device.startswith("cuda"):
            from robusttest.errors import RobustTestError
            from robusttest.models import resolve_device

            try:
                resolve_device(device)
            except RobustTestError as exc:
                raise pytest.UsageError(f"--device: {exc}") from None

    def _plan(self) -> list[ModelSuite]:
        s = self.settings
        refs: list[tuple[str | None, Path | None]] = [(r, None) for r in s.suites]
        refs += [(str(f), f) for f in s.suite_files if looks_like_suite(f)]
        if not refs:
            refs = [(None, None)]
        planned: list[ModelSuite] = []
        for model, label in zip(s.models, model_labels(s.models), strict=True):
            for ref, suite_file in refs:
                key = f"t{len(planned)}"
                loaded = self._load(model, ref)
                self._loaded[key] = loaded
                planned.append(
                    ModelSuite(
                        key=key,
                        model=model,
                        label=label,
                        suite_name=loaded.suite.name,
                        suite_source=loaded.suite.source,
                        suite_file=suite_file,
                        cases=self._cases(loaded),
                    )
                )
        return planned

    def _load(
        self,
        model: Path,
        ref: str | None,
        *,
        device: str | None = None,
        threads: int | None = None,
    ) -> _Loaded:
        """Model, suite (variant picked by the model's task; overrides applied) and data
        (``device``: default --device; ``threads``: the model's CPU threads)."""
        from robusttest.engine import prepare
        from robusttest.errors import ModelError

        s = self.settings
        from robusttest.resources import resolve_model_ref

        if not resolve_model_ref(model).exists():
            raise ModelError(f"--model {model}: no such file")
        runner, suite, dataset = prepare(
            model,
            ref,
            data_root=s.data,
            device=s.device if device is None else device,
            threads=threads,
            seed=s.seed,
            repeats=s.repeats,
            limit=s.limit,
            gates=s.gates,
        )
        return _Loaded(runner=runner, suite=suite, dataset=dataset)

    def _cases(self, loaded: _Loaded) -> tuple[PlannedCase, ...]:
        # The grid exactly as engine.summarise builds it (plan_task also checks that the
        # model's task, targets and labels fit the suite and the data), then the frontiers
        # as engine.evaluate plans them.
        from robusttest.engine import plan_cases, plan_task
        from robusttest.engine.frontier import plan_frontiers

        plan = plan_task(loaded.suite, loaded.runner, loaded.dataset)
        cases = plan_cases(loaded.suite, plan)
        targets = list(dict.fromkeys(c.target for c in cases))
        fronts = plan_frontiers(loaded.suite, targets, every=self.settings.frontier)
        return tuple(
            PlannedCase(
                case_id=c.case_id,
                metric=c.metric,
                target=c.target,
                condition=c.condition,
                noise=c.noise.name if c.noise is not None else None,
            )
            for c in cases
        ) + tuple(
            PlannedCase(
                case_id=f.frontier_id,
                metric=f.metric,
                target=f.target,
                condition=f"{f.noise}-frontier",
                noise=f.noise,
                frontier=True,
            )
            for f in fronts
        )

    def _load_baseline(self) -> None:
        if self.settings.baseline is None:
            return
        from robusttest.report.cli import read_results

        path = self.settings.baseline
        if not path.is_file():
            raise pytest.UsageError(f"--robust-baseline {path}: no such file")
        self.baseline = read_results(path)  # verified: digest and verdicts

    def families(self) -> list[str]:
        return sorted({c.family for ms in self.model_suites for c in ms.cases})

    def model_suite(self, key: str) -> ModelSuite:
        for ms in self.model_suites:
            if ms.key == key:
                return ms
        raise KeyError(key)

    def for_file(self, path: Path) -> list[ModelSuite]:
        return [
            ms for ms in self.model_suites if ms.suite_file is not None and ms.suite_file == path
        ]

    def session_level(self) -> list[ModelSuite]:
        """Pairs collected at session level (from --suite or the card's default)."""
        return [ms for ms in self.model_suites if ms.suite_file is None]

    def item_name(self, ms: ModelSuite, case: PlannedCase) -> str:
        several = len({m.model for m in self.model_suites}) > 1
        return f"{ms.label}:{case.case_id}" if several else case.case_id

    # --- results -----------------------------------------------------------------------------
    def result(self, key: str) -> RunResult:
        """The RunResult of a pair: computed on first use (or read from the controller)."""
        if key in self._results:
            return self._results[key]
        # an xdist worker waits for what it told the controller it needs; anything else
        # (nothing selected asked for it) it evaluates itself
        provided = key in self.selection.needs and self.exchange_dir is not None
        if key not in self._errors and self.is_worker and provided:
            self._read_provided(key)
        if key not in self._results and key not in self._errors:
            self._evaluate(key)
        if key in self._errors:
            raise EvaluationError(self._errors[key])
        return self._results[key]

    def _describe(self, key: str) -> str:
        ms = self.model_suite(key)
        return f"{ms.model.name} on suite {ms.suite_name}"

    def _evaluate(self, key: str, *, in_thread: bool = False) -> None:
        from robusttest.engine import evaluate
        from robusttest.errors import RobustTestError

        ms = self.model_suite(key)
        cases = self.selection.needs.get(key)
        try:
            loaded = self._loaded.get(key)
            if loaded is None:  # an xdist worker without results from the controller
                loaded = self._load(ms.model, ms.suite_ref)
            progress = self._progress(in_thread)
            try:
                result = evaluate(
                    loaded.runner,
                    loaded.suite,
                    loaded.dataset,
                    self._engine_options(progress if progress is not None else False),
                    cases=cases,
                    selected_by=self.selection.by,
                    frontier=self.settings.frontier,
                    executor=self._executor(key, in_thread),
                )
            finally:
                if progress is not None:
                    progress.close()
        except RobustTestError as exc:
            self._errors[key] = f"could not evaluate {self._describe(key)}: {exc}"
            return
        except Exception as exc:
            # A bug: the first item shows the traceback, the others say where to look.
            self._errors[key] = (
                f"could not evaluate {self._describe(key)}: {type(exc).__name__}: {exc} "
                "(the traceback is shown at the first item that needed it)"
            )
            raise
        self._results[key] = result
        self.evaluated.append(key)
        self.config.hook.pytest_robusttest_evaluated(
            config=self.config, model=ms.model, suite=ms.suite_name, result=result
        )
        if result.run.get("interrupted") and not in_thread:
            # Ctrl-C: the engine kept what finished; stop the session now, and
            # pytest_sessionfinish still writes the reports, marked incomplete.
            self.interrupted_in = str(result.run.get("stopped_in") or "evaluation")
            raise KeyboardInterrupt

    def _progress(self, in_thread: bool) -> TerminalProgress | None:
        """The evaluation's progress in pytest's terminal (not on an xdist worker, whose
        output nobody sees: the controller shows it)."""
        if self.is_worker:
            return None
        return terminal_progress(self.config, main_thread=not in_thread)

    def _engine_options(self, progress: ProgressListener | bool | None = None) -> EngineOptions:
        """``progress``: the terminal's listener, False for none (an xdist worker's shard),
        None: a bar only when stderr is a terminal."""
        from robusttest.engine import EngineOptions

        s = self.settings
        return EngineOptions(
            batch_size=s.batch_size,
            workers=s.workers,
            lanes=s.lanes,
            shards=s.shards,
            device=s.device,
            cache=s.cache,
            cache_dir=s.cache_dir or self._cache_dir() if s.cache else None,
            progress=progress,
            stop=self._stop,
        )

    def _executor(self, key: str, in_thread: bool) -> ShardExecutor | None:
        """Where the shards of a pair run: on Ray (--robust-backend ray), on the xdist
        workers (the controller's background evaluation), else here (None)."""
        if self.settings.backend == "ray":
            from robusttest.engine.ray_backend import RayExecutor

            return RayExecutor(self.settings.ray_address)
        if in_thread and self.exchange_dir is not None:
            from pytest_robusttest.xdist_shards import Exchange, XdistExecutor

            exchange = Exchange(self.exchange_dir, key)
            return XdistExecutor(exchange, self.n_workers, self._workers_gone)
        return None

    def _shard_step(self, key: str) -> bool:
        """xdist worker: claim and run one shard of a pair the controller planned; False
        when there is none to claim (the item then waits for the merged result)."""
        if self.settings.backend != "local" or self.exchange_dir is None:
            return False
        worker = self._shard_workers.get(key)
        if worker is None:
            from pytest_robusttest.xdist_shards import Exchange, ShardWorker

            wid = str(self.config.workerinput["workerid"])  # type: ignore[attr-defined]
            exchange = Exchange(self.exchange_dir, key)
            worker = ShardWorker(exchange, wid, lambda cases: self._shard_evaluator(key, cases))
            self._shard_workers[key] = worker
        return worker.step()

    def _shard_evaluator(self, key: str, cases: list[str] | None) -> Evaluator:
        """xdist worker: the pair's model (on ``cuda:(worker index mod GPUs)`` with --device
        cuda; its share of the cores, as lanes unless --robust-lanes says) and evaluator."""
        import torch

        from pytest_robusttest.xdist_shards import worker_index
        from robusttest.engine import Evaluator
        from robusttest.models import spread_device

        ms = self.model_suite(key)
        wid = str(self.config.workerinput["workerid"])  # type: ignore[attr-defined]
        # its share of the cores for everything (the model, torch, decoding): N workers
        # each using every core would oversubscribe them (measured: 1.5x slower than -n 0)
        n = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
        share = max(1, torch.get_num_threads() // max(1, n))
        device = spread_device(self.settings.device, worker_index(wid))
        loaded = self._load(ms.model, ms.suite_ref, device=device, threads=share)
        base = self._engine_options(False)
        options = replace(base, threads=share, workers=min(base.workers, share))
        return Evaluator(loaded.runner, loaded.dataset, loaded.suite, options, cases=cases)

    def _cache_dir(self) -> Path | None:
        # Under .pytest_cache (cleared by --cache-clear) rather than the engine's default
        # ./.robusttest-cache; None (the engine default) without the cacheprovider plugin.
        cache = getattr(self.config, "cache", None)
        return cache.mkdir("robusttest") if cache is not None else None

    # --- xdist exchange ----------------------------------------------------------------------
    def worker_payload(self) -> dict[str, Any]:
        """What a worker needs instead of loading models: the plan and the exchange folder."""
        if self.exchange_dir is None:
            self.exchange_dir = Path(tempfile.mkdtemp(prefix="robusttest-xdist-"))
            self._own_exchange_dir = True
        return {
            "version": PAYLOAD_VERSION,
            "dir": str(self.exchange_dir),
            "model_suites": [ms.to_dict() for ms in self.model_suites],
        }

    def write_needs(self, selection: Selection) -> None:
        """Worker: record what the selected items need (read by the controller)."""
        if self.exchange_dir is None:
            return
        wid = str(self.config.workerinput["workerid"])  # type: ignore[attr-defined]
        _write_text(self.exchange_dir / f"needs-{wid}.json", json.dumps(selection.to_dict()))

    def provide(self, workerid: str) -> None:
        """Controller: evaluate what a worker needs (once each), in the background, and save
        it for the workers; returns at once, so xdist's loop goes on (and notices a worker
        lost meanwhile, as it notices any crash)."""
        if self.exchange_dir is None:
            return
        needs_file = self.exchange_dir / f"needs-{workerid}.json"
        grid = self.grid()
        try:
            got = Selection.from_dict(json.loads(needs_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            # no word from the worker: everything
            got = Selection(cases=dict(grid), needs=dict.fromkeys(grid))
        queued = set(self.selection.needs)
        self.selection.update(got, grid)
        for key in grid:
            if key in self.selection.needs and key not in queued:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="robusttest-eval")
                self._pending.append(self._pool.submit(self._provide_one, key))

    def _provide_one(self, key: str) -> None:
        assert self.exchange_dir is not None
        try:
            self._evaluate(key, in_thread=True)
        except BaseException:  # a bug; reported per item, the controller goes on
            self._errors[key] = (
                f"could not evaluate {self._describe(key)} (internal error):\n"
                + traceback.format_exc()
            )
        try:
            if key in self._results:
                self._results[key].write_json(self.exchange_dir / f"{key}.json")
            else:
                _write_text(self.exchange_dir / f"{key}.error", self._errors[key])
        except OSError as exc:
            why = f"could not hand {self._describe(key)} to the workers: {exc}"
            self.notes.append(why)
            with contextlib.suppress(OSError):  # the worker then waits: nothing else to do
                _write_text(self.exchange_dir / f"{key}.error", why)

    def finish_evaluation(self, interrupted: bool = True) -> None:
        """Controller: wait for the background evaluation. At an interrupt (Ctrl-C, -x)
        stop it first (it keeps what finished and is marked incomplete, as at Ctrl-C
        without xdist); otherwise the workers are gone, so the controller runs any shard
        still pending itself (e.g. one a lost worker had, when no worker was left)."""
        if self._pool is None:
            return
        if interrupted and any(not f.done() for f in self._pending):
            self._stop.set()
        self._workers_gone.set()
        self._pool.shutdown(wait=True)
        self._pool = None

    def worker_lost(self, workerid: str) -> None:
        """Controller: release the shards a lost worker claimed and never finished, so
        another worker (or the controller, at the end) redoes them."""
        if self.exchange_dir is None:
            return
        from pytest_robusttest.xdist_shards import Exchange

        for ms in self.model_suites:
            freed = Exchange(self.exchange_dir, ms.key).release(workerid)
            if freed:
                self.notes.append(
                    f"{self._describe(ms.key)}: shard(s) {', '.join(map(str, freed))} of lost "
                    f"worker {workerid} redone"
                )

    def _read_provided(self, key: str) -> None:
        """Worker: wait for the controller's result (or error) of a pair, and read it."""
        from robusttest.errors import RobustTestError
        from robusttest.results import RunResult

        assert self.exchange_dir is not None
        result_file = self.exchange_dir / f"{key}.json"
        error_file = self.exchange_dir / f"{key}.error"
        while not (result_file.is_file() or error_file.is_file()):
            if not self._shard_step(key):  # meanwhile, run the shards no one has claimed
                time.sleep(0.05)
        try:
            if result_file.is_file():
                self._results[key] = RunResult.read(result_file)
            else:
                self._errors[key] = error_file.read_text(encoding="utf-8")
        except (RobustTestError, OSError) as exc:
            self._errors[key] = (
                f"could not read the controller's result of {self._describe(key)}: {exc}"
            )

    # --- reports -----------------------------------------------------------------------------
    def combined(self, session: pytest.Session | None = None) -> RunResult | None:
        """The reported result: per pair, exactly the selected cases (made incomplete, with
        why, where pytest did not judge them all), merged with the library's merge."""
        from robusttest.results import merge

        results = []
        for ms in self.model_suites:
            result = self._results.get(ms.key)
            chosen = self.selection.cases.get(ms.key)
            if result is None or not chosen:
                continue  # evaluated only for robust_eval or a baseline item: not reported
            # narrow a result that judged more than pytest selected (robust_eval or a
            # baseline item asked for the whole grid); an interrupted one keeps its records
            if result.cases and not {c.case_id for c in result.cases} <= set(chosen):
                result = result.select(chosen, by=self.selection.by)
            why = self._unjudged(ms.key, session)
            if why is not None and result.completed:
                result = result.incomplete(why)
            self._reported[ms.key] = result
            results.append(result)
        if not results:
            return None
        if self.lost_workers and all(r.completed for r in results):
            self.notes += [f"{w}; every selected case was still judged" for w in self.lost_workers]
        return merge(results)

    def _unjudged(self, key: str, session: pytest.Session | None) -> str | None:
        """Why some selected cases of a pair got no verdict from pytest, or None."""
        mine = [n for n, (k, _) in self.selection.items.items() if k == key]
        crashed = [self.crashed[n] for n in mine if n in self.crashed]
        missing = [n for n in mine if n not in self.outcomes and n not in self.crashed]
        if not crashed and not missing:
            return None
        parts = []
        if crashed:
            parts.append(f"{len(crashed)} selected case(s) got no verdict: {crashed[0]}")
        if missing:
            why = [*self.lost_workers]
            stop = session and (session.shouldfail or session.shouldstop)
            if stop:
                why.append(str(stop))
            elif session is not None and session.exitstatus == pytest.ExitCode.INTERRUPTED:
                why.append("interrupted")
            because = f" ({'; '.join(why)})" if why else ""
            parts.append(f"{len(missing)} of {len(mine)} selected cases never ran{because}")
        return "; ".join(parts)

    def results_for_model(self, model: Path) -> list[RunResult]:
        return [self.result(ms.key) for ms in self.model_suites if ms.model == model]

    def write_reports(self, combined: RunResult | None, *, interrupted: bool = False) -> bool:
        """Write every requested report; False when one could not be written."""
        from robusttest.report import write_reports

        outputs = self.settings.outputs()
        if not outputs:
            return True
        if combined is None:
            why = (
                "interrupted before any evaluation finished"
                if self.interrupted_in is not None or interrupted
                else "an evaluation failed"
                if self._errors
                else "no robusttest case was selected"
            )
            self.notes.append(f"reports not written: {why}")
            return True
        written = write_reports(combined, outputs)
        self.report_lines += [w.line() for w in written]
        self.reports_failed |= not all(w.ok for w in written)
        return all(w.ok for w in written)

    def summary_lines(self) -> list[str]:
        from robusttest.report import run_errors, run_warnings, summary_line

        lines: list[str] = []
        for ms in self.model_suites:
            head = f"{ms.model.name} × {ms.suite_name}"
            result = self._reported.get(ms.key)
            if result is not None:
                lines.append(f"{head}: {_describe(result)}; {summary_line(result)}")
                lines += [f"robusttest: error: {e}" for e in run_errors(result)]
                lines += [f"robusttest: warning: {w}" for w in run_warnings(result)]
            elif ms.key in self._results:
                lines.append(f"{head}: evaluated for robust_eval or the baseline only")
            elif ms.key in self._errors:
                lines.append(f"{head}: ERROR {self._errors[ms.key].splitlines()[0]}")
            else:
                lines.append(f"{head}: not evaluated (no item of it was selected)")
        return lines + self.report_lines + self.notes


def _describe(result: RunResult) -> str:
    prov = result.provenance
    model = prov.get("model", {})
    data = prov.get("data", {})
    sha = str(model.get("sha256", ""))[:12]
    n = data.get("n_images", "?")
    device = result.run.get("device", "?")
    return f"sha256 {sha}, {n} images ({data.get('adapter', '?')}), device {device}"


def _names(nodeid: str, arg: str) -> bool:
    """Whether the node id ``arg`` names this item or a collector above it."""
    return nodeid == arg or nodeid.startswith(arg + "::")


def _junit_xml(config: pytest.Config) -> Any:
    from _pytest.junitxml import xml_key

    return config.stash.get(xml_key, None)


def _junit_failure_type(config: pytest.Config, report: pytest.TestReport, kind: str) -> None:
    """Set ``type`` on the failure element pytest's junitxml made for this report."""
    xml = _junit_xml(config)
    if xml is None:
        return
    for node in xml.node_reporter(report).nodes:
        if node.tag == "failure" and "type" not in node.attrib:
            node.set("type", kind)


def _junit_suite_properties(config: pytest.Config, result: RunResult) -> None:
    """The model (name, sha256), suite (name, sha256), completeness and coverage as
    testsuite properties of pytest's --junitxml file."""
    from robusttest.report import summary_line
    from robusttest.report.junit import suite_properties

    xml = _junit_xml(config)
    if xml is None:
        return
    xml.add_global_property("robusttest_summary", summary_line(result))
    for name, value in suite_properties(result):
        xml.add_global_property(f"robusttest_{name}", value)


def _write_text(path: Path, text: str) -> None:
    from robusttest.fsutil import atomic_write_text

    atomic_write_text(path, text)
