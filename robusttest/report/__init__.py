"""Renderers of a ``RunResult``: the self-contained HTML report (JSON lives in results)."""

from __future__ import annotations

from robusttest.report.html import render_html, write_html

__all__ = ["render_html", "write_html"]
