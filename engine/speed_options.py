"""Speed options that do not change what is computed beyond float rounding: channels-last memory
format (``MODEL.CHANNELS_LAST``), TF32 tensor cores (``MODEL.TF32``) and ``torch.compile``
(``MODEL.COMPILE``)."""
from __future__ import annotations

import torch


def use_channels_last(value, device: torch.device) -> bool:
    """``MODEL.CHANNELS_LAST``: True, False or "auto" (our default: on for CUDA, where cuDNN's
    NHWC convolutions are faster under AMP; off on CPU)."""
    if value == "auto":
        return device.type == "cuda"
    return bool(value)


def set_tf32(enabled: bool, device: torch.device) -> None:
    """``MODEL.TF32`` on a CUDA run: float32 matmuls and convolutions on TF32 tensor cores
    (Ampere and newer; 10-bit mantissa products, float32 accumulation). Process-wide, as
    PyTorch's switches are; ignored on CPU. PyTorch's own default is TF32 for cuDNN convolutions
    only; ``MODEL.TF32 False`` gives full float32 for both (e.g. to compare with a CPU run)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
        torch.backends.cudnn.allow_tf32 = bool(enabled)


def maybe_compile(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``MODEL.COMPILE``: ``torch.compile(model)`` (the caller keeps the plain module for
    checkpoints and evaluation; both share the parameters)."""
    return torch.compile(model) if enabled else model
