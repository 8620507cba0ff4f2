"""ONNX models on onnxruntime."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robusttest.errors import ConfigError, ModelError
from robusttest.models.card import build_card, card_fields_from_metadata, with_sidecar
from robusttest.models.devices import resolve_device
from robusttest.models.files import (
    ModelFormat,
    _files_sha256,
    check_external_data,
    file_sha256,
)
from robusttest.models.preprocess import check_batch

_ORT_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


class OnnxRunner:
    """An ONNX model on onnxruntime.

    Uses the CUDAExecutionProvider when the device is CUDA and onnxruntime has it (the
    ``onnxruntime-gpu`` package); otherwise the CPU provider, with a warning when a CUDA
    device was asked for. ``threads`` sets intra-op threads (inter-op is 1: CNNs gain
    nothing from running independent nodes in parallel, and it keeps CPU use predictable).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        threads: int | None = None,
        card_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        self.format: ModelFormat = "onnx"
        self.device = resolve_device(device)
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:
            raise ModelError(
                f"{self.path}: not a readable ONNX model ({type(exc).__name__}: {exc}); "
                "give an .onnx, TorchScript or .pt2 file"
            ) from None
        if not proto.graph.node and not proto.graph.input:
            raise ModelError(f"{self.path}: not an ONNX model (the graph is empty)")
        external = check_external_data(proto, self.path)
        metadata = {p.key: p.value for p in proto.metadata_props}
        self.card = build_card(
            with_sidecar(card_fields_from_metadata(metadata, source=self.path), self.path),
            card_overrides,
            source=self.path,
        )
        del proto
        # With external data the hash covers the weight files too (model file first, then
        # each data file in order of first reference): they are part of the model.
        self.sha256 = _files_sha256([self.path, *external]) if external else file_sha256(self.path)

        if threads is not None and threads < 1:
            raise ConfigError(f"threads: {threads} is not allowed; give a count >= 1")
        self.threads = threads
        self._single: OnnxRunner | None = None
        providers: list[Any] = ["CPUExecutionProvider"]
        want_cuda = self.device.startswith("cuda")
        if want_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(
                0, ("CUDAExecutionProvider", {"device_id": int(self.device.split(":")[1])})
            )
        self._providers = providers
        self._session = self._new_session(threads)
        provider = self._session.get_providers()[0]
        if want_cuda and provider != "CUDAExecutionProvider":
            # The model runs where onnxruntime runs it: noise, pre- and postprocessing
            # follow it to the CPU (no copies per batch, and the CPU engine's lanes).
            self.device = "cpu"
            warnings.warn(
                f"{self.path}: onnxruntime has no usable CUDAExecutionProvider (install "
                "onnxruntime-gpu matching your CUDA); the model and its noise run on the CPU",
                RuntimeWarning,
                stacklevel=2,
            )
        self.backend = f"onnxruntime {ort.__version__} {provider}"

        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"{self.path}: the model has {len(inputs)} inputs "
                f"({', '.join(i.name for i in inputs)}); robusttest feeds exactly one image batch"
            )
        inp = inputs[0]
        self.input_name: str = inp.name
        if inp.type not in _ORT_TYPES:
            raise ModelError(
                f"{self.path}: input {inp.name!r} has type {inp.type}; robusttest feeds float "
                "images (tensor(float), float16 or double)"
            )
        self._np_dtype = _ORT_TYPES[inp.type]
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ModelError(
                f"{self.path}: input {inp.name!r} has shape {shape} (rank {len(shape)}); "
                "robusttest feeds N×C×H×W image batches (rank 4)"
            )
        if isinstance(shape[1], int) and shape[1] != self.card.channels:
            raise ModelError(
                f"{self.path}: input {inp.name!r} takes {shape[1]} channel(s) but the card says "
                f"channels: {self.card.channels}; fix the card (suite model: channels: "
                f"{shape[1]})"
            )
        hw = shape[2:]
        for got, want, axis in zip(hw, self.card.input_size, ("height", "width"), strict=True):
            if isinstance(got, int) and got != want:
                raise ModelError(
                    f"{self.path}: input {inp.name!r} has fixed {axis} {got} but the card "
                    f"says input_size: {list(self.card.input_size)}; fix the card "
                    f"(suite model: input_size: {hw})"
                )
        # A model exported with a fixed batch (often 1) is run in chunks of that size.
        self.fixed_batch: int | None = shape[0] if isinstance(shape[0], int) else None
        outputs = self._session.get_outputs()
        names = [o.name for o in outputs]
        self.output_name: str = "output" if "output" in names else names[0]

    def _new_session(self, threads: int | None) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spin inside a call (the workers pick up each operator's work at once), stop
        # when it returns: workers left spinning steal the cores from the torch work
        # (noise, resizing, metrics) between calls. Measured on 2 cores, 200 images × 11
        # conditions: the model's time 7.8 s without spinning, 7.25 s with it and the
        # stop; spinning without the stop doubled the noise time (0.8 → 1.6 s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only; ORT's warnings are noise for users
        try:
            return ort.InferenceSession(
                str(self.path), sess_options=options, providers=self._providers
            )
        except Exception as exc:
            raise ModelError(
                f"{self.path}: onnxruntime cannot load the model ({type(exc).__name__}: {exc})"
            ) from None

    def single_threaded(self) -> OnnxRunner:
        """This model in a session of its own with one intra-op thread, for one of several
        threads that call it at once (the engine's lanes); made once. On CUDA, ``self``."""
        if self.threads == 1 or not self.backend.endswith("CPUExecutionProvider"):
            return self
        if self._single is None:
            twin = copy.copy(self)
            twin._session = self._new_session(1)
            twin.threads = 1
            self._single = twin
        return self._single

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self._session.run([self.output_name], {self.input_name: x})[0]
        except Exception as exc:
            raise ModelError(
                f"{self.path}: onnxruntime failed on a batch of shape {list(x.shape)} "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return np.asarray(out)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        check_batch(batch, self.card, self.path)
        x = batch.detach().to("cpu").numpy().astype(self._np_dtype, copy=False)
        n = x.shape[0]
        b = self.fixed_batch
        if b is None or b == n:
            out = self._run(np.ascontiguousarray(x))
        else:
            parts = []
            for start in range(0, n, b):
                chunk = x[start : start + b]
                k = chunk.shape[0]
                if k < b:  # pad the last chunk to the fixed batch, then drop the padding
                    chunk = np.concatenate([chunk, np.zeros((b - k, *chunk.shape[1:]), x.dtype)])
                parts.append(self._run(np.ascontiguousarray(chunk))[:k])
            out = np.concatenate(parts)
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(self.device)

    def __repr__(self) -> str:
        return f"OnnxRunner({str(self.path)!r}, device={self.device!r}, backend={self.backend!r})"
