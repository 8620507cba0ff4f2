"""Reproducible training of reference models, exported to ONNX with their model cards.

``robusttest zoo fixtures`` trains the small models committed in ``fixtures/models``;
``robusttest zoo train`` trains the paper's architectures (arXiv 2509.25265) on the public
data. Training is seeded (same seed, same device → same weights), resumable from a
per-epoch checkpoint, and shows a progress bar on a terminal.

Held-out split: Montgomery and Shenzhen hold one image per patient, so an image-level
split is a patient-level split. The split is fixed by a hash of the patient id (see
``robusttest.data.heldout``), so the held-out images are the same on every machine and
for every tool that asks for ``split: test``.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robusttest import metrics as M
from robusttest import stats as S
from robusttest.data import Dataset, Sample, open_dataset
from robusttest.fsutil import atomic_write_text
from robusttest.models import ModelCard, export_onnx, load_model, postprocess, preprocess, resize
from robusttest.zoo.nets import TinyCNN, TinyUNet, build_zoo_model


@dataclass
class TrainConfig:
    """Everything that determines the trained weights."""

    arch: str
    task: str
    input_size: int = 128
    channels: int = 1
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    base: int = 8  # width of the Tiny* models
    encoder: str = "resnet18"
    labels: tuple[str, ...] = ()
    structures: tuple[str, ...] = ("lungs",)
    mean: float = 0.5
    std: float = 0.25
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build(cfg: TrainConfig) -> nn.Module:
    n_out = len(cfg.structures) if cfg.task == "segmentation" else len(cfg.labels)
    if cfg.arch == "tinyunet":
        return TinyUNet(in_channels=cfg.channels, out_channels=n_out, base=cfg.base)
    if cfg.arch == "tinycnn":
        return TinyCNN(in_channels=cfg.channels, num_classes=n_out, base=cfg.base)
    kw: dict[str, Any] = {"encoder": cfg.encoder} if cfg.task == "segmentation" else {}
    return build_zoo_model(cfg.arch, cfg.task, n_out, in_channels=cfg.channels, **kw)


def card_for(cfg: TrainConfig, name: str, training_data: str, version: str = "1") -> ModelCard:
    return ModelCard(
        task=cfg.task,  # type: ignore[arg-type]
        input_size=(cfg.input_size, cfg.input_size),
        channels=cfg.channels,
        mean=(cfg.mean,) * cfg.channels,
        std=(cfg.std,) * cfg.channels,
        output_activation="sigmoid",
        labels=cfg.labels if cfg.task == "classification" else (),
        structures=cfg.structures if cfg.task == "segmentation" else (),
        name=name,
        version=version,
        training_data=training_data,
        extra={k: str(v) for k, v in cfg.extra.items()},
    )


# --- data -------------------------------------------------------------------------------------
def load_tensors(
    datasets: Sequence[Dataset], cfg: TrainConfig, workers: int = 2
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode once, resize to the input size: images N×1×S×S, targets N×T(×S×S), ids."""
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    ids: list[str] = []
    size = (cfg.input_size, cfg.input_size)
    for ds in datasets:
        for s in ds.iter_samples(workers=workers):
            img = torch.from_numpy(s.image)[None, None]
            xs.append(resize(img, size)[0])
            if cfg.task == "segmentation":
                m = np.stack(
                    [np.asarray((s.masks or {})[st], dtype=np.float32) for st in cfg.structures]
                )
                ys.append(F.interpolate(torch.from_numpy(m)[None], size=size, mode="area")[0])
            else:
                ys.append(torch.tensor([float((s.labels or {}).get(lb, 0)) for lb in cfg.labels]))
            ids.append(s.image_id)
    return torch.stack(xs), torch.stack(ys), ids


