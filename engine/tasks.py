"""Tasks bind data, evaluation and the headline metric: re-ID (MARS) and action recognition."""
from __future__ import annotations

from .build import build_reid_data
from .reid_evaluator import evaluate_reid_model, format_reid_table


class ReIDTask:
    key_metric = "mAP"

    def __init__(self, cfg, rank: int = 0, world: int = 1):
        self.cfg = cfg
        self.dataset, self.train_loader, self.query_loader, self.gallery_loader = build_reid_data(cfg, rank, world)
        self.num_classes = self.dataset.num_train_pids
        self.last_details = None

    def set_epoch(self, epoch: int) -> None:
        self.train_loader.sampler.set_epoch(epoch)
        self.train_loader.dataset.set_epoch(epoch)

    def evaluate(self, model, device, amp_dtype=None) -> dict:
        t = self.cfg.TEST
        metrics, self.last_details = evaluate_reid_model(
            model, self.query_loader, self.gallery_loader, device, t.DISTANCE, t.RERANK, t.BATCH_SIZE,
            t.MAX_RANK, amp_dtype)
        return metrics

    @staticmethod
    def format(metrics: dict, name: str = "result") -> str:
        return format_reid_table({name: metrics})


def build_task(cfg, rank: int = 0, world: int = 1, classes=None):
    """``classes``: an action model's class names (from its checkpoint); test labels follow them."""
    if cfg.TASK == "reid":
        return ReIDTask(cfg, rank, world)
    if cfg.TASK == "action":
        from .action_task import ActionTask
        return ActionTask(cfg, rank, world, classes=classes)
    raise ValueError(f"TASK must be 'reid' or 'action', got {cfg.TASK!r}")
