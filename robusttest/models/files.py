"""Model files: what a file is (by content, not suffix), its hash, its stored card.

Safety: model files come from users and zoos, so nothing here unpickles arbitrary
objects. Pickled checkpoints (``torch.save`` of a module or state_dict) are refused
before any byte is unpickled; ONNX external data must stay inside the model's folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickletools
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from robusttest.errors import ModelError
from robusttest.models.card import (
    CARD_FILENAME,
    card_fields_from_json,
    card_fields_from_metadata,
    with_sidecar,
)

ModelFormat = Literal["onnx", "torchscript", "pt2"]

_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")
_EXPORT_HINT = (
    'export it first, e.g. robusttest.models.export_onnx(model, "model.onnx", card) '
    "(or save_torchscript / save_pt2, which also store the card), or "
    'torch.jit.script(model).save("model.pt") and give its card in the suite\'s model: section'
)


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
        raise _pickle_refusal(p, _pickle_kind(p))
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelError(
            f"{p}: not a TorchScript or .pt2 archive (and robusttest does not load pickles); "
            f"{_EXPORT_HINT}"
        )
    return "onnx"


# torch.save's legacy (non-zip) format begins with this number, pickled on its own
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _pickle_kind(path: Path) -> str:
    """What kind of pickle a file is, from its first opcodes (read, never executed)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    ops: list[tuple[str, Any]] = []
    try:  # genops only decodes opcodes; 64 bytes may end mid-pickle, two are enough
        for op, arg, _ in pickletools.genops(io.BytesIO(head)):
            ops.append((op.name, arg))
            if len(ops) == 2:
                break
    except Exception:
        pass
    if len(ops) >= 2 and ops[1] == ("LONG1", _TORCH_LEGACY_MAGIC):
        return "this is a checkpoint in torch.save's legacy (pre-1.6, non-zip) pickle format"
    return "this is a Python pickle (e.g. pickle.dump or joblib), not a model archive"


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


def stored_card_fields(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The card fields of a model (possibly none), read without loading the model: ONNX
    metadata or the card file inside a TorchScript / .pt2 archive, with the sidecar
    ``MODEL.card.yaml`` on top."""
    return with_sidecar(embedded_card_fields(path), path)


def _onnx_graph(p: Path) -> Any:
    """The ONNX model's graph and metadata, without external weights; a ModelError when
    the file is not ONNX."""
    import onnx

    try:
        return onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        raise ModelError(
            f"{p}: not a readable ONNX model ({type(exc).__name__}: {exc}); "
            "give an .onnx, TorchScript or .pt2 file"
        ) from None


def embedded_card_fields(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The card fields stored inside the model file itself (no sidecar)."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "onnx":
        proto = _onnx_graph(p)
        metadata = {m.key: m.value for m in proto.metadata_props}
        return card_fields_from_metadata(metadata, source=p)
    members = _zip_members(p)
    name = members.get(f"extra/{CARD_FILENAME}")
    if name is None:
        return {}
    with zipfile.ZipFile(p) as zf:
        raw = zf.read(name)
    return card_fields_from_json(raw, source=p) if raw else {}


def onnx_input_dims(path: str | os.PathLike[str]) -> tuple[str, list[int | None]]:
    """The name and dimensions of an ONNX model's image input (None: a dynamic axis),
    read from the graph without loading the weights."""
    p = Path(path)
    proto = _onnx_graph(p)
    weights = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ModelError(
            f"{p}: the graph has {len(inputs)} inputs ({names}); robusttest feeds exactly one "
            "image batch"
        )
    dims = [
        int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in inputs[0].type.tensor_type.shape.dim
    ]
    return inputs[0].name, dims
