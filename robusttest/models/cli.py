"""``robusttest card init|show|set MODEL``: give an existing model a card, read it, change it.

``init`` reads the input's channels and size from an ONNX graph and takes the rest from
flags; the card is checked against the model (one run on a zero batch) before anything is
written. Where it goes: by default the sidecar ``MODEL.card.yaml`` beside the model (any
format; the model file and its sha256 stay as they are); ``--in-place`` stores it in the
ONNX file's metadata, ``--out NEW.onnx`` in a copy. TorchScript and ``.pt2`` archives get
their card when saved (``robusttest.models.save_torchscript`` / ``save_pt2``), so here
they take the sidecar.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from robusttest.errors import ConfigError, ModelError
from robusttest.fsutil import atomic_write_text
from robusttest.models.card import (
    ACTIVATIONS,
    RESIZE_BACK,
    TASKS,
    ModelCard,
    build_card,
    field_names,
    sidecar_fields,
    sidecar_path,
    sidecar_text,
)
from robusttest.models.files import detect_format, embedded_card_fields, onnx_input_dims


def _split(values: Sequence[str] | None) -> list[str]:
    """``--labels a b`` and ``--labels a,b`` alike."""
    return [v.strip() for item in values or () for v in item.split(",") if v.strip()]


def _floats(flag: str, values: Sequence[str] | None) -> list[float] | None:
    items = _split(values)
    if not items:
        return None
    try:
        return [float(v) for v in items]
    except ValueError:
        raise ConfigError(
            f"{flag} {' '.join(values or ())!r}: give numbers, e.g. {flag} 0.5 or "
            f"{flag} 0.485,0.456,0.406"
        ) from None


def _input_size(values: Sequence[str] | None) -> tuple[int, ...] | None:
    items = [v for item in values or () for v in item.lower().replace("x", ",").split(",") if v]
    if not items:
        return None
    try:
        sides = [int(v) for v in items]
    except ValueError:
        sides = []
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2:
        raise ConfigError(
            f"--input-size {' '.join(values or ())!r}: give HEIGHT WIDTH in pixels, e.g. "
            "--input-size 256 256 (or 256x256, or one number for a square)"
        )
    return sides[0], sides[1]


class _Stored:
    """A model's card as stored: embedded in the file, in the sidecar, or both."""

    def __init__(self, model: Path) -> None:
        self.model = model
        self.format = detect_format(model)
        self.embedded = embedded_card_fields(model)
        self.sidecar = sidecar_fields(model)

    @property
    def fields(self) -> dict[str, Any]:
        return {**self.embedded, **self.sidecar}

    def where(self) -> str:
        side = sidecar_path(self.model)
        if self.embedded and self.sidecar:
            return f"stored in {self.model.name}, with the fields of {side.name} on top"
        if self.sidecar:
            return f"from the sidecar {side}"
        if self.embedded:
            return f"stored in {self.model.name}"
        return "none"


def _model_path(text: str) -> Path:
    from robusttest.resources import resolve_model_ref

    return Path(resolve_model_ref(text))


def _inferred_layout(model: Path, fmt: str) -> tuple[int | None, tuple[int, ...] | None]:
    """(channels, (height, width)) from an ONNX graph's input; None where it is dynamic."""
    if fmt != "onnx":
        return None, None
    name, dims = onnx_input_dims(model)
    if len(dims) != 4:
        raise ModelError(
            f"{model}: input {name!r} has rank {len(dims)}; robusttest feeds N×C×H×W image "
            "batches (rank 4)"
        )
    h, w = dims[2], dims[3]
    return dims[1], ((h, w) if h is not None and w is not None else None)


def _agree(
    model: Path, flag: str, given: tuple[int, ...] | None, graph: tuple[int, ...] | None
) -> tuple[int, ...] | None:
    """The flag's value, else the graph's; a flag that contradicts the graph is an error."""
    if given is not None and graph is not None and given != graph:
        raise ConfigError(
            f"{flag} {list(given)}: the graph of {model.name} takes {list(graph)}; drop the "
            "flag (it is read from the graph) or fix the model"
        )
    return given if given is not None else graph


def _checked(model: Path, card: ModelCard) -> ModelCard:
    """The card, after one run of the model with it (outputs must fit labels/structures)."""
    from robusttest.models.runner import load_model

    runner = load_model(model, device="cpu", card_overrides=card.to_dict())
    return runner.card


