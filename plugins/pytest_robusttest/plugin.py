"""pytest entry point: options, the session object, collection, xdist glue, reports.

Thin by design: the library (``robusttest``) loads, evaluates and renders; this module
only decides *when* (see ``session.py``) and turns cases into items (``items.py``).
The library is imported lazily, so ``pytest --help`` and runs without ``--model`` do not
import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_robusttest.items import (
    ROOT_NODEID,
    BaselineItem,
    RobustCaseItem,
    RobustRootCollector,
    RobustSuiteFile,
)
from pytest_robusttest.options import RobustSettings, SettingsError, add_options
from pytest_robusttest.session import CLEAN, PAYLOAD_KEY, RobustSession

if TYPE_CHECKING:
    from robusttest.results import RunResult

SESSION_KEY = pytest.StashKey[RobustSession]()
_ERROR_KEY = pytest.StashKey[str]()
_MARKERS = {
    "robusttest": "robustness gate of a model under noise (items added by --model)",
    CLEAN: "robusttest case on the clean (noise-free) images",
    "quantum": "robusttest case under quantum noise (dose reduction)",
    "electronic": "robusttest case under electronic (detector read) noise",
    "gaussian": "robusttest case under image-domain Gaussian noise",
    "poisson": "robusttest case under image-domain Poisson noise",
}
JUNIT_XUNIT2_WARNING = (
    "junit_family=xunit2: robusttest writes each case's numbers as <properties> inside "
    "<testcase>, which the xunit2 schema does not allow; strict JUnit consumers may drop "
    "or reject them. Use junit_family=xunit1 (robusttest's default when junit_family is "
    "not set)."
)


def get_session(config: pytest.Config) -> RobustSession | None:
    return config.stash.get(SESSION_KEY, None)


# --- options and configuration -------------------------------------------------------------
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_robusttest import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Parse the options; choose the JUnit family (tryfirst: before junitxml reads it)."""
    for name, text in _MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    try:
        settings = RobustSettings.from_config(config)
    except SettingsError as exc:
        # Raised at session start: a usage error before the other plugins are configured
        # would leave pytest's clean-up calling unconfigure hooks of unconfigured plugins.
        config.stash[_ERROR_KEY] = str(exc)
        return
    robust = RobustSession(config, settings)
    config.stash[SESSION_KEY] = robust
    if not settings.active:
        return
    _junit_family(config)
    if config.pluginmanager.hasplugin("xdist") and not robust.is_worker:
        config.pluginmanager.register(XdistHooks(robust), "robusttest-xdist")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Load models and suites and plan the grid; any library error is a usage error.

    Here rather than in pytest_configure: every plugin is configured by now (so pytest's
    clean-up after a usage error is safe), ``--help`` never gets here, and tryfirst puts
    it before xdist's own sessionstart, which starts the workers and needs the plan.
    """
    from robusttest.errors import RobustTestError

    config = session.config
    if _ERROR_KEY in config.stash:
        raise pytest.UsageError(config.stash[_ERROR_KEY])
    robust = get_session(config)
    if robust is None or not robust.active:
        return
    try:
        robust.prepare()
    except RobustTestError as exc:
        raise pytest.UsageError(str(exc)) from None
    for family in robust.families():
        if family not in _MARKERS:  # a user-registered noise family
            config.addinivalue_line("markers", f"{family}: robusttest case under {family} noise")


def _junit_family(config: pytest.Config) -> None:
    """Default junit_family to xunit1, the family whose schema allows per-testcase
    properties, unless the user chose one; warn when they chose xunit2."""
    if not config.option.xmlpath or hasattr(config, "workerinput"):
        return
    # pytest >= 9 keeps ini values (including -o overrides) in _inicfg and deprecates
    # .inicfg; pytest 8 has the plain .inicfg dict and applies -o at getini time.
    inicfg = getattr(config, "_inicfg", None)
    if inicfg is None:
        inicfg = config.inicfg
    overrides = [o.split("=", 1)[0].strip() for o in (config.option.override_ini or [])]
    if "junit_family" in inicfg or "junit_family" in overrides:
        if config.getini("junit_family") == "xunit2":
            config.issue_config_time_warning(pytest.PytestConfigWarning(JUNIT_XUNIT2_WARNING), 2)
        return
    # No public setter: seed getini's cache before junitxml's pytest_configure reads it
    # (this hook is tryfirst). tests/plugin pins that the XML really comes out as xunit1.
    config._inicache["junit_family"] = "xunit1"


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = get_session(config)
    if session is None or not session.active:
        return []
    return [
        f"robusttest: {t.model.name} × suite {t.suite_name} ({len(t.cases)} cases)"
        for t in session.targets
    ]


# --- collection ----------------------------------------------------------------------------
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A suite YAML given as a test path becomes a test file (only with --model)."""
    session = get_session(parent.config)
    if session is None or not session.active or file_path.suffix not in (".yaml", ".yml"):
        return None
    if not session.targets_for_file(file_path.resolve()):
        return None
    return RobustSuiteFile.from_parent(parent, path=file_path, session_obj=session)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Add the session-level items (tryfirst: before -k, -m and --deselect filter)."""
    robust = get_session(config)
    if robust is None or not robust.active:
        return
    include_suites = bool(robust.session_targets())
    if not include_suites and robust.baseline is None:
        return
    root = RobustRootCollector.from_parent(
        session,
        name=ROOT_NODEID,
        nodeid=ROOT_NODEID,
        session_obj=robust,
        include_suites=include_suites,
    )
    # genitems fires the collect reports, so "collected N items" counts these items.
    items.extend(session.genitems(root))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """xdist worker: tell the controller which targets the selected items need.

    tryfirst: this must be on disk before xdist's own hook reports the collection.
    """
    robust = get_session(session.config)
    if robust is None or not robust.active or not robust.is_worker:
        return
    all_keys = {t.key for t in robust.targets}
    needs: set[str] = set()
    for item in session.items:
        if isinstance(item, RobustCaseItem):
            needs.add(item.target.key)
        elif isinstance(item, BaselineItem):
            needs |= {t.key for t in robust.targets if t.model == item.model}
        elif "robust_eval" in getattr(item, "fixturenames", ()):
            needs |= all_keys
    robust.write_needs(needs)


class XdistHooks:
    """Controller-side xdist hooks; registered only when xdist is installed."""

    def __init__(self, session: RobustSession) -> None:
        self.session = session

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[PAYLOAD_KEY] = self.session.worker_payload()

    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        # Runs before the scheduler sends any test: evaluate what this worker needs, once.
        self.session.provide(str(node.workerinput["workerid"]))


# --- results for users' own tests ----------------------------------------------------------
class RobustEval:
    """What the ``robust_eval`` fixture returns: call it for a RunResult.

    ``robust_eval()`` with one model and one suite; otherwise name them:
    ``robust_eval(model="lungs_tinyunet", suite="lungs")`` (model: file name, stem or
    path; suite: its name). The first call evaluates (or, under xdist, reads the
    controller's result); later calls return the same object.
    """

    def __init__(self, session: RobustSession) -> None:
        self._session = session

    @property
    def choices(self) -> list[tuple[str, str]]:
        return [(t.label, t.suite_name) for t in self._session.targets]

    def __call__(self, model: str | Path | None = None, suite: str | None = None) -> RunResult:
        found = [
            t
            for t in self._session.targets
            if (model is None or str(model) in (t.label, t.model.name, t.model.stem, str(t.model)))
            and (suite is None or suite == t.suite_name)
        ]
        if len(found) != 1:
            choices = ", ".join(f"(model={m!r}, suite={s!r})" for m, s in self.choices)
            what = "matches nothing" if not found else "is ambiguous"
            raise LookupError(
                f"robust_eval(model={model!r}, suite={suite!r}) {what}; choices: {choices}"
            )
        return self._session.result(found[0].key)


@pytest.fixture(scope="session")
def robust_eval(pytestconfig: pytest.Config) -> RobustEval:
    """The evaluation of ``--model`` (see RobustEval); skips when no model is given."""
    session = get_session(pytestconfig)
    if session is None or not session.active:
        pytest.skip("robust_eval needs a model: run pytest with --model PATH")
    return RobustEval(session)


# --- reports -------------------------------------------------------------------------------
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    robust = get_session(session.config)
    if robust is None or not robust.active or robust.is_worker:
        return
    if not robust.write_reports() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    robust = get_session(config)
    if robust is None or not robust.active or robust.is_worker or not robust.targets:
        return
    terminalreporter.write_sep("-", "robusttest")
    for line in robust.summary_lines():
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    robust = get_session(config)
    if robust is not None:
        robust.cleanup()


__all__ = ["SESSION_KEY", "RobustEval", "get_session", "robust_eval"]
