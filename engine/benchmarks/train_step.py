"""Training step time of our ``Trainer`` against a bare PyTorch loop on identical tensors.

Ours: ``Trainer`` built from ``configs/demo_mars_r18.yaml`` (ResNet-18 per frame, last stride 1,
64x32 frames, 8 identities x 4 tracklets x 4 frames, temporal average pooling, BNNeck, CE with label
smoothing 0.1 + batch-hard triplet 0.3, Adam) on a synthetic MARS written at 128x64 (cached in the
temp folder). A few batches are drawn from its own loader once, then ``Trainer.train_epoch`` runs
over those pre-loaded batches, so data loading is left out while everything else of the loop
(autocast, GradScaler, LR scheduler, loss bookkeeping, tqdm, TensorBoard scalars) is timed.

Bare: torchvision ``resnet18`` per frame with the same last stride, mean pooling over space and
time, BatchNorm1d (frozen bias) + linear, the same losses written inline, Adam: zero_grad,
forward, loss, backward, step, nothing else, on the same batches.

Rows: fp32, a tiny fp32 case (32x16 frames, 8 clips) where the step is short enough for the
loop's own overhead to show, ``SOLVER.AMP`` (bf16 autocast; on CUDA ``SOLVER.AMP_DTYPE``),
``MODEL.CHANNELS_LAST`` and both (the bare loop does the same: autocast, channels-last model and
input); the channels-last rows against the others are the measurement behind
``MODEL.CHANNELS_LAST auto``. Batches are decoded on the CPU (``DATA.DECODE_DEVICE cpu``) and
pinned on CUDA; TF32 follows ``MODEL.TF32`` (on by default on CUDA) for both loops alike.
The two loops take turns epoch by epoch (medians of ``--repeats``); a configuration whose first
iteration takes longer than ``SLOW_S`` reports that one iteration. On CPU the AMP rows use the
first ``CPU_AMP_CLIPS`` clips of a batch (bf16 autocast without avx512_bf16 takes minutes per batch).
CPU runs use one torch thread unless ``--threads`` says otherwise: on a shared 2-core machine two
threads wait on each other at every parallel op (measured 5-7x slower than one thread).
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from engine.speed_options import use_channels_last

from .common import format_table

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo_mars_r18.yaml")
SLOW_S = 10.0
CPU_AMP_CLIPS = 8  # bf16 autocast without avx512_bf16 is far too slow for the full batch
TINY = ["DATA.HEIGHT", "32", "DATA.WIDTH", "16", "DATA.NUM_IDS", "4", "DATA.NUM_INSTANCES", "2"]
CL_OFF, CL_ON, AMP = ["MODEL.CHANNELS_LAST", "False"], ["MODEL.CHANNELS_LAST", "True"], ["SOLVER.AMP", "True"]
# name -> (config overrides, pre-loaded batches as a multiple of --batches)
CONFIGS = {"fp32": (CL_OFF, 1), "AMP (SOLVER.AMP)": (AMP + CL_OFF, 1),
           "channels_last (MODEL.CHANNELS_LAST)": (CL_ON, 1), "AMP + channels_last": (AMP + CL_ON, 1),
           "fp32 tiny (32x16, 4x2 clips): loop overhead shows": (TINY + CL_OFF, 2)}


def add_arguments(p) -> None:
    p.add_argument("--repeats", type=int, default=3, help="timed epochs over the pre-loaded batches (median)")
    p.add_argument("--quick", action="store_true", help="fp32 only, one batch")
    p.add_argument("--batches", type=int, default=2, help="pre-loaded batches per timed epoch")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"], help="cuda when available with auto")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a busy 2-core machine two threads wait on each other "
                        "at every parallel op, 5-7x slower for ResNet-18 at 32x16)")


def synthetic_mars() -> str:
    from datasets.synthetic_mars import write_synthetic_mars
    root = os.path.join(tempfile.gettempdir(), "vidattn_bench_train_step_mars")
    if not os.path.isfile(os.path.join(root, "done")):
        write_synthetic_mars(root, num_train_ids=16, num_test_ids=4, num_distractors=2, num_junk=1, size=(128, 64))
        open(os.path.join(root, "done"), "w").close()
    return root


class Preloaded:
    """Stands in for the training loader: the same batches every epoch (``set_epoch`` is a no-op)."""

    def __init__(self, batches):
        self.batches = batches
        self.sampler = self.dataset = self

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def build_trainer(root: str, out: str, device: str, extra: list):
    from engine.config import load_config
    from engine.trainer import Trainer
    cfg = load_config(CONFIG, ["DATA.ROOT", root, "OUTPUT_DIR", out, "MODEL.DEVICE", device,
                               "DATA.NUM_WORKERS", "0", "DATA.DECODE_DEVICE", "cpu", *extra])
    return Trainer(cfg)


class BareNet(nn.Module):
    """torchvision ResNet-18 per frame (layer4 stride 1), mean over space and time, BN + linear."""

    def __init__(self, num_classes: int):
        super().__init__()
        import torchvision
        net = torchvision.models.resnet18(weights=None)
        net.layer4[0].conv1.stride = net.layer4[0].downsample[0].stride = (1, 1)
        net.fc = nn.Identity()
        self.net = net
        self.bn = nn.BatchNorm1d(512)
        self.bn.bias.requires_grad_(False)
        self.fc = nn.Linear(512, num_classes, bias=False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]))

    def forward(self, clips: torch.Tensor, channels_last: bool = False):
        n, c, t, h, w = clips.shape
        if clips.dtype == torch.uint8:  # the loaders' uint8 clips: to float and ImageNet statistics, by hand
            clips = (clips.float() / 255 - self.mean.view(1, 3, 1, 1, 1)) / self.std.view(1, 3, 1, 1, 1)
        frames = clips.transpose(1, 2).reshape(n * t, c, h, w)
        if channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        feat = self.net(frames).view(n, t, -1).mean(1)
        return feat, self.fc(self.bn(feat))


def bare_loss(feat: torch.Tensor, logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    feat = feat.float()
    dist = torch.cdist(feat, feat)
    same = pids[:, None] == pids[None, :]
    hardest_pos = dist.masked_fill(~same, float("-inf")).amax(1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(1)
    triplet = F.relu(hardest_pos - hardest_neg + 0.3).mean()
    return F.cross_entropy(logits.float(), pids, label_smoothing=0.1) + triplet


def bare_epoch(model, optimizer, batches, device, amp_dtype, channels_last: bool) -> None:
    model.train()
    for clips, pids, *_ in batches:
        clips, pids = clips.to(device, non_blocking=True), pids.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            feat, logits = model(clips, channels_last)
        loss = bare_loss(feat, logits, pids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def time_pair(epochs: dict, batches, repeats: int, device) -> tuple[dict, int]:
    """``epochs``: {name: fn(list_of_batches)}. One warm-up iteration each, then ``repeats`` epochs
    over ``batches``, the loops taking turns (so a busy machine slows both alike). A configuration
    whose warm-up took longer than ``SLOW_S`` reports that single iteration. Returns
    ({name: ms per iteration (median)}, iterations timed per loop)."""
    def timed(fn, part):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn(part)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    first = {name: timed(fn, batches[:1]) for name, fn in epochs.items()}
    if max(first.values()) > SLOW_S:
        return {name: 1000 * t for name, t in first.items()}, 1
    times = {name: [] for name in epochs}
    for _ in range(repeats):
        for name, fn in epochs.items():
            times[name].append(timed(fn, batches))
    return {name: 1000 * statistics.median(t) / len(batches) for name, t in times.items()}, repeats * len(batches)


def run(args) -> str:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    torch.set_num_threads(max(1, args.threads))
    root = synthetic_mars()
    configs = {"fp32": CONFIGS["fp32"]} if args.quick else CONFIGS
    num_batches = 1 if args.quick else max(1, args.batches)
    rows = []
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()):
        for name, (extra, factor) in configs.items():
            trainer = build_trainer(root, out, device.type, extra)  # same seed: same batches for the same data keys
            part = [b for _, b in zip(range(num_batches * factor), trainer.task.train_loader)]
            num_classes, frames = trainer.task.num_classes, tuple(part[0][0].shape[2:])
            if trainer.amp_dtype is not None and device.type == "cpu":  # minutes per full batch on CPU
                part = [[x[:CPU_AMP_CLIPS] for x in part[0]]]
            trainer.task.train_loader = Preloaded(part)
            channels_last = use_channels_last(trainer.cfg.MODEL.CHANNELS_LAST, device)
            torch.manual_seed(0)
            model = BareNet(num_classes).to(device)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.Adam(model.parameters(), lr=trainer.cfg.SOLVER.BASE_LR,
                                         weight_decay=trainer.cfg.SOLVER.WEIGHT_DECAY)

            def ours_epoch(chunk, trainer=trainer):
                trainer.task.train_loader.batches, trainer.iters_per_epoch = chunk, len(chunk)
                trainer.train_epoch(0)

            def bare(chunk, model=model, optimizer=optimizer, amp=trainer.amp_dtype, cl=channels_last):
                bare_epoch(model, optimizer, chunk, device, amp, cl)

            ms, iters = time_pair({"ours": ours_epoch, "bare": bare}, part, args.repeats, device)
            trainer.writer.close()
            clips = part[0][0].shape[0]
            dtype = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "float32"
            for who, label in (("ours", "ours Trainer.train_epoch"), ("bare", "bare PyTorch loop")):
                rows.append([f"{name} [{dtype}]", label, f"{clips}x{frames}", iters, f"{ms[who]:.1f}",
                             f"{1000 * clips / ms[who]:.1f}", f"{ms[who] / ms['bare']:.3f}"])
            del trainer, model, optimizer
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    load = "load average %.1f / %.1f / %.1f on %d cores" % (*os.getloadavg(), os.cpu_count())
    return format_table(["configuration", "loop", "batch: N x (T, H, W)", "iters", "ms/iter", "clips/s",
                         "time vs bare"], rows,
                        f"Training step on {device.type} ({threads} torch threads), ResNet-18 per frame, "
                        f"{num_batches} pre-loaded batches per epoch ({load})")
