"""Models: the card that says how to run a model, exporters, runners and pre/postprocessing.

Typical use::

    from robusttest.models import ModelCard, export_onnx, load_model, preprocess, postprocess

    card = ModelCard(task="segmentation", input_size=(256, 256), channels=1, mean=(0.5,),
                     std=(0.25,), structures=("lungs",), output_activation="sigmoid")
    export_onnx(net, "lungs.onnx", card)
    runner = load_model("lungs.onnx", device="auto")
    probs = postprocess(runner(preprocess(images.to(runner.device), runner.card)),
                        runner.card, out_size=images.shape[-2:])
"""

from __future__ import annotations

from robusttest.models.card import (
    CARD_FILENAME,
    METADATA_PREFIX,
    ModelCard,
    build_card,
    card_fields_from_json,
    card_fields_from_metadata,
    card_from_any,
)
from robusttest.models.devices import resolve_device, spread_device
from robusttest.models.export import export_onnx, save_pt2, save_torchscript, write_atomic
from robusttest.models.files import (
    ModelFormat,
    check_external_data,
    detect_format,
    file_sha256,
    stored_card_fields,
)
from robusttest.models.onnx_runner import OnnxRunner
from robusttest.models.preprocess import postprocess, preprocess, resize
from robusttest.models.runner import ModelRunner, check_outputs, load_model, probe_model
from robusttest.models.torch_runner import TorchRunner

__all__ = [
    "CARD_FILENAME",
    "METADATA_PREFIX",
    "ModelCard",
    "ModelFormat",
    "ModelRunner",
    "OnnxRunner",
    "TorchRunner",
    "build_card",
    "card_fields_from_json",
    "card_fields_from_metadata",
    "card_from_any",
    "check_external_data",
    "check_outputs",
    "detect_format",
    "export_onnx",
    "file_sha256",
    "load_model",
    "postprocess",
    "preprocess",
    "probe_model",
    "resize",
    "resolve_device",
    "save_pt2",
    "save_torchscript",
    "spread_device",
    "stored_card_fields",
    "write_atomic",
]
