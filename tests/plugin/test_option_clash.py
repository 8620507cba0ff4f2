"""Installing robusttest never breaks another project's pytest: a conftest or a plugin that
defines --model, --device, --data or --suite keeps it, and robusttest's options are then
spelled --robust-* (issue 14: "a clash never crashes anyone's pytest")."""

from __future__ import annotations

import pytest
from plugin_helpers import Models, small

SHORTS = ("--model", "--device", "--data", "--suite")


def _defines(names: tuple[str, ...]) -> str:
    lines = ["def pytest_addoption(parser):"]
    for n in names:
        lines.append(f"    parser.addoption({n!r}, dest={'mine_' + n[2:]!r}, default='theirs')")
    lines += [
        "",
        "def pytest_configure(config):",
        "    config.stash_values = {n: config.getoption('mine_' + n) for n in "
        f"{[n[2:] for n in names]!r}}}",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", SHORTS)
def test_a_conftest_option_keeps_its_name(project: pytest.Pytester, name: str) -> None:
    project.makeconftest(_defines((name,)))
    project.makepyfile(
        test_theirs=f"""
        def test_their_option(pytestconfig):
            assert pytestconfig.getoption({"mine_" + name[2:]!r}) == "given"
        """
    )
    result = project.runpytest(f"{name}=given", "-q", "test_theirs.py")
    result.assert_outcomes(passed=1)
    help_ = project.runpytest("--help")
    assert help_.ret == 0
    robust = "--robust-" + name[2:]
    help_.stdout.fnmatch_lines([f"*  {robust}=*"])


def test_all_four_in_a_plugin_and_robusttest_still_runs(
    project: pytest.Pytester, models: Models
) -> None:
    project.makepyfile(theirplugin=_defines(SHORTS))
    project.syspathinsert()
    args = [a.replace("--model=", "--robust-model=").replace("--suite=", "--robust-suite=")
            for a in small(models.seg)]  # fmt: skip
    result = project.runpytest("-p", "theirplugin", *args, "--device=cpu", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "robusttest: --model belongs to another plugin or conftest here; "
            "robusttest's option is --robust-model"
        ]
    )


def test_without_a_clash_both_spellings_work(project: pytest.Pytester, models: Models) -> None:
    long_form = [a.replace("--model=", "--robust-model=") for a in small(models.seg)]
    project.runpytest(*long_form, "-q").assert_outcomes(passed=3)
    project.runpytest(*small(models.seg), "-q").assert_outcomes(passed=3)


@pytest.mark.parametrize("name", SHORTS)
def test_a_plugin_option_keeps_its_name_and_the_other_short_forms_stay(
    project: pytest.Pytester, models: Models, name: str
) -> None:
    project.makepyfile(theirplugin=_defines((name,)))
    project.makepyfile(
        test_theirs=f"""
        def test_their_option(pytestconfig):
            assert pytestconfig.getoption({"mine_" + name[2:]!r}) == "given"
        """
    )
    project.syspathinsert()
    # robusttest's spelling of the taken one; its short forms of the other three
    ours = {
        "--model": f"--model={models.seg}",
        "--suite": "--suite=tiny.yaml",
        "--device": "--device=cpu",
        "--data": "--data=.",
    }
    ours[name] = ours[name].replace(name, "--robust-" + name[2:])
    result = project.runpytest(
        "-p", "theirplugin", *ours.values(), f"{name}=given", "--robust-limit=4", "-q"
    )
    result.assert_outcomes(passed=4)  # their test and robusttest's three cases
