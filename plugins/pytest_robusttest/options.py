"""The robusttest option group, built from the library's one table (robusttest.options).

Every option has a ``--robust-`` spelling and an ini key (``robusttest_<name>``). The four
short forms (``--model``, ``--suite``, ``--data``, ``--device``) are added only when no
other plugin or conftest has claimed them: the options are registered after the initial
conftests have added theirs (``pytest_load_initial_conftests``), so a project whose own
conftest defines ``--device`` keeps it, and robusttest's is ``--robust-device`` there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from robusttest.options import OPTIONS, RunOption, RunSettings, SettingsError, argparse_type

GROUP = "robusttest"
GROUP_DESCRIPTION = "robusttest: robustness of chest X-ray models to noise"
SKIPPED_KEY = pytest.StashKey[list[RunOption]]()

__all__ = ["OPTIONS", "RunSettings", "SettingsError", "add_options", "settings_from_config"]


def _taken(parser: pytest.Parser) -> set[str]:
    """Every option string another plugin or conftest has registered so far."""
    names: set[str] = set()
    groups: Iterable[Any] = [getattr(parser, "_anonymous", None), *getattr(parser, "_groups", [])]
    for group in groups:
        for opt in getattr(group, "options", ()):
            names.update(opt.names())
    return names


def add_options(parser: pytest.Parser) -> list[RunOption]:
    """Add the group; returns the options whose short form was already taken."""
    taken = _taken(parser)
    skipped: list[RunOption] = []
    group = parser.getgroup(GROUP, GROUP_DESCRIPTION)
    for o in OPTIONS:
        names = [o.flag]
        if o.short is not None:
            if o.short in taken:
                skipped.append(o)
            else:
                names.insert(0, o.short)
        if o.flag in taken:  # never crash another project's pytest, even on our long names
            skipped.append(o)
            continue
        kw: dict[str, Any] = {"dest": o.dest, "help": o.help}
        if o.field == "models":  # the option that turns robusttest on says how it exits
            from pytest_robusttest.session import EXIT_CODES_HELP

            kw["help"] = f"{o.help}. {EXIT_CODES_HELP}"
        if o.kind == "switch":
            # default None (not False) tells "not given" apart, so the ini value can apply
            kw.update(action="store_true", default=None)
        elif o.kind in ("repeatable", "paths"):
            kw.update(action="append", default=None, metavar=o.metavar)
            if o.parse is not None:
                kw["type"] = argparse_type(o.parse)
        else:
            kw.update(default=None, metavar=o.metavar)
            if o.parse is not None:
                kw["type"] = argparse_type(o.parse)
        group.addoption(*names, **kw)
        parser.addini(o.ini, f"{o.help} (same as {names[0]})", type=o.ini_type, default=None)  # type: ignore[arg-type]
    return skipped


def settings_from_config(config: pytest.Config) -> RunSettings:
    """The validated settings of this pytest run (SettingsError names the bad option)."""
    cli = {o.field: config.getoption(o.dest, None) for o in OPTIONS}
    ini: dict[str, Any] = {}
    for o in OPTIONS:
        try:
            ini[o.field] = config.getini(o.ini)
        except ValueError:  # not registered: its flag was taken (see add_options)
            ini[o.field] = None
    settings = RunSettings.from_sources(
        cli,
        ini,
        invocation_dir=config.invocation_params.dir,
        ini_dir=config.inipath.parent if config.inipath is not None else None,
        args=config.args,
    )
    xml = getattr(config.option, "xmlpath", None)
    settings.check_outputs({"--junitxml": config.invocation_params.dir / xml if xml else None})
    return settings
