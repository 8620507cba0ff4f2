"""TorchScript and torch.export (``.pt2``) models on torch.

``.pt2`` archives are vetted for pickled payloads before torch reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from robusttest.errors import ConfigError, ModelError
from robusttest.models.card import (
    CARD_FILENAME,
    SAVED_WITH_FILENAME,
    build_card,
    card_fields_from_json,
    with_sidecar,
)
from robusttest.models.devices import resolve_device
from robusttest.models.files import ModelFormat, _pickle_refusal, detect_format
from robusttest.models.preprocess import check_batch


@contextlib.contextmanager
def _quiet_torch_deprecations() -> Iterator[None]:
    # torch 2.9+ flags torch.jit as deprecated; loading TorchScript is still supported.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _saved_with_torch(data: bytes) -> str | None:
    """The torch version recorded by ``save_torchscript`` / ``save_pt2``, if any."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in zf.namelist():
                if name.endswith(f"extra/{SAVED_WITH_FILENAME}"):
                    version = json.loads(zf.read(name)).get("torch")
                    return version if isinstance(version, str) else None
    except (zipfile.BadZipFile, ValueError, AttributeError, KeyError):
        return None
    return None


def _newer_torch_hint(data: bytes) -> str:
    # Archives are not forward compatible: a scripted file carries the source of the
    # torch.nn.functional it was saved with, which may call ops an older torch lacks.
    saved = _saved_with_torch(data)
    fix = (
        "load it with that torch or a newer one, or save it again traced "
        "(save_torchscript(..., method='trace')) or as ONNX, which older runtimes read"
    )
    if saved is not None and saved != torch.__version__:
        return f"; it was saved with torch {saved}: {fix}"
    if saved is None:
        return f". If it was saved with a newer torch, {fix}"
    return ""


def _vet_pt2(path: Path, data: bytes) -> None:
    """Refuse a .pt2 archive whose loading would unpickle anything but plain tensors.

    torch.export.load unpickles weights/constants flagged ``use_pickle`` (with
    ``weights_only=False``), opaque objects (``pickle.loads``), legacy ``.pt`` payloads,
    and retries sample inputs with ``weights_only=False`` when the safe load fails.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        rel = {(n.split("/", 1)[1] if "/" in n else n): n for n in zf.namelist()}
        models = [r for r in rel if r.startswith("models/") and r.endswith(".json")]
        if not models:
            raise ModelError(f"{path}: a .pt2 archive without an exported program (models/*.json)")
        for m in models:
            name = m[len("models/") : -len(".json")]
            for legacy in (f"data/weights/{name}.pt", f"data/constants/{name}.pt"):
                if legacy in rel:
                    raise _pickle_refusal(path, f"the .pt2 archive stores pickled {legacy}")
            for config in (
                f"data/weights/{name}_weights_config.json",
                f"data/constants/{name}_constants_config.json",
            ):
                if config not in rel:
                    continue
                try:
                    entries = json.loads(zf.read(rel[config])).get("config", {})
                except (ValueError, AttributeError) as exc:
                    raise ModelError(
                        f"{path}: unreadable {config} in the .pt2 archive ({exc})"
                    ) from None
                for fqn, meta in entries.items():
                    pname = str(meta.get("path_name", ""))
                    if meta.get("use_pickle") or pname.startswith(("opaque_obj_", "custom_obj_")):
                        raise _pickle_refusal(
                            path, f"the .pt2 archive stores {fqn!r} as a pickled object"
                        )
            sample = f"data/sample_inputs/{name}.pt"
            if sample in rel:
                try:
                    torch.load(io.BytesIO(zf.read(rel[sample])), weights_only=True)
                except Exception:
                    raise _pickle_refusal(
                        path, "the .pt2 archive's sample inputs hold more than plain tensors"
                    ) from None


def _first_tensor(out: Any, path: Path) -> torch.Tensor:
    # Tolerate the usual wrappers: torchvision dicts {"out": ...}, (logits, aux) tuples.
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        if "out" in out and isinstance(out["out"], torch.Tensor):
            return out["out"]
        if len(out) == 1:
            return _first_tensor(next(iter(out.values())), path)
    if isinstance(out, (tuple, list)) and out:
        return _first_tensor(out[0], path)
    raise ModelError(
        f"{path}: the model returns {type(out).__name__}; robusttest needs a tensor of raw outputs"
    )


class TorchRunner:
    """A TorchScript (``torch.jit.load``) or torch.export (``.pt2``) model on torch.

    ``threads`` calls ``torch.set_num_threads``, which is process-wide.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        threads: int | None = None,
        card_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        fmt = detect_format(self.path)
        if fmt == "onnx":
            raise ModelError(f"{self.path}: an ONNX model; load it with OnnxRunner or load_model")
        self.format: ModelFormat = fmt
        self.device = resolve_device(device)
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"threads: {threads} is not allowed; give a count >= 1")
            torch.set_num_threads(threads)
        # Read once: hash and load the same bytes.
        data = self.path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        extra: dict[str, Any] = {CARD_FILENAME: ""}
        module: Any
        try:
            if fmt == "torchscript":
                with _quiet_torch_deprecations():
                    module = torch.jit.load(
                        io.BytesIO(data), map_location=self.device, _extra_files=extra
                    )
                module.eval()
            else:
                _vet_pt2(self.path, data)
                program = torch.export.load(io.BytesIO(data), extra_files=extra)
                if self.device != "cpu":
                    from torch.export.passes import move_to_device_pass

                    program = move_to_device_pass(program, self.device)
                module = program.module()
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"{self.path}: torch {torch.__version__} cannot load this {fmt} model "
                f"({type(exc).__name__}: {exc}){_newer_torch_hint(data)}"
            ) from None
        self._module = module
        raw_card = extra.get(CARD_FILENAME) or ""
        fields = card_fields_from_json(raw_card, source=self.path) if raw_card else {}
        self.card = build_card(with_sidecar(fields, self.path), card_overrides, source=self.path)
        kind = "TorchScript" if fmt == "torchscript" else "torch.export"
        self.backend = f"torch {torch.__version__} {kind}"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        check_batch(batch, self.card, self.path)
        x = batch.to(self.device, torch.float32)
        try:
            with torch.inference_mode():
                out = _first_tensor(self._module(x), self.path)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"{self.path}: the model failed on a batch of shape {list(x.shape)} "
                f"({type(exc).__name__}: {exc})"
            ) from None
        out = out.to(torch.float32)
        # Inference tensors refuse in-place ops outside inference mode; hand back a normal one.
        return out.clone() if out.is_inference() else out

    def __repr__(self) -> str:
        return f"TorchRunner({str(self.path)!r}, device={self.device!r}, backend={self.backend!r})"
