"""Issue 14, point 4: the results JSON carries a digest of its canonical content;
`robusttest report` and `robusttest compare` (and --robust-baseline) verify it and refuse a
modified file; `report` re-judges every case from its numbers and gate and refuses a
verdict that does not follow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report_factory import make_classification_result, make_result

import robusttest
import robusttest.cli as cli
from robusttest.errors import ConfigError
from robusttest.results import RunResult, content_digest

MODEL = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "lungs_tinyunet.onnx"
PASSING = "lungs-dice[quantum-dose25]"


def _written(tmp_path: Path, result: RunResult | None = None) -> Path:
    path = tmp_path / "results.json"
    (result or make_result()).write_json(path)
    return path


def _edit(path: Path, change: Callable[[dict[str, Any]], None], *, resign: bool = False) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    if resign:  # someone who knows the format recomputes the digest
        doc["digest"] = content_digest(doc)
    out = path.with_name("edited.json")
    out.write_text(json.dumps(doc, indent=1))
    return out


def _case(doc: dict[str, Any], case_id: str) -> dict[str, Any]:
    return next(c for c in doc["cases"] if c["case_id"] == case_id)


def test_integrity_digest_is_the_sha256_of_the_canonical_content(tmp_path: Path) -> None:
    path = _written(tmp_path)
    doc = json.loads(path.read_text())
    body = {k: v for k, v in doc.items() if k != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert doc["digest"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert "run" in body  # the wall-clock block is covered too (docs/guarantees.md)
    # layout is not content: the same document re-indented still verifies
    (tmp_path / "flat.json").write_text(json.dumps(doc))
    assert RunResult.read(tmp_path / "flat.json") == RunResult.read(path)
    # the deterministic view has neither the run block nor the digest
    assert "digest" not in json.loads(make_result().to_json(include_run=False))


@pytest.mark.parametrize(
    "change",
    [
        lambda d: _case(d, PASSING).update(drop=0.87),
        lambda d: _case(d, PASSING).update(verdict="fail"),
        lambda d: d["records"][0]["values"].update({"dice/lungs": 0.5}),
        lambda d: d["run"].update(host="elsewhere"),
        lambda d: d["provenance"]["model"].update(sha256="00" * 32),
        lambda d: d["gallery"][0].update(caption="x"),
        lambda d: d.update(completed=False),
    ],
    ids=["drop", "verdict", "record", "run", "provenance", "gallery", "completed"],
)
def test_integrity_any_edit_is_refused_on_read(
    tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    edited = _edit(_written(tmp_path), change)
    with pytest.raises(ConfigError) as exc:
        RunResult.read(edited)
    assert str(exc.value) == (
        f"{edited} was modified after it was written (digest mismatch); re-run, or restore "
        "the file as robusttest wrote it"
    )


def test_integrity_a_missing_digest_is_refused(tmp_path: Path) -> None:
    edited = _edit(_written(tmp_path), lambda d: d.pop("digest"))
    with pytest.raises(ConfigError, match="has no digest, so it cannot be checked for edits"):
        RunResult.read(edited)


@pytest.fixture
def main() -> Callable[..., tuple[int, str, str]]:
    def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        code = cli.main(args)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_integrity_report_refuses_the_issues_edited_drop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], main: Callable[..., Any]
) -> None:
    # the issue: a passing case's drop edited to +0.87 was rendered PASSED with a ✓
    edited = _edit(_written(tmp_path), lambda d: _case(d, PASSING).update(drop=0.87))
    html = tmp_path / "o.html"
    code, out, err = main(["report", str(edited), "--html", str(html)], capsys)
    assert code == 2 and out == "" and not html.exists()
    assert err == (
        f"robusttest: error: {edited} was modified after it was written (digest mismatch); "
        "re-run, or restore the file as robusttest wrote it\n"
    )
    # compare refuses it too, on either side
    good = str(_written(tmp_path))
    for args in ([good, str(edited)], [str(edited), good]):
        code, _, err = main(["compare", *args], capsys)
        assert code == 2 and "was modified after it was written" in err


def test_integrity_report_rejudges_every_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], main: Callable[..., Any]
) -> None:
    path = _written(tmp_path)

    def drop_and_ci(d: dict[str, Any]) -> None:
        _case(d, PASSING).update(drop=0.87, ci_low=0.85, ci_high=0.89)

    # the digest recomputed: the numbers now say fail, the verdict still says pass
    edited = _edit(path, drop_and_ci, resign=True)
    code, _, err = main(["report", str(edited), "--html", str(tmp_path / "o.html")], capsys)
    assert code == 2
    assert err == (
        f"robusttest: error: {edited}: {PASSING}: saved verdict 'pass', its numbers and gate "
        "give fail (failed: max_drop); the file was edited or written by another version of "
        "robusttest; re-run\n"
    )
    # a failing case turned into a pass
    flipped = _edit(
        path,
        lambda d: _case(d, "lungs-dice[gaussian-sigma0.12]").update(
            verdict="pass", failed_limits=[]
        ),
        resign=True,
    )
    code, _, err = main(["report", str(flipped), "--junit", str(tmp_path / "o.xml")], capsys)
    assert code == 2 and "saved verdict 'pass', its numbers and gate give fail" in err
    # an ungated case given a verdict
    gated = _edit(path, lambda d: _case(d, "lungs-hd95[clean]").update(verdict="pass"), resign=True)
    code, _, err = main(["report", str(gated), "--html", str(tmp_path / "o.html")], capsys)
    assert code == 2 and "give no-gate" in err
    # the untouched file renders
    code, out, _ = main(["report", str(path), "--html", str(tmp_path / "o.html")], capsys)
    assert code == 0 and "FAILED: 14 cases" in out


@pytest.mark.parametrize(
    "gates",
    [
        "{min: 0.9, max_drop: 0.02}",
        "{max_relative_drop: 0.02, on: point}",
        "{min: 0.94, max_relative_drop: 0.01}",
    ],
)
def test_integrity_rejudging_agrees_with_the_engine(tmp_path: Path, gates: str) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"""\
name: s
task: segmentation
data: {{adapter: phantom, options: {{n: 8, size: 96, seed: 0}}}}
noise:
  gaussian: {{sigma: [0.04, 0.12]}}
  quantum: {{dose: [0.02]}}
