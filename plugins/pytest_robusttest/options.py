"""The robusttest option group: one table of options, parsed into one frozen settings object.

Every option has an ini equivalent (``robusttest_<name>``); a value given on the command
line wins over the ini file. Command-line paths are relative to the invocation directory,
ini paths to the ini file's directory (as pytest does for its own ``paths`` options).

Parsing is pure (``RobustSettings.from_sources``) so it is unit-tested without pytest;
``RobustSettings.from_config`` only gathers the raw values from a ``pytest.Config``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

GROUP = "robusttest"
GROUP_DESCRIPTION = "robusttest: robustness of chest X-ray models to noise"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class SettingsError(ValueError):
    """An option value is invalid; the message names the option and what is allowed."""


# --- value parsers (shared by argparse types and ini values) --------------------------------
def parse_device(value: object) -> str:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``, case-insensitive; syntax only (no GPU check)."""
    text = str(value).strip().lower()
    if not _DEVICE_RE.match(text):
        raise SettingsError(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N")
    return text


def _int(value: object, low: int, what: str) -> int:
    if isinstance(value, bool):
        raise SettingsError(f"{value!r} is not an integer")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise SettingsError(f"{value!r} is not an integer") from None
    if number < low:
        raise SettingsError(f"{number} is not >= {low} ({what})")
    return number


def parse_seed(value: object) -> int:
    return _int(value, 0, "the run seed")


def parse_repeats(value: object) -> int:
    return _int(value, 1, "K noise repeats per condition")


def parse_limit(value: object) -> int:
    return _int(value, 1, "evaluate the first N images")


def parse_batch_size(value: object) -> int:
    return _int(value, 1, "images per model batch")


def parse_workers(value: object) -> int:
    return _int(value, 0, "image decode threads; 0 decodes in the main thread")


def parse_lanes(value: object) -> int:
    return _int(value, 1, "batch × condition items run at once, each on one core")


def parse_tolerance(value: object) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SettingsError(f"{value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise SettingsError(f"{value!r} is not a finite number >= 0")
    return number


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{value!r} is not a boolean (true/false)")


def _as_text(value: object) -> str:
    text = str(value).strip()
    if not text:
        raise SettingsError("empty value")
    return text


def _argparse_type(parse: Callable[[object], Any]) -> Callable[[str], Any]:
    """argparse reports ArgumentTypeError messages verbatim (ValueError as 'invalid value')."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except SettingsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


# --- the option table ------------------------------------------------------------------------
@dataclass(frozen=True)
class OptionSpec:
    """One option: its flag, its ini key and how a raw value becomes a settings field."""

    field: str  # RobustSettings field, also the argparse dest (prefixed, see `dest`)
    flag: str
    ini_type: str  # pytest ini type: string, args, paths, bool
    help: str
    metavar: str | None = None
    parse: Callable[[object], Any] | None = None  # None: a string (or a path, see `path`)
    path: bool = False  # the value is a file system path
    repeatable: bool = False
    switch: bool = False  # store_true flag

    @property
    def dest(self) -> str:
        # Prefixed so no other plugin's dest collides (pytest has a flat option namespace).
        return f"robusttest_{self.field}"

    @property
    def ini(self) -> str:
        """The flag's name: --model -> robusttest_model, --robust-no-cache -> robusttest_no_cache."""
        name = self.flag.removeprefix("--").removeprefix("robust-")
        return "robusttest_" + name.replace("-", "_")


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "models",
        "--model",
        "paths",
        "model file to evaluate (.onnx, TorchScript .pt, torch.export .pt2); repeatable",
        metavar="PATH",
        path=True,
        repeatable=True,
    ),
    OptionSpec(
        "suites",
        "--suite",
        "args",
        "built-in suite name or suite YAML file (default: chosen from the model card's task: "
        "lungs for segmentation, findings for classification); repeatable",
        metavar="NAME|PATH",
        repeatable=True,
    ),
    OptionSpec(
        "data",
        "--data",
        "string",
        "data root for the suite's data adapter (overrides the suite's data.root)",
        metavar="ROOT",
        path=True,
    ),
    OptionSpec(
        "device",
        "--device",
        "string",
        "where the model and the noise run: auto (CUDA when available, else CPU), cpu, "
        "cuda or cuda:N (default auto)",
        metavar="DEVICE",
        parse=parse_device,
    ),
    OptionSpec(
        "seed",
        "--robust-seed",
        "string",
        "run seed for noise and bootstrap (default: the suite's seed)",
        metavar="N",
        parse=parse_seed,
    ),
    OptionSpec(
        "repeats",
        "--robust-repeats",
        "string",
        "noise repeats per condition, K >= 1 (default: the suite's repeats)",
        metavar="K",
        parse=parse_repeats,
    ),
    OptionSpec(
        "limit",
        "--robust-limit",
        "string",
        "evaluate only the first N images (smoke runs)",
        metavar="N",
        parse=parse_limit,
    ),
    OptionSpec(
        "json",
        "--robust-json",
        "string",
        "write the results (JSON, with provenance) to PATH",
        metavar="PATH",
        path=True,
    ),
    OptionSpec(
        "html",
        "--robust-html",
        "string",
        "write a self-contained HTML report to PATH",
        metavar="PATH",
        path=True,
    ),
    OptionSpec(
        "baseline",
        "--robust-baseline",
        "string",
        "compare with a saved results JSON; adds an item that fails on regressions",
        metavar="BASE.json",
        path=True,
    ),
    OptionSpec(
        "baseline_tolerance",
        "--robust-baseline-tolerance",
        "string",
        "metric change allowed before --robust-baseline reports a regression (default 0.01)",
        metavar="TOL",
        parse=parse_tolerance,
    ),
    OptionSpec(
        "no_cache",
        "--robust-no-cache",
        "bool",
        "do not read or write the per-image output cache (.pytest_cache/d/robusttest)",
        parse=parse_bool,
        switch=True,
    ),
    OptionSpec(
        "batch_size",
        "--robust-batch-size",
        "string",
        "images per model batch (default 16)",
        metavar="N",
        parse=parse_batch_size,
    ),
    OptionSpec(
        "workers",
        "--robust-workers",
        "string",
        "image decode threads (default 2; 0 decodes in the main thread)",
        metavar="N",
        parse=parse_workers,
    ),
    OptionSpec(
        "lanes",
        "--robust-lanes",
        "string",
        "batch × condition items run at once on the CPU, each single-threaded "
        "(default: one per torch thread with an ONNX model; results do not change)",
        metavar="N",
        parse=parse_lanes,
    ),
)
_BY_FIELD = {o.field: o for o in OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, GROUP_DESCRIPTION)
    for o in OPTIONS:
        kw: dict[str, Any] = {"dest": o.dest, "help": o.help}
        if o.switch:
            # default None (not False) tells "not given" apart, so the ini value can apply
            kw.update(action="store_true", default=None)
        elif o.repeatable:
            kw.update(action="append", default=None, metavar=o.metavar)
        else:
            kw.update(default=None, metavar=o.metavar)
            if o.parse is not None:
                kw["type"] = _argparse_type(o.parse)
        group.addoption(o.flag, **kw)
        parser.addini(o.ini, f"{o.help} (same as {o.flag})", type=o.ini_type, default=None)  # type: ignore[arg-type]


