"""Optimizers and precision: :func:`make_optimizer`, :func:`autocast`, :func:`native_bf16`."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from genrec.errors import ConfigError

from .config import TrainConfig

__all__ = ["make_optimizer", "autocast", "native_bf16"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matmuls in hardware: on CPU, oneDNN's bf16 check
    (AVX512 with BF16/AMX, as on recent Xeons); on CUDA, compute capability 8 or more (Ampere
    on; ``torch.cuda.is_bf16_supported`` also counts emulation as support).
    Without it autocast still works, emulated, and is far slower than float32."""
    try:
        if device.type == "cuda":  # Ampere (compute capability 8) and later; not emulation
            return torch.cuda.get_device_capability(device)[0] >= 8
        if device.type == "cpu":
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or a different build: do not guess
        return True
    return True


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` for ``precision == "bf16"``, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


_FUSED_ADAM_CPU = torch.torch_version.TorchVersion(torch.__version__) >= "2.4"  # CPU kernel


def make_optimizer(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` over ``params`` (tensors or groups).

    Adam and AdamW use the fused kernel where the parameters allow it (CPU or CUDA float
    tensors): the same update, an order of magnitude faster than the per-tensor loop on CPU.
    """
    params = list(params)
    if config.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
        devices = ("cpu", "cuda") if _FUSED_ADAM_CPU else ("cuda",)
        fused = all(p.dtype.is_floating_point and p.device.type in devices for p in tensors)
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ConfigError(f"unknown optimizer {config.optimizer!r}; use adam, adamw or sgd")
