"""Noise families and dataset adapters from an installed package's entry points.

Each test builds a real installed-package layout in a temporary folder: a module and its
``*.dist-info`` (METADATA + entry_points.txt) on sys.path, as pip leaves them. The CLI,
the suite parser and ``open_dataset`` then find the extensions without any conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from robusttest.cli import main
from robusttest.data import ADAPTERS, Dataset, open_dataset
from robusttest.noise import NOISES, NoiseSpec, available_noises, get_noise, iter_families
from robusttest.registry import ExtensionError, Registry
from robusttest.suite import parse_suite

REPO = Path(__file__).resolve().parents[2]
CLI = "import sys; from robusttest.cli import main; sys.exit(main())"

EXT_MODULE = '''
"""A third-party robusttest extension: one noise family, one dataset adapter."""

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch

from robusttest.data import Dataset, Record
from robusttest.noise import NoiseFamily, ParamValue


class Invert(NoiseFamily):
    name = "ep-invert"
    level_param = "weight"
    summary = "blend towards the negative image (entry-point test family)"
    ladders: ClassVar[dict[str, tuple[float, ...]]] = {"default": (0.25, 0.5)}

    def check_level(self, level: float) -> float:
        return float(level)

    def _apply(
        self,
        x: torch.Tensor,
        level: float,
        params: Mapping[str, ParamValue],
        gens: Sequence[torch.Generator],
        spacing_mm: torch.Tensor,
    ) -> torch.Tensor:
        return x * (1.0 - level) + (1.0 - x) * level


class Squares(Dataset):
    tasks = ("classification",)
    labels = ("Finding",)

    def scan(self) -> list[Record]:
        paths = sorted(self.root.glob("*.png"))
        return [Record(p.stem, p.stem, p, {"Finding": i % 2}) for i, p in enumerate(paths)]
'''


def _install(site: Path, dist: str, module: str, source: str, entry_points: str) -> None:
    """Lay out ``module`` and its dist-info under ``site`` as pip would."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points).lstrip())


GOOD_EPS = """
    [robusttest.noise]
    ep-invert = rt_ext_demo:Invert

    [robusttest.adapters]
    ep-squares = rt_ext_demo:Squares
"""


@pytest.fixture
def fresh_registries() -> Iterator[None]:
    """Registries that read the entry points again, and forget what a test added."""
    regs: tuple[Registry[Any], ...] = (NOISES, ADAPTERS)
    before = [(dict(r._items), dict(r._origin), r._loaded) for r in regs]
    for r in regs:
        r._loaded = False
        r._errors.clear()
    try:
        yield
    finally:
        for r, (items, origin, loaded) in zip(regs, before, strict=True):
            r._items.clear()
            r._items.update(items)
            r._origin.clear()
            r._origin.update(origin)
            r._loaded = loaded
            r._errors.clear()
        for mod in ("rt_ext_demo", "rt_ext_broken"):
            sys.modules.pop(mod, None)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registries: None) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_installed_family_and_adapter_are_found(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _install(site, "rt-ext-demo", "rt_ext_demo", EXT_MODULE, GOOD_EPS)

    # the CLI lists the family beside the built-ins
    assert main(["noise", "list"]) == 0
    out = capsys.readouterr().out
    assert "ep-invert: blend towards the negative image" in out
    assert "default  weight = 0.25, 0.5" in out
    assert {"ep-invert", "quantum", "gaussian"} <= set(available_noises())
    assert "ep-invert" in [f.name for f in iter_families()]
    assert NOISES.origin("ep-invert") == "rt_ext_demo.Invert"

    # a suite names it without a conftest.py, and it applies as written
    suite = parse_suite(
        {"task": "classification", "data": {"adapter": "ep-squares"}, "noise": {"ep-invert": None}}
    )
    assert [s.slug for s in suite.noise] == ["ep-invert-weight0.25", "ep-invert-weight0.5"]
    x = torch.tensor([[[0.0, 0.2], [0.6, 1.0]]])
    y = NoiseSpec("ep-invert", 0.25).apply(x)
    assert torch.allclose(y, torch.tensor([[[0.25, 0.35], [0.55, 0.75]]]))  # 0.75·p + 0.25·(1−p)

    # the adapter opens a folder, under its entry-point name
    data = tmp_path / "xrays"
    data.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 10), 40 * i, np.uint8)).save(data / f"im{i}.png")
    ds = open_dataset("EP-Squares", data)
    assert isinstance(ds, Dataset) and ds.name == "ep-squares"
    assert type(ds).__module__ == "rt_ext_demo"
    assert [s.image_id for s in ds.iter_samples()] == ["im0", "im1", "im2"]
    assert ds.describe()["positives"] == {"Finding": 1}


def test_a_fresh_process_lists_the_installed_family(site: Path) -> None:
    _install(site, "rt-ext-demo", "rt_ext_demo", EXT_MODULE, GOOD_EPS)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO), str(REPO / "plugins")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", CLI, "noise", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=site,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ep-invert: blend towards the negative image" in done.stdout


def test_a_broken_entry_point_is_one_line_naming_the_distribution(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _install(
        site,
        "rt-ext-broken",
        "rt_ext_broken",
        "raise RuntimeError('half-installed: missing data file')\n",
        "[robusttest.noise]\nbroken = rt_ext_broken:Family\n",
    )
    assert main(["noise", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("robusttest: error: noise extension 'broken'")
    assert "from rt-ext-broken" in err and "RuntimeError: half-installed" in err
    assert "fix or uninstall rt-ext-broken" in err
    # the built-ins are still there for lookups that do not need the extensions
    assert get_noise("quantum").name == "quantum"


def test_an_entry_point_must_carry_the_family_name(site: Path) -> None:
    _install(
        site,
        "rt-ext-demo",
        "rt_ext_demo",
        EXT_MODULE,
        "[robusttest.noise]\ninvert = rt_ext_demo:Invert\n",
    )
    with pytest.raises(ExtensionError, match=r"rt_ext_demo.Invert is named 'ep-invert'"):
        available_noises()


def test_an_entry_point_that_is_not_a_family(site: Path) -> None:
    _install(
        site,
        "rt-ext-demo",
        "rt_ext_demo",
        EXT_MODULE,
        "[robusttest.noise]\nep-squares = rt_ext_demo:Squares\n",
    )
    with pytest.raises(
        ExtensionError,
        match=r"Squares: a noise family is a subclass of robusttest.noise.NoiseFamily",
    ):
        get_noise("ep-squares")


def test_a_broken_adapter_entry_point_names_the_distribution(site: Path) -> None:
    _install(
        site,
        "rt-ext-broken",
        "rt_ext_broken",
        "import a_module_that_is_not_installed\n",
        "[robusttest.adapters]\nmy-xrays = rt_ext_broken:MyXrays\n",
    )
    with pytest.raises(ExtensionError) as exc:
        open_dataset("my-xrays", site)
    msg = str(exc.value)
    assert "\n" not in msg and "dataset adapter extension 'my-xrays'" in msg
    assert "from rt-ext-broken" in msg and "ModuleNotFoundError" in msg
    # a built-in adapter is found without reading the entry points
    assert open_dataset("phantom", n=2, size=32).name == "phantom"
