"""The run options, in one table that feeds both front ends.

``pytest --robust-seed 3`` (with the ini key ``robusttest_seed``) and ``robusttest run
--seed 3`` are the same option: one ``RunOption`` row says its flags, its ini key, how a
raw value is parsed and its help. ``RunSettings.from_sources`` validates the raw values of
either front end into one frozen settings object (pure: unit-tested without pytest).

Every pytest option has a ``--robust-`` spelling; four also have the product's short form
(``--model``, ``--suite``, ``--data``, ``--device``), which the plugin registers only when
no other plugin or conftest has claimed it. Command-line paths are relative to the
invocation directory, ini paths to the ini file's directory (as pytest does).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from robusttest.errors import ConfigError

if TYPE_CHECKING:
    from robusttest.suite.layers import GateOverride

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class SettingsError(ConfigError):
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


def parse_shards(value: object) -> int:
    return _int(value, 1, "deterministic pieces the evaluation splits into")


BACKENDS: tuple[str, ...] = ("local", "ray")


def parse_backend(value: object) -> str:
    """``local`` | ``ray``; ``ray`` needs the ray extra installed (one line saying how)."""
    text = str(value).strip().lower()
    if text not in BACKENDS:
        raise SettingsError(f"{value!r} is not a backend; use {' or '.join(BACKENDS)}")
    if text == "ray":
        from robusttest.extras import missing_packages

        if missing_packages("ray"):
            raise SettingsError(
                "ray is not installed; install the ray extra: pip install 'robusttest[ray]'"
            )
    return text


def parse_tolerance(value: object) -> tuple[str | None, str]:
    """``METRIC=VALUE`` (``hd95=2``, ``hd95=10%``: in the metric's unit or a percentage of
    the base value) or a bare ``VALUE`` for every metric; checked, kept as text."""
    from robusttest.compare import parse_tolerance_option

    text = str(value).strip()
    try:
        metric, _ = parse_tolerance_option(text)
    except ConfigError as exc:
        raise SettingsError(str(exc).removeprefix("tolerance ")) from None
    return metric, text.partition("=")[2].strip() if metric is not None else text


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{value!r} is not a boolean (true/false)")


def parse_report(value: object) -> tuple[str, str]:
    """``FORMAT=PATH`` (e.g. ``junit=out/robust.xml``): a registered report format."""
    fmt, sep, path = str(value).strip().partition("=")
    fmt = fmt.strip().lower()
    if not sep or not fmt or not path.strip():
        raise SettingsError(f"{value!r} is not FORMAT=PATH (e.g. junit=robust.xml)")
    from robusttest.report import RENDERERS

    if fmt not in RENDERERS:
        raise SettingsError(
            f"{value!r}: unknown report format {fmt!r}; known: {', '.join(RENDERERS.names())}"
        )
    return fmt, path.strip()


def parse_gate(value: object) -> GateOverride:
    """``[NOISE:]METRIC.KEY=VALUE`` (``dice.max_drop=0.05``, ``gaussian:dice.max_drop=0.2``,
    ``default.min=0.8``, ``hd95=null``, ``on=point``): one change to the suite's gates;
    the syntax and the value are checked here, the metric and noise against the suite."""
    from robusttest.suite.layers import GateOverride

    try:
        return GateOverride.parse(str(value))
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None


def _as_text(value: object) -> str:
    text = str(value).strip()
    if not text:
        raise SettingsError("empty value")
    return text


def argparse_type(parse: Callable[[object], Any]) -> Callable[[str], Any]:
    """argparse reports ArgumentTypeError messages verbatim (ValueError as 'invalid value')."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except SettingsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


# --- the option table ------------------------------------------------------------------------
Kind = Literal["value", "path", "repeatable", "paths", "switch"]


@dataclass(frozen=True)
class RunOption:
    """One option: its flags, its ini key and how a raw value becomes a settings field.

    ``flag``: the pytest spelling (always ``--robust-*``); ``short``: the product's short
    pytest alias, used only where free; ``cli``: the ``robusttest run`` spelling (None:
    pytest only; ``"MODEL"``: the positional argument).
    """

    field: str  # RunSettings field
    flag: str
    help: str
    kind: Kind = "value"
    metavar: str | None = None
    parse: Callable[[object], Any] | None = None  # None: text (or a path, see kind)
    short: str | None = None
    cli: str | None = None
    ini_type: str = "string"  # pytest ini type: string, args, paths, bool, linelist

    @property
    def dest(self) -> str:
        # Prefixed so no other plugin's dest collides (pytest has a flat option namespace).
        return f"robusttest_{self.field}"

    @property
    def ini(self) -> str:
        """--robust-no-cache -> robusttest_no_cache."""
        return "robusttest_" + self.flag.removeprefix("--robust-").replace("-", "_")

    @property
    def is_path(self) -> bool:
        return self.kind in ("path", "paths")


