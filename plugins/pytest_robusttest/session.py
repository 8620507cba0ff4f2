"""One object per active pytest session: the plan, the lazily computed results, the reports.

Registered as a plugin only when ``--model`` is given (see plugin.py), so its hooks run
only then and need no "is robusttest active" guard.

The plan is the list of model × suite pairs, each with its grid of cases. It is resolved
at session start (so a bad model, suite or device is a usage error before anything is
collected), but nothing is evaluated until an item asks for its result: ``--collect-only``
and fully deselected runs evaluate nothing.

With pytest-xdist the controller owns evaluation. It hands each worker the plan (through
``node.workerinput``) and a folder to exchange files in; every worker writes which pairs
its selected items need when its collection finishes; the controller evaluates those,
once, before the first test is scheduled, and saves each RunResult there as JSON. Workers
only read those files, so ``-n 2`` does no duplicate work and gives the numbers of ``-n 0``.

Nothing is lost: the reports are written at session finish whatever happened, marked
incomplete after Ctrl-C (the JUnit XML too: a testsuite property and one error testcase);
a pair that could not be evaluated (an unreadable image, NaN outputs) makes its items
pytest errors and the session exit with ``EXIT_ROBUSTTEST_ERROR``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_robusttest.items import (
    MARKERS,
    ROOT_NODEID,
    BaselineItem,
    RobustCaseItem,
    RobustRootCollector,
    RobustSuiteFile,
)
from pytest_robusttest.plan import (
    PAYLOAD_KEY,
    PAYLOAD_VERSION,
    EvaluationError,
    ModelSuite,
    PlannedCase,
)
from robusttest.options import RunSettings

# pytest's own exit statuses are 0-5; robusttest adds this one: the run began but a model ×
# suite could not be evaluated (an unreadable image, NaN outputs) or a report not written.
EXIT_ROBUSTTEST_ERROR = 6
EXIT_CODES_HELP = (
    "exit status: 0 every gate held; 1 a gate (or another test) failed; 2 interrupted "
    "(reports written, marked incomplete); 4 usage error; 6 robusttest could not evaluate "
    "(an unreadable image, NaN outputs) or could not write a report"
)
RUN_NODEID = "robusttest::robusttest-run"  # the JUnit error testcase of an interrupted run

if TYPE_CHECKING:
    from robusttest.data import Dataset
    from robusttest.models import ModelRunner
    from robusttest.results import RunResult
    from robusttest.suite import Suite


@dataclass
class _Loaded:
    runner: ModelRunner
    suite: Suite
    dataset: Dataset


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
        for family in self.families():
            if family not in MARKERS:  # a user-registered noise family
                self.config.addinivalue_line(
                    "markers", f"{family}: robusttest case under {family} noise"
                )

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
        items.extend(session.genitems(root))

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """xdist worker: tell the controller which pairs the selected items need.

        tryfirst: this must be on disk before xdist's own hook reports the collection.
        """
        if not self.is_worker:
            return
        all_keys = {ms.key for ms in self.model_suites}
        needs: set[str] = set()
        for item in session.items:
            if isinstance(item, RobustCaseItem):
                needs.add(item.model_suite.key)
            elif isinstance(item, BaselineItem):
                needs |= {ms.key for ms in self.model_suites if ms.model == item.model}
            elif "robust_eval" in getattr(item, "fixturenames", ()):
                needs |= all_keys
        self.write_needs(needs)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the reports whatever happened; say in the JUnit XML when the run was
        interrupted; exit with EXIT_ROBUSTTEST_ERROR when something could not be evaluated.

        tryfirst: before junitxml writes its file and the terminal prints its summary.
        """
        if self.is_worker:
            return
        from robusttest.report import ReportsInterrupted

        try:
            self.write_reports(interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED)
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
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            self._junit_incomplete(session)
        elif self.has_errors() and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.TESTS_FAILED,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = EXIT_ROBUSTTEST_ERROR

    def _mark_interrupted_while_writing(self) -> None:
        from robusttest.report import mark_interrupted

        self._results = {k: mark_interrupted(r, "rendering") for k, r in self._results.items()}

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
        combined = self.combined()
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

    def _load(self, model: Path, ref: str | None) -> _Loaded:
        """Model, suite (variant picked by the model's task; overrides applied) and data."""
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
            device=s.device,
            seed=s.seed,
            repeats=s.repeats,
            limit=s.limit,
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
        from robusttest.results import RunResult

        path = self.settings.baseline
        if not path.is_file():
            raise pytest.UsageError(f"--robust-baseline {path}: no such file")
        self.baseline = RunResult.read(path)

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
        if key not in self._errors and self.exchange_dir is not None and self.is_worker:
            self._read_provided(key)
        if key not in self._results and key not in self._errors:
            self._evaluate(key)
        if key in self._errors:
            raise EvaluationError(self._errors[key])
        return self._results[key]

    def _describe(self, key: str) -> str:
        ms = self.model_suite(key)
        return f"{ms.model.name} on suite {ms.suite_name}"

    def _evaluate(self, key: str) -> None:
        from robusttest.engine import EngineOptions, evaluate
        from robusttest.errors import RobustTestError

        ms = self.model_suite(key)
        try:
            loaded = self._loaded.get(key)
            if loaded is None:  # an xdist worker without results from the controller
                loaded = self._load(ms.model, ms.suite_ref)
            s = self.settings
            options = EngineOptions(
                batch_size=s.batch_size,
                workers=s.workers,
                lanes=s.lanes,
                device=s.device,
                cache=s.cache,
                cache_dir=s.cache_dir or self._cache_dir() if s.cache else None,
                progress=None,  # a bar only when stderr is a terminal (e.g. with -s)
            )
            result = evaluate(
                loaded.runner, loaded.suite, loaded.dataset, options, frontier=s.frontier
            )
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
        if result.run.get("interrupted"):
            # Ctrl-C: the engine kept what finished; stop the session now, and
            # pytest_sessionfinish still writes the reports, marked incomplete.
            self.interrupted_in = str(result.run.get("stopped_in") or "evaluation")
            raise KeyboardInterrupt

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

    def write_needs(self, keys: Iterable[str]) -> None:
        """Worker: record which pairs the selected items need (read by the controller)."""
        if self.exchange_dir is None:
            return
        wid = str(self.config.workerinput["workerid"])  # type: ignore[attr-defined]
        _write_text(self.exchange_dir / f"needs-{wid}.json", json.dumps(sorted(set(keys))))

    def provide(self, workerid: str) -> None:
        """Controller: evaluate what a worker needs (once) and save it for the workers."""
        if self.exchange_dir is None:
            return
        needs_file = self.exchange_dir / f"needs-{workerid}.json"
        try:
            keys = [str(k) for k in json.loads(needs_file.read_text(encoding="utf-8"))]
        except (OSError, ValueError):
            keys = [ms.key for ms in self.model_suites]  # no word from the worker: everything
        for key in keys:
            if key in self._results or key in self._errors:
                continue
            try:
                self._evaluate(key)
            except Exception:  # a bug; keep the controller's loop alive, report it per item
                self._errors[key] = (
                    f"could not evaluate {self._describe(key)} (internal error):\n"
                    + traceback.format_exc()
                )
            try:
                if key in self._results:
                    self._results[key].write_json(self.exchange_dir / f"{key}.json")
                else:
                    _write_text(self.exchange_dir / f"{key}.error", self._errors[key])
            except OSError as exc:  # the worker then evaluates itself (see result())
                self.notes.append(f"could not hand {self._describe(key)} to the workers: {exc}")

    def _read_provided(self, key: str) -> None:
        from robusttest.errors import RobustTestError
        from robusttest.results import RunResult

        assert self.exchange_dir is not None
        result_file = self.exchange_dir / f"{key}.json"
        error_file = self.exchange_dir / f"{key}.error"
        try:
            if result_file.is_file():
                self._results[key] = RunResult.read(result_file)
            elif error_file.is_file():
                self._errors[key] = error_file.read_text(encoding="utf-8")
        except (RobustTestError, OSError) as exc:
            self._errors[key] = (
                f"could not read the controller's result of {self._describe(key)}: {exc}"
            )

    # --- reports -----------------------------------------------------------------------------
    def combined(self) -> RunResult | None:
        """All results of this session as one (the library's merge for several pairs)."""
        from robusttest.results import merge

        results = [self._results[ms.key] for ms in self.model_suites if ms.key in self._results]
        if not results:
            return None
        return merge(results)

    def results_for_model(self, model: Path) -> list[RunResult]:
        return [self.result(ms.key) for ms in self.model_suites if ms.model == model]

    def write_reports(self, *, interrupted: bool = False) -> bool:
        """Write every requested report; False when one could not be written."""
        from robusttest.report import write_reports

        outputs = self.settings.outputs()
        if not outputs:
            return True
        combined = self.combined()
        if combined is None:
            why = (
                "interrupted before any evaluation finished"
                if self.interrupted_in is not None or interrupted
                else "an evaluation failed"
                if self._errors
                else "nothing was evaluated (no item selected)"
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
            result = self._results.get(ms.key)
            if result is not None:
                lines.append(f"{head}: {_describe(result)}; {summary_line(result)}")
                lines += [f"robusttest: error: {e}" for e in run_errors(result)]
                lines += [f"robusttest: warning: {w}" for w in run_warnings(result)]
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


def _write_text(path: Path, text: str) -> None:
    from robusttest.fsutil import atomic_write_text

    atomic_write_text(path, text)
