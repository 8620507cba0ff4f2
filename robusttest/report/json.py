"""The results JSON as a report format (the evidence file; see robusttest.results)."""

from __future__ import annotations

from robusttest.report.base import Renderer, register_renderer
from robusttest.results import RunResult


@register_renderer
class JsonRenderer(Renderer):
    name = "json"
    suffix = ".json"
    description = "the results and their provenance (re-renderable evidence)"

    def render(self, result: RunResult, *, rendered_at: str) -> str:
        return result.to_json()
