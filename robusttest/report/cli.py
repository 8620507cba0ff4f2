"""``robusttest report`` and ``robusttest compare``: work from saved results JSON only.

Wire them in with ``robusttest.cli._EXTRA_COMMANDS.append(register_cli)``. Problems with
the user's files are ``RobustTestError``s, which the main CLI prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from robusttest.errors import ConfigError
from robusttest.fsutil import atomic_write_text
from robusttest.results import RunResult


def read_results(path: str | Path) -> RunResult:
    """Load a results JSON; anything that is not one becomes a one-line ``ConfigError``."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read results ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a robusttest results file (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: not a robusttest results file (top level is not an object)")
    try:
        return RunResult.from_dict(data, str(p))
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{p}: malformed results file ({exc!r})") from None


def _write(path: str, text: str, what: str) -> Path:
    try:
        return atomic_write_text(path, text)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot write ({exc.strerror or exc})") from None


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _cmd_report(args: argparse.Namespace) -> int:
    from robusttest.options import parse_report
    from robusttest.report.base import render_stamp, summary_line, write_reports

    outputs: list[tuple[str, Path]] = []
    named = (("html", args.html), ("json", args.json), ("junit", args.junit), ("pdf", args.pdf))
    for fmt, path in named:
        if path:
            outputs.append((fmt, Path(path)))
    outputs += [(fmt, Path(p)) for fmt, p in map(parse_report, args.report or [])]
    if not outputs:
        raise ConfigError(
            "report: nothing to write; give --html OUT.html, --json OUT.json, --junit OUT.xml, "
            "--pdf OUT.pdf or --report FORMAT=PATH"
        )
    for fmt, path in outputs:
        if _same_file(str(path), args.results):
            raise ConfigError(f"{fmt} output {path}: is the results file itself; choose another")
    result = read_results(args.results)
    failed = False
    for written in write_reports(result, outputs, rendered_at=render_stamp()):
        print(f"wrote {written.path}" if written.ok else written.line())
        failed |= not written.ok
    print(summary_line(result))
    return 2 if failed else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from robusttest.compare import compare

    base = read_results(args.base)
    new = read_results(args.new)
    cmp = compare(base, new, tolerance=args.tolerance)
    print(cmp.format_text(all_cases=not args.only_problems))
    if args.json:
        _write(args.json, json.dumps(cmp.to_dict(), indent=1, sort_keys=True) + "\n", "--json")
        print(f"wrote {args.json}")
    return 0 if cmp.ok else 1


def _tolerance(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not (v >= 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"{s!r} must be a finite number >= 0")
    return v


def register_cli(sub: Any) -> None:
    """Add ``report`` and ``compare`` to the main parser's subparsers object."""
    p = sub.add_parser(
        "report",
        help="re-render saved results as a self-contained HTML report (no model or data needed)",
        description="Re-render a results JSON written by a run as one offline HTML file.",
    )
    p.add_argument("results", metavar="RESULTS.json", help="results file written by a run")
    p.add_argument("--html", metavar="OUT.html", help="write the HTML report here")
    p.add_argument("--json", metavar="OUT.json", help="write the (normalised) results JSON here")
    p.add_argument("--junit", metavar="OUT.xml", help="write JUnit XML (one testcase per case)")
    p.add_argument(
        "--pdf",
        metavar="OUT.pdf",
        help="print the HTML report to PDF (landscape; needs Chromium, or CHROMIUM=/path)",
    )
    p.add_argument(
        "--report",
        action="append",
        metavar="FORMAT=PATH",
        help="write a report in any registered format (repeatable)",
    )
    p.set_defaults(func=_cmd_report)

    c = sub.add_parser(
        "compare",
        help="compare two results case by case; exit 1 when the new run is worse",
        description=(
            "Match cases by (task, case id) and compare the noisy metric. Exit 0 when nothing "
            "regressed; exit 1 on a worsening beyond --tolerance, a gate that newly fails, or "
            "a case of BASE missing from NEW."
        ),
    )
    c.add_argument("base", metavar="BASE.json", help="results of the reference run")
    c.add_argument("new", metavar="NEW.json", help="results of the run under test")
    c.add_argument(
        "--tolerance",
        type=_tolerance,
        default=0.01,
        metavar="T",
        help="allowed worsening in metric units (default 0.01)",
    )
    c.add_argument("--json", metavar="OUT.json", help="also write the comparison as JSON")
    c.add_argument(
        "--only-problems", action="store_true", help="list only regressed or undefined cases"
    )
    c.set_defaults(func=_cmd_compare)