OPTIONS: tuple[RunOption, ...] = (
    RunOption(
        "models",
        "--robust-model",
        "model file to evaluate (.onnx, TorchScript .pt, torch.export .pt2), or a shipped "
        "model as robusttest:NAME (see `robusttest fixtures`); repeatable",
        kind="paths",
        metavar="PATH",
        short="--model",
        cli="MODEL",
        ini_type="paths",
    ),
    RunOption(
        "suites",
        "--robust-suite",
        "built-in suite name or suite YAML file (default: chosen from the model card's task: "
        "lungs for segmentation, findings for classification); repeatable",
        kind="repeatable",
        metavar="NAME|PATH",
        short="--suite",
        cli="--suite",
        ini_type="args",
    ),
    RunOption(
        "data",
        "--robust-data",
        "data root for the suite's data adapter (overrides the suite's data.root)",
        kind="path",
        metavar="ROOT",
        short="--data",
        cli="--data",
    ),
    RunOption(
        "device",
        "--robust-device",
        "where the model and the noise run: auto (CUDA when available, else CPU), cpu, "
        "cuda or cuda:N (default auto)",
        metavar="DEVICE",
        parse=parse_device,
        short="--device",
        cli="--device",
    ),
    RunOption(
        "seed",
        "--robust-seed",
        "run seed for noise and bootstrap (default: the suite's seed)",
        metavar="N",
        parse=parse_seed,
        cli="--seed",
    ),
    RunOption(
        "repeats",
        "--robust-repeats",
        "noise repeats per condition, K >= 1 (default: the suite's repeats)",
        metavar="K",
        parse=parse_repeats,
        cli="--repeats",
    ),
    RunOption(
        "limit",
        "--robust-limit",
        "evaluate only the first N images (smoke runs)",
        metavar="N",
        parse=parse_limit,
        cli="--limit",
    ),
    RunOption(
        "json",
        "--robust-json",
        "write the results (JSON, with provenance) to PATH",
        kind="path",
        metavar="PATH",
        cli="--json",
    ),
    RunOption(
        "html",
        "--robust-html",
        "write a self-contained HTML report to PATH",
        kind="path",
        metavar="PATH",
        cli="--html",
    ),
    RunOption(
        "reports",
        "--robust-report",
        "write a report in a registered format (json, html, junit, pdf, or an extension's) to "
        "PATH; repeatable",
        kind="repeatable",
        metavar="FORMAT=PATH",
        parse=parse_report,
        cli="--report",
        ini_type="args",
    ),
    RunOption(
        "gates",
        "--robust-gate",
        "override one entry of the suite's gates: METRIC.KEY=VALUE (dice.max_drop=0.05; KEY "
        "min, max_drop, max_relative_drop or on), NOISE:METRIC.KEY=VALUE for one noise or "
        "condition (gaussian:dice.max_drop=0.2), default.KEY=VALUE for every metric, "
        "METRIC=null or VALUE null to remove limits, on=ci|point; repeatable, later ones win",
        kind="repeatable",
        metavar="GATE",
        parse=parse_gate,
        cli="--gate",
        ini_type="args",
    ),
    RunOption(
        "baseline",
        "--robust-baseline",
        "compare with a saved results JSON and fail on regressions",
        kind="path",
        metavar="BASE.json",
        cli="--baseline",
    ),
    RunOption(
        "baseline_tolerance",
        "--robust-baseline-tolerance",
        "worsening allowed before --robust-baseline reports a regression: METRIC=VALUE in "
        "the metric's unit (dice=0.02, hd95=2), or a percentage of the base value with a "
        "trailing percent sign; a bare VALUE applies to every metric (default: each "
        "metric's own: dice 0.01, hd95 10 percent); a regression must also be beyond the "
        "runs' CIs; repeatable",
        kind="repeatable",
        metavar="METRIC=TOL",
        parse=parse_tolerance,
        cli="--baseline-tolerance",
        ini_type="args",
    ),
    RunOption(
        "baseline_fail_on_ungated",
        "--robust-baseline-fail-on-ungated",
        "with --robust-baseline, fail on ungated cases that got worse too (default: reported)",
        kind="switch",
        parse=parse_bool,
        cli="--baseline-fail-on-ungated",
        ini_type="bool",
    ),
    RunOption(
        "frontier",
        "--robust-frontier",
        "search every gated case's failure frontier: the noise level at which its gate "
        "starts to fail, with a CI (the suite's `frontier:` asks for some always)",
        kind="switch",
        parse=parse_bool,
        cli="--frontier",
        ini_type="bool",
    ),
    RunOption(
        "no_cache",
        "--robust-no-cache",
        "do not read or write the per-image output cache",
        kind="switch",
        parse=parse_bool,
        cli="--no-cache",
        ini_type="bool",
    ),
    RunOption(
        "cache_dir",
        "--robust-cache-dir",
        "folder of the per-image output cache (default: .pytest_cache/d/robusttest under "
        "pytest, ./.robusttest-cache for `robusttest run`); share it between CI jobs",
        kind="path",
        metavar="DIR",
        cli="--cache-dir",
    ),
    RunOption(
        "batch_size",
        "--robust-batch-size",
        "images per model batch (default 16)",
        metavar="N",
        parse=parse_batch_size,
        cli="--batch-size",
    ),
    RunOption(
        "workers",
        "--robust-workers",
        "image decode threads (default 2; 0 decodes in the main thread)",
        metavar="N",
        parse=parse_workers,
        cli="--workers",
    ),
    RunOption(
        "lanes",
        "--robust-lanes",
        "batch × condition items run at once on the CPU, each single-threaded "
        "(default: one per torch thread with an ONNX model; results do not change)",
        metavar="N",
        parse=parse_lanes,
        cli="--lanes",
    ),
    RunOption(
        "shards",
        "--robust-shards",
        "split the evaluation into N deterministic shards (image ranges × conditions), "
        "merged into one result (default: 1 in one process; 4 per pytest-xdist worker or "
        "Ray slot, none smaller than a batch; results do not change)",
        metavar="N",
        parse=parse_shards,
        cli="--shards",
    ),
    RunOption(
        "backend",
        "--robust-backend",
        "where the shards run: local (this process; under pytest-xdist -n, the workers) or "
        "ray (tasks on a Ray cluster, the ray extra; see docs/scale.md)",
        metavar="NAME",
        parse=parse_backend,
        cli="--backend",
    ),
    RunOption(
        "ray_address",
        "--robust-ray-address",
        "with --robust-backend ray: the cluster to connect to (auto, HOST:PORT or "
        "ray://HOST:10001; default: RAY_ADDRESS, else a local Ray started for the run)",
        metavar="ADDRESS",
        cli="--ray-address",
    ),
)
_BY_FIELD = {o.field: o for o in OPTIONS}