# --- the settings ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RobustSettings:
    """Every robusttest option, validated. ``models == ()`` means the plugin is inactive."""

    models: tuple[Path, ...] = ()
    suites: tuple[str, ...] = ()  # names as given, paths made absolute; () = from the card
    suite_files: tuple[Path, ...] = ()  # suite YAML files given as test paths
    data: Path | None = None
    device: str = "auto"
    seed: int | None = None
    repeats: int | None = None
    limit: int | None = None
    json: Path | None = None
    html: Path | None = None
    baseline: Path | None = None
    baseline_tolerance: float = 0.01
    cache: bool = True
    batch_size: int = 16
    workers: int = 2
    lanes: int | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)  # field -> where

    @property
    def active(self) -> bool:
        return bool(self.models)

    @classmethod
    def from_sources(
        cls,
        cli: Mapping[str, Any],
        ini: Mapping[str, Any] | None = None,
        *,
        invocation_dir: Path,
        ini_dir: Path | None = None,
        args: Sequence[str] = (),
    ) -> RobustSettings:
        """Validate raw values: ``cli`` and ``ini`` map field names to what argparse and
        ``config.getini`` returned (None or [] when not set); ``args`` are the test paths.

        Raises SettingsError naming the flag (or the ini key) and what is allowed.
        """
        ini = ini or {}
        ini_base = ini_dir if ini_dir is not None else invocation_dir
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for o in OPTIONS:
            raw, where, base = cli.get(o.field), o.flag, invocation_dir
            if _unset(raw):
                raw, where, base = ini.get(o.field), f"{o.ini} (ini)", ini_base
            if _unset(raw):
                continue
            try:
                values[o.field] = _convert(o, raw, base)
            except SettingsError as exc:
                raise SettingsError(f"{where}: {exc}") from None
            sources[o.field] = "cli" if where == o.flag else "ini"
        no_cache = values.pop("no_cache", False)
        suite_files = tuple(_suite_files(args, invocation_dir))
        return cls(
            cache=not no_cache,
            suite_files=suite_files,
            sources=sources,
            **values,
        )

    @classmethod
    def from_config(cls, config: pytest.Config) -> RobustSettings:
        cli = {o.field: config.getoption(o.dest, None) for o in OPTIONS}
        ini = {o.field: config.getini(o.ini) for o in OPTIONS}
        return cls.from_sources(
            cli,
            ini,
            invocation_dir=config.invocation_params.dir,
            ini_dir=config.inipath.parent if config.inipath is not None else None,
            args=config.args,
        )


def _unset(raw: Any) -> bool:
    return raw is None or raw == [] or raw == ""


def _resolve(value: object, base: Path) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text


def _convert(o: OptionSpec, raw: Any, base: Path) -> Any:
    if o.repeatable:
        items = raw if isinstance(raw, (list, tuple)) else str(raw).split()
        if o.path:
            return tuple(_resolve(_as_text(x), base) for x in items)
        # a suite is a name or a path: only path-like values are made absolute
        return tuple(
            str(_resolve(t, base)) if _looks_like_path(t) else t for t in map(_as_text, items)
        )
    if o.parse is not None:
        return o.parse(raw)
    if o.path:
        return _resolve(_as_text(raw), base)
    return _as_text(raw)


def _suite_files(args: Sequence[str], invocation_dir: Path) -> list[Path]:
    """Test paths that name YAML files: collected as suite files when --model is given."""
    out: list[Path] = []
    for arg in args:
        path = arg.split("::", 1)[0]
        if path.endswith((".yaml", ".yml")):
            p = _resolve(path, invocation_dir)
            if p.is_file() and p not in out:
                out.append(p.resolve())
    return out


def option_for(field_name: str) -> OptionSpec:
    return _BY_FIELD[field_name]
