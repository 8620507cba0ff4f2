"""Model-side preprocessing and postprocessing, driven by the ModelCard.

Noise is injected at the image's native resolution *before* ``preprocess`` (design §2),
so resizing here must be antialiased: plain bilinear downsampling aliases the noise and
changes its power spectrum. Everything is vectorised and stays on the input's device.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from robusttest.errors import InputError, ModelError
from robusttest.models.card import ModelCard


def _shape(t: torch.Tensor) -> str:
    return "×".join(str(s) for s in t.shape) or "scalar"


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of an N×C×H×W float batch (no-op when already ``size``)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(
        images, size=tuple(size), mode="bilinear", antialias=True, align_corners=False
    )


def preprocess(images: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """N×1×H×W images in [0, 1] (bone bright) → the model's float32 N×C×h×w input.

    Resize to ``card.input_size`` (antialiased bilinear), repeat the grey channel when the
    model wants 3, then ``(x - mean) / std`` per channel.
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"preprocess: expected a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 1:
        raise InputError(
            f"preprocess: expected an N×1×H×W batch of grey images, got shape {_shape(images)}"
        )
    if not images.is_floating_point():
        raise InputError(
            f"preprocess: expected float images in [0, 1], got dtype {images.dtype}; "
            "convert with images.float() / 255 (8-bit) or / 65535 (16-bit)"
        )
    x32 = images.to(torch.float32)
    x = resize(x32, card.input_size)
    mean = torch.tensor(card.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(card.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    if card.channels == 1 and x is not x32 and x.is_contiguous():
        return x.sub_(mean).div_(std)  # the resize's own output: normalise in place
    if card.channels == 3:
        x = x.expand(-1, 3, -1, -1)  # a view; the normalisation below materialises it
    return ((x - mean) / std).contiguous()


def _activate(raw: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "sigmoid":
        return torch.sigmoid(raw)
    if activation == "softmax":
        return torch.softmax(raw, dim=1)
    return raw


def postprocess(
    raw: torch.Tensor,
    card: ModelCard,
    out_size: tuple[int, int] | None = None,
    *,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Raw model outputs → probabilities.

    Classification: N×L probabilities, L == len(card.labels). Segmentation: N×S×h×w
    probabilities, S == len(card.structures), brought to ``out_size`` — the mask's native
    resolution — when given, as ``card.resize_back`` says: ``probabilities`` resizes them
    (bilinear); ``labels`` thresholds them at the model's size (``p > threshold``) and
    resizes the 0/1 labels (nearest neighbour), so they come back as 0.0 or 1.0. With
    softmax, one output more than the card lists is taken as a leading background /
    negative class and dropped.
    """
    if not isinstance(raw, torch.Tensor):
        raise ModelError(f"model output: expected a tensor, got {type(raw).__name__}")
    raw = raw.to(torch.float32)
    act = card.output_activation
    if card.task == "classification":
        want = len(card.labels)
        if raw.dim() == 4 and raw.shape[2:] == (1, 1):
            raw = raw.flatten(1)  # N×L×1×1 from a fully convolutional head
        if raw.dim() == 1 and want == 1:
            raw = raw.unsqueeze(1)
        if raw.dim() != 2:
            raise ModelError(
                f"model output has shape {_shape(raw)}; a classification model must return "
                f"N×{want} (one column per label: {', '.join(card.labels)})"
            )
        got = raw.shape[1]
        return _select(raw, act, got, want, "outputs", "labels", card.labels)
    want = len(card.structures)
    if raw.dim() == 3 and want == 1 and act != "softmax":
        raw = raw.unsqueeze(1)
    if raw.dim() != 4:
        raise ModelError(
            f"model output has shape {_shape(raw)}; a segmentation model must return "
            f"N×{want}×h×w (one channel per structure: {', '.join(card.structures)})"
        )
    probs = _select(raw, act, raw.shape[1], want, "channels", "structures", card.structures)
    if out_size is not None and card.resize_back == "labels":
        labels = (probs > threshold).to(torch.float32)
        if tuple(labels.shape[-2:]) == tuple(out_size):
            return labels
        return F.interpolate(labels, size=tuple(out_size), mode="nearest-exact")
    if out_size is not None and tuple(probs.shape[-2:]) != tuple(out_size):
        # Antialiasing only changes a downsampling axis; upsampling both axes (the usual
        # case: the model's input is smaller than the mask) takes the faster plain kernel
        # (the same weights; they differ by float rounding, ~1e-7).
        down = out_size[0] < probs.shape[-2] or out_size[1] < probs.shape[-1]
        probs = F.interpolate(
            probs, size=tuple(out_size), mode="bilinear", antialias=down, align_corners=False
        ).clamp_(0.0, 1.0)
    return probs


def _select(
    raw: torch.Tensor,
    act: str,
    got: int,
    want: int,
    what: str,
    field: str,
    names: tuple[str, ...],
) -> torch.Tensor:
    if act == "softmax" and got == 1:
        raise ModelError(
            f"model returns 1 {what[:-1]} but the card says output_activation: softmax, "
            "which would make every probability 1; use sigmoid for a single output"
        )
    if got == want:
        return _activate(raw, act)
    if act == "softmax" and got == want + 1:
        return _activate(raw, act)[:, 1:]  # channel 0 = background / negative class
    extra = " (or one more, a leading background class, with softmax)" if act == "softmax" else ""
    raise ModelError(
        f"model returns {got} {what} but the card lists {want} {field} "
        f"({', '.join(names)}){extra}; fix the card's {field} or output_activation"
    )


def check_batch(batch: torch.Tensor, card: ModelCard, path: Path) -> None:
    """A runner's input must be a preprocessed N×C×H×W batch of the card's size."""
    want = (card.channels, *card.input_size)
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4 or tuple(batch.shape[1:]) != want:
        got = list(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise InputError(
            f"{path}: expected a preprocessed N×{want[0]}×{want[1]}×{want[2]} batch, got {got}; "
            "use robusttest.models.preprocess(images, runner.card)"
        )
    if batch.shape[0] == 0:
        raise InputError(f"{path}: empty batch")
