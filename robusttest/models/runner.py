"""Load a model file and run it: ONNX (onnxruntime), TorchScript and torch.export (torch).

Safety: model files come from users and zoos, so nothing here unpickles arbitrary
objects. Pickled checkpoints (``torch.save`` of a module or state_dict) are refused
before any byte is unpickled; ``.pt2`` archives are vetted for pickled payloads before
torch reads them; ONNX external data must stay inside the model's folder.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import os
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from robusttest.errors import ConfigError, InputError, ModelError
from robusttest.models.card import (
    CARD_FILENAME,
    SAVED_WITH_FILENAME,
    ModelCard,
    build_card,
    card_fields_from_json,
    card_fields_from_metadata,
)
from robusttest.models.preprocess import postprocess

ModelFormat = Literal["onnx", "torchscript", "pt2"]

_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")
_EXPORT_HINT = (
    'export it first, e.g. robusttest.models.export_onnx(model, "model.onnx", card) '
    "(or save_torchscript / save_pt2, which also store the card), or "
    'torch.jit.script(model).save("model.pt")'
)


@runtime_checkable
class ModelRunner(Protocol):
    """A loaded model: a float32 N×C×H×W batch on ``device`` → raw float32 outputs there.

    ``sha256`` identifies the model file (hex) for provenance; ``backend`` names the
    runtime (e.g. ``onnxruntime 1.17.0 CPUExecutionProvider``).
    """

    path: Path
    card: ModelCard
    sha256: str
    device: str
    backend: str

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


# -- small helpers -------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (models can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def _files_sha256(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in paths:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def resolve_device(device: str) -> str:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` → ``cpu`` or ``cuda:N``.

    ``auto`` picks the current CUDA device when torch sees one. Asking for CUDA without
    one is a ModelError rather than a silent fall back to the CPU.
    """
    if not isinstance(device, str):
        raise ConfigError(f"device: {device!r} is not allowed; use auto, cpu, cuda or cuda:N")
    d = device.strip().lower()
    if d == "auto":
        return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    if d == "cpu":
        return "cpu"
    if d == "cuda" or d.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelError(
                f"device {device!r} requested but torch sees no CUDA GPU "
                "(torch.cuda.is_available() is False); use --device cpu or --device auto"
            )
        if d == "cuda":
            return f"cuda:{torch.cuda.current_device()}"
        idx_text = d[len("cuda:") :]
        if not idx_text.isdigit():
            raise ConfigError(f"device {device!r} is not allowed; use auto, cpu, cuda or cuda:N")
        idx, count = int(idx_text), torch.cuda.device_count()
        if idx >= count:
            raise ModelError(
                f"device {device!r} requested but only {count} CUDA device(s) exist "
                f"(cuda:0..cuda:{count - 1}); use --device cuda or --device auto"
            )
        return f"cuda:{idx}"
    raise ConfigError(f"device {device!r} is not allowed; use auto, cpu, cuda or cuda:N")


def check_outputs(
    outputs: torch.Tensor,
    image_ids: Sequence[str],
    *,
    source: str | os.PathLike[str] | None = None,
    limit: int = 20,
) -> None:
    """Raise ModelError listing the image ids whose outputs hold NaN or inf."""
    where = f"{os.fspath(source)}: " if source is not None else ""
    n = outputs.shape[0] if outputs.dim() > 0 else 0
    if n != len(image_ids):
        raise ModelError(
            f"{where}model returned outputs for {n} image(s) but {len(image_ids)} were given"
        )
    if n == 0 or not outputs.is_floating_point() or outputs.numel() == 0:
        return
    # one reduction first: NaN propagates through min/max and ±inf shows up as a bound
    lo, hi = torch.aminmax(outputs.float() if outputs.dtype.itemsize < 4 else outputs)
    if math.isfinite(float(lo)) and math.isfinite(float(hi)):
        return
    finite = torch.isfinite(outputs.reshape(n, -1)).all(dim=1)
    if bool(finite.all()):
        return
    bad = [str(image_ids[i]) for i in torch.nonzero(~finite).flatten().tolist()]
    shown = ", ".join(bad[:limit]) + (f" (and {len(bad) - limit} more)" if len(bad) > limit else "")
    raise ModelError(
        f"{where}model outputs contain NaN or inf for {len(bad)} of {n} image(s): {shown}; "
        "check the model's numerics on these inputs (e.g. float16 overflow) and the card's "
        "mean/std"
    )


