"""The model card: everything robusttest must know to feed a model and read its outputs.

A card travels with the model file (ONNX ``metadata_props``, a TorchScript or ``.pt2``
extra file ``robusttest_card.json``) so that ``pytest --model zoo.onnx`` needs no other
flag. A sidecar ``MODEL.card.yaml`` beside the model (any format) supplies or overrides
fields without touching the model file, and a suite's ``model:`` section overrides both.
``robusttest card init|show|set`` writes and reads cards (``robusttest.models.cli``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml

from robusttest.errors import ConfigError, ModelError

Task = Literal["segmentation", "classification"]
Activation = Literal["sigmoid", "softmax", "none"]
#: How a segmentation output returns to the mask's size: ``probabilities`` = resize the
#: probabilities (bilinear) and threshold at the mask's size; ``labels`` = threshold at the
#: model's size and resize the labels (nearest neighbour), as many deployments do.
ResizeBack = Literal["probabilities", "labels"]

TASKS: tuple[str, ...] = get_args(Task)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
RESIZE_BACK: tuple[str, ...] = get_args(ResizeBack)

#: Prefix of the card's keys in ONNX ``metadata_props`` (values are JSON).
METADATA_PREFIX = "robusttest."
#: Name of the card inside TorchScript / torch.export archives (its content is ``to_dict()`` JSON).
CARD_FILENAME = "robusttest_card.json"
#: Beside the card: ``{"torch": version}`` of the torch that saved the archive, so a torch
#: too old to read it can say so.
SAVED_WITH_FILENAME = "robusttest_saved_with.json"
#: Bumped when the stored layout changes incompatibly; readers accept what they know.
CARD_FORMAT = "1"
#: The sidecar card beside a model file: ``lungs.onnx`` → ``lungs.onnx.card.yaml``.
SIDECAR_SUFFIX = ".card.yaml"

# Fields a card cannot do without; the descriptive ones default to "unknown".
REQUIRED_FIELDS: tuple[str, ...] = (
    "task",
    "input_size",
    "channels",
    "mean",
    "std",
    "output_activation",
)
MAX_INPUT_SIDE = 16384


class FrozenMap(Mapping[str, str]):
    """A small immutable, hashable, picklable str→str mapping (for ``ModelCard.extra``)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(sorted((items or {}).items()))

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"

    def __getstate__(self) -> dict[str, str]:
        return self._items

    def __setstate__(self, state: dict[str, str]) -> None:
        self._items = dict(state)


def _fail(name: str, value: object, allowed: str) -> ConfigError:
    return ConfigError(f"model card {name}: {value!r} is not allowed; {allowed}")


def _as_int(name: str, value: object, allowed: str) -> int:
    # bool is an int subclass; True as a channel count is a typo, not a 1
    if isinstance(value, bool):
        raise _fail(name, value, allowed)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _fail(name, value, allowed)


def _as_float(name: str, value: object, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, value, allowed)
    v = float(value)
    if not math.isfinite(v):
        raise _fail(name, value, allowed)
    return v


def _as_names(name: str, value: object) -> tuple[str, ...]:
    allowed = "give a list of distinct, non-empty strings"
    # a bare string would otherwise be split into characters
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise _fail(name, value, allowed)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise _fail(name, value, allowed)
        out.append(item.strip())
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"model card {name}: {value!r} lists {', '.join(dupes)} more than once; "
            "each output needs its own name"
        )
    return tuple(out)


