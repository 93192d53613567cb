"""Does time matter? Order-aware vs order-blind clip models on order-only synthetic UCF101.

The synthetic classes differ ONLY in the order of three coloured flashes (every class shows every
colour for the same time), so a single frame or the set of frames says nothing about the class.
Each model trains on the same data with the same budget (``configs/bench_temporal.yaml``: epochs,
backbone, optimiser, seed); only the temporal part changes: TSN average pooling (``avg``), TAM
blocks in the ResNet stages, or a clip aggregator (``gltr``, ``rstan`` with ``frame_input``,
``sta``, ``stgcn``). Every video has a background of its own (one group per video), so no static
cue links the training videos of a class. (With the writer's UCF101-like groups, 8 videos of a
class sharing a background, TAM fitted the backgrounds and reached only 50 % test top-1.)

Sampling: 24-frame videos, flashes of 8 frames, 3 TSN segments: each segment lies inside one
flash, so every clip shows the whole order (segments straddling a flash change would mix phases).
At 32x32 the ResNet-18 maps end at 1x1, so the horizontal parts of STA/STGCN coincide. STA's
frame scores then tie (1/T each) and its argmax fusion takes the FIRST frame: it sees the first
flash, so it depends on the order by accident and tops out near 50 % (the first of three colours
leaves two classes). RSTAN (frame_input) starts slowly: it needs about 20 epochs to pass 90 %.

The table gives test top-1 / top-5 / mean class accuracy with one centre view, the chance level,
and top-1 on the same test clips played backwards: every class is then shown as another class,
so a model that uses the order drops far below its top-1 while an order-blind one keeps it.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time

from .common import format_table

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "bench_temporal.yaml")

# display name -> config overrides on top of CONFIG
MODELS = {
    "avg (TSN)": [],
    "tam (stages 1-4)": ["MODEL.BACKBONE.ATTENTION.NAME", "tam"],
    "gltr": ["MODEL.AGGREGATOR.NAME", "gltr"],
    "rstan (frame_input)": ["MODEL.AGGREGATOR.NAME", "rstan", "MODEL.AGGREGATOR.KWARGS.frame_input", "True"],
    "sta": ["MODEL.AGGREGATOR.NAME", "sta"],
    "stgcn": ["MODEL.AGGREGATOR.NAME", "stgcn"],
}


def write_order_data(root: str, videos_per_class: int = 40, num_classes: int = 6, num_frames: int = 24,
                     size: int = 32, seed: int = 0) -> dict:
    """Order-only synthetic UCF101 with one background group per video; returns the writer's counts."""
    from datasets.synthetic_action import write_synthetic_ucf101
    return write_synthetic_ucf101(root, num_classes=num_classes, videos_per_class=videos_per_class,
                                  num_groups=videos_per_class, num_frames=num_frames, size=size,
                                  content="order", seed=seed)


class ReversedFrames:
    """Calls ``model`` on clips ``(N,C,T,H,W)`` with the frame order reversed (for evaluation)."""

    def __init__(self, model):
        self.model = model

    def eval(self):
        self.model.eval()
        return self

    def __call__(self, clips):
        return self.model(clips.flip(2))


def train_and_test(cfg, quiet: bool = True) -> dict:
    """Train ``cfg`` for ``SOLVER.MAX_EPOCHS`` (no checkpoints) and test it, frames in order and reversed.

    Returns ``params``, ``train_s`` (training epochs only), ``top1``, ``top5``, ``mean_class_acc``,
    ``top1_reversed`` and ``num_classes``."""
    from engine.trainer import Trainer
    trainer = Trainer(cfg)
    params = sum(p.numel() for p in trainer.model.parameters())
    # tqdm bars write to stderr; a benchmark prints its own line per model instead
    mute = contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()
    with mute:
        start = time.perf_counter()
        for epoch in range(cfg.SOLVER.MAX_EPOCHS):
            trainer.train_epoch(epoch)
        train_s = time.perf_counter() - start
        metrics = trainer.evaluate()
        reversed_top1 = trainer.task.evaluate(ReversedFrames(trainer.model), trainer.device)["top1"]
    if trainer.writer is not None:
        trainer.writer.close()
    return {"params": params, "train_s": train_s, "top1": metrics["top1"], "top5": metrics["top5"],
            "mean_class_acc": metrics["mean_class_acc"], "top1_reversed": reversed_top1,
            "num_classes": trainer.task.num_classes}


