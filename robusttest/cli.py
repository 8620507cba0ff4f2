"""The ``robusttest`` command line.

Errors from the library (``RobustTestError``) are printed as one line on stderr, warnings
(``RobustTestWarning``) as one ``robusttest: warning:`` line; anything else is a bug and
keeps its traceback. Exit statuses: ``EXIT_CODES``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from robusttest.errors import ConfigError, RobustTestError, RobustTestWarning
from robusttest.fsutil import atomic_write_bytes
from robusttest.report.cli import register_cli as register_report_commands

Handler = Callable[[argparse.Namespace], int]

EXIT_PASSED = 0
EXIT_FAILED = 1  # a gate failed, or a regression against --baseline
EXIT_USAGE = 2  # a bad option, suite, model or data folder: nothing was evaluated
EXIT_ERROR = 3  # the run began, but something could not be evaluated or written
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as a shell reports it
EXIT_CODES: dict[int, str] = {
    EXIT_PASSED: "every gate held",
    EXIT_FAILED: "a gate failed (or a regression against --baseline)",
    EXIT_USAGE: "usage error: a bad option, suite, model or data folder; nothing evaluated",
    EXIT_ERROR: (
        "evaluation error: an image could not be read, the model gave NaN, or a report "
        "could not be written; the reports that could be written list what went wrong"
    ),
    EXIT_INTERRUPTED: "interrupted: the reports are written, marked incomplete",
}


def exit_codes_help() -> str:
    """The exit statuses, for --help epilogs."""
    import textwrap

    lines = ["exit status:"]
    for code, text in EXIT_CODES.items():
        lines += textwrap.wrap(text, 78, initial_indent=f"  {code:<5d}", subsequent_indent=" " * 7)
    return "\n".join(lines)


def _parse_params(items: Sequence[str]) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--param {item!r}: expected KEY=VALUE, e.g. --param variant=resample"
            )
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


# --- noise -------------------------------------------------------------------------------
def _cmd_noise_list(args: argparse.Namespace) -> int:
    from robusttest import noise

    for fam in noise.iter_families():
        print(f"{fam.name}: {fam.summary}")
        for which, levels in fam.ladders.items():
            print(f"  {which:8s} {fam.level_param} = {', '.join(f'{v:g}' for v in levels)}")
    return 0


def _cmd_noise_apply(args: argparse.Namespace) -> int:
    import numpy as np

    from robusttest.noise import NoiseSpec

    out = Path(args.out)
    if out.suffix.lower() != ".npy":
        raise ConfigError(f"--out {out}: must end in .npy (a float32 array in [0, 1] is written)")
    spec = NoiseSpec(args.noise, args.level, _parse_params(args.param))
    img = _read(args)
    spacing = args.pixel_spacing if args.pixel_spacing is not None else img.pixel_spacing_mm
    image_id = args.image_id or Path(args.image).stem
    noisy = spec.apply(
        img.pixels,
        seed=args.seed,
        image_ids=[image_id],
        repeat=args.repeat,
        pixel_spacing_mm=spacing,
    )
    arr = noisy.numpy().astype(np.float32)
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    meta: dict[str, Any] = {
        "image": str(args.image),
        "image_id": image_id,
        "shape": list(arr.shape),
        "seed": args.seed,
        "repeat": args.repeat,
        "pixel_spacing_source": (
            "--pixel-spacing"
            if args.pixel_spacing is not None
            else ("file" if img.pixel_spacing_mm is not None else "assumed 430 mm field of view")
        ),
        "bit_depth": img.depth_label,
        **spec.describe(spacing, arr.shape[-2:]),
    }
    atomic_write_bytes(out, buf.getvalue())
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def _read(args: argparse.Namespace) -> Any:
    from robusttest.imageio import DEFAULT_MAX_PIXELS, MIN_SIDE, read_image

    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    if max_pixels < MIN_SIDE * MIN_SIDE:
        raise ConfigError(f"--max-pixels {max_pixels}: is not >= {MIN_SIDE * MIN_SIDE}")
    if args.bit_depth is not None and not 1 <= args.bit_depth <= 32:
        raise ConfigError(f"--bit-depth {args.bit_depth}: is not in [1, 32]")
    return read_image(args.image, max_pixels=max_pixels, bit_depth=args.bit_depth)


def _cmd_noise_preview(args: argparse.Namespace) -> int:
    from robusttest.noise import ladder
    from robusttest.preview import noise_ladder_grid

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: must end in .png")
    img = _read(args)
    spacing = args.pixel_spacing if args.pixel_spacing is not None else img.pixel_spacing_mm
    specs = ladder(args.noise, args.ladder, **_parse_params(args.param))
    png = noise_ladder_grid(
        img.pixels,
        specs,
        image_id=Path(args.image).stem,
        seed=args.seed,
        pixel_spacing_mm=spacing,
        title=Path(args.image).name,
    )
    atomic_write_bytes(out, png)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robusttest",
        description="How a chest X-ray model behaves under radiographic noise.",
    )
    from robusttest import __version__

    parser.add_argument("--version", action="version", version=f"robusttest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    noise = sub.add_parser("noise", help="inspect and apply noise families")
    nsub = noise.add_subparsers(dest="noise_command", metavar="ACTION")
    nsub.required = True

    p_list = nsub.add_parser("list", help="list noise families and their ladders")
    p_list.set_defaults(func=_cmd_noise_list)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("image", help="PNG, 16-bit PNG, TIFF, .npy or DICOM radiograph")
        p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
        p.add_argument(
            "--pixel-spacing",
            type=float,
            default=None,
            metavar="MM",
            help="pixel spacing of the image in mm (default: from DICOM, else a 430 mm field of view)",
        )
        p.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="family parameter, e.g. variant=resample, sigma_e=5, n0=2000 (repeatable)",
        )
        p.add_argument(
            "--bit-depth",
            type=int,
            default=None,
            metavar="BITS",
            help="bits of an integer image that hold data, e.g. 12 for 12-bit values in a "
            "16-bit PNG (default: the PNG sBIT chunk or DICOM BitsStored, else the file's)",
        )
        p.add_argument(
            "--max-pixels",
            type=int,
            default=None,
            metavar="N",
            help="largest image accepted, checked from the header (default 50000000)",
        )

    p_apply = nsub.add_parser("apply", help="write a noisy copy of an image as float32 .npy")
    common(p_apply)
    p_apply.add_argument(
        "--noise", required=True, help="noise family (see `robusttest noise list`)"
    )
    p_apply.add_argument("--level", required=True, type=float, help="dose / sigma / rate / sigma_e")
    p_apply.add_argument("--repeat", type=int, default=0, help="noise repeat index (default 0)")
    p_apply.add_argument(
        "--image-id", default=None, help="id keying the noise (default: file stem)"
    )
    p_apply.add_argument("--out", required=True, help="OUT.npy; OUT.json gets the parameters used")
    p_apply.set_defaults(func=_cmd_noise_apply)

    p_prev = nsub.add_parser("preview", help="PNG grid: clean and every ladder level, with insets")
    common(p_prev)
    p_prev.add_argument("--noise", default="quantum", help="noise family (default quantum)")
    p_prev.add_argument("--ladder", default="default", help="ladder name (default, stress)")
    p_prev.add_argument("--out", required=True, help="FILE.png")
    p_prev.set_defaults(func=_cmd_noise_preview)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


def _register_card(sub: Any) -> None:
    from robusttest.models.cli import register_cli

    register_cli(sub)


def _register_zoo(sub: Any) -> None:
    # the zoo is an application behind the `zoo` extra: its own module, which checks the extra
    from robusttest.zoo.cli import register_cli

    register_cli(sub)


# --- shipped fixture models --------------------------------------------------------------
def _cmd_fixtures(args: argparse.Namespace) -> int:
    from robusttest.errors import DataError
    from robusttest.models import file_sha256, load_model
    from robusttest.resources import MODEL_REF_PREFIX, fixture_models

    models = fixture_models()
    if not models:
        raise DataError("no fixture models found in this install; reinstall robusttest")
    for name, path in models.items():
        task = load_model(path, device="cpu").card.task
        ref = f"{MODEL_REF_PREFIX}{name}"
        print(f"{ref:22s} {task:14s} sha256:{file_sha256(path)[:12]}  {path}")
    return 0


def _register_fixtures(sub: Any) -> None:
    p = sub.add_parser(
        "fixtures", help="list the shipped fixture models (use one as --model robusttest:NAME)"
    )
    p.set_defaults(func=_cmd_fixtures)


def _cmd_suite_schema(args: argparse.Namespace) -> int:
    from robusttest.suite import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.out:
        atomic_write_bytes(Path(args.out), text.encode())
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_suite_list(args: argparse.Namespace) -> int:
    from robusttest.suite import builtin_suites

    for name, path in builtin_suites().items():
        print(f"{name:20s} {path}")
    return 0


def _cmd_suite_show(args: argparse.Namespace) -> int:
    from robusttest.suite import load_suite

    suite = load_suite(args.suite, args.task)
    print(json.dumps(suite.to_dict(), indent=2))
    return 0


def _register_suite(sub: Any) -> None:
    p = sub.add_parser("suite", help="inspect suites and export their JSON Schema")
    ssub = p.add_subparsers(dest="suite_command", metavar="ACTION")
    ssub.required = True
    ps = ssub.add_parser("schema", help="JSON Schema of suite files, for editors")
    ps.add_argument("--out", default=None, help="write to this file instead of stdout")
    ps.set_defaults(func=_cmd_suite_schema)
    pl = ssub.add_parser("list", help="built-in suites")
    pl.set_defaults(func=_cmd_suite_list)
    pv = ssub.add_parser("show", help="validate a suite and print it resolved")
    pv.add_argument("suite", help="built-in name or path to a YAML file")
    pv.add_argument("--task", default=None, help="variant of a multi-task suite")
    pv.set_defaults(func=_cmd_suite_show)


def _cmd_run(args: argparse.Namespace) -> int:
    from robusttest.engine import run
    from robusttest.options import OPTIONS, RunSettings
    from robusttest.report import (
        ReportsInterrupted,
        mark_interrupted,
        run_errors,
        run_state,
        summary_line,
        write_reports,
    )
    from robusttest.results import RunResult, merge

    cli = {o.field: getattr(args, o.field, None) for o in OPTIONS}
    cli["models"] = [args.model]
    settings = RunSettings.from_sources(
        cli,
        invocation_dir=Path.cwd(),
        cli_names={o.field: o.cli for o in OPTIONS if o.cli is not None},
    )
    results: list[RunResult] = []
    try:
        for model in settings.models:
            for suite in settings.suites or (None,):
                results.append(
                    run(
                        model,
                        suite,
                        data_root=settings.data,
                        device=settings.device,
                        seed=settings.seed,
                        repeats=settings.repeats,
                        limit=settings.limit,
                        batch_size=settings.batch_size,
                        workers=settings.workers,
                        lanes=settings.lanes,
                        cache=settings.cache,
                        cache_dir=settings.cache_dir,
                        frontier=settings.frontier,
                        gates=settings.gates,
                        shards=settings.shards,
                        backend=settings.backend,
                        ray_address=settings.ray_address,
                    )
                )
                if run_state(results[-1]) == "interrupted":
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if not results:  # before any evaluation began: nothing to report
            print("robusttest: interrupted before any evaluation began", file=sys.stderr)
            return EXIT_INTERRUPTED
        if run_state(results[-1]) != "interrupted":  # between two evaluations
            results[-1] = mark_interrupted(results[-1], "loading")
    result = merge(results)
    failed_writes = False
    try:
        written = write_reports(result, settings.outputs())
    except ReportsInterrupted as exc:
        written, result = exc.written, mark_interrupted(result, "rendering")
    for w in written:
        print(f"wrote {w.path}" if w.ok else w.line())
        failed_writes |= not w.ok
    for line in run_errors(result):
        print(f"robusttest: error: {line}", file=sys.stderr)
    for case in result.failed:
        if case.verdict == "fail":
            print(f"FAIL {case.case_id}: {case.message}")
    for front in result.frontiers:
        word = "FAIL" if front in result.failed_frontiers else "FRONTIER"
        print(f"{word} {front.frontier_id}: {front.message}")
    print(summary_line(result))
    state = run_state(result)
    if state == "interrupted":
        return EXIT_INTERRUPTED
    if state in ("error", "incomplete") or failed_writes:
        return EXIT_ERROR
    code = EXIT_PASSED if state == "passed" else EXIT_FAILED
    if settings.baseline is not None:
        code = max(code, _against_baseline(result, settings))
    return code


def _against_baseline(result: Any, settings: Any) -> int:
    from robusttest.compare import compare
    from robusttest.report.cli import read_results

    baseline = settings.baseline
    common, per_metric = settings.baseline_tolerances()
    cmp = compare(
        read_results(baseline),
        result,
        tolerance=common,
        tolerances=per_metric,
        fail_on_ungated=settings.baseline_fail_on_ungated,
    )
    print(f"against {baseline}: {cmp.summary()}")
    if not cmp.ok:
        print(cmp.format_text(all_cases=False))
    return 0 if cmp.ok else 1


def _register_run(sub: Any) -> None:
    from robusttest.options import OPTIONS

    p = sub.add_parser(
        "run",
        help="evaluate a model under a suite (outside pytest)",
        description="Evaluate a model under a suite and write the reports asked for.",
        epilog=exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for o in OPTIONS:
        if o.cli is None:
            continue
        if o.cli == "MODEL":
            p.add_argument("model", help=o.help.replace("; repeatable", ""))
            continue
        # values are validated by RunSettings (one line naming the flag), not argparse
        kw: dict[str, Any] = {"dest": o.field, "help": o.help, "default": None}
        if o.kind == "switch":
            kw["action"] = "store_true"
        else:
            kw["metavar"] = o.metavar
            if o.kind in ("repeatable", "paths"):
                kw["action"] = "append"
        p.add_argument(o.cli, **kw)
    p.set_defaults(func=_cmd_run)


# Subcommands beyond `noise`; later layers add theirs here.
_EXTRA_COMMANDS: list[Callable[[Any], None]] = [
    _register_run,
    _register_suite,
    _register_fixtures,
    _register_card,
    _register_zoo,
    register_report_commands,
]


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """robusttest's own warnings as one line; any other as Python shows it."""
    if issubclass(category, RobustTestWarning):
        print(f"robusttest: warning: {message}", file=sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args))
    except RobustTestError as exc:
        print(f"robusttest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("robusttest: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `robusttest compare a b | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # an output folder that cannot be created, a full disk...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"robusttest: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
