"""Action recognition task: UCF101 / HMDB51 / a video folder, clip datasets, multi-view testing.

Broken videos: every process (DataLoader workers, DDP ranks) records the videos it cannot read in
``OUTPUT_DIR/broken_videos.tsv`` (``path<TAB>reason<TAB>run``, one line per video and run,
written once under a file lock), so each is reported once; a run counts and skips only what it
met itself (``datasets.broken_files``). Training replaces a broken video by the next readable one;
the test set drops unreadable files up front (headers opened on the main rank only; under DDP every
rank then evaluates its share of the rest and the scores are gathered) and, should a
file fail later while decoding, counts it once and not its stand-in. More than
``DATA.MAX_BROKEN_SHARE`` broken training or test videos stops the run with
``TooManyBrokenVideos``. The printed metrics give the counts; ``finish()`` logs the list.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from . import distributed as du
from .action_metrics import evaluate_action
from .build import BROKEN_LOG, build_broken_log, pin_memory
from .errors import ConfigError
from .loaders import ShardSampler, make_loader

log = logging.getLogger("vidattn")


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
    raise ConfigError(f"action DATA.DATASET must be ucf101, hmdb51 or video_folder, got {dataset!r}")


def action_dataset(cfg, samples, train: bool, skip_log=None):
    from datasets.action_dataset import build_action_dataset
    d = cfg.DATA
    return build_action_dataset(
        samples, train, mode=d.TRAIN_SAMPLE if train else d.TEST_SAMPLE, clip_len=d.SEQ_LEN,
        stride=d.FRAME_STRIDE, num_clips=1 if train else cfg.TEST.NUM_CLIPS,
        num_crops=1 if train else cfg.TEST.NUM_CROPS, crop_size=d.CROP_SIZE, short_side=d.SHORT_SIDE,
        train_crop=d.TRAIN_CROP, decode_size=tuple(d.DECODE_SIZE) or None,
        skip_log=skip_log, max_broken_share=d.MAX_BROKEN_SHARE)


class ActionTask:
    key_metric = "top1"

    def __init__(self, cfg, rank: int = 0, world: int = 1, classes=None, train: bool = True):
        """``classes``: the trained model's class names (a checkpoint's ``classes``); None: the
        training index's. Test labels are mapped onto them by name, so a validation folder that
        lacks a class keeps the others' labels, and one with a class training did not have is an
        error here, before anything runs. ``train=False`` (evaluation alone): no training set."""
        from datasets.action_dataset import check_broken_share, filter_readable
        from datasets.video_folder import relabel
        self.cfg = cfg
        d = cfg.DATA
        self.broken_log = build_broken_log(cfg)
        test_index = action_index(d.DATASET, d.ROOT, d.SPLIT, "test")
        train_index = action_index(d.DATASET, d.ROOT, d.SPLIT, "train") if train or not classes else None
        self.classes = [str(c) for c in (classes or train_index.classes)]
        self.num_classes = len(self.classes)
        test_samples = relabel(test_index.samples, test_index.classes, self.classes,
                               f"the test data of {d.DATASET} in {d.ROOT!r}")
        self.train_set = self.train_loader = None
        if train:
            train_samples = relabel(train_index.samples, train_index.classes, self.classes,
                                    f"the training data of {d.DATASET} in {d.ROOT!r}")
            self.train_set = action_dataset(cfg, train_samples, True, self.broken_log)
            sampler = DistributedSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True,
                                         seed=cfg.SEED, drop_last=True)
            self.train_loader = make_loader(self.train_set, batch_size=d.BATCH_SIZE, sampler=sampler,
                                            drop_last=True, num_workers=d.NUM_WORKERS, pin_memory=pin_memory(cfg),
                                            train=True, seed=cfg.SEED)
        self.test_paths = {path for path, _ in test_samples}
        # headers opened (and bad ones logged) on the main rank; every rank evaluates its shard
        checked = du.run_together(lambda: filter_readable(test_samples, skip_log=self.broken_log) if rank == 0 else None)
        readable, self.unreadable = du.broadcast_object(checked)
        check_broken_share(len(self.unreadable), len(test_samples), d.MAX_BROKEN_SHARE, "test videos",
                           self.broken_log.path)
        self.test_loader = make_loader(action_dataset(cfg, readable, False, self.broken_log), batch_size=d.BATCH_SIZE,
                                       sampler=ShardSampler(len(readable), rank, world), num_workers=d.NUM_WORKERS,
                                       pin_memory=pin_memory(cfg))
        self.last_details = None

    def set_epoch(self, epoch: int) -> None:
        """Before an epoch: the videos already known to be broken are skipped from now on (the
        loader's workers do the same when they meet the new epoch)."""
        self.train_loader.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        self._check_train_share()

    def _check_train_share(self) -> None:
        from datasets.action_dataset import check_broken_share
        paths = {path for path, _ in self.train_set.samples}
        check_broken_share(len(self.train_set.broken_paths()), len(paths), self.cfg.DATA.MAX_BROKEN_SHARE,
                           "training videos", self.broken_log.path)

    @torch.no_grad()
    def evaluate(self, model, device, amp_dtype=None) -> dict:
        """Every rank scores its shard of the test videos; rank 0 computes the metrics of all."""
        model.eval()

        def local():
            scores, labels, indices = [], [], []
            for clips, label, index in tqdm(self.test_loader, desc="test", leave=False, dynamic_ncols=True,
                                            disable=not du.is_main()):
                views = clips.shape[1] if clips.ndim == 6 else 1
                x = clips.flatten(0, 1) if clips.ndim == 6 else clips
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(x.to(device, non_blocking=True)).float().cpu()
                scores.append(logits.softmax(-1).view(len(label), views, -1))
                labels.append(label)
                indices.append(index)
            return tuple(torch.cat(t) for t in (scores, labels, indices)) if scores else None

        scores, labels, indices = (torch.cat(parts) for parts in zip(*du.gather_shards(local)))

        def compute():
            # a video that fails while decoding is replaced by the next one: count every video once
            _, first = np.unique(indices.numpy(), return_index=True)
            kept_scores, kept_labels = scores[first], labels[first]
            metrics = evaluate_action(kept_scores.numpy(), kept_labels.numpy())
            num_test = len(self.test_loader.dataset)
            metrics.update(num_videos=len(kept_labels), num_views=int(kept_scores.shape[1]),
                           unreadable=len(self.unreadable) + num_test - len(kept_labels),
                           skipped_train=len(self.train_set.broken_paths()) if self.train_set is not None else 0)
            self.last_details = {"scores": kept_scores.numpy(), "labels": kept_labels.numpy()}
            return metrics

        return du.main_result(compute)

    def broken_summary(self) -> str:
        """The broken videos met so far, one line each (split, path, reason); "" when none."""
        from datasets.broken_files import broken_summary
        train = {p for p, _ in self.train_set.samples} if self.train_set is not None else set()
        return broken_summary(self.broken_log.entries(), train, self.test_paths,
                              "videos", "skipped", "excluded", self.broken_log.path)

    def finish(self) -> str:
        """At the end of training: log the summary of broken videos and check their share."""
        summary = self.broken_summary()
        if summary:
            log.warning(summary)
        if self.train_set is not None:
            self._check_train_share()
        return summary

    @staticmethod
    def format(metrics: dict, name: str = "result") -> str:
        head = f"{'model':<14} {'top1':>6} {'top5':>6} {'mean cls':>8}"
        lines = [head, "-" * len(head), f"{name:<14} {100 * metrics['top1']:6.1f} "
                 f"{100 * metrics['top5']:6.1f} {100 * metrics['mean_class_acc']:8.1f}"]
        if metrics.get("unreadable") or metrics.get("skipped_train"):
            lines.append(f"unreadable videos: {metrics.get('unreadable', 0)} test videos excluded, "
                         f"{metrics.get('skipped_train', 0)} training videos skipped (see {BROKEN_LOG})")
        return "\n".join(lines)
