"""``robusttest zoo ...``: train the fixture models and the paper's zoo, write the replication.

``robusttest.cli`` registers these subcommands through ``register_cli``; each one first
checks that the zoo extra's packages are installed, so a plain install says which extra to
add instead of failing halfway through an import.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robusttest.zoo import require_extra

Handler = Callable[[argparse.Namespace], int]


def _needs_extra(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        require_extra(f"robusttest zoo {args.zoo_command}")
        return handler(args)

    return run


def _cmd_fixtures(args: argparse.Namespace) -> int:
    from robusttest.zoo.train import train_fixtures

    report = train_fixtures(Path(args.data), Path(args.out), device=args.device, quick=args.quick)
    print(json.dumps({k: v["test"] for k, v in report.items()}, indent=1, default=str))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from robusttest.models import resolve_device
    from robusttest.zoo.train import train_zoo, zoo_configs

    names = args.models.split(",") if args.models else list(zoo_configs())
    train_zoo(
        names,
        Path(args.data),
        Path(args.out),
        device=resolve_device(args.device),
        epochs=args.epochs,
    )
    return 0


def _cmd_replicate(args: argparse.Namespace) -> int:
    from robusttest.zoo import replication as R

    zoo_dir, run_dir = Path(args.zoo), Path(args.runs)
    native_dir = Path(args.native_runs) if args.native_runs else run_dir / "native"
    names = args.models.split(",") if args.models else None
    if not args.doc_only:
        R.run_zoo(
            zoo_dir,
            Path(args.data),
            run_dir,
            native_dir=None if args.no_native else native_dir,
            names=names,
            repeats=args.repeats,
            limit=args.limit,
            device=args.device,
            frontier=args.frontier,
        )
    results = R.load_runs(run_dir)
    doc = Path(args.doc)
    curves = R.plot_curves(results, doc.parent / "img" / "replication_curves.png")
    native = R.load_runs(native_dir) if native_dir.is_dir() else None
    R.write_doc(results, R.zoo_metrics(zoo_dir), doc, curves, native)
    print(f"wrote {doc} and {curves}")
    return 0


def register_cli(sub: Any) -> None:
    """Add ``zoo fixtures | train | replicate`` to the ``robusttest`` subcommands."""
    zoo = sub.add_parser(
        "zoo",
        help="train reference models (fixtures, the paper's zoo); needs robusttest[zoo]",
    )
    zsub = zoo.add_subparsers(dest="zoo_command", metavar="ACTION")
    zsub.required = True
    data_default = os.environ.get("ROBUSTTEST_DATA", "../shared/data")

    p = zsub.add_parser(
        "fixtures", help="train the small models committed in fixtures/models (seeded)"
    )
    p.add_argument(
        "--data",
        default=data_default,
        help="folder holding montgomery/ and shenzhen/ (default $ROBUSTTEST_DATA)",
    )
    p.add_argument("--out", default="fixtures/models", help="output folder")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quick", action="store_true", help="a few epochs only (smoke test)")
    p.set_defaults(func=_needs_extra(_cmd_fixtures))

    t = zsub.add_parser("train", help="train the paper's architectures on the public data")
    t.add_argument(
        "--models", default=None, help="comma list (default: all; see robusttest/zoo/train.py)"
    )
    t.add_argument("--data", default=data_default, help="public corpus root")
    t.add_argument("--out", default="zoo", help="output folder (default zoo/)")
    t.add_argument("--epochs", type=int, default=None, help="override each model's epochs")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    t.set_defaults(func=_needs_extra(_cmd_train))

    r = zsub.add_parser("replicate", help="run the paper's grid over the zoo; write the doc")
    r.add_argument("--zoo", default="zoo", help="folder of zoo models")
    r.add_argument("--data", default=data_default, help="public corpus root")
    r.add_argument("--runs", default="runs/replication", help="where results JSON/HTML go")
    r.add_argument("--doc", default="docs/replication.md", help="the document to write")
    r.add_argument("--models", default=None, help="comma list of zoo model names")
    r.add_argument("--repeats", type=int, default=None, help="override the suite's repeats")
    r.add_argument("--limit", type=int, default=None, help="first N images only")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    r.add_argument("--doc-only", action="store_true", help="re-write the doc from saved runs")
    r.add_argument(
        "--frontier",
        action="store_true",
        help="also search each model's headline failure frontiers (the doc gains a section)",
    )
    r.add_argument(
        "--native-runs",
        default=None,
        help="where the runs with image-domain noise at native resolution go "
        "(default RUNS/native); the document compares them with the model-input runs",
    )
    r.add_argument(
        "--no-native",
        action="store_true",
        help="skip the second, native-resolution placement of the image-domain noise",
    )
    r.set_defaults(func=_needs_extra(_cmd_replicate))