def option_for(field_name: str) -> RunOption:
    return _BY_FIELD[field_name]


# --- the settings ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSettings:
    """Every run option, validated. ``models == ()`` means the pytest plugin is inactive."""

    models: tuple[Path, ...] = ()
    suites: tuple[str, ...] = ()  # names as given, paths made absolute; () = from the card
    suite_files: tuple[Path, ...] = ()  # suite YAML files given as pytest test paths
    data: Path | None = None
    device: str = "auto"
    seed: int | None = None
    repeats: int | None = None
    limit: int | None = None
    json: Path | None = None
    html: Path | None = None
    reports: tuple[tuple[str, Path], ...] = ()
    gates: tuple[GateOverride, ...] = ()  # each knows its option (origin), for the reports
    baseline: Path | None = None
    # (metric or None for every metric, tolerance text), as given
    baseline_tolerance: tuple[tuple[str | None, str], ...] = ()
    baseline_fail_on_ungated: bool = False
    frontier: bool = False
    cache: bool = True
    cache_dir: Path | None = None
    batch_size: int = 16
    workers: int = 2
    lanes: int | None = None
    shards: int | None = None
    backend: str = "local"
    ray_address: str | None = None
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
        cli_names: Mapping[str, str] | None = None,
    ) -> RunSettings:
        """Validate raw values: ``cli`` and ``ini`` map field names to what argparse and
        ``config.getini`` returned (None or [] when not set); ``args`` are the pytest test
        paths; ``cli_names`` the command-line spelling of each field, for messages
        (default: the pytest flag).

        Raises SettingsError naming the flag (or the ini key) and what is allowed.
        """
        ini = ini or {}
        ini_base = ini_dir if ini_dir is not None else invocation_dir
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for o in OPTIONS:
            flag = (cli_names or {}).get(o.field, o.flag)
            raw, where, base = cli.get(o.field), flag, invocation_dir
            if _unset(raw):
                raw, where, base = ini.get(o.field), f"{o.ini} (ini)", ini_base
            if _unset(raw):
                continue
            try:
                values[o.field] = _convert(o, raw, base)
            except SettingsError as exc:
                raise SettingsError(f"{where}: {exc}") from None
            if o.parse is parse_gate:  # the reports say which option set each gate
                values[o.field] = tuple(replace(g, origin=where) for g in values[o.field])
            sources[o.field] = "cli" if where == flag else "ini"
        no_cache = values.pop("no_cache", False)
        settings = cls(
            cache=not no_cache,
            suite_files=tuple(_suite_files(args, invocation_dir)),
            sources=sources,
            **values,
        )
        settings.check_outputs(names=cli_names)
        if settings.ray_address is not None and settings.backend != "ray":
            names = cli_names or {}
            raise SettingsError(
                f"{names.get('ray_address', option_for('ray_address').flag)}: only applies "
                f"with {names.get('backend', option_for('backend').flag)} ray"
            )
        return settings

    def baseline_tolerances(self) -> tuple[str | None, dict[str, str]]:
        """(the tolerance for every metric or None, the per-metric ones) for compare()."""
        common: str | None = None
        per_metric: dict[str, str] = {}
        for metric, tol in self.baseline_tolerance:
            if metric is None:
                common = tol
            else:
                per_metric[metric] = tol
        return common, per_metric

    def outputs(self) -> list[tuple[str, Path]]:
        """Every report to write: (format, path), --robust-json and --robust-html first."""
        out: list[tuple[str, Path]] = []
        if self.json is not None:
            out.append(("json", self.json))
        if self.html is not None:
            out.append(("html", self.html))
        out.extend(self.reports)
        return out

    def check_outputs(
        self,
        others: Mapping[str, Path | None] | None = None,
        *,
        names: Mapping[str, str] | None = None,
    ) -> None:
        """No two outputs (and no output and the baseline) may be the same file.

        ``others``: outputs of the front end (e.g. pytest's --junitxml), by flag; ``names``:
        the front end's spelling of each field (default: the pytest flags).
        """

        def flag(field_name: str) -> str:
            return (names or {}).get(field_name, option_for(field_name).flag)

        named: list[tuple[str, Path]] = [
            (flag(fmt) if fmt in ("json", "html") else f"{flag('reports')} {fmt}", p)
            for fmt, p in self.outputs()
        ]
        named += [(f, p) for f, p in (others or {}).items() if p is not None]
        if self.baseline is not None:
            named.append((flag("baseline"), self.baseline))
        seen: dict[Path, str] = {}
        for name, p in named:
            key = Path(p).expanduser().resolve()
            if key in seen:
                raise SettingsError(
                    f"{name} {p}: the same file as {seen[key]}; give each report its own path"
                )
            seen[key] = name


