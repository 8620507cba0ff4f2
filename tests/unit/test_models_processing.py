"""robusttest.models: preprocess / postprocess against hand values, and the reference nets."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torchvision.transforms.functional as TF

from robusttest.errors import ConfigError, InputError, ModelError, UnknownNameError
from robusttest.models import ModelCard, postprocess, preprocess
from robusttest.zoo.nets import TinyCNN, TinyUNet, build_zoo_model


@pytest.fixture(autouse=True, scope="module")
def _few_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _card(**kw: object) -> ModelCard:
    base: dict[str, object] = {
        "task": "classification",
        "input_size": (16, 16),
        "channels": 1,
        "mean": (0.5,),
        "std": (0.25,),
        "labels": ("a", "b"),
        "output_activation": "sigmoid",
    }
    base.update(kw)
    return ModelCard(**base)  # type: ignore[arg-type]


# -- preprocess ---------------------------------------------------------------------------


def test_constant_image_gives_the_hand_computed_value() -> None:
    images = torch.full((2, 1, 40, 30), 0.6)
    x = preprocess(images, _card())
    assert x.shape == (2, 1, 16, 16) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.full_like(x, (0.6 - 0.5) / 0.25))


def test_three_channel_repeat_uses_per_channel_mean_and_std() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    card = _card(channels=3, mean=mean, std=std, input_size=(8, 8))
    x = preprocess(torch.full((1, 1, 8, 8), 0.3), card)
    assert x.shape == (1, 3, 8, 8) and x.is_contiguous()
    for c in range(3):
        torch.testing.assert_close(x[0, c], torch.full((8, 8), (0.3 - mean[c]) / std[c]))


@pytest.mark.parametrize(("src", "dst"), [((97, 81), (32, 24)), ((20, 30), (50, 45))])
def test_resize_is_antialiased_like_torchvision(src: tuple[int, int], dst: tuple[int, int]) -> None:
    images = torch.rand(3, 1, *src, generator=torch.Generator().manual_seed(0))
    card = _card(input_size=dst, mean=(0.0,), std=(1.0,))
    want = TF.resize(images, list(dst), antialias=True)
    torch.testing.assert_close(preprocess(images, card), want, atol=1e-5, rtol=1e-5)


def test_downsampling_suppresses_pixel_noise() -> None:
    # The point of antialiasing: noise added at native resolution must average out.
    noise = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(1)) * 0.1
    card = _card(input_size=(32, 32), mean=(0.0,), std=(1.0,))
    assert preprocess(0.5 + noise, card).std() < 0.1 / 4


def test_preprocess_rejects_malformed_input() -> None:
    with pytest.raises(InputError, match="N×1×H×W"):
        preprocess(torch.zeros(1, 16, 16), _card())
    with pytest.raises(InputError, match="N×1×H×W"):
        preprocess(torch.zeros(1, 3, 16, 16), _card())
    with pytest.raises(InputError, match="/ 255"):
        preprocess(torch.zeros(1, 1, 16, 16, dtype=torch.uint8), _card())


# -- postprocess --------------------------------------------------------------------------


def test_classification_sigmoid_and_softmax_match_hand_values() -> None:
    raw = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    sig = postprocess(raw, _card())
    torch.testing.assert_close(
        sig,
        torch.tensor([[0.5, 1 / (1 + math.exp(-2))], [1 / (1 + math.e), 1 / (1 + math.exp(-1))]]),
    )
    soft = postprocess(raw, _card(output_activation="softmax"))
    e2 = math.exp(2.0)
    torch.testing.assert_close(soft[0], torch.tensor([1 / (1 + e2), e2 / (1 + e2)]))
    torch.testing.assert_close(soft.sum(1), torch.ones(2))
    same = postprocess(torch.tensor([[0.2, 0.9]]), _card(output_activation="none"))
    torch.testing.assert_close(same, torch.tensor([[0.2, 0.9]]))


def test_classification_softmax_with_a_negative_class_drops_it() -> None:
    raw = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [0.25, 0.75]
    p = postprocess(raw, _card(labels=("effusion",), output_activation="softmax"))
    torch.testing.assert_close(p, torch.tensor([[0.75]]))


def test_classification_output_count_mismatch() -> None:
    with pytest.raises(ModelError, match="model returns 3 outputs but the card lists 2 labels"):
        postprocess(torch.zeros(4, 3), _card())
    with pytest.raises(ModelError, match="N×2"):
        postprocess(torch.zeros(4, 2, 5), _card())
    with pytest.raises(ModelError, match="use sigmoid"):
        postprocess(torch.zeros(4, 1), _card(labels=("a",), output_activation="softmax"))
    # a 1×1 spatial head is accepted as N×L
    assert postprocess(torch.zeros(4, 2, 1, 1), _card()).shape == (4, 2)


def _seg(**kw: object) -> ModelCard:
    return _card(**{"task": "segmentation", "labels": (), "structures": ("left", "right"), **kw})


def test_segmentation_sigmoid_per_channel_and_resize_to_mask() -> None:
    raw = torch.zeros(2, 2, 8, 8)
    raw[:, 1] = 2.0
    p = postprocess(raw, _seg(), out_size=(20, 12))
    assert p.shape == (2, 2, 20, 12)
    torch.testing.assert_close(p[:, 0], torch.full((2, 20, 12), 0.5))
    torch.testing.assert_close(p[:, 1], torch.full((2, 20, 12), 1 / (1 + math.exp(-2))))
    assert postprocess(raw, _seg()).shape == (2, 2, 8, 8)


@pytest.mark.parametrize("out", [(20, 12), (5, 12), (4, 4), (8, 8)], ids=str)
def test_segmentation_resize_is_torchvisions_antialiased_bilinear(out: tuple[int, int]) -> None:
    # upsampling both axes takes the plain kernel: the same weights, up to float rounding
    raw = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    want = TF.resize(torch.sigmoid(raw), list(out), antialias=True).clamp(0, 1)
    got = postprocess(raw, _seg(), out_size=out)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_segmentation_softmax_drops_the_background_channel() -> None:
    raw = torch.zeros(1, 3, 4, 4)
    raw[:, 2] = math.log(2.0)  # softmax = [0.25, 0.25, 0.5]
    p = postprocess(raw, _seg(output_activation="softmax"))
    assert p.shape == (1, 2, 4, 4)
    torch.testing.assert_close(p[0, :, 0, 0], torch.tensor([0.25, 0.5]))
    same = postprocess(raw[:, 1:], _seg(output_activation="softmax"))  # no background
    torch.testing.assert_close(same[0, :, 0, 0], torch.tensor([1 / 3, 2 / 3]))


def test_segmentation_shape_errors() -> None:
    with pytest.raises(ModelError, match="model returns 4 channels but the card lists 2"):
        postprocess(torch.zeros(1, 4, 4, 4), _seg())
    with pytest.raises(ModelError, match="N×2×h×w"):
        postprocess(torch.zeros(1, 2), _seg())
    one = _seg(structures=("lungs",))
    assert postprocess(torch.zeros(3, 8, 8), one).shape == (3, 1, 8, 8)


# -- reference nets -----------------------------------------------------------------------


def test_tiny_unet_is_a_small_real_unet() -> None:
    net = TinyUNet()
    n = sum(p.numel() for p in net.parameters())
    assert 100_000 <= n <= 500_000
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    with torch.no_grad():
        assert net.eval()(torch.rand(2, 1, 37, 50)).shape == (2, 1, 37, 50)  # odd sizes work
    with pytest.raises(ConfigError, match="depth"):
        TinyUNet(depth=0)


def test_tiny_cnn_shapes() -> None:
    net = TinyCNN(in_channels=3, num_classes=4).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 48, 40)).shape == (2, 4)


@pytest.mark.parametrize(
    ("arch", "task"),
    [
        ("unet", "segmentation"),
        ("deeplabv3", "segmentation"),
        ("fpn", "segmentation"),
        ("resnet18", "classification"),
        ("densenet121", "classification"),
        ("efficientnet_b0", "classification"),
    ],
)
def test_zoo_models_build_without_weights(arch: str, task: str) -> None:
    net = build_zoo_model(arch, task, num_outputs=2, in_channels=1).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 64, 64))
    assert out.shape == ((1, 2, 64, 64) if task == "segmentation" else (1, 2))


def test_zoo_rejects_unknown_names() -> None:
    with pytest.raises(UnknownNameError, match="resnet18"):
        build_zoo_model("resnet18", "segmentation", 1)
    with pytest.raises(ConfigError, match="detection"):
        build_zoo_model("unet", "detection", 1)
