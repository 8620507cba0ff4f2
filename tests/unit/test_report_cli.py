"""``robusttest report``: re-render saved results without a model or data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from report_factory import make_result

import robusttest.cli as cli
from robusttest.report import render_html
from robusttest.report.base import render_stamp
from robusttest.report.cli import read_results, register_cli
from robusttest.results import RunResult


@pytest.fixture
def main_with_report() -> Iterator[None]:
    saved = list(cli._EXTRA_COMMANDS)
    if register_cli not in cli._EXTRA_COMMANDS:  # the main CLI may already wire it in
        cli._EXTRA_COMMANDS.append(register_cli)
    try:
        yield
    finally:
        cli._EXTRA_COMMANDS[:] = saved


def test_report_rerenders_saved_results(
    tmp_path: Path,
    main_with_report: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = make_result()
    src = tmp_path / "results.json"
    r.write_json(src)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out_html, out_json = tmp_path / "r.html", tmp_path / "out" / "r.json"
    assert cli.main(["report", str(src), "--html", str(out_html), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert (
        f"wrote {out_html}" in out
        and "FAILED: 14 cases: 6 passed, 1 failed, 7 reported without a gate" in out
    )
    assert out_html.read_text(encoding="utf-8") == render_html(
        r, rendered_at="2023-11-14T22:13:20Z"
    )
    assert RunResult.read(out_json) == r


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\xff\xfe not utf8", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "top level is not an object"),
        (b'{"hello": 1}', "not a robusttest results file"),
        (
            b'{"schema": "robusttest-results", "schema_version": "1.0", "cases": [1], '
            b'"records": [], "provenance": {}}',
            "malformed results file",
        ),
    ],
)
def test_report_bad_input_is_one_line_exit_2(
    tmp_path: Path,
    main_with_report: None,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    needle: str,
) -> None:
    src = tmp_path / "bad.json"
    src.write_bytes(content)
    assert cli.main(["report", str(src), "--html", str(tmp_path / "o.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robusttest: error:") and needle in err and err.count("\n") == 1
    assert not (tmp_path / "o.html").exists()


def test_report_usage_errors(
    tmp_path: Path, main_with_report: None, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "results.json"
    make_result().write_json(src)
    assert cli.main(["report", str(src)]) == 2
    assert "nothing to write" in capsys.readouterr().err
    assert cli.main(["report", str(src), "--html", str(src)]) == 2
    assert "is the results file itself" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "missing.json"), "--html", "x.html"]) == 2
    assert "cannot read results" in capsys.readouterr().err


def test_read_results_and_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = make_result()
    p = tmp_path / "r.json"
    r.write_json(p)
    assert read_results(p) == r
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert render_stamp() == "1970-01-01T00:00:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(Exception, match="SOURCE_DATE_EPOCH"):
        render_stamp()
