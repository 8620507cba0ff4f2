"""Which device a run uses: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked."""

from __future__ import annotations

import torch

from robusttest.errors import ConfigError, ModelError


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


def spread_device(device: str, index: int) -> str:
    """The device of the ``index``-th of several processes sharing one machine (pytest-xdist
    workers): ``cuda``, and ``auto`` where torch sees a GPU, become ``cuda:(index mod the
    GPU count)``; anything else (``cpu``, an explicit ``cuda:N``) is kept."""
    d = device.strip().lower()
    if d == "cuda" or (d == "auto" and torch.cuda.is_available()):
        count = torch.cuda.device_count()
        if count > 0:
            return f"cuda:{index % count}"
    return device