@contextlib.contextmanager
def _quiet_torch_deprecations() -> Iterator[None]:
    # torch 2.9+ flags torch.jit as deprecated; loading TorchScript is still supported.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _pickle_refusal(path: Path, what: str) -> ModelError:
    return ModelError(
        f"{path}: {what}. robusttest does not load pickled models: unpickling can run "
        f"arbitrary code. To test this model, {_EXPORT_HINT}"
    )


def _zip_members(path: Path) -> dict[str, str]:
    """Archive member names relative to the archive's root folder → full names."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    rel: dict[str, str] = {}
    for name in names:
        rel[name.split("/", 1)[1] if "/" in name else name] = name
    return rel


def detect_format(path: str | os.PathLike[str]) -> ModelFormat:
    """ONNX, TorchScript or ``.pt2`` by content; pickles and unknown files → ModelError."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: model file not found")
    if not p.is_file():
        raise ModelError(f"{p}: not a file; give the path of an .onnx, TorchScript or .pt2 file")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if zipfile.is_zipfile(p):
        try:
            members = _zip_members(p)
        except zipfile.BadZipFile as exc:
            raise ModelError(f"{p}: corrupt zip archive ({exc})") from None
        if "archive_format" in members:
            with zipfile.ZipFile(p) as zf:
                fmt = zf.read(members["archive_format"]).decode("utf-8", "replace").strip()
            if fmt == "pt2":
                return "pt2"
            raise ModelError(f"{p}: unknown torch archive format {fmt!r}; expected pt2")
        has_code = any(name.startswith("code/") for name in members)
        if has_code and ("constants.pkl" in members or "data.pkl" in members):
            return "torchscript"
        if "data.pkl" in members or any(name.endswith(".pkl") for name in members):
            raise _pickle_refusal(
                p, "this is a pickled PyTorch checkpoint (torch.save of a module or state_dict)"
            )
        raise ModelError(
            f"{p}: a zip archive that is neither TorchScript nor a torch.export .pt2 archive"
        )
    # Protocol 2+ pickles start with the PROTO opcode; torch's legacy format is one.
    if head[:1] == b"\x80":
        raise _pickle_refusal(p, "this is a pickled file (legacy torch.save format)")
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelError(
            f"{p}: not a TorchScript or .pt2 archive (and robusttest does not load pickles); "
            f"{_EXPORT_HINT}"
        )
    return "onnx"


# -- ONNX ------------------------------------------------------------------------------------


def _all_tensors(proto: Any) -> Iterator[Any]:
    """Every TensorProto in a model: initializers, attribute tensors, subgraphs, functions."""
    import onnx

    def graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from node_tensors(node)

    def node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from graph_tensors(attr.g)
            for g in attr.graphs:
                yield from graph_tensors(g)

    yield from graph_tensors(proto.graph)
    for func in proto.functions:
        for node in func.node:
            yield from node_tensors(node)