def _write(model: Path, stored: _Stored, card: ModelCard, args: argparse.Namespace) -> str:
    """Store ``card`` where the flags say; returns what was written, for the user."""
    if args.out is None and not args.in_place:
        side = sidecar_path(model)
        atomic_write_text(side, sidecar_text(card, model))
        return f"wrote the card to {side} (the model file is unchanged)"
    from robusttest.models.export import write_onnx_card

    target = write_onnx_card(model, card, None if args.in_place else Path(args.out))
    note = ""
    if sidecar_path(target).is_file():
        note = (
            f"; note: {sidecar_path(target).name} beside it overrides these fields, "
            "delete it to use the stored card alone"
        )
    return f"stored the card in {target}{note}"


def _check_target(model: Path, stored: _Stored, args: argparse.Namespace) -> None:
    """--out / --in-place write into an ONNX file; refuse them for other formats up front."""
    if (args.out is not None or args.in_place) and stored.format != "onnx":
        raise ConfigError(
            f"{model}: a {stored.format} archive gets its card when it is saved "
            "(robusttest.models.save_torchscript / save_pt2); for this file, drop --out / "
            f"--in-place and the card goes to the sidecar {sidecar_path(model).name}"
        )


def _print_card(card_fields: Mapping[str, Any], as_json: bool) -> None:
    ordered = {k: card_fields[k] for k in field_names() if k in card_fields}
    if as_json:
        print(json.dumps(ordered, indent=2))
    else:
        text = yaml.safe_dump(
            ordered, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
        )
        print(text, end="")


# --- the commands --------------------------------------------------------------------------
def _cmd_init(args: argparse.Namespace) -> int:
    model = _model_path(args.model)
    stored = _Stored(model)
    _check_target(model, stored, args)
    if stored.fields and not args.force:
        raise ConfigError(
            f"{model}: already has a card ({stored.where()}); change fields with "
            f"robusttest card set {args.model} FIELD=VALUE, or add --force to replace it"
        )
    channels, size = _inferred_layout(model, stored.format)
    size = _agree(model, "--input-size", _input_size(args.input_size), size)
    one = _agree(
        model,
        "--channels",
        None if args.channels is None else (args.channels,),
        None if channels is None else (channels,),
    )
    fields: dict[str, Any] = {
        "task": args.task,
        "input_size": size,
        "channels": one[0] if one else None,
        "mean": _floats("--mean", args.mean),
        "std": _floats("--std", args.std),
        "output_activation": args.output_activation,
        "labels": _split(args.labels) or None,
        "structures": _split(args.structures) or None,
        "name": args.name,
        "version": args.version,
        "training_data": args.training_data,
        "resize_back": args.resize_back,
    }
    if size is None:
        why = (
            "the graph's input size is dynamic"
            if stored.format == "onnx"
            else f"a {stored.format} file does not say its input size"
        )
        raise ConfigError(f"{model}: give --input-size HEIGHT WIDTH ({why})")
    if fields["channels"] is None:
        raise ConfigError(f"{model}: give --channels 1 or 3 (the number of input channels)")
    for flag, key in (("--mean", "mean"), ("--std", "std")):
        if fields[key] is None:
            raise ConfigError(
                f"{flag}: give the normalisation the model was trained with, applied to "
                f"pixels in [0, 1] (e.g. {flag} {'0.5' if key == 'mean' else '0.25'}, or one "
                "value per channel)"
            )
    given = {k: v for k, v in fields.items() if v is not None}
    card = _checked(model, build_card(given, source=model))
    print(_write(model, stored, card, args))
    print(card.describe())
    return 0