def _per_channel(name: str, value: object, channels: int, *, positive: bool) -> tuple[float, ...]:
    kind = "positive finite number" if positive else "finite number"
    allowed = f"give one {kind}" + (f" or {channels} (one per channel)" if channels > 1 else "")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    vals = tuple(_as_float(name, v, allowed) for v in items)
    if len(vals) == 1 and channels > 1:
        vals = vals * channels  # one value for all channels
    if len(vals) != channels or (positive and any(v <= 0 for v in vals)):
        raise _fail(name, value, allowed)
    return vals


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """How to feed a model and read its outputs.

    ``mean``/``std`` apply after scaling pixels to [0, 1] (``(x - mean) / std``, per
    channel; one value is broadcast). ``output_activation`` is what turns the raw
    outputs into probabilities; ``"none"`` means the model already outputs them.
    ``resize_back`` (segmentation): how a prediction returns to the mask's size (see
    ``ResizeBack``); the default resizes the probabilities.
    """

    task: Task
    input_size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    output_activation: Activation
    labels: tuple[str, ...] = ()
    structures: tuple[str, ...] = ()
    name: str = ""
    version: str = ""
    training_data: str = ""
    extra: Mapping[str, str] = field(default_factory=FrozenMap)
    resize_back: ResizeBack = "probabilities"

    def __post_init__(self) -> None:
        # Normalise as well as check, so cards built from YAML/JSON (lists, ints) compare
        # equal to cards built in Python.
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if self.task not in TASKS:
            raise _fail("task", self.task, f"use one of {', '.join(TASKS)}")
        if self.output_activation not in ACTIVATIONS:
            raise _fail(
                "output_activation",
                self.output_activation,
                f"use one of {', '.join(ACTIVATIONS)} (none = the model outputs probabilities)",
            )
        if self.resize_back not in RESIZE_BACK:
            raise _fail(
                "resize_back",
                self.resize_back,
                "use probabilities (resize the probabilities, then threshold) or labels "
                "(threshold at the model's size, then resize the labels, nearest neighbour)",
            )
        size_allowed = f"give [height, width] in pixels, each 1..{MAX_INPUT_SIDE}, or one number"
        size: object = self.input_size
        sides = [size, size] if isinstance(size, (int, float)) else size
        if not isinstance(sides, (list, tuple)) or len(sides) != 2:
            raise _fail("input_size", size, size_allowed)
        hw = tuple(_as_int("input_size", s, size_allowed) for s in sides)
        if not all(1 <= s <= MAX_INPUT_SIDE for s in hw):
            raise _fail("input_size", size, size_allowed)
        put("input_size", hw)
        channels = _as_int("channels", self.channels, "use 1 (grey) or 3 (grey repeated as RGB)")
        if channels not in (1, 3):
            raise _fail("channels", self.channels, "use 1 (grey) or 3 (grey repeated as RGB)")
        put("channels", channels)
        put("mean", _per_channel("mean", self.mean, channels, positive=False))
        put("std", _per_channel("std", self.std, channels, positive=True))
        put("labels", _as_names("labels", self.labels))
        put("structures", _as_names("structures", self.structures))
        if self.task == "classification" and not self.labels:
            raise ConfigError(
                "model card labels: a classification model needs its output labels, in "
                "output order (e.g. labels: [Pneumothorax, Effusion])"
            )
        if self.task == "segmentation" and not self.structures:
            raise ConfigError(
                "model card structures: a segmentation model needs the structure of each "
                "output channel, in order (e.g. structures: [lungs])"
            )
        for name in ("name", "version", "training_data"):
            if not isinstance(getattr(self, name), str):
                raise _fail(name, getattr(self, name), "give a string")
        put("extra", _as_extra(self.extra))

    # -- conversions -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists); ``from_dict`` inverts it."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """Build from ``to_dict()`` output (or any mapping of field names, e.g. YAML)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"model card: expected a mapping of fields, got {data!r}")
        unknown = sorted(set(data) - set(field_names()))
        if unknown:
            raise ConfigError(
                f"model card: unknown field(s) {', '.join(unknown)}; "
                f"known fields: {', '.join(field_names())}"
            )
        missing = [f for f in REQUIRED_FIELDS if f not in data]
        if missing:
            raise ConfigError(f"model card: missing field(s) {', '.join(missing)}")
        return cls(**dict(data))

    def with_overrides(self, **fields: Any) -> ModelCard:
        """A copy with some fields replaced (validated like a new card)."""
        unknown = sorted(set(fields) - set(field_names()))
        if unknown:
            raise ConfigError(
                f"model card: unknown field(s) {', '.join(unknown)}; "
                f"known fields: {', '.join(field_names())}"
            )
        return dataclasses.replace(self, **fields)

    def to_metadata(self) -> dict[str, str]:
        """ONNX ``metadata_props`` entries: ``robusttest.<field>`` → JSON value."""
        meta = {f"{METADATA_PREFIX}{k}": json.dumps(v) for k, v in self.to_dict().items()}
        meta[f"{METADATA_PREFIX}card_format"] = json.dumps(CARD_FORMAT)
        return meta

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, str],
        *,
        source: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> ModelCard:
        """Read a card from ONNX-style metadata, with optional field overrides.

        Problems are reported as ModelError naming ``source`` (the model file).
        """
        fields = card_fields_from_metadata(metadata, source=source)
        return build_card(fields, overrides, source=source)

    def describe(self) -> str:
        """One line for logs and reports."""
        outs = self.labels if self.task == "classification" else self.structures
        return (
            f"{self.name or 'model'} {self.version}".strip()
            + f": {self.task} of {', '.join(outs)}; input {self.channels}×"
            f"{self.input_size[0]}×{self.input_size[1]}, activation {self.output_activation}"
        )


