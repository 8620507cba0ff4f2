"""Reports: renderers of a ``RunResult`` (JSON, HTML, JUnit, and any registered format).

Importing the package registers the built-in renderers.
"""

from __future__ import annotations

from robusttest.report.base import (
    RENDERERS,
    Renderer,
    ReportsInterrupted,
    Written,
    gate_sources,
    get_renderer,
    mark_interrupted,
    register_renderer,
    render_stamp,
    run_errors,
    run_state,
    run_warnings,
    summary_line,
    verdict_word,
    write_reports,
)
from robusttest.report.html import HtmlRenderer, render_html, write_html
from robusttest.report.json import JsonRenderer
from robusttest.report.junit import JUnitRenderer, case_properties
from robusttest.report.pdf import PdfRenderer

__all__ = [
    "RENDERERS",
    "HtmlRenderer",
    "JUnitRenderer",
    "JsonRenderer",
    "PdfRenderer",
    "Renderer",
    "ReportsInterrupted",
    "Written",
    "case_properties",
    "gate_sources",
    "get_renderer",
    "mark_interrupted",
    "register_renderer",
    "render_html",
    "render_stamp",
    "run_errors",
    "run_state",
    "run_warnings",
    "summary_line",
    "verdict_word",
    "write_html",
    "write_reports",
]
