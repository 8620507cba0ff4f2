"""Training is seeded and resumable; the committed fixture models are what the README says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robusttest.data import open_dataset
from robusttest.models import load_model
from robusttest.zoo.train import TrainConfig, build, evaluate_clean, train, zoo_configs

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "models"


def _toy(n: int = 8, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(n, 1, size, size, generator=g)
    y = (x > 0.5).float()  # learnable: "lung" where bright
    return x, y


def _cfg(epochs: int) -> TrainConfig:
    return TrainConfig(
        arch="tinyunet", task="segmentation", input_size=32, epochs=epochs, batch_size=4, base=2
    )


def _weights(model: torch.nn.Module) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in model.state_dict().values()]


def test_training_is_seeded() -> None:
    x, y = _toy()
    a = _weights(train(_cfg(2), x, y, progress=False, log=lambda _: None))
    b = _weights(train(_cfg(2), x, y, progress=False, log=lambda _: None))
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


def test_resume_gives_the_same_weights_as_one_run(tmp_path: Path) -> None:
    """Two epochs in one go == one epoch, stop, resume from the checkpoint for the second."""
    x, y = _toy()
    straight = _weights(train(_cfg(2), x, y, progress=False, log=lambda _: None))
    ckpt = tmp_path / "run.ckpt"
    # The checkpoint records the config, so the interrupted run must use the same one:
    # stop it after the first epoch by making the second one raise.
    calls = {"n": 0}

    def stop_after_first(msg: str) -> None:
        calls["n"] += 1
        if msg.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(2), x, y, progress=False, checkpoint=ckpt, log=stop_after_first)
    assert ckpt.exists()
    logs: list[str] = []
    resumed = _weights(train(_cfg(2), x, y, progress=False, checkpoint=ckpt, log=logs.append))
    assert logs[0].startswith("resuming from")
    assert all(np.array_equal(p, q) for p, q in zip(straight, resumed, strict=True))


def test_zoo_architectures_build_without_downloads() -> None:
    configs = zoo_configs()
    assert {"unet", "deeplabv3", "fpn", "resnet18", "densenet121", "efficientnet_b0"} <= set(
        configs
    )
    model = build(configs["unet"][0])  # smp, encoder_weights=None: nothing fetched
    out = model(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 1, 64, 64)


def test_fixture_models_carry_their_cards() -> None:
    seg = load_model(FIXTURES / "lungs_tinyunet.onnx", device="cpu")
    assert seg.card.task == "segmentation" and seg.card.structures == ("lungs",)
    assert seg.card.input_size == (128, 128) and seg.card.channels == 1
    cls = load_model(FIXTURES / "findings_tinycnn.onnx", device="cpu")
    from robusttest.phantom import FINDINGS

    assert cls.card.task == "classification" and cls.card.labels == tuple(FINDINGS)
    assert (seg.path.stat().st_size + cls.path.stat().st_size) < 10 * 2**20


@pytest.mark.realdata
def test_lung_fixture_segments_held_out_real_images(shared_data: Path) -> None:
    """The README's held-out Dice, re-measured on the first held-out Montgomery images."""
    ds = open_dataset("montgomery", shared_data / "montgomery", split="test", limit=6)
    samples = list(ds.iter_samples(workers=0))
    out = evaluate_clean(FIXTURES / "lungs_tinyunet.onnx", samples, resamples=200)
    assert out["dice/lungs"]["mean"] > 0.9
    recorded = json.loads((FIXTURES / "metrics.json").read_text())
    assert recorded["lungs_tinyunet"]["test"]["dice/lungs"]["mean"] > 0.9
