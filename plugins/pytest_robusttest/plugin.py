"""pytest entry point: options and configuration only.

Thin by design (the pytest-xdist layout): this module adds the options and, when
``--model`` is given, registers one ``RobustSession`` object that holds every other hook
(session.py), so no hook needs an "is robusttest active" guard. The library is imported
lazily: ``pytest --help`` and runs without ``--model`` never import torch.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_robusttest.items import MARKERS
from pytest_robusttest.options import SKIPPED_KEY, add_options, settings_from_config
from pytest_robusttest.plan import PAYLOAD_KEY
from pytest_robusttest.session import RobustSession

if TYPE_CHECKING:
    from robusttest.results import RunResult

SESSION_KEY = pytest.StashKey[RobustSession]()
JUNIT_XUNIT2_WARNING = (
    "junit_family=xunit2: robusttest writes each case's numbers as <properties> inside "
    "<testcase>, which the xunit2 schema does not allow; strict JUnit consumers may drop "
    "or reject them. Use junit_family=xunit1 (robusttest's default when junit_family is "
    "not set)."
)


def get_session(config: pytest.Config) -> RobustSession | None:
    """The session object of an active run (``--model`` given), else None."""
    return config.stash.get(SESSION_KEY, None)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_robusttest import hooks

    pluginmanager.add_hookspecs(hooks)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    """Add the options once the initial conftests (and every plugin) have added theirs,
    so a short form another one already uses (``--device``) is left to it."""
    yield
    early_config.stash[SKIPPED_KEY] = add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Parse the options; register the session object when active; choose the JUnit family
    (tryfirst: before junitxml reads it)."""
    from robusttest.options import SettingsError

    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    try:
        settings = settings_from_config(config)
    except SettingsError as exc:
        # Raised at session start: a usage error before the other plugins are configured
        # would leave pytest's clean-up calling unconfigure hooks of unconfigured plugins.
        config.pluginmanager.register(_UsageError(str(exc)), "robusttest-usage-error")
        return
    if not settings.active:
        return
    robust = RobustSession(config, settings)
    config.stash[SESSION_KEY] = robust
    config.pluginmanager.register(robust, "robusttest-session")
    _junit_family(config)
    if config.pluginmanager.hasplugin("xdist") and not robust.is_worker:
        config.pluginmanager.register(XdistHooks(robust), "robusttest-xdist")


class _UsageError:
    """Registered instead of the session when an option is invalid: reports it at start."""

    def __init__(self, message: str) -> None:
        self.message = message

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        raise pytest.UsageError(self.message)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Short forms that another plugin or conftest owns here (robusttest's are --robust-*)."""
    skipped = config.stash.get(SKIPPED_KEY, [])
    return [
        f"robusttest: {o.short} belongs to another plugin or conftest here; "
        f"robusttest's option is {o.flag}"
        for o in skipped
        if o.short is not None
    ]


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


class XdistHooks:
    """Controller-side xdist hooks; registered only when xdist is installed."""

    def __init__(self, session: RobustSession) -> None:
        self.session = session

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[PAYLOAD_KEY] = self.session.worker_payload()
        self.session.n_workers = int(node.workerinput.get("workercount", 1))

    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        # Start evaluating what this worker needs (once, in the background).
        self.session.provide(str(node.workerinput["workerid"]))

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """A worker went down; with ``error`` it was lost (crashed): the reason a selected
        case may have gone unjudged."""
        if error is not None:
            self.session.lost_workers.append(
                f"pytest-xdist worker {node.gateway.id} was lost ({error})"
            )
            self.session.worker_lost(str(node.workerinput["workerid"]))


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
        return [(ms.label, ms.suite_name) for ms in self._session.model_suites]

    def __call__(self, model: str | Path | None = None, suite: str | None = None) -> RunResult:
        found = [
            ms
            for ms in self._session.model_suites
            if (
                model is None
                or str(model) in (ms.label, ms.model.name, ms.model.stem, str(ms.model))
            )
            and (suite is None or suite == ms.suite_name)
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
    if session is None:
        pytest.skip("robust_eval needs a model: run pytest with --model PATH")
    return RobustEval(session)


__all__ = ["SESSION_KEY", "RobustEval", "get_session", "robust_eval"]
