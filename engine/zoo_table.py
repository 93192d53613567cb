"""The zoo table: parameters, FLOPs, forward+backward time and peak memory of every registered
attention module, at one common input size.

Inputs (``channels = 256``): blocks, heads and glimpses ``(8, 256, 28, 28)``; clip blocks
``(2, 256, 8, 28, 28)`` with ``num_frames = 8``; aggregators ``(2, 256, 4, 28, 28)`` with
``num_frames = 4``; heads get ``num_classes = 10``. A module is built with
``build_attention(name, channels=256, **extra)`` where ``extra`` holds ``num_frames`` and
``num_classes`` only when its constructor takes them, so modules registered later are covered.

* FLOPs: fvcore ``FlopCountAnalysis`` (one fused multiply-add = one flop; element-wise ops not
  counted), plus handles for ``scaled_dot_product_attention`` and torchvision's
  ``deform_conv2d`` (counted as the plain conv of its weight); "n/a" when fvcore cannot trace.
* Time: median over ``repeats`` runs (after one warm-up) of forward + backward in train mode,
  with the input requiring grad.
* Peak memory: the CPU allocator's high-water mark of bytes allocated during one forward +
  backward (parameters and input excluded, activations and gradients included), from the
  ``[memory]`` allocation/free events of ``torch.profiler`` with ``profile_memory=True``.
"""
from __future__ import annotations

import inspect
import logging
import statistics
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from models.attention import build_attention, get_attention_class, list_attention
from models.attention.registry import takes_clips as is_clip_block

BATCH_2D, BATCH_CLIPS = 8, 2
FRAMES_TEMPORAL, FRAMES_AGGREGATOR = 8, 4
NUM_CLASSES = 10
SIZE = (28, 28)


def is_temporal_block(cls) -> bool:
    """A clip block (temporal or spatio-temporal): its input is ``(N, C, T, H, W)``."""
    return is_clip_block(cls)


def takes_clips(cls) -> bool:
    """Whether the module's input is a clip ``(N, C, T, H, W)``."""
    return cls.kind == "aggregator" or is_temporal_block(cls)


def constructor_extras(cls, num_frames: int, num_classes: int) -> dict:
    """``num_frames`` / ``num_classes`` for the constructors that take them."""
    params = inspect.signature(cls.__init__).parameters
    wanted = {"num_frames": num_frames, "num_classes": num_classes}
    return {k: v for k, v in wanted.items() if k in params}


def example_input(cls, channels: int, size=SIZE, batch: int | None = None,
                  num_frames: int | None = None) -> torch.Tensor:
    """A random input of the module's kind: 4-D maps or 5-D clips."""
    if takes_clips(cls):
        frames = num_frames or (FRAMES_TEMPORAL if is_temporal_block(cls) else FRAMES_AGGREGATOR)
        return torch.randn(batch or BATCH_CLIPS, channels, frames, *size)
    return torch.randn(batch or BATCH_2D, channels, *size)


def build_example(name: str, channels: int = 256, size=SIZE, batch: int | None = None,
                  num_frames: int | None = None, num_classes: int = NUM_CLASSES):
    """``(module, input)`` for ``name`` at the given size (zoo-table defaults otherwise)."""
    cls = get_attention_class(name)
    x = example_input(cls, channels, size, batch, num_frames)
    frames = x.shape[2] if x.dim() == 5 else (num_frames or FRAMES_TEMPORAL)
    module = build_attention(name, channels=channels, **constructor_extras(cls, frames, num_classes))
    return module, x


