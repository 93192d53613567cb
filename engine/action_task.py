"""Action recognition task: UCF101 / HMDB51 / a video folder, clip datasets, multi-view testing."""
from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .action_metrics import evaluate_action


def action_index(dataset: str, root: str, split: int, subset: str):
    """The dataset index for ``subset`` ("train" / "test"): ``.samples`` and ``.classes``."""
    from datasets import HMDB51, UCF101
    from datasets.video_folder import VideoFolder
    if dataset == "ucf101":
        return UCF101(root, split=split, subset=subset)
    if dataset == "hmdb51":
        return HMDB51(root, split=split, subset=subset)
    if dataset == "video_folder":  # <root>/train/<class>/<video>, <root>/val/<class>/<video>
        return VideoFolder(os.path.join(root, "train" if subset == "train" else "val"))
    raise ValueError(f"action DATA.DATASET must be ucf101, hmdb51 or video_folder, got {dataset!r}")


def action_dataset(cfg, samples, train: bool):
    from datasets.action_dataset import build_action_dataset
    d = cfg.DATA
    return build_action_dataset(
        samples, train, mode=d.TRAIN_SAMPLE if train else d.TEST_SAMPLE, clip_len=d.SEQ_LEN,
        stride=d.FRAME_STRIDE, num_clips=1 if train else cfg.TEST.NUM_CLIPS,
        num_crops=1 if train else cfg.TEST.NUM_CROPS, crop_size=d.CROP_SIZE, short_side=d.SHORT_SIDE,
        train_crop=d.TRAIN_CROP, decode_size=tuple(d.DECODE_SIZE) or None, mean=d.MEAN, std=d.STD)


class ActionTask:
    key_metric = "top1"

    def __init__(self, cfg, rank: int = 0, world: int = 1):
        from datasets.action_dataset import filter_readable
        self.cfg = cfg
        d = cfg.DATA
        train_index = action_index(d.DATASET, d.ROOT, d.SPLIT, "train")
        test_index = action_index(d.DATASET, d.ROOT, d.SPLIT, "test")
        self.classes = list(train_index.classes)
        self.num_classes = len(self.classes)
        train_set = action_dataset(cfg, train_index.samples, True)
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.SEED,
                                     drop_last=True)
        self.train_loader = DataLoader(train_set, batch_size=d.BATCH_SIZE, sampler=sampler, drop_last=True,
                                       num_workers=d.NUM_WORKERS, pin_memory=torch.cuda.is_available())
        readable, self.unreadable = filter_readable(test_index.samples)  # excluded and reported once
        self.test_loader = DataLoader(action_dataset(cfg, readable, False), batch_size=d.BATCH_SIZE,
                                      num_workers=d.NUM_WORKERS)
        self.last_details = None

    def set_epoch(self, epoch: int) -> None:
        self.train_loader.sampler.set_epoch(epoch)

    @torch.no_grad()
    def evaluate(self, model, device, amp_dtype=None) -> dict:
        model.eval()
        scores, labels = [], []
        for clips, label, _ in tqdm(self.test_loader, desc="test", leave=False, dynamic_ncols=True):
            views = clips.shape[1] if clips.ndim == 6 else 1
            x = clips.flatten(0, 1) if clips.ndim == 6 else clips
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x.to(device, non_blocking=True)).float().cpu()
            scores.append(logits.softmax(-1).view(len(label), views, -1))
            labels.append(label)
        scores, labels = torch.cat(scores), torch.cat(labels)
        metrics = evaluate_action(scores.numpy(), labels.numpy())
        metrics.update(num_videos=len(labels), num_views=int(scores.shape[1]), unreadable=len(self.unreadable))
        self.last_details = {"scores": scores.numpy(), "labels": labels.numpy()}
        return metrics

    @staticmethod
    def format(metrics: dict, name: str = "result") -> str:
        head = f"{'model':<14} {'top1':>6} {'top5':>6} {'mean cls':>8}"
        return "\n".join([head, "-" * len(head), f"{name:<14} {100 * metrics['top1']:6.1f} "
                          f"{100 * metrics['top5']:6.1f} {100 * metrics['mean_class_acc']:8.1f}"])
