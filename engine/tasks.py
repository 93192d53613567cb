"""Tasks bind data, evaluation and the headline metric: re-ID (MARS) and action recognition."""
from __future__ import annotations

import logging

from .build import build_broken_log, build_reid_data
from .errors import ConfigError
from .reid_evaluator import evaluate_reid_model, format_reid_table

log = logging.getLogger("vidattn")


class ReIDTask:
    """MARS re-ID. Unreadable frames are replaced by a neighbouring frame of their tracklet and
    listed in ``OUTPUT_DIR/broken_videos.tsv`` (``datasets.tracklet_dataset``); ``finish()`` logs
    the summary; more than ``DATA.MAX_BROKEN_SHARE`` of a set's frames stops the run."""

    key_metric = "mAP"

    def __init__(self, cfg, rank: int = 0, world: int = 1, train: bool = True):
        self.cfg = cfg
        self.broken_log = build_broken_log(cfg)
        self.dataset, self.train_loader, self.query_loader, self.gallery_loader = build_reid_data(
            cfg, rank, world, self.broken_log, train)
        self.num_classes = self.dataset.num_train_pids
        self.last_details = None

    def set_epoch(self, epoch: int) -> None:
        self.train_loader.sampler.set_epoch(epoch)
        self.train_loader.dataset.set_epoch(epoch)

    def broken_summary(self) -> str:
        """The unreadable frames this run met, one line each (split, path, reason); "" when none."""
        from datasets.broken_files import broken_summary
        test = self.query_loader.dataset.frame_paths() | self.gallery_loader.dataset.frame_paths()
        train = self.train_loader.dataset.frame_paths() if self.train_loader is not None else set()
        return broken_summary(self.broken_log.entries(), train, test, "frames",
                              "replaced", "replaced", self.broken_log.path)

    def finish(self) -> str:
        """At the end of a run: log the summary of unreadable frames."""
        summary = self.broken_summary()
        if summary:
            log.warning(summary)
        return summary

    def evaluate(self, model, device, amp_dtype=None) -> dict:
        for loader in (self.query_loader, self.gallery_loader):   # workers skip the frames known to fail
            loader.dataset.unreadable |= loader.dataset.broken_frames()
        t = self.cfg.TEST
        metrics, self.last_details = evaluate_reid_model(
            model, self.query_loader, self.gallery_loader, device, t.DISTANCE, t.RERANK, t.BATCH_SIZE,
            t.MAX_RANK, amp_dtype)
        return metrics

    @staticmethod
    def format(metrics: dict, name: str = "result") -> str:
        return format_reid_table({name: metrics})


def build_task(cfg, rank: int = 0, world: int = 1, classes=None, train: bool = True):
    """``classes``: an action model's class names (from its checkpoint); test labels follow them.
    ``train=False`` (evaluation alone) builds no training data."""
    if cfg.TASK == "reid":
        return ReIDTask(cfg, rank, world, train)
    if cfg.TASK == "action":
        from .action_task import ActionTask
        return ActionTask(cfg, rank, world, classes=classes, train=train)
    raise ConfigError(f"TASK must be 'reid' or 'action', got {cfg.TASK!r}")