def first_tensor(out):
    """The main output: modules return a tensor, some a tuple whose first item is it."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _sdpa_flops(inputs, outputs):
    from fvcore.nn.jit_handles import get_shape
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _deform_conv_flops(inputs, outputs):
    """A deformable conv costs what the plain conv of its weight costs (bilinear sampling aside)."""
    from fvcore.nn.jit_handles import get_shape
    weight, out = get_shape(inputs[1]), get_shape(outputs[0])
    taps = 1
    for d in weight[1:]:
        taps *= d
    return out[0] * out[1] * out[2] * out[3] * taps


def count_flops(module: nn.Module, x: torch.Tensor) -> int | None:
    with warnings.catch_warnings():  # fvcore's import touches deprecated torch.jit APIs
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(module, (x,))
            analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flops)
            analysis.set_op_handle("torchvision::deform_conv2d", _deform_conv_flops)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            return int(analysis.total())
    except Exception:  # fvcore cannot trace every op set
        return None
    finally:
        module.train(was_training)


def forward_backward(module: nn.Module, x: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    first_tensor(module(x)).float().sum().backward()


def time_forward_backward(module: nn.Module, x: torch.Tensor, repeats: int = 5) -> float:
    """Median milliseconds of forward + backward (train mode), after one warm-up run."""
    module.train()
    forward_backward(module, x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward_backward(module, x)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_memory_bytes(module: nn.Module, x: torch.Tensor) -> int | None:
    """High-water mark of CPU bytes allocated during one forward + backward (see module doc)."""
    from .cpu_memory import cpu_peak_bytes
    module.train()
    module.zero_grad(set_to_none=True)  # free old gradients outside the profiled region
    try:
        return cpu_peak_bytes(lambda: forward_backward(module, x))
    except Exception:  # profiler internals differ between torch versions
        return None


@dataclass
class ZooRow:
    name: str
    family: str
    kind: str
    params: int | None = None
    flops: int | None = None
    ms: float | None = None
    peak_bytes: int | None = None
    error: str | None = None


def measure(name: str, channels: int = 256, repeats: int = 5, memory: bool = True) -> ZooRow:
    cls = get_attention_class(name)
    row = ZooRow(cls.registry_name, cls.family, cls.kind)
    try:
        module, x = build_example(name, channels)
        row.params = sum(p.numel() for p in module.parameters())
        row.flops = count_flops(module, x)
        row.ms = time_forward_backward(module, x, repeats)
        row.peak_bytes = peak_memory_bytes(module, x) if memory else None
    except Exception as exc:  # one broken module must not hide the others
        row.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    return row


def zoo_rows(names=None, channels: int = 256, repeats: int = 5, memory: bool = True,
             progress=None) -> list[ZooRow]:
    rows = []
    for name in names or list_attention():
        if progress:
            progress(name)
        rows.append(measure(name, channels, repeats, memory))
    return rows


def _si(value, unit=""):
    if value is None:
        return "n/a"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{suffix}{unit}"
    return f"{value:.0f}{unit}"


HEADER = ("name", "family", "kind", "params", "FLOPs", "fwd+bwd ms", "peak MB")


def row_cells(row: ZooRow) -> tuple[str, ...]:
    if row.error:
        return (row.name, row.family, row.kind, "error", row.error, "", "")
    mb = "n/a" if row.peak_bytes is None else f"{row.peak_bytes / 2 ** 20:.1f}"
    ms = "n/a" if row.ms is None else f"{row.ms:.1f}"
    return (row.name, row.family, row.kind, _si(row.params), _si(row.flops), ms, mb)


def format_cells(header: tuple[str, ...], rows: list[tuple[str, ...]], markdown: bool = False,
                 numeric=()) -> str:
    """Aligned text (or Markdown) table; the ``numeric`` columns are right-aligned."""
    cells = [header] + rows
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        lines.insert(1, "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|")
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    def line(c):
        return "  ".join(v.rjust(w) if i in numeric else v.ljust(w)
                         for i, (v, w) in enumerate(zip(c, widths))).rstrip()
    return "\n".join([line(cells[0]), line(tuple("-" * w for w in widths))] + [line(c) for c in cells[1:]])


def format_table(rows: list[ZooRow], markdown: bool = False) -> str:
    return format_cells(HEADER, [row_cells(r) for r in rows], markdown, numeric=range(3, len(HEADER)))