def _unset(raw: Any) -> bool:
    return raw is None or raw == [] or raw == ""


def _resolve(value: object, base: Path) -> Path:
    text = str(value)
    if text.startswith("robusttest:"):  # a shipped model, resolved by name when loaded
        return Path(text)
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text


def _convert(o: RunOption, raw: Any, base: Path) -> Any:
    if o.kind in ("repeatable", "paths"):
        items = raw if isinstance(raw, (list, tuple)) else str(raw).split()
        if o.kind == "paths":
            return tuple(_resolve(_as_text(x), base) for x in items)
        if o.parse is parse_report:  # FORMAT=PATH pairs
            pairs = [parse_report(x) if isinstance(x, str) else x for x in items]
            return tuple((fmt, _resolve(p, base)) for fmt, p in pairs)
        if o.parse is not None:
            return tuple(o.parse(x) if isinstance(x, str) else x for x in items)
        # a suite is a name or a path: only path-like values are made absolute
        return tuple(
            str(_resolve(t, base)) if _looks_like_path(t) else t for t in map(_as_text, items)
        )
    if o.parse is not None:
        return o.parse(raw)
    if o.is_path:
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


__all__ = [
    "OPTIONS",
    "RunOption",
    "RunSettings",
    "SettingsError",
    "argparse_type",
    "option_for",
    "parse_bool",
    "parse_device",
    "parse_gate",
    "parse_report",
]
