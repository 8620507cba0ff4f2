"""Loading: model card → suite → model (loaded, hashed and probed once) → data → plan.

The model card's task picks the default suite and the variant of a multi-task suite; the
suite's ``model:`` section completes or corrects the card. The card is read from the file
first (no session, no probe), so the model itself is loaded once, with the overrides.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from robusttest.data import Dataset, open_dataset
from robusttest.errors import ConfigError, ModelError
from robusttest.models import ModelRunner, build_card, load_model, stored_card_fields
from robusttest.resources import resolve_model_ref
from robusttest.suite import DEFAULT_SUITE_FOR_TASK, CaseSpec, Suite, load_suite
from robusttest.suite.layers import GateOverride, apply_gate_overrides


@dataclass(frozen=True)
class TaskPlan:
    """What one evaluation computes per image."""

    task: str  # "segmentation" | "classification"
    targets: tuple[str, ...]  # structures (seg) or labels (cls) scored per image
    case_targets: tuple[str, ...]  # targets that get cases of their own (plus pairwise tasks)
    metrics: tuple[str, ...]
    pairwise: tuple[tuple[str, str], ...]
    channel_index: Mapping[str, int]  # target -> output channel of the model
    # names the model or the data has that get no case, with why: never silently absent
    not_evaluated: tuple[tuple[str, str], ...] = ()

    def restrict(self, specs: Sequence[CaseSpec]) -> TaskPlan:
        """The plan that scores only what the cases ``specs`` need (same order)."""
        names = {c.target for c in specs}
        pairwise = tuple(p for p in self.pairwise if f"{p[0]}-vs-{p[1]}" in names)
        case_targets = tuple(t for t in self.case_targets if t in names)
        needed = {*case_targets, *(x for p in pairwise for x in p)}
        targets = tuple(t for t in self.targets if t in needed)
        return replace(
            self,
            targets=targets,
            case_targets=case_targets,
            metrics=tuple(m for m in self.metrics if any(c.metric == m for c in specs)),
            pairwise=pairwise,
            channel_index={t: self.channel_index[t] for t in targets},
        )


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def close_names(name: str, candidates: Collection[str]) -> list[str]:
    """Names in ``candidates`` that look like a misspelling of ``name`` (case, separators,
    a swapped or missing letter): the same once normalised, or difflib ratio >= 0.8."""
    by_norm = [c for c in candidates if _norm(c) == _norm(name)]
    lowered = {c.lower(): c for c in candidates}
    near = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.8)
    return list(dict.fromkeys([*by_norm, *(lowered[c] for c in near)]))


def _closest(name: str, candidates: Sequence[str]) -> str:
    near = close_names(name, candidates) or difflib.get_close_matches(name, candidates, n=3)
    return f"closest: {', '.join(map(repr, near))}" if near else f"present: {', '.join(candidates)}"


def plan_task(suite: Suite, runner: ModelRunner, dataset: Dataset) -> TaskPlan:
    """Check that model, suite and data fit together; decide the targets.

    Every target the suite names must be a name of both the model and the data; a name of
    the model card that the data lacks while the data has a near spelling of it (``effusoin``
    for ``effusion``) is a ConfigError naming both, never a silently dropped head. Names
    only one side has (or that the suite's ``targets:`` leaves out) are listed in
    ``not_evaluated``, which every report shows.
    """
    card = runner.card
    if card.task != suite.task:
        raise ModelError(
            f"{runner.path}: the model card says task {card.task!r} but suite {suite.name!r} "
            f"is a {suite.task} suite; choose a {card.task} suite "
            f"(e.g. --suite {DEFAULT_SUITE_FOR_TASK[card.task]})"
        )
    if dataset.task != suite.task:
        raise ConfigError(
            f"suite {suite.name!r}: data adapter {dataset.name!r} provides {dataset.task} "
            f"targets, but the suite's task is {suite.task}"
        )
    if suite.task == "segmentation":
        model_names, data_names, what = card.structures, dataset.structures, "structure"
    else:
        model_names, data_names, what = card.labels, dataset.labels, "label"
    model_names, data_names = tuple(model_names), tuple(data_names)
    index = {n: i for i, n in enumerate(model_names)}
    if suite.targets is not None:
        targets = suite.targets
        for t in targets:
            if t not in index:
                raise ConfigError(
                    f"suite {suite.name!r}: target {t!r} is not a {what} of the model "
                    f"{runner.path.name} ({_closest(t, model_names)})"
                )
            if t not in data_names:
                raise ConfigError(
                    f"suite {suite.name!r}: target {t!r} is not a {what} of dataset "
                    f"{dataset.name!r} ({_closest(t, data_names)})"
                )
    else:
        data_only = [n for n in data_names if n not in index]
        for n in model_names:
            near = close_names(n, data_only) if n not in data_names else []
            if near:
                raise ConfigError(
                    f"model {runner.path.name}: {what} {n!r} is not in dataset "
                    f"{dataset.name!r}, which has {', '.join(map(repr, near))}: a misspelling? "
                    f"Rename it in the data, or set the model's names with a `model:` "
                    f"override, or list the {what}s to evaluate in the suite's `targets:`"
                )
        targets = tuple(n for n in model_names if n in data_names)
        if not targets and not suite.pairwise:
            raise ConfigError(
                f"model {runner.path.name} ({what}s {', '.join(model_names)}) and dataset "
                f"{dataset.name!r} ({what}s {', '.join(data_names)}) share no {what}; "
                "set `targets:` in the suite, or the model's names with a `model:` override"
            )
    for a, b in suite.pairwise:
        for lab in (a, b):
            if lab not in index or lab not in data_names:
                side, names = ("model", model_names) if lab not in index else ("data", data_names)
                raise ConfigError(
                    f"suite {suite.name!r}: pairwise label {lab!r} must be a label of both the "
                    f"model and the data; the {side} has no {lab!r} ({_closest(lab, names)})"
                )
    scored = tuple(dict.fromkeys([*targets, *(x for p in suite.pairwise for x in p)]))
    skipped: list[tuple[str, str]] = []
    for n in dict.fromkeys([*model_names, *data_names]):
        if n in scored:
            continue
        if n in index and n in data_names:
            why = "not among the suite's targets"
        elif n in index:
            why = f"a {what} of the model that the data does not have"
        else:
            why = f"a {what} of the data that the model does not have"
        skipped.append((n, why))
    return TaskPlan(
        task=suite.task,
        targets=scored,
        case_targets=tuple(targets),
        metrics=suite.metrics,
        pairwise=suite.pairwise,
        channel_index={t: index[t] for t in scored},
        not_evaluated=tuple(skipped),
    )


def plan_cases(suite: Suite, plan: TaskPlan) -> list[CaseSpec]:
    """The grid of one evaluation: targets (and pairwise tasks) × metrics × conditions."""
    return suite.cases([*plan.case_targets, *(f"{a}-vs-{b}" for a, b in plan.pairwise)])


def select_cases(
    suite: Suite, grid: Sequence[CaseSpec], cases: Collection[str] | None
) -> list[CaseSpec]:
    """The cases of ``grid`` named in ``cases`` (grid order); None: the whole grid.

    An id not in the grid is a ConfigError naming the closest ids; an empty selection too
    (nothing to evaluate).
    """
    if cases is None:
        return list(grid)
    if isinstance(cases, str):
        cases = [cases]
    wanted = set(cases)
    ids = [c.case_id for c in grid]
    for cid in sorted(wanted - set(ids)):
        near = difflib.get_close_matches(cid, ids, n=3)
        hint = f"closest: {', '.join(near)}" if near else f"e.g. {ids[0]}" if ids else "empty grid"
        raise ConfigError(f"suite {suite.name!r}: case {cid!r} is not in the grid ({hint})")
    if not wanted:
        raise ConfigError(f"suite {suite.name!r}: no case selected; nothing to evaluate")
    return [c for c in grid if c.case_id in wanted]


def resolve_suite(suite: str | Path | Suite | None, task: str | None) -> Suite:
    """The suite object; None → the default suite for ``task`` (the model card's)."""
    if isinstance(suite, Suite):
        return suite
    if suite is None:
        if task is None:
            raise ConfigError("no suite given and no model task to choose a default from")
        return load_suite(DEFAULT_SUITE_FOR_TASK[task], task)
    return load_suite(suite, task)


def load_model_and_suite(
    model: str | Path | ModelRunner,
    suite: str | Path | Suite | None,
    *,
    device: str = "auto",
    threads: int | None = None,
) -> tuple[ModelRunner, Suite]:
    """Load a model and its suite, each informing the other; the model is loaded once.

    The card stored in the file says the task (which picks the default suite and the
    variant of a multi-task suite); the suite's ``model:`` overrides complete or correct
    the card (a model exported without a card needs them).
    """
    if not isinstance(model, (str, Path)):
        return model, resolve_suite(suite, model.card.task)
    path = resolve_model_ref(model)
    fields = stored_card_fields(path)
    task = fields.get("task")
    if suite is None and task is None:
        build_card(fields, None, source=path)  # raises the card's own error, with the fix
        raise ModelError(f"{path}: the model card names no task")
    s = resolve_suite(suite, str(task) if task is not None else None)
    overrides = dict(s.model) or None
    return load_model(path, device=device, threads=threads, card_overrides=overrides), s


def open_suite_data(suite: Suite, data_root: str | Path | None) -> Dataset:
    root = data_root if data_root is not None else suite.data.root
    if root is not None:
        raw = str(root)
        root = os.path.expandvars(os.path.expanduser(raw))
        if "$" in root:
            raise ConfigError(
                f"suite {suite.name!r}: data.root {raw!r} names an environment variable that is "
                "not set; set it (e.g. ROBUSTTEST_DATA=/path/to/data) or pass --data ROOT"
            )
    opts = dict(suite.data.options)
    opts.setdefault("task", suite.task)  # e.g. Shenzhen serves lung masks or TB labels
    if suite.data.limit is not None:
        opts["limit"] = suite.data.limit
    dataset = open_dataset(suite.data.adapter, root, **opts)
    dataset.configure_decoding(max_pixels=suite.data.max_pixels, bit_depth=suite.data.bit_depth)
    return dataset


def prepare(
    model: str | Path | ModelRunner,
    suite: str | Path | Suite | None = None,
    *,
    data_root: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    seed: int | None = None,
    repeats: int | None = None,
    limit: int | None = None,
    gates: Sequence[GateOverride | str] = (),
) -> tuple[ModelRunner, Suite, Dataset]:
    """Load the model and suite, apply run-time overrides, open the data (no evaluation).

    ``gates``: changes to the suite's gates (``GateOverride`` or its text, e.g.
    ``"dice.max_drop=0.05"``), applied in order; the suite's hash covers the result."""
    if repeats is not None and repeats < 1:
        raise ConfigError(f"repeats: {repeats} is not >= 1 (K noise repeats per condition)")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit: {limit} is not >= 1")
    overrides = [
        g if isinstance(g, GateOverride) else GateOverride.parse(g, "gates") for g in gates
    ]
    runner, s = load_model_and_suite(model, suite, device=device, threads=threads)
    s = apply_gate_overrides(s.with_overrides(seed=seed, repeats=repeats), overrides)
    if limit is not None:
        s = replace(s, data=replace(s.data, limit=limit))
    return runner, s, open_suite_data(s, data_root)
