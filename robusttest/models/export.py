"""Export a torch module with its ModelCard, so the file alone says how to run it.

ONNX export uses torch's TorchScript-based exporter (``dynamo=False``) by default: it
needs nothing beyond torch and handles the CNNs we care about. The torch.export-based
exporter (torch's default since 2.9) needs the separate ``onnxscript`` package; ask for it
with ``exporter="dynamo"``, and ``"auto"`` falls back to it only when the legacy exporter
fails and onnxscript is installed.

Every writer builds the whole file in memory, then writes a temporary file in the target
folder and renames it over the target, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

import onnx
import torch
from torch import nn

from robusttest.errors import ConfigError, ModelError
from robusttest.fsutil import atomic_write_bytes
from robusttest.models.card import CARD_FILENAME, METADATA_PREFIX, SAVED_WITH_FILENAME, ModelCard
from robusttest.models.files import check_external_data
from robusttest.models.preprocess import postprocess

INPUT_NAME = "input"
OUTPUT_NAME = "output"
# Example batch used for tracing/export: 2, not 1, so nothing specialises on batch 1.
_EXAMPLE_BATCH = 2


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomic write (``robusttest.fsutil``) into an existing folder."""
    target = Path(path)
    if not target.parent.is_dir():
        raise ModelError(f"{target}: folder {target.parent} does not exist; create it first")
    return atomic_write_bytes(target, data)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    # Export in eval mode (BatchNorm running stats, no dropout), then restore.
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@contextlib.contextmanager
def _quiet_torch_deprecations() -> Iterator[None]:
    # torch 2.9+ flags torch.jit and the legacy ONNX exporter as deprecated; we use them
    # on purpose (see module docstring), so keep the user's console clean.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _example_input(module: nn.Module, card: ModelCard) -> torch.Tensor:
    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(_EXAMPLE_BATCH, card.channels, *card.input_size, generator=gen)
    return x.to(device)


def _check_module(module: nn.Module, card: ModelCard, example: torch.Tensor, path: Path) -> None:
    """Run the module once and check its output fits the card before writing anything."""
    if not isinstance(module, nn.Module):
        raise ModelError(f"{path}: expected a torch.nn.Module, got {type(module).__name__}")
    try:
        with torch.no_grad():
            out = module(example)
    except Exception as exc:
        raise ModelError(
            f"{path}: the module fails on a {'×'.join(map(str, example.shape))} input built "
            f"from the card (channels={card.channels}, input_size={list(card.input_size)}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"{path}: the module returns {type(out).__name__}; robusttest needs one tensor "
            "(wrap the model so forward returns the logits tensor)"
        )
    try:
        postprocess(out, card)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None