repeats: 1
metrics: [dice, hd95]
targets: [lungs]
bootstrap: {{resamples: 200}}
gates:
  metrics:
    dice: {gates}
    hd95: {{max_relative_drop: 0.5}}
"""
    )
    result = robusttest.run(MODEL, suite, cache=False, progress=False, gallery=0)
    verdicts = {c.verdict for c in result.cases}
    assert "pass" in verdicts or "fail" in verdicts
    assert result.verdict_mismatches() == []
    for c in result.cases:
        again = c.rejudge()
        assert (again.verdict, again.failed, again.message) == (
            c.verdict,
            c.failed_limits,
            c.message,
        )
    back = RunResult.read(result.write_json(tmp_path / "r.json"))
    assert back.verdict_mismatches() == []


def test_integrity_classification_results_verify(tmp_path: Path) -> None:
    path = _written(tmp_path, make_classification_result())
    from robusttest.report.cli import read_results

    assert read_results(path) == RunResult.read(path)


def test_integrity_is_not_a_signature(tmp_path: Path) -> None:
    # an edit consistent with its verdict, with the digest recomputed, is accepted: the
    # digest guards against accidental or casual edits, not against forgery
    def consistent(d: dict[str, Any]) -> None:
        c = _case(d, PASSING)
        c.update(noisy=c["noisy"] + 1e-6)

    from robusttest.report.cli import read_results

    edited = _edit(_written(tmp_path), consistent, resign=True)
    assert read_results(edited).case(PASSING).verdict == "pass"
