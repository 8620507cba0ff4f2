"""Issue 14, point 10: docs/guarantees.md says what a verdict guarantees and names, for each
line, the test that proves it; every test it names exists, and README links to it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "guarantees.md"
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_guarantees_name_tests_that_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    refs = REF.findall(text.replace("\n  ", " "))
    assert len(refs) >= 40
    missing = [
        f"{path}::{name}"
        for path, name in refs
        if not (REPO / path).is_file()
        or not re.search(rf"^def {name}\(", (REPO / path).read_text(encoding="utf-8"), re.M)
    ]
    assert not missing, missing
    for section in ("Selection", "Targets", "Integrity", "Units", "Paired unit", "Exit codes"):
        assert f"\n## {section}\n" in text
    # every bullet names at least one test (or says it shares the tests above it)
    verdicts = text.split("## Selection", 1)[1].split("\n## Nothing lost", 1)[0]
    for bullet in re.split(r"\n- ", verdicts)[1:]:
        body = bullet.split("\n## ")[0]
        assert REF.search(body) or "(the same tests" in body, body[:80]


def test_nothing_lost_names_catalogue_files_that_exist() -> None:
    # "Nothing lost" names, per subsection, the tests/reliability file that holds its tests
    text = DOC.read_text(encoding="utf-8").split("\n## Nothing lost\n", 1)[1]
    files = re.findall(r"^### .*\(`(\w+\.py)`", text, re.M)
    assert len(files) >= 4
    for name in files:
        assert (REPO / "tests" / "reliability" / name).is_file(), name


def test_guarantees_are_linked_from_the_readme() -> None:
    assert "(docs/guarantees.md)" in (REPO / "README.md").read_text(encoding="utf-8")
