"""Bad input once a run is under way: one test per bad file (bad_files.py).

Each bad file sits in a manifest beside two good images. ``robusttest run`` must
- exit 3 (an evaluation error, not 1, a failed gate), with no traceback;
- print one error line naming the file, what is wrong, and the suite key that skips it;
- still write the JSON, HTML and JUnit reports: every case an ``error`` (JUnit <error>),
  the file listed with its reason, the good images evaluated;
and with ``data: {on_bad_image: skip}`` leave the file out with one warning line and pass.
A bad image file given to ``robusttest noise apply`` is one usage error line (exit 2).
"""

from __future__ import annotations

import html

import pytest
from bad_files import BAD_IMAGES, BAD_MASKS, Bad
from reliability_helpers import Project, ids_of, junit_errors, robusttest, run_args

from robusttest.cli import EXIT_ERROR, EXIT_PASSED, EXIT_USAGE

SKIP_HINT = "or set `on_bad_image: skip` under `data:` in suite 'rel'"


def _with_bad(project: Project, bad: Bad, as_mask: bool) -> tuple[str, str]:
    """The project with two good images and the bad file; (its image id, its path)."""
    if bad.dicom:
        pytest.importorskip("pydicom")
    project.add_good(2)
    rel = bad.make(project.root)
    if as_mask:
        from reliability_helpers import good_image, png

        png(project.path("img/with-bad-mask.png"), good_image(1)[0])
        project.add("img/with-bad-mask.png", rel)
        return "with-bad-mask", rel
    project.add(rel, bit_depth=bad.bit_depth)
    return project.path(rel).stem, rel


CASES = [pytest.param(b, False, id=b.name) for b in BAD_IMAGES] + [
    pytest.param(b, True, id=b.name) for b in BAD_MASKS
]


@pytest.mark.parametrize(("bad", "as_mask"), CASES)
def test_bad_input_is_an_error_and_every_report_says_so(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    bad: Bad,
    as_mask: bool,
) -> None:
    image_id, rel = _with_bad(project, bad, as_mask)
    project.write()
    got = robusttest(capsys, monkeypatch, project.root, *run_args(project))
    assert got.rc == EXIT_ERROR, got.err
    line = got.one_error_line()
    assert line.startswith(f"{project.path(rel)}: ") or f" {project.path(rel)} " in line, line
    assert bad.says in line
    assert SKIP_HINT in line
    assert got.out[-1].startswith("ERROR: 1 cases: 0 passed, 0 failed, 1 errors")
    assert "1 of 3 images could not be read" in got.out[-1]

    doc = got.json()
    assert doc["completed"] is True
    assert [c["verdict"] for c in doc["cases"]] == ["error"]
    (listed,) = doc["provenance"]["data"]["unreadable"]
    assert listed[0] == image_id and bad.says in listed[1]
    assert ids_of(doc["records"]) == ["good0", "good1"]  # the good images were evaluated
    assert doc["run"]["errors"] == [line]
    page = got.html()
    assert "ERROR" in page and html.escape(bad.says, quote=True) in page
    errors = junit_errors(got.junit())
    assert len(errors) == 2 and not list(got.junit().iter("failure"))  # the case and the run


@pytest.mark.parametrize(("bad", "as_mask"), CASES)
def test_bad_input_is_left_out_with_on_bad_image_skip(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    bad: Bad,
    as_mask: bool,
) -> None:
    image_id, rel = _with_bad(project, bad, as_mask)
    project.write(on_bad_image="skip")  # the fix the error line names
    got = robusttest(capsys, monkeypatch, project.root, *run_args(project))
    assert got.rc == EXIT_PASSED, got.err
    warning = got.one_warning_line()
    assert warning.startswith(f"manifest: skipped {image_id}: ") and bad.says in warning
    assert str(project.path(rel)) in warning
    doc = got.json()
    assert [c["verdict"] for c in doc["cases"]] == ["pass"]
    assert doc["provenance"]["data"]["skipped"][0][0] == image_id
    assert ids_of(doc["records"]) == ["good0", "good1"]


@pytest.mark.parametrize("bad", [b for b in BAD_IMAGES if not b.bit_depth], ids=lambda b: b.name)
def test_noise_apply_on_a_bad_image_is_one_line(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, bad: Bad
) -> None:
    if bad.dicom:
        pytest.importorskip("pydicom")
    rel = bad.make(project.root)
    args = ["noise", "apply", rel, "--noise", "gaussian", "--level", "0.1", "--out", "n.npy"]
    got = robusttest(capsys, monkeypatch, project.root, *args)
    assert got.rc == EXIT_USAGE
    line = got.one_error_line()
    assert line.startswith(f"{rel}: ") and bad.says in line
    assert not project.path("n.npy").exists()
