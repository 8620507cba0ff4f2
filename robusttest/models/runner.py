"""Load a model file and run it: the runner protocol, the loader and the output checks.

ONNX runs on onnxruntime (``onnx_runner``), TorchScript and torch.export on torch
(``torch_runner``); ``files`` tells them apart by content and refuses pickles.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from robusttest.errors import ModelError
from robusttest.models.card import ModelCard
from robusttest.models.files import detect_format
from robusttest.models.onnx_runner import OnnxRunner
from robusttest.models.preprocess import postprocess
from robusttest.models.torch_runner import TorchRunner


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
