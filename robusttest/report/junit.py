"""JUnit: the numbers of each case as <property> elements, and a whole JUnit XML file.

Under pytest, pytest's own ``--junitxml`` writes the file and the plugin hands it
:func:`case_properties` per item; ``robusttest run --junit`` and ``robusttest report
--junit`` write the same properties through :class:`JUnitRenderer` (the xunit1 layout:
properties inside each testcase).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from robusttest.gates import FAILING
from robusttest.report.base import (
    Renderer,
    register_renderer,
    run_errors,
    run_state,
    summary_line,
    unit_of,
)
from robusttest.results import CaseResult, FrontierResult, RunResult

RUN_TESTCASE = "robusttest-run"  # the error testcase of a run interrupted or in error


def _s(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def case_properties(case: CaseResult) -> dict[str, str]:
    """The numbers of one case as strings, for JUnit <property> elements."""
    return {
        "metric": case.metric,
        "target": case.target,
        "noise": case.noise or "none",
        "level": _s(case.level),
        "clean": _s(case.clean),
        "noisy": _s(case.noisy),
        "drop": _s(case.drop),
        "ci_low": _s(case.ci_low),
        "ci_high": _s(case.ci_high),
        "limit": _s(case.limit),
        "gate": case.gate.describe() if case.gate is not None else "",
        "n": str(case.n),
        "verdict": case.verdict,
        "unit": unit_of(case),
    }


@register_renderer
class JUnitRenderer(Renderer):
    name = "junit"
    suffix = ".xml"
    description = "JUnit XML, one testcase per case with its numbers as properties"

    def render(self, result: RunResult, *, rendered_at: str) -> str:
        suites = ET.Element("testsuites")
        by_suite: dict[str, list[CaseResult]] = {}
        for c in result.cases:
            by_suite.setdefault(c.suite, []).append(c)
        fronts: dict[str, list[FrontierResult]] = {}
        for f in result.frontiers:
            fronts.setdefault(f.suite, []).append(f)
            by_suite.setdefault(f.suite, [])
        state = run_state(result)
        problem = state == "interrupted" or bool(run_errors(result)) or not result.completed
        if problem and not by_suite:  # nothing finished: the run's own testsuite
            by_suite[_suite_name(result)] = []
        for i, (name, cases) in enumerate(by_suite.items()):
            extra = problem and i == 0  # one error testcase says why, in the first suite
            fs = fronts.get(name, [])
            verdicts = [c.verdict for c in cases] + [f.verdict for f in fs]
            failures = verdicts.count("fail")
            errors = verdicts.count("error")
            ts = ET.SubElement(
                suites,
                "testsuite",
                name=f"robusttest.{name}",
                tests=str(len(verdicts) + extra),
                failures=str(failures),
                errors=str(errors + extra),
                skipped="0",
                timestamp=rendered_at,
            )
            props = ET.SubElement(ts, "properties")
            ET.SubElement(props, "property", name="summary", value=summary_line(result))
            ET.SubElement(props, "property", name="completed", value=str(result.completed).lower())
            for c in cases:
                tc = ET.SubElement(ts, "testcase", classname=f"robusttest.{name}", name=c.case_id)
                cp = ET.SubElement(tc, "properties")
                for k, v in case_properties(c).items():
                    ET.SubElement(cp, "property", name=k, value=v)
                if c.verdict in FAILING:
                    tag = "failure" if c.verdict == "fail" else "error"
                    el = ET.SubElement(tc, tag, message=(c.message or c.verdict).split("\n")[0])
                    el.text = c.message
            for f in fs:  # a failure frontier: its numbers, failing when its requirement does
                tc = ET.SubElement(
                    ts, "testcase", classname=f"robusttest.{name}", name=f.frontier_id
                )
                cp = ET.SubElement(tc, "properties")
                for k, v in f.properties().items():
                    ET.SubElement(cp, "property", name=k, value=v)
                if f.verdict in FAILING:
                    tag = "failure" if f.verdict == "fail" else "error"
                    el = ET.SubElement(tc, tag, message=f.message)
                    el.text = f.message
            if extra:
                lines = [summary_line(result), *run_errors(result)]
                tc = ET.SubElement(
                    ts, "testcase", classname=f"robusttest.{name}", name=RUN_TESTCASE
                )
                el = ET.SubElement(tc, "error", message=lines[0])
                el.text = "\n".join(lines)
        ET.indent(suites)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def _suite_name(result: RunResult) -> str:
    prov = result.provenance
    nested = prov.get("runs")
    runs = nested if isinstance(nested, list) else [prov]
    for p in runs:
        suite = p.get("suite") if isinstance(p, dict) else None
        if isinstance(suite, dict) and suite.get("name"):
            return str(suite["name"])
    return "run"