def check_external_data(proto: Any, path: str | os.PathLike[str]) -> list[Path]:
    """The external-data files an ONNX model refers to, each checked to lie inside the
    model's folder; an absolute or escaping ``location`` is a ModelError."""
    import onnx

    model_path = Path(path)
    base = model_path.parent.resolve()
    files: list[Path] = []
    for tensor in _all_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        bad = (
            not location
            or PurePosixPath(location).is_absolute()
            or PureWindowsPath(location).is_absolute()
            or PureWindowsPath(location).drive != ""
            or ".." in PurePosixPath(location.replace("\\", "/")).parts
        )
        resolved = (base / location).resolve() if location else base
        if not bad and not resolved.is_relative_to(base):
            bad = True  # e.g. a symlink pointing outside the folder
        if bad:
            raise ModelError(
                f"{model_path}: tensor {tensor.name!r} keeps its data at external location "
                f"{location!r}, which is not a file inside the model's folder {base}; "
                "refusing to load it. Keep external data files next to the model with "
                "relative names (onnx.save_model(..., save_as_external_data=True, "
                "location='weights.bin'))"
            )
        if resolved not in files:
            files.append(resolved)
    return files


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
            card_fields_from_metadata(metadata, source=self.path),
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
        _check_batch(batch, self.card, self.path)
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


# -- torch -----------------------------------------------------------------------------------


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


def _check_batch(batch: torch.Tensor, card: ModelCard, path: Path) -> None:
    want = (card.channels, *card.input_size)
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4 or tuple(batch.shape[1:]) != want:
        got = list(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise InputError(
            f"{path}: expected a preprocessed N×{want[0]}×{want[1]}×{want[2]} batch, got {got}; "
            "use robusttest.models.preprocess(images, runner.card)"
        )
    if batch.shape[0] == 0:
        raise InputError(f"{path}: empty batch")


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
        self.card = build_card(fields, card_overrides, source=self.path)
        kind = "TorchScript" if fmt == "torchscript" else "torch.export"
        self.backend = f"torch {torch.__version__} {kind}"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        _check_batch(batch, self.card, self.path)
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


# -- entry point -----------------------------------------------------------------------------


def stored_card_fields(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The card fields stored in a model file (possibly none), read without loading the
    model: ONNX metadata, or the card file inside a TorchScript / .pt2 archive."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "onnx":
        import onnx

        try:
            proto = onnx.load(str(p), load_external_data=False)
        except Exception as exc:
            raise ModelError(
                f"{p}: not a readable ONNX model ({type(exc).__name__}: {exc}); "
                "give an .onnx, TorchScript or .pt2 file"
            ) from None
        metadata = {m.key: m.value for m in proto.metadata_props}
        return card_fields_from_metadata(metadata, source=p)
    members = _zip_members(p)
    name = members.get(f"extra/{CARD_FILENAME}")
    if name is None:
        return {}
    with zipfile.ZipFile(p) as zf:
        raw = zf.read(name)
    return card_fields_from_json(raw, source=p) if raw else {}


def load_model(
    path: str | os.PathLike[str],
    *,
    device: str = "auto",
    threads: int | None = None,
    card_overrides: Mapping[str, Any] | None = None,
    probe: bool = True,
) -> ModelRunner:
    """Load an ONNX, TorchScript or ``.pt2`` model (chosen by content, not suffix).

    The card comes from the file, with ``card_overrides`` (a suite's ``model:`` fields)
    on top. With ``probe`` the model is run once on a 1×C×H×W zero batch and its output
    checked against the card, so a mismatch fails at load time, naming the file.
    """
    fmt = detect_format(path)
    runner: OnnxRunner | TorchRunner
    if fmt == "onnx":
        runner = OnnxRunner(path, device=device, threads=threads, card_overrides=card_overrides)
    else:
        runner = TorchRunner(path, device=device, threads=threads, card_overrides=card_overrides)
    if probe:
        probe_model(runner)
    return runner


def probe_model(runner: ModelRunner) -> None:
    """Run a 1×C×H×W zero batch and check the output shape fits the card."""
    card = runner.card
    x = torch.zeros(1, card.channels, *card.input_size, device=runner.device)
    try:
        out = runner(x)
        postprocess(out, card)
    except ModelError as exc:
        msg = str(exc)
        prefix = f"{runner.path}: "
        raise ModelError(
            msg if msg.startswith(prefix) else f"{prefix}{msg}; check the card or the model"
        ) from None
