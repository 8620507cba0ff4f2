"""JUnit: the numbers of each case as <property> elements, and a whole JUnit XML file.

Under pytest, pytest's own ``--junitxml`` writes the file and the plugin hands it
:func:`case_properties` per item and :func:`suite_properties` for the testsuite;
``robusttest run --junit`` and ``robusttest report --junit`` write the same properties
through :class:`JUnitRenderer` (the xunit1 layout: properties inside each testcase).

Each limit of a case's gate is its own property (``limit_min``, ``limit_max_drop``,
``limit_max_relative_drop``), beside the quantity it bounds (``noisy_ci_*``, ``ci_*`` of
the drop, ``relative_ci_*``); a failure's ``type`` is ``robusttest.GateFailure``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from robusttest.gates import FAILING, UNINFORMATIVE
from robusttest.report.base import (
    Renderer,
    case_seconds,
    coverage_lines,
    gate_overrides,
    gate_source_text,
    gate_sources,
    register_renderer,
    run_errors,
    run_state,
    suite_extends,
    summary_line,
    unit_of,
)
from robusttest.results import CaseResult, FrontierResult, RunResult

RUN_TESTCASE = "robusttest-run"  # the error testcase of a run interrupted or in error
GATE_FAILURE_TYPE = "robusttest.GateFailure"
CASE_ERROR_TYPE = "robusttest.CaseError"


def _s(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def case_properties(
    case: CaseResult, gate_sources: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The numbers of one case as strings, for JUnit <property> elements: one ``limit_*``
    per limit of its gate, each beside the CI it is judged on; ``gate_source`` says where
    each limit came from (``report.base.gate_sources``: suite file, extended suite,
    command line, ini)."""
    out = {
        "metric": case.metric,
        "target": case.target,
        "noise": case.noise or "none",
        "level": _s(case.level),
        "clean": _s(case.clean),
        "noisy": _s(case.noisy),
        "noisy_ci_low": _s(case.noisy_ci_low),
        "noisy_ci_high": _s(case.noisy_ci_high),
        "drop": _s(case.drop),
        "ci_low": _s(case.ci_low),
        "ci_high": _s(case.ci_high),
        "relative_drop": _s(case.relative_drop),
        "relative_ci_low": _s(case.relative_ci_low),
        "relative_ci_high": _s(case.relative_ci_high),
    }
    if case.gate is not None:
        out.update({f"limit_{kind}": _s(v) for kind, v in case.gate.limits().items()})
        out["judged_on"] = case.gate.on
    out["gate"] = case.gate.describe() if case.gate is not None else ""
    out["gate_source"] = gate_source_text(gate_sources or {}) if case.gate is not None else ""
    out["failed_limits"] = ",".join(case.failed_limits)
    out["p_adjusted"] = _s(case.p_adjusted)
    out["test"] = case.test or ""
    out["test_unit"] = case.test_unit or ""
    out["n"] = str(case.n)
    out["n_patients"] = str(case.n_patients)
    out["verdict"] = case.verdict
    out["unit"] = unit_of(case)
    return out


def suite_properties(result: RunResult, suite_name: str | None = None) -> list[tuple[str, str]]:
    """Testsuite-level properties: each evaluation's model (name, sha256) and suite (name,
    sha256), in evaluation order (those of ``suite_name`` only, when given), then whether
    the run completed and what it covers."""
    out: list[tuple[str, str]] = []
    for prov in result.run_provenances():
        model, suite = prov.get("model") or {}, prov.get("suite") or {}
        if suite_name is not None and suite.get("name") != suite_name:
            continue
        out += [
            ("model", str(model.get("path", ""))),
            ("model_sha256", str(model.get("sha256", ""))),
            ("suite", str(suite.get("name", ""))),
            ("suite_sha256", str(suite.get("sha256", ""))),
        ]
    out += [("suite_extends", chain) for chain in suite_extends(result)]
    out += [("gate_override", label) for label in gate_overrides(result)]
    out.append(("completed", str(result.completed).lower()))
    out += [("incomplete", why) for why in result.incomplete_reasons()]
    out += [("coverage", line) for line in coverage_lines(result)]
    return out


def _failing(tc: ET.Element, verdict: str, message: str, text: str) -> None:
    """A testcase's <failure> (a gate failed) or <error> (not judged)."""
    tag, kind = ("failure", GATE_FAILURE_TYPE) if verdict == "fail" else ("error", CASE_ERROR_TYPE)
    el = ET.SubElement(tc, tag, message=message, type=kind)
    el.text = text


@register_renderer
class JUnitRenderer(Renderer):
    name = "junit"
    suffix = ".xml"
    description = "JUnit XML, one testcase per case with its numbers as properties"

    def render(self, result: RunResult, *, rendered_at: str) -> str:
        suites = ET.Element("testsuites")
        by_suite: dict[str, list[CaseResult]] = {}
        seconds = {id(c): t for c, t in zip(result.cases, case_seconds(result), strict=True)}
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
            skipped = verdicts.count(UNINFORMATIVE)
            times = [seconds.get(id(c)) for c in cases]
            ts = ET.SubElement(
                suites,
                "testsuite",
                name=f"robusttest.{name}",
                tests=str(len(verdicts) + extra),
                failures=str(failures),
                errors=str(errors + extra),
                skipped=str(skipped),
                timestamp=rendered_at,
                time=_t(sum(t for t in times if t is not None)),
            )
            props = ET.SubElement(ts, "properties")
            ET.SubElement(props, "property", name="summary", value=summary_line(result))
            for k, v in suite_properties(result, name):
                ET.SubElement(props, "property", name=k, value=v)
            for c, t in zip(cases, times, strict=True):
                tc = ET.SubElement(ts, "testcase", classname=f"robusttest.{name}", name=c.case_id)
                if t is not None:  # the case's share of the evaluation (run.case_seconds)
                    tc.set("time", _t(t))
                cp = ET.SubElement(tc, "properties")
                for k, v in case_properties(c, gate_sources(result, c)).items():
                    ET.SubElement(cp, "property", name=k, value=v)
                if c.verdict in FAILING:
                    _failing(tc, c.verdict, (c.message or c.verdict).split("\n")[0], c.message)
                elif c.verdict == UNINFORMATIVE:  # reported apart: not a pass, not a failure
                    ET.SubElement(tc, "skipped", message=c.message.split("\n")[0])
            for f in fs:  # a failure frontier: its numbers, failing when its requirement does
                tc = ET.SubElement(
                    ts, "testcase", classname=f"robusttest.{name}", name=f.frontier_id
                )
                cp = ET.SubElement(tc, "properties")
                for k, v in f.properties().items():
                    ET.SubElement(cp, "property", name=k, value=v)
                if f.verdict in FAILING:
                    _failing(tc, f.verdict, f.message, f.message)
            if extra:
                lines = [summary_line(result), *run_errors(result)]
                tc = ET.SubElement(
                    ts, "testcase", classname=f"robusttest.{name}", name=RUN_TESTCASE
                )
                el = ET.SubElement(tc, "error", message=lines[0])
                el.text = "\n".join(lines)
        ET.indent(suites)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def _t(seconds: float) -> str:
    return f"{seconds:.3f}"


def _suite_name(result: RunResult) -> str:
    prov = result.provenance
    nested = prov.get("runs")
    runs = nested if isinstance(nested, list) else [prov]
    for p in runs:
        suite = p.get("suite") if isinstance(p, dict) else None
        if isinstance(suite, dict) and suite.get("name"):
            return str(suite["name"])
    return "run"
