"""Attention modules against their explicit reference formulations: forward+backward time, memory.

For every module with a reference (``REFERENCES`` of each ``models/attention/_reference_*.py``),
in one run and side by side on the same parameters and inputs: the median wall time of
forward + backward (training mode, a fixed random output gradient, parameter gradients reset
between repeats; ours and the reference alternate so that load changes hit both alike) and the peak memory of one forward + backward, for our module and for the
reference. Ratios: speed = ref time / our time (> 1: ours faster), memory = our peak / ref peak.

Peak memory, CPU: ``torch.profiler`` with ``profile_memory=True`` records every allocation and
free of the call; the peak is the maximum of their running sum, i.e. the most bytes alive at
once on top of what existed before (inputs and parameters excluded, gradients included).
CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the
allocation at the start.

Inputs: ``(batch, C, H, W)`` for 2-D blocks, heads and glimpses; ``(batch // frames, C, frames,
H, W)`` for aggregators and temporal/spatio-temporal blocks (same number of frame maps).
Targets (checked in the last column at the largest size): long-range modules (non-local 2-D and
space-time, criss-cross, EMA, ViT block, DETR decoder) at most 0.15x the explicit form's peak
memory and at least 2x faster; every module's forward+backward within 1.1x of its reference's time.

Precision: float32 by default; ``--amp bf16`` runs both forms under bf16 autocast (the max abs diff
column then shows bf16 rounding). On CUDA, ``--tf32 on|off`` sets TF32 for both forms' float32
matmuls and convolutions (default: PyTorch's own defaults, TF32 convolutions and full float32
matmuls; the title says which); the fused attention kernels do not follow these switches.

Constructor arguments: ``--kwargs KEY=VALUE ...`` (values are Python literals, else strings) go to
every named module, e.g. ``--names nonlocal,nonlocal_st --kwargs sub_sample=False``; a reference
recomputes the module from its own parameters and settings, so both forms compute the same
function (the row label shows the arguments). Zero-initialised parameters (the BN scale of blocks
that start as the identity, residual gates) get small random values before measuring, so the max
abs diff column compares the attention paths rather than two identities; a difference beyond
rounding (1e-4 of the output's largest magnitude in float32, 0.1 under autocast, a coarse check
there) marks the row ``DIFFERS``.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import statistics
import sys

import torch

from engine.errors import InputError

from .common import format_table, median_time

LONG_RANGE = ("nonlocal", "nonlocal_st", "cc", "ema", "mhsa", "detr")
AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
TEMPORAL_FAMILIES = ("temporal", "spatiotemporal")
# max abs diff over the output's largest magnitude beyond which the two forms differ (not rounding)
DIFF_TOLERANCE = {"none": 1e-4, "bf16": 0.1, "fp16": 0.1}


def map_sizes(text: str) -> list[tuple[int, int]]:
    """``"28x28,56x56"`` -> ``[(28, 28), (56, 56)]`` (argparse reports a ``ValueError`` in one line)."""
    sizes = [s.lower().split("x") for s in text.split(",")]
    if not all(len(s) == 2 and all(v.strip().isdigit() and int(v) > 0 for v in s) for s in sizes):
        raise ValueError(text)
    return [(int(h), int(w)) for h, w in sizes]


def add_arguments(parser):
    parser.add_argument("--names", default="", help="comma-separated module names (default: all with a reference)")
    parser.add_argument("--sizes", default="28x28,56x56", type=map_sizes, help="comma-separated HxW map sizes")
    parser.add_argument("--batch", type=int, default=8, help="frame maps per batch")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--frames", type=int, default=4, help="T for aggregators and temporal blocks")
    parser.add_argument("--num-classes", type=int, default=10, help="for heads that need it")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--amp", choices=sorted(AMP), default="none", help="autocast dtype for both forms")
    parser.add_argument("--tf32", choices=["default", "on", "off"], default="default",
                        help="CUDA: TF32 for both forms' float32 matmuls and convolutions (default: PyTorch's "
                             "defaults, TF32 convolutions and full float32 matmuls)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (0: torch's default; 1 is steadier on a shared machine)")
    parser.add_argument("--kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="constructor arguments for every named module, and so for its reference, which "
                             "reads the module (e.g. sub_sample=False); values are Python literals, else strings")


def parse_kwargs(items) -> dict:
    """``["sub_sample=False", "mode=dot"]`` -> ``{"sub_sample": False, "mode": "dot"}``."""
    kwargs = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise InputError(f"--kwargs takes KEY=VALUE pairs (e.g. sub_sample=False), got {item!r}")
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key] = text
    return kwargs


def check_kwargs(names, kwargs: dict) -> None:
    """Every named module must take every argument: one that silently ignored it would be
    measured with its defaults under a label that says otherwise."""
    from models.attention import get_attention_class
    for name in names:
        params = inspect.signature(get_attention_class(name).__init__).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        unknown = [k for k in kwargs if k not in params or k in ("self", "channels")]
        if unknown:
            accepted = ", ".join(p for p in params if p not in ("self", "channels"))
            raise InputError(f"--kwargs: {name} takes no argument {', '.join(unknown)} (it takes: {accepted}); "
                             f"benchmark modules with other arguments in separate runs")


def label(name: str, kwargs: dict) -> str:
    return " ".join([name, *(f"{k}={v}" for k, v in kwargs.items())])


def collect_references() -> dict:
    """``REFERENCES`` of every ``models/attention/_reference_*.py``, merged."""
    import models.attention as package
    refs = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_reference_"):
            refs.update(importlib.import_module(f"{package.__name__}.{info.name}").REFERENCES)
    return refs


def build(name: str, args):
    from models.attention import build_attention, get_attention_class
    cls = get_attention_class(name)
    params = inspect.signature(cls.__init__).parameters
    kwargs = {}
    if "num_frames" in params:
        kwargs["num_frames"] = args.frames
    if "num_classes" in params and params["num_classes"].default is inspect.Parameter.empty:
        kwargs["num_classes"] = args.num_classes
    if "dropout" in params:                          # references compare deterministic forwards
        kwargs["dropout"] = 0.0
    kwargs.update(parse_kwargs(getattr(args, "kwargs", None)))
    return build_attention(name, channels=args.channels, **kwargs)


def unzero(module) -> None:
    """Small random values for the parameters initialised to zero (identity-at-init blocks, gates),
    so that the output depends on the attention path and the forms' difference means something."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() and not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def make_input(module, args, h: int, w: int, device) -> torch.Tensor:
    parts = getattr(module, "num_parts", 1)          # part-based modules slice H into equal strips
    h = -(-h // parts) * parts
    if module.kind == "aggregator" or module.family in TEMPORAL_FAMILIES:
        shape = (max(1, args.batch // args.frames), args.channels, args.frames, h, w)
    else:
        shape = (args.batch, args.channels, h, w)
    return torch.randn(shape, device=device)


def forward_backward(fn, module, x: torch.Tensor, grad_out: dict, amp=None):
    """One training step's worth of work: ``fn(x)`` (under ``amp`` autocast) then backward of a
    fixed random projection (call ``clear_grads`` first, as an optimizer's ``zero_grad`` would)."""
    def step():
        xx = x.detach().requires_grad_(True)
        with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
            y = fn(xx)
        if "g" not in grad_out:
            grad_out["g"] = torch.randn_like(y)
        if y.requires_grad:
            y.backward(grad_out["g"])
    return step


def clear_grads(module) -> None:
    for p in module.parameters():
        p.grad = None


def peak_memory_mib(step, module, device: torch.device) -> float:
    clear_grads(module)                              # outside the measured region
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2 ** 20
    from engine.cpu_memory import cpu_peak_bytes
    return cpu_peak_bytes(step) / 2 ** 20


def timed_pair(ours, reference, module, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median times of the two steps, run alternately so that load changes hit both alike."""
    def synced(step):
        def call():
            clear_grads(module)
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return call
    ours, reference = synced(ours), synced(reference)
    ours(), reference()                              # warm-up
    times = [(median_time(ours, 1, 0), median_time(reference, 1, 0)) for _ in range(repeats)]
    return statistics.median(t for t, _ in times), statistics.median(t for _, t in times)


def max_difference(module, ref, x: torch.Tensor, amp=None) -> tuple[float, float]:
    """Eval mode, no grad: the largest absolute difference of the two forms' outputs and the
    reference output's largest magnitude."""
    module.eval()
    with torch.no_grad(), torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        expected = ref(module, x).float()
        diff = (module(x).float() - expected).abs().max().item()
    module.train()
    return diff, expected.abs().max().item()


def measure(name: str, ref, args, h: int, w: int, device: torch.device) -> list:
    torch.manual_seed(0)
    module = build(name, args).train()
    unzero(module)
    module.to(device)
    x = make_input(module, args, h, w, device)
    grad_out, amp = {}, AMP[args.amp]
    ours = forward_backward(module, module, x, grad_out, amp)
    reference = forward_backward(lambda t: ref(module, t), module, x, grad_out, amp)
    ours()                                           # fixes the output gradient
    t_ours, t_ref = timed_pair(ours, reference, module, device, args.repeats)
    m_ours, m_ref = peak_memory_mib(ours, module, device), peak_memory_mib(reference, module, device)
    return [t_ours, t_ref, m_ours, m_ref, *max_difference(module, ref, x, amp)]


def verdict(name: str, t_ours: float, t_ref: float, m_ours: float, m_ref: float, largest: bool,
            differs: bool = False) -> str:
    notes = ["DIFFERS"] if differs else []
    if t_ours > 1.1 * t_ref:
        notes.append("slower")
    if largest and name in LONG_RANGE:
        if t_ref < 2 * t_ours:
            notes.append("<2x")
        if m_ours > 0.15 * m_ref:
            notes.append("mem>0.15")
    return "ok" if not notes else " ".join(notes)


def run(args) -> str:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and args.tf32 != "default":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    refs = collect_references()
    names = [n.strip() for n in args.names.split(",") if n.strip()] or sorted(refs)
    unknown = [n for n in names if n not in refs]
    if unknown:
        raise SystemExit(f"no reference for {unknown}; available: {', '.join(sorted(refs))}")
    kwargs = parse_kwargs(args.kwargs)
    check_kwargs(names, kwargs)
    sizes = args.sizes
    rows = []
    for name in names:
        row_label = label(name, kwargs)
        for i, (h, w) in enumerate(sizes):
            print(f"[attention benchmark] {row_label} {h}x{w}", file=sys.stderr, flush=True)
            try:
                t_ours, t_ref, m_ours, m_ref, diff, scale = measure(name, refs[name], args, h, w, device)
            except Exception as err:  # one module failing must not hide the others
                rows.append([row_label, f"{h}x{w}", *["-"] * 7, f"error: {type(err).__name__}: {str(err)[:60]}"])
                continue
            differs = not diff <= DIFF_TOLERANCE[args.amp] * max(scale, 1.0)
            rows.append([row_label, f"{h}x{w}", f"{t_ours * 1e3:.1f}", f"{t_ref * 1e3:.1f}", f"{t_ref / t_ours:.2f}x",
                         f"{m_ours:.1f}", f"{m_ref:.1f}", f"{m_ours / max(m_ref, 1e-9):.3f}", f"{diff:.1e}",
                         verdict(name, t_ours, t_ref, m_ours, m_ref, i == len(sizes) - 1, differs)])
    precision = {"none": "float32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}[args.amp]
    if device.type == "cuda":
        precision += (f", TF32 matmul {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'} / conv "
                      f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}")
    title = (f"Attention modules vs reference formulations: forward+backward, batch {args.batch}, "
             f"{args.channels} channels, {device.type}, {precision}, {torch.get_num_threads()} threads, "
             f"median of {args.repeats}")
    headers = ["module", "HxW", "ours ms", "ref ms", "speed (ref/ours)", "ours MiB", "ref MiB",
               "mem (ours/ref)", "max abs diff", "targets"]
    return format_table(headers, rows, title)