def _legacy_onnx_bytes(module: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    buf = io.BytesIO()
    with _quiet_torch_deprecations(), torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            cast(Any, buf),  # file-like objects work; the stub only says paths
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    return buf.getvalue()


def _dynamo_onnx_proto(module: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    if importlib.util.find_spec("onnxscript") is None:
        raise ModelError(
            "the torch.export-based ONNX exporter needs the onnxscript package "
            "(pip install onnxscript), or use exporter='torchscript'"
        )
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            external_data=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ModelError("torch.onnx.export returned no program")
    proto: onnx.ModelProto = program.model_proto
    return proto


def export_onnx(
    module: nn.Module,
    path: str | os.PathLike[str],
    card: ModelCard,
    *,
    opset: int = 17,
    exporter: Literal["auto", "torchscript", "dynamo"] = "auto",
) -> Path:
    """Export ``module`` to ONNX with the card in ``metadata_props``; return the path.

    Input ``"input"`` (N×C×H×W float32, N dynamic, C/H/W from the card), output
    ``"output"`` (raw outputs, before ``card.output_activation``). The module is run once
    first and its output checked against the card. The file is checked with
    ``onnx.checker`` and written atomically.
    """
    target = Path(path)
    if not isinstance(card, ModelCard):
        raise ConfigError(f"export_onnx: card must be a ModelCard, got {type(card).__name__}")
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ConfigError(
            f"export_onnx: exporter {exporter!r} is not allowed; use auto, torchscript or dynamo"
        )
    if not 7 <= opset <= 23:
        raise ConfigError(f"export_onnx: opset {opset} is not in [7, 23]")
    with _eval_mode(module):
        example = _example_input(module, card)
        _check_module(module, card, example, target)
        proto: onnx.ModelProto
        if exporter == "dynamo":
            proto = _dynamo_onnx_proto(module, example, opset)
        else:
            try:
                proto = onnx.load_from_string(_legacy_onnx_bytes(module, example, opset))
            except Exception as exc:
                if exporter == "auto" and importlib.util.find_spec("onnxscript") is not None:
                    try:
                        proto = _dynamo_onnx_proto(module, example, opset)
                    except Exception as exc2:
                        raise ModelError(
                            f"{target}: ONNX export failed with both exporters: "
                            f"torchscript: {exc}; dynamo: {exc2}"
                        ) from exc2
                else:
                    raise ModelError(
                        f"{target}: ONNX export failed: {type(exc).__name__}: {exc}"
                    ) from exc
    _put_card(proto, card)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"{target}: exported ONNX model fails onnx.checker: {exc}") from exc
    return write_atomic(target, proto.SerializeToString())


def _put_card(proto: onnx.ModelProto, card: ModelCard) -> None:
    """Replace any card a previous export left in ``proto``'s metadata with ``card``."""
    kept = [p for p in proto.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in card.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)


def write_onnx_card(
    model: str | os.PathLike[str], card: ModelCard, out: str | os.PathLike[str] | None = None
) -> Path:
    """Store ``card`` in an existing ONNX model's metadata: in a copy at ``out``, or in the
    file itself when ``out`` is None. Everything else in the file is kept as it is."""
    src = Path(model)
    target = Path(out) if out is not None else src
    if not isinstance(card, ModelCard):
        raise ConfigError(f"write_onnx_card: card must be a ModelCard, got {type(card).__name__}")
    try:
        proto = onnx.load(str(src), load_external_data=False)
    except Exception as exc:
        raise ModelError(
            f"{src}: not a readable ONNX model ({type(exc).__name__}: {exc})"
        ) from None
    external = check_external_data(proto, src)
    if external and target.parent.resolve() != src.parent.resolve():
        raise ModelError(
            f"{src}: keeps its weights in {external[0].name} beside it; write the copy into "
            f"the same folder ({src.parent}) so it finds them, or use the sidecar card"
        )
    _put_card(proto, card)
    return write_atomic(target, proto.SerializeToString())


def _extra_files(card: ModelCard) -> dict[str, str]:
    return {
        CARD_FILENAME: json.dumps(card.to_dict()),
        SAVED_WITH_FILENAME: json.dumps({"torch": torch.__version__}),
    }


def save_torchscript(
    module: nn.Module,
    path: str | os.PathLike[str],
    card: ModelCard,
    *,
    method: Literal["auto", "script", "trace"] = "auto",
) -> Path:
    """Save ``module`` as TorchScript with the card as extra file ``robusttest_card.json``.

    ``auto`` scripts (keeps control flow) and falls back to tracing for modules that
    TorchScript cannot compile (many timm/smp models); a ScriptModule is saved as is.
    Note: torch 2.9+ marks TorchScript deprecated; ONNX or ``.pt2`` is the durable choice.
    """
    target = Path(path)
    if method not in ("auto", "script", "trace"):
        raise ConfigError(
            f"save_torchscript: method {method!r} is not allowed; use auto, script or trace"
        )
    with _eval_mode(module):
        example = _example_input(module, card)
        _check_module(module, card, example, target)
        with _quiet_torch_deprecations():
            scripted: torch.jit.ScriptModule
            if isinstance(module, torch.jit.ScriptModule):
                scripted = module
            elif method == "trace":
                scripted = _trace(module, example, target)
            else:
                try:
                    scripted = torch.jit.script(module)
                except Exception as exc:
                    if method == "script":
                        raise ModelError(
                            f"{target}: torch.jit.script failed ({type(exc).__name__}: {exc}); "
                            "try method='trace' or export_onnx"
                        ) from exc
                    scripted = _trace(module, example, target)
            buf = io.BytesIO()
            torch.jit.save(scripted, buf, _extra_files=_extra_files(card))
    return write_atomic(target, buf.getvalue())


def _trace(module: nn.Module, example: torch.Tensor, target: Path) -> torch.jit.ScriptModule:
    try:
        with torch.no_grad():
            traced = torch.jit.trace(module, (example,), check_trace=False)
    except Exception as exc:
        raise ModelError(
            f"{target}: torch.jit.trace failed ({type(exc).__name__}: {exc}); try export_onnx"
        ) from exc
    if not isinstance(traced, torch.jit.ScriptModule):  # pragma: no cover - trace of a Module
        raise ModelError(f"{target}: torch.jit.trace did not return a ScriptModule")
    return traced


def save_pt2(
    module: nn.Module,
    path: str | os.PathLike[str],
    card: ModelCard,
) -> Path:
    """Save ``module`` through ``torch.export`` (a ``.pt2`` archive) with a dynamic batch
    axis and the card as extra file ``robusttest_card.json``."""
    target = Path(path)
    with _eval_mode(module):
        example = _example_input(module, card)
        _check_module(module, card, example, target)
        batch = torch.export.Dim("batch", min=1)
        try:
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        except Exception as exc:
            raise ModelError(
                f"{target}: torch.export failed ({type(exc).__name__}: {exc}); "
                "try export_onnx or save_torchscript"
            ) from exc
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files=_extra_files(card))
    return write_atomic(target, buf.getvalue())