def _as_extra(value: object) -> FrozenMap:
    if isinstance(value, FrozenMap):
        return value
    if not isinstance(value, Mapping):
        raise _fail("extra", value, "give a mapping of strings to strings")
    items: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise _fail("extra", value, "keys must be strings")
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (int, float)):
            v = str(v)  # YAML turns 0.5 into a float; keep the string form
        if not isinstance(v, str):
            raise _fail("extra", value, f"value of {k!r} must be a string")
        items[k] = v
    return FrozenMap(items)


def field_names() -> tuple[str, ...]:
    """All ModelCard field names, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(ModelCard))


def _where(source: str | os.PathLike[str] | None) -> str:
    return f"{os.fspath(source)}: " if source is not None else ""


def card_fields_from_metadata(
    metadata: Mapping[str, str], *, source: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The card fields found in ``metadata`` (possibly none), JSON-decoded, unvalidated."""
    known = set(field_names())
    fields: dict[str, Any] = {}
    for key, raw in metadata.items():
        if not key.startswith(METADATA_PREFIX):
            continue
        name = key[len(METADATA_PREFIX) :]
        if name not in known:
            continue  # card_format, or a field from a newer robusttest: ignore
        try:
            fields[name] = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise ModelError(
                f"{_where(source)}model card entry {key!r} is not valid JSON ({exc}): {raw!r}; "
                "re-export with robusttest.models.export_onnx or override the field in the "
                "suite's model: section"
            ) from None
    return fields


def card_fields_from_json(
    text: str | bytes, *, source: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The card fields stored as ``to_dict()`` JSON (TorchScript / .pt2 extra file)."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{_where(source)}{CARD_FILENAME} is not valid JSON ({exc}); re-save with "
            "robusttest.models.save_torchscript / save_pt2"
        ) from None
    if not isinstance(data, dict):
        raise ModelError(f"{_where(source)}{CARD_FILENAME} must hold a JSON object, got {data!r}")
    known = set(field_names())
    return {k: v for k, v in data.items() if k in known}


