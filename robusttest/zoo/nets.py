"""Small reference architectures for fixture models, and a zoo of standard ones.

``TinyUNet`` and ``TinyCNN`` train in minutes on a CPU on phantom images; they are real
architectures (skip connections, BatchNorm), just narrow, so exporting and running them
exercises the same code paths as a production model. ``build_zoo_model`` builds the
common chest X-ray architectures from segmentation-models-pytorch and timm (the zoo
extra), always without downloading weights.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robusttest.errors import ConfigError, UnknownNameError
from robusttest.zoo import require_extra

SEGMENTATION_ARCHS: tuple[str, ...] = ("unet", "deeplabv3", "fpn")
CLASSIFICATION_ARCHS: tuple[str, ...] = ("resnet18", "densenet121", "efficientnet_b0")


class ConvBlock(nn.Sequential):
    """(3×3 conv → BatchNorm → ReLU) × 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class TinyUNet(nn.Module):
    """A narrow UNet: ``depth`` encoder levels (max-pool down), bilinear-up decoder with
    skip connections, 1×1 head. Returns logits N×out_channels×H×W for any H, W."""

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, base: int = 8, depth: int = 4
    ) -> None:
        super().__init__()
        if depth < 1 or base < 1 or in_channels < 1 or out_channels < 1:
            raise ConfigError(
                f"TinyUNet: in_channels={in_channels}, out_channels={out_channels}, "
                f"base={base}, depth={depth}; all must be >= 1"
            )
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.down.append(ConvBlock(c, w))
            c = w
        self.bottleneck = ConvBlock(widths[-2], widths[-1])
        self.up = nn.ModuleList()
        for w_skip, w_in in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=True):
            self.up.append(ConvBlock(w_in + w_skip, w_skip))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        # enumerate + index (not zip/reversed) keeps the module scriptable by TorchScript
        for i, block in enumerate(self.up):
            skip = skips[len(skips) - 1 - i]
            # upsample to the skip's exact size so odd input sizes work
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class TinyCNN(nn.Module):
    """A small classifier: four stride-2 conv stages, global average pool, linear head.
    Returns logits N×num_classes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 1, base: int = 16) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1 or base < 1:
            raise ConfigError(
                f"TinyCNN: in_channels={in_channels}, num_classes={num_classes}, "
                f"base={base}; all must be >= 1"
            )
        layers: list[nn.Module] = []
        c = in_channels
        for w in (base, base * 2, base * 4, base * 8):
            layers += [
                nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            c = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_zoo_model(
    arch: str,
    task: str,
    num_outputs: int,
    in_channels: int = 3,
    *,
    encoder: str = "resnet18",
    **kwargs: Any,
) -> nn.Module:
    """A standard architecture with random weights (never downloads).

    Segmentation (segmentation-models-pytorch): ``unet``, ``deeplabv3``, ``fpn`` with
    ``encoder`` (default resnet18). Classification (timm): ``resnet18``, ``densenet121``,
    ``efficientnet_b0``. Extra ``kwargs`` go to the constructor.
    """
    require_extra("build_zoo_model")
    if num_outputs < 1 or in_channels < 1:
        raise ConfigError(
            f"build_zoo_model: num_outputs={num_outputs}, in_channels={in_channels}; "
            "both must be >= 1"
        )
    if task == "segmentation":
        if arch not in SEGMENTATION_ARCHS:
            raise UnknownNameError("segmentation architecture", arch, SEGMENTATION_ARCHS)
        import segmentation_models_pytorch as smp  # heavy import: only when asked

        ctor = {"unet": smp.Unet, "deeplabv3": smp.DeepLabV3, "fpn": smp.FPN}[arch]
        model: nn.Module = ctor(
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_outputs,
            **kwargs,
        )
        return model
    if task == "classification":
        if arch not in CLASSIFICATION_ARCHS:
            raise UnknownNameError("classification architecture", arch, CLASSIFICATION_ARCHS)
        import timm

        model = timm.create_model(
            arch, pretrained=False, num_classes=num_outputs, in_chans=in_channels, **kwargs
        )
        return model
    raise ConfigError(
        f"build_zoo_model: task {task!r} is not allowed; use segmentation or classification"
    )