def _augment(
    x: torch.Tensor, y: torch.Tensor, seg: bool, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mild geometric (scale/shift) and intensity (contrast, gamma) jitter."""
    n = x.shape[0]
    scale = 1.0 + (torch.rand(n, generator=g) - 0.5) * 0.2
    shift = (torch.rand(n, 2, generator=g) - 0.5) * 0.12
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    if seg:
        y = F.grid_sample(y, grid, padding_mode="zeros", align_corners=False)
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.5)
    contrast = 1.0 + (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.3
    x = (x.clamp(1e-6, 1) ** gamma - 0.5) * contrast + 0.5
    return x.clamp(0, 1), y


def _loss(logits: torch.Tensor, y: torch.Tensor, seg: bool) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, y)
    if not seg:
        return bce
    p = torch.sigmoid(logits)
    inter = (p * y).sum((2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((2, 3)) + y.sum((2, 3)) + 1)
    return bce + dice.mean()


def train(
    cfg: TrainConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    device: str = "cpu",
    checkpoint: Path | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> nn.Module:
    """Train ``build(cfg)`` on (x, y); resume from ``checkpoint`` when it exists."""
    seed_everything(cfg.seed)
    model = build(cfg).to(device)
    seg = cfg.task == "segmentation"
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15
    )
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("config") == json.dumps(cfg.__dict__, sort_keys=True, default=str):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            start = int(state["epoch"])
            log(f"resuming from {checkpoint} at epoch {start}")
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, initial=start, desc=f"train {cfg.arch}", unit="epoch")
    mean = torch.tensor(cfg.mean)
    std = torch.tensor(cfg.std)
    for epoch in range(start, cfg.epochs):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # epoch-keyed: resumable
        perm = torch.randperm(len(x), generator=g)
        model.train()
        total = 0.0
        t0 = time.perf_counter()
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            xb, yb = _augment(x[idx], y[idx], seg, g)
            xb = ((xb - mean) / std).to(device)
            if cfg.channels == 3:
                xb = xb.repeat(1, 3, 1, 1)
            logits = model(xb)
            loss = _loss(logits, yb.to(device), seg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if checkpoint is not None:
            tmp = checkpoint.with_suffix(".tmp")
            torch.save(
                {
                    "config": json.dumps(cfg.__dict__, sort_keys=True, default=str),
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "epoch": epoch + 1,
                },
                tmp,
            )
            tmp.replace(checkpoint)
        msg = f"epoch {epoch + 1}/{cfg.epochs} loss {total / len(x):.4f} ({time.perf_counter() - t0:.1f}s)"
        if bar is not None:
            bar.set_postfix_str(msg)
            bar.update(1)
        else:
            log(msg)
    if bar is not None:
        bar.close()
    return model.eval().cpu()


# --- held-out evaluation through the same path as the engine -----------------------------------
def evaluate_clean(
    model_path: Path, samples: Sequence[Sample], *, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Clean Dice (segmentation) or AUROC per label (classification) with 95% CIs."""
    runner = load_model(model_path, device="cpu")
    card = runner.card
    out: dict[str, Any] = {"n": len(samples)}
    preds: list[np.ndarray] = []
    for s in samples:
        x = torch.from_numpy(s.image)[None, None]
        with torch.inference_mode():
            raw = runner(preprocess(x, card))
            probs = postprocess(
                raw, card, out_size=s.image.shape if card.task == "segmentation" else None
            )
        preds.append(probs[0].numpy())
    pids = [s.patient_id for s in samples]
    if card.task == "segmentation":
        for j, st in enumerate(card.structures):
            d = np.array(
                [
                    float(M.dice(M.binarize(p[j]), np.asarray((s.masks or {})[st])))
                    for p, s in zip(preds, samples, strict=True)
                ]
            )
            b = S.paired_bootstrap(d, d, pids, n_resamples=resamples, seed=seed)
            out[f"dice/{st}"] = {
                "mean": b.clean,
                "ci_low": b.noisy_ci_low,
                "ci_high": b.noisy_ci_high,
            }
    else:
        scores = np.stack(preds)
        for j, lb in enumerate(card.labels):
            yv = np.array([(s.labels or {}).get(lb, 0) for s in samples])
            b = S.paired_bootstrap_auroc(
                yv, scores[:, j], scores[:, j], pids, n_resamples=resamples, seed=seed
            )
            out[f"auroc/{lb}"] = {
                "mean": b.clean,
                "ci_low": b.noisy_ci_low,
                "ci_high": b.noisy_ci_high,
                "positives": int(yv.sum()),
                "reason": b.reason,
            }
    return out


# --- the committed fixtures ----------------------------------------------------------------------
FIXTURE_SEG = "lungs_tinyunet.onnx"
FIXTURE_CLS = "findings_tinycnn.onnx"


def train_fixtures(
    data_root: Path,
    out_dir: Path,
    *,
    device: str = "cpu",
    progress: bool | None = None,
    quick: bool = False,
) -> dict[str, Any]:
    """Train and export both fixture models; write their held-out metrics beside them."""
    from robusttest.phantom import FINDINGS

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    report: dict[str, Any] = {}

    # 1. lung segmentation on real Montgomery + Shenzhen pairs, patient-level split
    seg = TrainConfig(
        arch="tinyunet",
        task="segmentation",
        input_size=128,
        epochs=3 if quick else 40,
        base=8,
        structures=("lungs",),
        extra={"suite": "lungs"},
    )
    train_sets = [open_dataset(n, data_root / n, split="train") for n in ("montgomery", "shenzhen")]
    test_sets = [open_dataset(n, data_root / n, split="test") for n in ("montgomery", "shenzhen")]
    x, y, _ = load_tensors(train_sets, seg)
    model = train(seg, x, y, device=device, checkpoint=out_dir / ".lungs.ckpt", progress=progress)
    card = card_for(
        seg,
        "lungs-tinyunet",
        "Montgomery + Shenzhen lung masks (train split: patient hash, 80%), 128x128",
    )
    seg_path = export_onnx(model, out_dir / FIXTURE_SEG, card)
    test_samples = [s for ds in test_sets for s in ds.iter_samples()]
    report["lungs_tinyunet"] = {
        "train_images": len(x),
        "test": evaluate_clean(seg_path, test_samples),
        "config": seg.__dict__,
    }

    # 2. multi-label classifier on phantom findings
    cls = TrainConfig(
        arch="tinycnn",
        task="classification",
        input_size=128,
        epochs=2 if quick else 10,
        base=12,
        batch_size=32,
        labels=tuple(FINDINGS),
        extra={"suite": "findings"},
    )
    n_train = 200 if quick else 1600
    tr = open_dataset(
        "phantom", None, n=n_train, seed=1, size=256, task="classification", finding_prob=0.35
    )
    te = open_dataset(
        "phantom",
        None,
        n=100 if quick else 600,
        seed=2,
        size=256,
        task="classification",
        finding_prob=0.35,
    )
    x, y, _ = load_tensors([tr], cls)
    model = train(
        cls, x, y, device=device, checkpoint=out_dir / ".findings.ckpt", progress=progress
    )
    card = card_for(
        cls, "findings-tinycnn", f"robusttest phantom, seed 1, {n_train} images, 128x128"
    )
    cls_path = export_onnx(model, out_dir / FIXTURE_CLS, card)
    report["findings_tinycnn"] = {
        "train_images": len(x),
        "test": evaluate_clean(cls_path, list(te.iter_samples())),
        "config": cls.__dict__,
    }
    atomic_write_text(
        out_dir / "metrics.json", json.dumps(report, indent=1, sort_keys=True, default=str) + "\n"
    )
    for ck in (".lungs.ckpt", ".findings.ckpt"):
        (out_dir / ck).unlink(missing_ok=True)
    return report


# --- the paper's zoo ------------------------------------------------------------------------
# CPU-feasible defaults: 128² inputs, one grey channel, no pretrained weights (nothing may
# be downloaded). The paper used ImageNet-pretrained encoders at higher resolution; see
# docs/replication.md for what that changes.
_SEG: dict[str, Any] = {
    "task": "segmentation",
    "structures": ("lungs",),
    "batch_size": 8,
    "lr": 1e-3,
}


def _nih_labels() -> tuple[str, ...]:
    from robusttest.data import NIH_LABELS

    return tuple(NIH_LABELS)


def zoo_configs() -> dict[str, tuple[TrainConfig, tuple[str, ...]]]:
    """name → (config, datasets it trains on)."""
    nih = _nih_labels()
    cls: dict[str, Any] = {"task": "classification", "batch_size": 16, "lr": 1e-3}
    out: dict[str, tuple[TrainConfig, tuple[str, ...]]] = {
        "unet": (TrainConfig(arch="unet", epochs=10, **_SEG), ("montgomery", "shenzhen")),
        "deeplabv3": (TrainConfig(arch="deeplabv3", epochs=10, **_SEG), ("montgomery", "shenzhen")),
        "fpn": (TrainConfig(arch="fpn", epochs=10, **_SEG), ("montgomery", "shenzhen")),
        "resnet18": (TrainConfig(arch="resnet18", epochs=8, labels=nih, **cls), ("nih-cxr14",)),
        "densenet121": (
            TrainConfig(arch="densenet121", epochs=8, labels=nih, **cls),
            ("nih-cxr14",),
        ),
        "efficientnet_b0": (
            TrainConfig(arch="efficientnet_b0", epochs=8, labels=nih, **cls),
            ("nih-cxr14",),
        ),
    }
    # TB vs normal: the three classifier architectures, one recipe (issue 19)
    tb = ("montgomery", "shenzhen")
    for arch in ("resnet18", "densenet121", "efficientnet_b0"):
        out[f"tb-{arch}"] = (
            TrainConfig(arch=arch, epochs=8, labels=("Tuberculosis",), **cls),
            tb,
        )
    return out


def _config_hash(cfg: TrainConfig) -> str:
    import hashlib

    return hashlib.sha256(
        json.dumps(cfg.__dict__, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


def _test_sets(sources: Sequence[str], data_root: Path, task: str) -> list[Dataset]:
    """The held-out split of ``sources``: Montgomery + Shenzhen as the one combined
    dataset the suites evaluate on (its patient ids stay distinct across the two sets)."""
    if sorted(sources) == ["montgomery", "shenzhen"]:
        return [open_dataset("montgomery-shenzhen", data_root, split="test", task=task)]
    return [open_dataset(s, data_root / s, split="test", task=task) for s in sources]


def train_zoo(
    names: Sequence[str],
    data_root: Path,
    out_dir: Path,
    *,
    device: str = "cpu",
    epochs: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or skip when up to date) each named zoo model; metrics.json beside them."""
    from dataclasses import replace

    configs = zoo_configs()
    for n in names:
        if n not in configs:
            from robusttest.errors import UnknownNameError

            raise UnknownNameError("zoo model", n, configs)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    metrics: dict[str, Any] = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    for name in names:
        cfg, sources = configs[name]
        if epochs is not None:
            cfg = replace(cfg, epochs=epochs)
        onnx_path = out_dir / f"{name}.onnx"
        h = _config_hash(cfg)
        if onnx_path.exists() and metrics.get(name, {}).get("config_hash") == h:
            log(f"{name}: up to date ({onnx_path})")
            continue
        t0 = time.perf_counter()
        task_opt = {"task": cfg.task}
        train_sets = [open_dataset(s, data_root / s, split="train", **task_opt) for s in sources]
        test_sets = _test_sets(sources, data_root, cfg.task)
        x, y, _ = load_tensors(train_sets, cfg)
        log(f"{name}: training on {len(x)} images from {', '.join(sources)} ({cfg.epochs} epochs)")
        model = train(
            cfg,
            x,
            y,
            device=device,
            checkpoint=out_dir / f".{name}.ckpt",
            progress=progress,
            log=log,
        )
        card = card_for(
            cfg,
            f"zoo-{name}",
            f"{' + '.join(sources)} (train split), {cfg.input_size}x{cfg.input_size}, seed {cfg.seed}",
        )
        export_onnx(model, onnx_path, card)
        test_samples = [s for ds in test_sets for s in ds.iter_samples()]
        metrics[name] = {
            "config_hash": h,
            "config": cfg.__dict__,
            "train_images": len(x),
            "datasets": list(sources),
            "seconds": round(time.perf_counter() - t0, 1),
            "test": evaluate_clean(onnx_path, test_samples),
        }
        atomic_write_text(
            metrics_path, json.dumps(metrics, indent=1, sort_keys=True, default=str) + "\n"
        )
        (out_dir / f".{name}.ckpt").unlink(missing_ok=True)
        log(f"{name}: done in {metrics[name]['seconds']} s → {onnx_path}")
    return metrics
