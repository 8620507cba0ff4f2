"""JUnit: the numbers of each case as <property> elements, and a whole JUnit XML file.

Under pytest, pytest's own ``--junitxml`` writes the file and the plugin hands it
:func:`case_properties` per item; ``robusttest run --junit`` and ``robusttest report
--junit`` write the same properties through :class:`JUnitRenderer` (the xunit1 layout:
properties inside each testcase).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from robusttest.gates import FAILING, UNINFORMATIVE
from robusttest.report.base import Renderer, register_renderer, summary_line
from robusttest.results import CaseResult, RunResult


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
        for name, cases in by_suite.items():
            failures = sum(c.verdict == "fail" for c in cases)
            errors = sum(c.verdict == "error" for c in cases)
            skipped = sum(c.verdict == UNINFORMATIVE for c in cases)
            ts = ET.SubElement(
                suites,
                "testsuite",
                name=f"robusttest.{name}",
                tests=str(len(cases)),
                failures=str(failures),
                errors=str(errors),
                skipped=str(skipped),
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
                elif c.verdict == UNINFORMATIVE:  # reported apart: not a pass, not a failure
                    ET.SubElement(tc, "skipped", message=c.message.split("\n")[0])
        ET.indent(suites)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
