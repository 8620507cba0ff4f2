"""``robusttest report`` and ``robusttest compare``: work from saved results JSON only.

Wire them in with ``robusttest.cli._EXTRA_COMMANDS.append(register_cli)``. Problems with
the user's files are ``RobustTestError``s, which the main CLI prints as one line (exit 2).

Both verify what they read (:func:`read_results`): the file's digest (a file modified
after it was written is refused) and every case's verdict, derived again from its
numbers and gate (a verdict that does not follow is refused).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from robusttest.errors import ConfigError
from robusttest.fsutil import atomic_write_text
from robusttest.results import RunResult, verify_digest


def read_results(path: str | Path) -> RunResult:
    """Load and verify a results JSON; anything that is not one written by robusttest, as
    written, with verdicts that follow from its numbers, is a one-line ``ConfigError``."""
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
        result = RunResult.from_dict(data, str(p))
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{p}: malformed results file ({exc!r})") from None
    verify_digest(data, str(p))
    check_verdicts(result, str(p))
    return result


def check_verdicts(result: RunResult, source: str) -> None:
    """ConfigError naming the first case whose saved verdict its numbers and gate do not
    give (``gates.judge_case`` again, as the engine judged it)."""
    wrong = result.verdict_mismatches()
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise ConfigError(
            f"{source}: {wrong[0]}{more}; the file was edited or written by another version "
            "of robusttest; re-run"
        )


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
    seen: dict[Path, str] = {}
    for fmt, path in outputs:
        if _same_file(str(path), args.results):
            raise ConfigError(f"{fmt} output {path}: is the results file itself; choose another")
        key = path.expanduser().resolve()
        if key in seen:
            raise ConfigError(
                f"{fmt} output {path}: the same file as the {seen[key]} output; give each "
                "report its own path"
            )
        seen[key] = fmt
    result = read_results(args.results)
    failed = False
    for written in write_reports(result, outputs, rendered_at=render_stamp()):
        print(f"wrote {written.path}" if written.ok else written.line())
        failed |= not written.ok
    print(summary_line(result))
    return 2 if failed else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from robusttest.compare import compare, parse_tolerance_option

    common: str | None = None
    per_metric: dict[str, str] = {}
    for text in args.tolerance or []:
        metric, _ = parse_tolerance_option(text)
        if metric is None:
            common = text
        else:
            per_metric[metric] = text.partition("=")[2].strip()
    base = read_results(args.base)
    new = read_results(args.new)
    cmp = compare(
        base,
        new,
        tolerance=common,
        tolerances=per_metric,
        fail_on_ungated=args.fail_on_ungated,
    )
    print(cmp.format_text(all_cases=not args.only_problems))
    if args.json:
        _write(args.json, json.dumps(cmp.to_dict(), indent=1, sort_keys=True) + "\n", "--json")
        print(f"wrote {args.json}")
    return 0 if cmp.ok else 1


def _tolerance(s: str) -> str:
    from robusttest.compare import parse_tolerance_option

    try:
        parse_tolerance_option(s)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return s


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
            "Match cases by (suite, case id) and compare the noisy metric. Exit 0 when "
            "nothing regressed; exit 1 when a gated case got worse by more than its "
            "metric's tolerance with the runs' CIs apart (beyond noise), a gate newly fails, "
            "or a case of BASE is missing from NEW. Both files are verified first (digest, "
            "verdicts)."
        ),
    )
    c.add_argument("base", metavar="BASE.json", help="results of the reference run")
    c.add_argument("new", metavar="NEW.json", help="results of the run under test")
    c.add_argument(
        "--tolerance",
        type=_tolerance,
        action="append",
        metavar="METRIC=T",
        help="allowed worsening of a metric, in its unit or as a percentage of the base "
        "value (dice=0.02, hd95=2, hd95=10%%); a bare T applies to every metric; repeatable "
        "(default: the metric's own: dice, iou, auroc 0.01; hd95 10%%)",
    )
    c.add_argument(
        "--fail-on-ungated",
        action="store_true",
        help="ungated cases that got worse fail too (default: reported only)",
    )
    c.add_argument("--json", metavar="OUT.json", help="also write the comparison as JSON")
    c.add_argument(
        "--only-problems", action="store_true", help="list only regressed or undefined cases"
    )
    c.set_defaults(func=_cmd_compare)
