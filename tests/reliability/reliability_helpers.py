"""Helpers of the reliability catalogue: a small project (model, suite, manifest of images
the tests make themselves) and the outcome of one `robusttest` command, run in-process.

Runs are tiny (32² images, a 32² two-level UNet, one noise level, 100 bootstrap
resamples), so each end-to-end run takes a fraction of a second.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

SIZE = 32

SUITE = """\
name: rel
task: segmentation
data: {{adapter: manifest, root: "{root}"{data}}}
{noise}metrics: [dice]
targets: [lungs]
bootstrap: {{resamples: 100}}
gates:
  metrics:
    dice: {{min: 0.0}}
"""

# Inner pytest runs without plugins that are slow to start and unrelated.
INI = "[pytest]\naddopts = -p no:hypothesispytest -p no:benchmark -p no:anyio -p no:cacheprovider\n"


def good_image(i: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit image (a bright disc on a gradient) and its disc mask."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = size * (0.25 + 0.02 * i)
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r**2
    img = (40 + 100 * xx / size + 90 * disc).astype(np.uint8)
    return img, disc


def png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


@dataclass
class Project:
    """A folder holding a manifest of image/mask pairs and a suite reading it."""

    root: Path
    model: Path
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # image, mask, extra

    def add_good(self, n: int = 2) -> None:
        for i in range(n):
            img, mask = good_image(i)
            png(self.root / "img" / f"good{i}.png", img)
            png(self.root / "mask" / f"good{i}.png", (mask * 255).astype(np.uint8))
            self.rows.append((f"img/good{i}.png", f"mask/good{i}.png", ""))

    def add(self, image: str, mask: str | None = None, bit_depth: str = "") -> None:
        """A row for a file the test wrote itself (the mask defaults to a good one)."""
        if mask is None:
            _, m = good_image(0)
            mask = f"mask/for-{Path(image).stem}.png"
            png(self.root / mask, (m * 255).astype(np.uint8))
        self.rows.append((image, mask, bit_depth))

    def write(self, *, noise: bool = False, **data: Any) -> Path:
        """manifest.csv and suite.yaml (``data``: more keys of the suite's data section;
        ``noise``: one Gaussian level beside the clean case)."""
        with_depth = any(r[2] for r in self.rows)
        lines = ["image,mask" + (",bit_depth" if with_depth else "")]
        for image, mask, depth in self.rows:
            lines.append(f"{image},{mask}" + (f",{depth}" if with_depth else ""))
        (self.root / "manifest.csv").write_text("\n".join(lines) + "\n")
        extra = "".join(f", {k}: {json.dumps(v)}" for k, v in data.items())
        suite = self.root / "suite.yaml"
        suite.write_text(
            SUITE.format(
                root=self.root / "manifest.csv",
                data=extra,
                noise="noise:\n  gaussian: {sigma: [0.05]}\n" if noise else "",
            )
        )
        return suite

    def path(self, rel: str) -> Path:
        return self.root / rel


@dataclass
class Outcome:
    """What one command did: its exit status, its lines, and the reports it left."""

    rc: int
    out: list[str]
    err: list[str]
    root: Path

    def json(self, name: str = "r.json") -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / name).read_text())
        return data

    def html(self, name: str = "r.html") -> str:
        return (self.root / name).read_text()

    def junit(self, name: str = "r.xml") -> ET.Element:
        return ET.parse(self.root / name).getroot()

    def no_traceback(self) -> None:
        text = "\n".join(self.out + self.err)
        assert "Traceback" not in text and 'File "' not in text, text

    def one_error_line(self) -> str:
        """The single error line on stderr (without its prefix)."""
        self.no_traceback()
        errors = [ln for ln in self.err if ln.startswith("robusttest: error: ")]
        assert len(errors) == 1, self.err
        assert all(
            ln.startswith(("robusttest: error: ", "robusttest: warning: ")) for ln in self.err
        ), self.err
        return errors[0].removeprefix("robusttest: error: ")

    def one_warning_line(self) -> str:
        self.no_traceback()
        warnings = [ln for ln in self.err if ln.startswith("robusttest: warning: ")]
        assert len(warnings) == 1 and len(self.err) == 1, self.err
        return warnings[0].removeprefix("robusttest: warning: ")


def robusttest(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cwd: Path,
    *args: str,
) -> Outcome:
    """``robusttest ARGS`` in-process, in ``cwd``."""
    from robusttest.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    rc = main(list(args))
    cap = capsys.readouterr()
    return Outcome(rc, cap.out.splitlines(), cap.err.splitlines(), cwd)


def run_args(project: Project, *extra: str, reports: bool = True) -> list[str]:
    out = ["run", str(project.model), "--suite", "suite.yaml", "--no-cache", "--workers", "1"]
    if reports:
        out += ["--json", "r.json", "--html", "r.html", "--report", "junit=r.xml"]
    return out + list(extra)


def junit_errors(root: ET.Element) -> list[ET.Element]:
    return [e for tc in root.iter("testcase") for e in tc.findall("error")]


def ids_of(records: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({r["image_id"] for r in records})


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)