def build_card(
    fields: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    source: str | os.PathLike[str] | None = None,
) -> ModelCard:
    """Merge a stored card's fields with user overrides and validate.

    Overrides win. A missing required field or a bad value is a ModelError that names
    ``source`` and says how to supply the field.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
        raise ConfigError(
            f"{_where(source)}unknown model card field(s) {', '.join(unknown)} in the "
            f"overrides; known fields: {', '.join(field_names())}"
        )
    merged = {**fields, **overrides}
    if not merged.get("name") and source is not None:  # unnamed: call it after its file
        merged["name"] = os.path.splitext(os.path.basename(os.fspath(source)))[0]
    missing = [f for f in REQUIRED_FIELDS if f not in merged]
    task = merged.get("task")
    if task == "classification" and "labels" not in merged:
        missing.append("labels")
    elif task == "segmentation" and "structures" not in merged:
        missing.append("structures")
    elif task is None:
        missing.append("labels (classification) or structures (segmentation)")
    if missing:
        raise ModelError(_missing_message(fields, missing, task, source))
    try:
        return ModelCard(**merged)
    except ConfigError as exc:
        raise ModelError(f"{_where(source)}{exc}") from None
    except TypeError as exc:  # e.g. a field given a value of a shape we cannot even read
        raise ModelError(f"{_where(source)}model card: {exc}") from None


def _missing_message(
    fields: Mapping[str, Any],
    missing: list[str],
    task: object,
    source: str | os.PathLike[str] | None,
) -> str:
    """The no-card / incomplete-card error, with a command that fixes it."""
    model = shlex.quote(os.fspath(source)) if source is not None else "MODEL"
    what = ", ".join(missing)
    if fields:
        return (
            f"{_where(source)}model has an incomplete model card (missing: {what}). Complete "
            f"it: robusttest card set {model} FIELD=VALUE ... (see robusttest card set --help), "
            "or give the fields in a suite model: section"
        )
    if task == "classification":
        names = "--labels NAME,..."
    elif task == "segmentation":
        names = "--structures NAME,..."
    else:
        names = "--labels NAME,... (classification) or --structures NAME,... (segmentation)"
    return (
        f"{_where(source)}model has no robusttest model card (missing: {what}). Give it a "
        f"card: robusttest card init {model} --task "
        f"{task if isinstance(task, str) else 'classification|segmentation'} {names} "
        "--mean M --std S --output-activation sigmoid|softmax|none (see robusttest card init "
        "--help), or a suite model: section with those fields"
    )


# --- the sidecar card ----------------------------------------------------------------------
def sidecar_path(model: str | os.PathLike[str]) -> Path:
    """Where the sidecar card of ``model`` lives: ``lungs.onnx`` → ``lungs.onnx.card.yaml``."""
    p = Path(model)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def sidecar_fields(model: str | os.PathLike[str]) -> dict[str, Any]:
    """The card fields in the sidecar beside ``model`` ({} when there is none), unvalidated."""
    path = sidecar_path(model)
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the sidecar card ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: the sidecar card is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ModelError(
            f"{path}: the sidecar card is not valid YAML{at}; write one field per line, "
            "e.g. 'task: segmentation' (robusttest card init writes it for you)"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelError(
            f"{path}: the sidecar card must be a mapping of card fields (task: ..., "
            f"input_size: [h, w], ...), got {type(data).__name__}"
        )
    known = set(field_names())
    unknown = sorted(str(k) for k in data if k not in known and k != "card_format")
    if unknown:
        raise ModelError(
            f"{path}: unknown card field(s) {', '.join(unknown)}; known fields: "
            f"{', '.join(field_names())}"
        )
    return {k: v for k, v in data.items() if k in known}


def with_sidecar(fields: Mapping[str, Any], model: str | os.PathLike[str]) -> dict[str, Any]:
    """A model's stored card fields with its sidecar's on top (the sidecar wins)."""
    return {**fields, **sidecar_fields(model)}


def sidecar_text(card: ModelCard, model: str | os.PathLike[str]) -> str:
    """The YAML of a sidecar card: every field, in the card's order."""
    head = (
        f"# robusttest model card of {Path(model).name} (card format {CARD_FORMAT}).\n"
        "# Read beside the model by pytest --model and robusttest run; fields here override\n"
        "# a card stored in the model file. Edit with: robusttest card set MODEL FIELD=VALUE\n"
    )
    body = yaml.safe_dump(
        card.to_dict(), sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )
    return head + body


def card_from_any(value: ModelCard | Mapping[str, Any]) -> ModelCard:
    """Accept a ModelCard or a mapping of its fields."""
    if isinstance(value, ModelCard):
        return value
    return ModelCard.from_dict(cast(Mapping[str, Any], value))
