"""Evaluation of a saved checkpoint (``tools/test.py``)."""
from __future__ import annotations

import torch

from .build import build_model, check_model_names
from .checkpoint import check_task, checkpoint_classes, load_checkpoint, read_checkpoint
from .errors import CheckpointError, InputError
from .config import load_config
from .distributed import resolve_device
from .speed_options import set_tf32, use_channels_last
from .tasks import build_task
from .trainer import amp_dtype, setup_logging, write_metrics


def load_trained(config_path: str, checkpoint: str, overrides=(), task_needed: bool = True):
    """(cfg, task, model, device) with the checkpoint's weights, in eval mode."""
    cfg = load_config(config_path, list(overrides))
    setup_logging(None)
    device = resolve_device(cfg.MODEL.DEVICE)
    check_model_names(cfg)
    ckpt = read_checkpoint(checkpoint)
    check_task(ckpt, cfg.TASK, checkpoint)
    task = build_task(cfg, classes=checkpoint_classes(ckpt), train=False) if task_needed else None
    if task is not None and cfg.TASK == "action":
        num_classes = task.num_classes            # test labels follow these classes
    else:
        num_classes = _num_classes_from_checkpoint(ckpt, checkpoint)  # re-ID: identities of its training data
    set_tf32(cfg.MODEL.TF32, device)
    model = build_model(cfg, num_classes).to(device)
    load_checkpoint(checkpoint, model, restore_rng=False, ckpt=ckpt)
    if use_channels_last(cfg.MODEL.CHANNELS_LAST, device):
        model = model.to(memory_format=torch.channels_last)
    return cfg, task, model.eval(), device


def _num_classes_from_checkpoint(ckpt: dict, path: str) -> int:
    state = ckpt["model"]
    for key in ("head.classifier.weight", "head.fc.weight"):
        if key in state:
            return state[key].shape[0]
    raise CheckpointError(f"cannot tell the number of classes from checkpoint {path!r} (no classifier weights)")


def run_test(config_path: str, checkpoint: str, overrides=(), ranks_png: str | None = None) -> dict:
    if ranks_png and load_config(config_path, list(overrides)).TASK != "reid":  # before any work
        raise InputError(f"--ranks-png draws re-ID rankings, but {config_path!r} is not a TASK reid config: "
                         "drop --ranks-png (an action test writes its per-class table and confusion matrix)")
    cfg, task, model, device = load_trained(config_path, checkpoint, overrides)
    metrics = task.evaluate(model, device, amp_dtype(cfg, device))
    print(task.format(metrics, "checkpoint"))
    write_metrics(cfg.OUTPUT_DIR, metrics)
    if ranks_png and cfg.TASK == "reid":
        from .visualize import draw_ranked_gallery
        d = task.last_details
        draw_ranked_gallery(d["distmat"], task.dataset.query, task.dataset.gallery, ranks_png)
    if cfg.TASK == "action":
        from .action_report import write_action_report
        d = task.last_details
        metrics.update(write_action_report(d["scores"], d["labels"], task.classes, cfg.OUTPUT_DIR))
    broken = task.broken_summary()
    if broken:
        print(broken)
    return {**metrics, "output_dir": cfg.OUTPUT_DIR}
