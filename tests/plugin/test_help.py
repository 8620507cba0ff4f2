"""`pytest --help`: the robusttest group and its ini keys, pinned (width-independent)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

EXPECTED = Path(__file__).parent / "data" / "help.txt"
HEADING = "robusttest: robustness of chest X-ray models to noise:"


def _entries(lines: list[str]) -> list[str]:
    """Join each option's wrapped lines into one line, whatever the terminal width."""
    out: list[str] = []
    for line in lines:
        if line.startswith("   ") and out:  # a continuation: argparse indents these further
            prev, cont = out[-1], line.strip()
            # textwrap may break after a hyphen ("--robust-" / "baseline"): rejoin those
            out[-1] = prev + cont if re.search(r"\w-$", prev) else f"{prev} {cont}"
        else:
            out.append(line.strip())
    return [re.sub(r"\s+", " ", e) for e in out]


def robusttest_help(text: str) -> str:
    lines = text.splitlines()
    start = lines.index(HEADING)
    end = lines.index("", start)
    options = _entries(lines[start + 1 : end])
    ini: list[str] = []
    in_ours = False
    for line in lines:
        if re.match(r"^  \S", line):
            in_ours = line.startswith("  robusttest_")
        elif not line.strip():
            in_ours = False
        if in_ours:
            ini.append(line)
    return "\n".join([HEADING, *options, "", "[ini]", *_entries(ini)]) + "\n"


@pytest.mark.parametrize("columns", ["80", "200"])
def test_help_text_is_pinned(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    result = pytester.runpytest("--help", "-p", "no:hypothesispytest", "-p", "no:benchmark")
    assert result.ret == 0
    got = robusttest_help(result.stdout.str())
    if os.environ.get("ROBUSTTEST_UPDATE_SNAPSHOTS"):
        EXPECTED.write_text(got)
    assert got == EXPECTED.read_text(), (
        "the robusttest --help text changed; if intended, rerun with "
        "ROBUSTTEST_UPDATE_SNAPSHOTS=1 and review the diff of tests/plugin/data/help.txt"
    )


def test_suite_help_names_the_library_defaults() -> None:
    from robusttest.options import option_for
    from robusttest.suite import DEFAULT_SUITE_FOR_TASK

    text = option_for("suites").help
    for task, suite in DEFAULT_SUITE_FOR_TASK.items():
        assert f"{suite} for {task}" in text
