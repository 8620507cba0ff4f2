"""One object per pytest session: the plan, the lazily computed results, the reports.

The plan is the list of targets, one per (model, suite), each with its grid of cases. It is
resolved when pytest is configured (so a bad model, suite or device is a usage error before
anything is collected), but nothing is evaluated until an item asks for its result:
``--collect-only`` and fully deselected runs evaluate nothing.

With pytest-xdist the controller owns evaluation. It hands each worker the plan (through
``node.workerinput``) and a folder to exchange files in; every worker writes which targets
its selected items need when its collection finishes; the controller evaluates those,
once, before the first test is scheduled, and saves each RunResult there as JSON. Workers
only read those files, so ``-n 2`` does no duplicate work and gives the numbers of ``-n 0``.
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

from pytest_robusttest.options import RobustSettings

if TYPE_CHECKING:
    from robusttest.data import Dataset
    from robusttest.models import ModelRunner
    from robusttest.results import RunResult
    from robusttest.suite import Suite

PAYLOAD_KEY = "robusttest"  # in node.workerinput
PAYLOAD_VERSION = 1
CLEAN = "clean"


class EvaluationError(Exception):
    """Evaluating one target failed; every item of that target reports this message."""


# --- the plan --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedCase:
    """One grid cell as collected (before evaluation): what an item needs to exist."""

    case_id: str
    metric: str
    target: str
    condition: str
    noise: str | None  # the noise family; None for the clean baseline

    @property
    def family(self) -> str:
        return self.noise or CLEAN

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "metric": self.metric,
            "target": self.target,
            "condition": self.condition,
            "noise": self.noise,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlannedCase:
        return cls(
            case_id=str(d["case_id"]),
            metric=str(d["metric"]),
            target=str(d["target"]),
            condition=str(d["condition"]),
            noise=None if d["noise"] is None else str(d["noise"]),
        )


@dataclass(frozen=True)
class Target:
    """One (model, suite) evaluation and the cases it yields."""

    key: str  # "t0", "t1", ... in plan order; names the exchange files
    model: Path
    label: str  # the model file's stem, unique within the session
    suite_name: str
    suite_source: str  # the suite file evaluated (built-in or user's)
    suite_file: Path | None  # the YAML test path this target came from, if any
    cases: tuple[PlannedCase, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "model": str(self.model),
            "label": self.label,
            "suite_name": self.suite_name,
            "suite_source": self.suite_source,
            "suite_file": None if self.suite_file is None else str(self.suite_file),
            "cases": [c.to_dict() for c in self.cases],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Target:
        return cls(
            key=str(d["key"]),
            model=Path(d["model"]),
            label=str(d["label"]),
            suite_name=str(d["suite_name"]),
            suite_source=str(d["suite_source"]),
            suite_file=None if d["suite_file"] is None else Path(d["suite_file"]),
            cases=tuple(PlannedCase.from_dict(c) for c in d["cases"]),
        )


@dataclass
class _Loaded:
    runner: ModelRunner
    suite: Suite
    dataset: Dataset


def model_labels(models: Sequence[Path]) -> list[str]:
    """File stems, made unique with an index where two models share a stem."""
    stems = [m.stem for m in models]
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


# --- the session -----------------------------------------------------------------------------
class RobustSession:
    """Owns the plan, the results (computed or loaded once) and the report writing."""

    def __init__(self, config: pytest.Config, settings: RobustSettings) -> None:
        self.config = config
        self.settings = settings
        self.targets: list[Target] = []
        self.is_worker = hasattr(config, "workerinput")
        self.exchange_dir: Path | None = None  # xdist: where results and needs are exchanged
        self._own_exchange_dir = False
        self._loaded: dict[str, _Loaded] = {}
        self._results: dict[str, RunResult] = {}
        self._errors: dict[str, str] = {}
        self.evaluated: list[str] = []  # keys evaluated in this process, in order
        self.notes: list[str] = []  # lines for the terminal summary
        self.reports: list[tuple[str, Path]] = []
        self.baseline: RunResult | None = None

    @property
    def active(self) -> bool:
        return self.settings.active

    # --- planning ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Resolve the plan: from the controller's payload on an xdist worker, else by loading
        every model and suite (RobustTestError propagates: the caller makes it a usage error)."""
        if not self.active:
            return
        payload = self.config.workerinput.get(PAYLOAD_KEY) if self.is_worker else None  # type: ignore[attr-defined]
        if payload is not None and payload.get("version") == PAYLOAD_VERSION:
            self.targets = [Target.from_dict(t) for t in payload["targets"]]
            self.exchange_dir = Path(payload["dir"])
        else:
            self._check_device()
            self.targets = self._plan()
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

    def _plan(self) -> list[Target]:
        s = self.settings
        refs: list[tuple[str | None, Path | None]] = [(r, None) for r in s.suites]
        refs += [(str(f), f) for f in s.suite_files if looks_like_suite(f)]
        if not refs:
            refs = [(None, None)]
        targets: list[Target] = []
        for model, label in zip(s.models, model_labels(s.models), strict=True):
            for ref, suite_file in refs:
                key = f"t{len(targets)}"
                loaded = self._load(model, ref)
                self._loaded[key] = loaded
                targets.append(
                    Target(
                        key=key,
                        model=model,
                        label=label,
                        suite_name=loaded.suite.name,
                        suite_source=loaded.suite.source,
                        suite_file=suite_file,
                        cases=self._cases(loaded),
                    )
                )
        return targets

    def _load(self, model: Path, ref: str | None) -> _Loaded:
        """Model, suite (variant picked by the model's task; overrides applied) and data."""
        from robusttest.engine import prepare
        from robusttest.errors import ModelError

        s = self.settings
        if not model.exists():
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

    @staticmethod
    def _cases(loaded: _Loaded) -> tuple[PlannedCase, ...]:
        # The grid exactly as engine.summarise builds it (plan_task also checks that the
        # model's task, targets and labels fit the suite and the data).
        from robusttest.engine import plan_cases, plan_task

        plan = plan_task(loaded.suite, loaded.runner, loaded.dataset)
        return tuple(
            PlannedCase(
                case_id=c.case_id,
                metric=c.metric,
                target=c.target,
                condition=c.condition,
                noise=c.noise.name if c.noise is not None else None,
            )
            for c in plan_cases(loaded.suite, plan)
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
        return sorted({c.family for t in self.targets for c in t.cases})

    def target(self, key: str) -> Target:
        for t in self.targets:
            if t.key == key:
                return t
        raise KeyError(key)

    def targets_for_file(self, path: Path) -> list[Target]:
        return [t for t in self.targets if t.suite_file is not None and t.suite_file == path]

    def session_targets(self) -> list[Target]:
        """Targets collected at session level (from --suite or the card's default)."""
        return [t for t in self.targets if t.suite_file is None]

    def item_name(self, target: Target, case: PlannedCase) -> str:
        several = len({t.model for t in self.targets}) > 1
        return f"{target.label}:{case.case_id}" if several else case.case_id

    # --- results -----------------------------------------------------------------------------
    def result(self, key: str) -> RunResult:
        """The RunResult of a target: computed on first use (or read from the controller)."""
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
        t = self.target(key)
        return f"{t.model.name} on suite {t.suite_name}"

    def _evaluate(self, key: str) -> None:
        from robusttest.engine import EngineOptions, evaluate
        from robusttest.errors import RobustTestError

        target = self.target(key)
        try:
            loaded = self._loaded.get(key)
            if loaded is None:  # an xdist worker without results from the controller
                loaded = self._load(target.model, _ref_of(target))
            s = self.settings
            options = EngineOptions(
                batch_size=s.batch_size,
                workers=s.workers,
                lanes=s.lanes,
                device=s.device,
                cache=s.cache,
                cache_dir=self._cache_dir() if s.cache else None,
                progress=None,  # a bar only when stderr is a terminal (e.g. with -s)
            )
            result = evaluate(loaded.runner, loaded.suite, loaded.dataset, options)
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
            config=self.config, model=target.model, suite=target.suite_name, result=result
        )
        if not result.completed:
            # Ctrl-C: the engine kept what finished; stop the session now, and
            # pytest_sessionfinish still writes the reports, marked incomplete.
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
            "targets": [t.to_dict() for t in self.targets],
        }

    def write_needs(self, keys: Iterable[str]) -> None:
        """Worker: record which targets the selected items need (read by the controller)."""
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
            keys = [t.key for t in self.targets]  # no word from the worker: provide everything
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

    def cleanup(self) -> None:
        if self._own_exchange_dir and self.exchange_dir is not None:
            shutil.rmtree(self.exchange_dir, ignore_errors=True)

    # --- reports -----------------------------------------------------------------------------
    def combined(self) -> RunResult | None:
        """All results of this session as one (the library's merge for several targets)."""
        from robusttest.results import merge

        results = [self._results[t.key] for t in self.targets if t.key in self._results]
        if not results:
            return None
        return merge(results)

    def results_for_model(self, model: Path) -> list[RunResult]:
        return [self.result(t.key) for t in self.targets if t.model == model]

    def write_reports(self) -> bool:
        """Write --robust-json / --robust-html; False when a requested file could not be."""
        s = self.settings
        if s.json is None and s.html is None:
            return True
        combined = self.combined()
        if combined is None:
            self.notes.append("reports not written: nothing was evaluated (no item selected)")
            return True
        ok = True
        if s.json is not None:
            try:
                self.reports.append(("JSON", combined.write_json(s.json)))
            except OSError as exc:
                self.notes.append(f"JSON report not written: {s.json}: {exc.strerror or exc}")
                ok = False
        if s.html is not None:
            try:
                from robusttest.report import write_html  # being written; optional until then
            except ImportError:
                self.notes.append(
                    "HTML report not written: this robusttest has no robusttest.report.write_html"
                )
            else:
                try:
                    written = write_html(combined, s.html)
                    self.reports.append(("HTML", Path(written) if written else s.html))
                except OSError as exc:
                    self.notes.append(f"HTML report not written: {s.html}: {exc.strerror or exc}")
                    ok = False
        return ok

    def summary_lines(self) -> list[str]:
        lines: list[str] = []
        for t in self.targets:
            head = f"{t.model.name} × {t.suite_name}"
            result = self._results.get(t.key)
            if result is not None:
                lines.append(f"{head}: {_describe_result(result)}")
            elif t.key in self._errors:
                lines.append(f"{head}: ERROR {self._errors[t.key].splitlines()[0]}")
            else:
                lines.append(f"{head}: not evaluated (no item of it was selected)")
        lines += [f"{kind} report: {path}" for kind, path in self.reports]
        lines += self.notes
        return lines


def _ref_of(target: Target) -> str | None:
    return str(target.suite_file) if target.suite_file is not None else target.suite_source


def _describe_result(result: RunResult) -> str:
    prov = result.provenance
    model = prov.get("model", {})
    data = prov.get("data", {})
    counts = result.counts()
    gates = f"gates {counts['pass']} passed, {counts['fail']} failed"
    if counts["no-gate"]:
        gates += f", {counts['no-gate']} not gated"
    if counts["error"]:
        gates += f", {counts['error']} errors"
    sha = str(model.get("sha256", ""))[:12]
    n = data.get("n_images", "?")
    device = result.run.get("device", "?")
    return f"sha256 {sha}, {n} images ({data.get('adapter', '?')}), device {device}; {gates}"


def _write_text(path: Path, text: str) -> None:
    from robusttest.fsutil import atomic_write_text

    atomic_write_text(path, text)