def _parse_assignment(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"{text!r}: expected FIELD=VALUE, e.g. resize_back=labels or mean=[0.5]; "
            f"fields: {', '.join(field_names())}"
        )
    if key not in field_names():
        raise ConfigError(
            f"{text!r}: unknown card field {key!r}; known fields: {', '.join(field_names())}"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(
            f"{text!r}: the value is not valid YAML; quote it, e.g. {key}='text'"
        ) from None
    if key in ("name", "version", "training_data") and value is not None:
        value = raw  # free text stays text (a version 1.10 is not the number 1.1)
    return key, value


def _cmd_set(args: argparse.Namespace) -> int:
    model = _model_path(args.model)
    stored = _Stored(model)
    _check_target(model, stored, args)
    changes = dict(_parse_assignment(a) for a in args.assignments)
    card = _checked(model, build_card(stored.fields, changes, source=model))
    print(_write(model, stored, card, args))
    print(card.describe())
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    model = _model_path(args.model)
    stored = _Stored(model)
    if not stored.fields:
        build_card({}, source=model)  # raises the no-card error, with the fix
    card = build_card(stored.fields, source=model)  # raises when incomplete, saying what
    if not args.json:
        print(f"# card of {model} ({stored.where()})")
    _print_card(card.to_dict(), args.json)
    return 0


def _add_target_flags(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--in-place",
        action="store_true",
        help="store the card in the ONNX file itself (default: the sidecar MODEL.card.yaml)",
    )
    where.add_argument(
        "--out",
        metavar="NEW.onnx",
        help="store the card in a copy of the ONNX model (default: the sidecar)",
    )


def register_cli(sub: Any) -> None:
    """Add ``card`` to the main parser's subparsers object."""
    p = sub.add_parser(
        "card",
        help="give a model a model card (init), show it, or change fields (set)",
        description=(
            "A model card says how to feed a model and read its outputs. By default cards "
            "are written to the sidecar MODEL.card.yaml beside the model, which pytest "
            "--model and robusttest run read; --in-place / --out store it in an ONNX file."
        ),
    )
    csub = p.add_subparsers(dest="card_command", metavar="ACTION")
    csub.required = True

    init = csub.add_parser(
        "init",
        help="write a card for a model that has none",
        description=(
            "Write a model card. Input channels and size are read from an ONNX graph (give "
            "--channels / --input-size for TorchScript, .pt2 or a dynamic input); the rest "
            "comes from the flags. The model is run once with the card before it is written."
        ),
    )
    init.add_argument("model", metavar="MODEL", help="the model file (.onnx, TorchScript, .pt2)")
    init.add_argument("--task", required=True, choices=TASKS, help="what the model does")
    init.add_argument(
        "--labels",
        nargs="+",
        metavar="NAME",
        help="classification: the output labels in output order (a b c, or a,b,c)",
    )
    init.add_argument(
        "--structures",
        nargs="+",
        metavar="NAME",
        help="segmentation: the structure of each output channel, in order (e.g. lungs)",
    )
    init.add_argument(
        "--mean", nargs="+", metavar="M", help="normalisation mean on [0, 1] pixels, per channel"
    )
    init.add_argument(
        "--std", nargs="+", metavar="S", help="normalisation std on [0, 1] pixels, per channel"
    )
    init.add_argument(
        "--output-activation",
        required=True,
        choices=ACTIVATIONS,
        help="what turns the outputs into probabilities (none: they already are)",
    )
    init.add_argument(
        "--input-size", nargs="+", metavar="N", help="HEIGHT WIDTH (default: from the graph)"
    )
    init.add_argument("--channels", type=int, help="1 or 3 (default: from the graph)")
    init.add_argument(
        "--resize-back",
        choices=RESIZE_BACK,
        help=(
            "segmentation: how a prediction returns to the mask's size: probabilities "
            "(resize, then threshold; the default) or labels (threshold, then nearest "
            "neighbour)"
        ),
    )
    init.add_argument("--name", help="model name (default: the file name)")
    init.add_argument("--version", help="model version")
    init.add_argument("--training-data", help="what the model was trained on")
    init.add_argument("--force", action="store_true", help="replace an existing card")
    _add_target_flags(init)
    init.set_defaults(func=_cmd_init)

    show = csub.add_parser("show", help="print a model's card and where it comes from")
    show.add_argument("model", metavar="MODEL", help="the model file (or robusttest:NAME)")
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    show.set_defaults(func=_cmd_show)

    put = csub.add_parser(
        "set",
        help="change fields of a model's card",
        description=(
            "Change card fields (values in YAML: mean=[0.5], labels=[a, b], "
            "resize_back=labels). The card is checked against the model, then written to "
            "the sidecar (default) or, with --in-place / --out, into an ONNX file."
        ),
    )
    put.add_argument("model", metavar="MODEL", help="the model file")
    put.add_argument(
        "assignments", nargs="+", metavar="FIELD=VALUE", help=f"fields: {', '.join(field_names())}"
    )
    _add_target_flags(put)
    put.set_defaults(func=_cmd_set)


__all__ = ["register_cli"]