def add_arguments(p) -> None:
    p.add_argument("--data", default=None, help="dataset folder: reused if it holds a synthetic UCF101, else "
                   "written there (default: a temporary folder, removed afterwards)")
    p.add_argument("--models", nargs="+", default=None, metavar="NAME",
                   help=f"subset by first word: {', '.join(n.split()[0] for n in MODELS)}")
    p.add_argument("--videos-per-class", type=int, default=40)
    p.add_argument("--epochs", type=int, default=None, help="override SOLVER.MAX_EPOCHS of the config")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: on a shared machine two "
                   "OpenMP threads on two busy cores ran 7-12x slower than one)")
    p.add_argument("--quick", action="store_true", help="smoke run: 12 videos per class, 2 epochs")
    p.add_argument("--config", default=CONFIG)
    p.add_argument("overrides", nargs="*", help="config KEY VALUE pairs for every model")


def run(args) -> str:
    import torch

    from engine.config import load_config
    torch.set_num_threads(args.threads)
    videos, epochs = (12, 2) if args.quick else (args.videos_per_class, args.epochs)
    names = [n for n in MODELS if args.models is None or n.split()[0] in args.models]
    if not names:
        raise SystemExit(f"--models: choose from {[n.split()[0] for n in MODELS]}")
    work = tempfile.mkdtemp(prefix="vidattn_temporal_")
    try:
        root = args.data or os.path.join(work, "data")
        if os.path.isdir(os.path.join(root, "ucfTrainTestlist")):
            print(f"reusing the dataset in {root}")
        else:
            t = time.perf_counter()
            counts = write_order_data(root, videos)
            print(f"wrote {counts['videos']} order-only videos to {root} in {time.perf_counter() - t:.1f}s "
                  f"(split 1: {counts['train'][0]} train, {counts['test'][0]} test)")
        extra = ["SOLVER.MAX_EPOCHS", str(epochs)] if epochs else []
        rows, cfg = [], None
        for name in names:
            cfg = load_config(args.config, ["DATA.ROOT", root, "OUTPUT_DIR", os.path.join(work, name.split()[0]),
                                            *MODELS[name], *extra, *args.overrides])
            r = train_and_test(cfg)
            print(f"{name}: {r['train_s']:.0f}s, top-1 {100 * r['top1']:.1f}%, reversed {100 * r['top1_reversed']:.1f}%",
                  flush=True)
            c = r["num_classes"]
            rows.append([name, f"{r['params'] / 1e6:.2f}M", f"{r['train_s']:.0f}", f"{100 * r['top1']:.1f}",
                         f"{100 * r['top5']:.1f}", f"{100 * r['mean_class_acc']:.1f}",
                         f"{100 / c:.1f} / {100 * min(5, c) / c:.1f}", f"{100 * r['top1_reversed']:.1f}"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    title = (f"Does time matter? order-only synthetic UCF101 split {cfg.DATA.SPLIT}, {cfg.MODEL.BACKBONE.NAME} at "
             f"{cfg.DATA.CROP_SIZE}px, {cfg.DATA.SEQ_LEN} {cfg.DATA.TRAIN_SAMPLE} frames, {cfg.SOLVER.MAX_EPOCHS} "
             f"epochs {cfg.SOLVER.OPTIMIZER} lr {cfg.SOLVER.BASE_LR} batch {cfg.DATA.BATCH_SIZE}, seed {cfg.SEED}, "
             f"{args.threads} threads (accuracies in %)")
    return format_table(["model", "params", "train s", "top-1", "top-5", "mean class", "chance top-1 / top-5",
                         "top-1 reversed"], rows, title)
