"""The training loop: single process or DDP (torchrun), AMP, warm-up + step/cosine LR, tqdm,
TensorBoard, periodic evaluation (sharded across ranks), atomic checkpoints and exact resume.

The step never waits for the device: the loss and its parts stay device tensors, summed on the
device and read once per ``SOLVER.LOG_PERIOD`` steps (and at the epoch's end), which is also
where tqdm and TensorBoard get them. Batches come pinned from the loader and are copied without
blocking. The time spent waiting for the loader's next batch is measured (``perf_counter``
around ``next``), and its share of the wall time between two log points (where the read above
synchronises) goes to tqdm (``wait``), TensorBoard (``train/data_wait_share``) and the epoch log
(``data_wait``): near 0 the device is the bottleneck, near 1 the data loading is."""
from __future__ import annotations

import json
import logging
import os
import random
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import distributed as du
from .build import build_model, build_optimizer, build_scheduler, check_model_names
from .checkpoint import atomic_save, load_checkpoint, read_checkpoint, save_checkpoint, unwrap
from .criterion import build_criterion
from .errors import ConfigError
from .files import atomic_write, remove_stale_temporaries
from .run_folder import claim_run_folder
from .speed_options import maybe_compile, set_tf32, use_channels_last
from .tasks import build_task

log = logging.getLogger("vidattn")


def setup_logging(output_dir: str | None = None) -> None:
    log.setLevel(logging.INFO)
    if not log.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)
    if output_dir and du.is_main():
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, "log.txt")
        if not any(getattr(h, "baseFilename", None) == os.path.abspath(path) for h in log.handlers):
            fh = logging.FileHandler(path)
            fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(fh)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype(cfg, device: torch.device):
    if not cfg.SOLVER.AMP:
        return None
    if device.type == "cpu":
        return torch.bfloat16
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.SOLVER.AMP_DTYPE]


class Trainer:
    """Builds everything from the config and trains. ``resume`` is a checkpoint path; a folder
    that holds another run is refused unless ``overwrite`` (``engine/run_folder.py``)."""

    def __init__(self, cfg, resume: str | None = None, overwrite: bool = False):
        self.cfg = cfg
        self.device = du.resolve_device(cfg.MODEL.DEVICE)
        check_model_names(cfg)  # a misspelt name fails before any data is read or file written
        du.init_from_env(self.device)
        self.rank, self.world = du.rank(), du.world_size()
        ckpt = read_checkpoint(resume) if resume else None  # a bad file fails before anything is built
        claim_run_folder(cfg.OUTPUT_DIR, resume, overwrite, main=du.is_main())
        setup_logging(cfg.OUTPUT_DIR)
        seed_everything(cfg.SEED)
        self.task = du.run_together(build_task, cfg, self.rank, self.world)   # e.g. rank 0's test-set check
        set_tf32(cfg.MODEL.TF32, self.device)
        self.model = build_model(cfg, self.task.num_classes).to(self.device)
        if use_channels_last(cfg.MODEL.CHANNELS_LAST, self.device):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = build_criterion(cfg, self.task.num_classes, unwrap(self.model).aggregator.out_channels)
        self.criterion.to(self.device)
        self.optimizer = build_optimizer(cfg, self.model, self.criterion.parameters())
        self.iters_per_epoch = len(self.task.train_loader)
        if self.iters_per_epoch == 0:
            raise ConfigError("the training loader yields no batch: fewer training identities/videos than one batch "
                              "needs; lower DATA.NUM_IDS x DATA.NUM_INSTANCES (re-ID) or DATA.BATCH_SIZE (action)")
        self.scheduler = build_scheduler(cfg, self.optimizer, self.iters_per_epoch)
        self.amp_dtype = amp_dtype(cfg, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.best, self.metrics, self.pending_eval = 0, -1.0, {}, False
        if resume:
            ckpt = load_checkpoint(resume, self.model, self.optimizer, self.scheduler, ckpt=ckpt, task=cfg.TASK,
                                   criterion=self.criterion, scaler=self.scaler)
            self.start_epoch, self.best = ckpt["epoch"], ckpt.get("best", -1.0)
            self.metrics, self.pending_eval = ckpt.get("metrics") or {}, bool(ckpt.get("pending_eval"))
            log.info(f"resumed from {resume} after epoch {self.start_epoch}")
        if self.world > 1:
            self.model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.MODEL.DDP_FIND_UNUSED)
        self.forward_model = maybe_compile(self.model, cfg.MODEL.COMPILE)   # training forward only
        self.ckpt_dir = os.path.join(cfg.OUTPUT_DIR, "checkpoints")
        self.writer = None
        if du.is_main():
            os.makedirs(self.ckpt_dir, exist_ok=True)
            remove_stale_temporaries(self.ckpt_dir, ".pth")  # left by a save that was killed
            with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
                f.write(cfg.dump())
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(cfg.OUTPUT_DIR, "tb"))

    # ------------------------------------------------------------------ training
    def train_step(self, clips: torch.Tensor, targets: torch.Tensor) -> dict:
        """One optimisation step on a batch already on the device. Returns ``loss`` and its parts
        as detached device tensors: nothing here waits for the device."""
        cfg = self.cfg
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = self.forward_model(clips)
        loss, parts = self.criterion(out, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.world > 1:   # the criterion's parameters (center-loss centres) are outside DDP
            du.average_gradients(self.criterion.parameters())
        if cfg.SOLVER.GRAD_CLIP > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.SOLVER.GRAD_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": loss.detach(), **parts}

    def train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        seed_everything(cfg.SEED * 100003 + epoch * 101 + self.rank)  # resume-exact randomness
        du.run_together(self.task.set_epoch, epoch)
        self.model.train()
        bar = tqdm(self._batches(), total=self.iters_per_epoch, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCHS}",
                   disable=not du.is_main(), dynamic_ncols=True, leave=False)
        meter, n_clips, waited, window_waited = LossMeter(), 0, 0.0, 0.0
        t_start = t_window = t_ready = time.perf_counter()
        for it, batch in enumerate(bar):
            wait = time.perf_counter() - t_ready                    # blocked in the loader's next()
            waited, window_waited = waited + wait, window_waited + wait
            clips = batch[0].to(self.device, non_blocking=True)
            meter.add(self.train_step(clips, batch[1].to(self.device, non_blocking=True)))
            n_clips += clips.shape[0] * self.world
            if (it + 1) % cfg.SOLVER.LOG_PERIOD == 0 or it + 1 == self.iters_per_epoch:
                means = meter.flush()                                # the one host sync
                now = time.perf_counter()
                share = window_waited / max(now - t_window, 1e-9)
                t_window, window_waited = now, 0.0
                lr = self.optimizer.param_groups[0]["lr"]
                if self.writer is not None:
                    step = epoch * self.iters_per_epoch + it
                    for k, v in means.items():
                        self.writer.add_scalar(f"train/{k}", v, step)
                    self.writer.add_scalar("train/lr", lr, step)
                    self.writer.add_scalar("train/data_wait_share", share, step)
                bar.set_postfix(loss=f"{means.get('loss', float('nan')):.3f}", lr=f"{lr:.2e}", wait=f"{share:.0%}")
            t_ready = time.perf_counter()
        stats = meter.epoch_means()
        seconds = time.perf_counter() - t_start
        stats["clips_per_s"] = n_clips / max(seconds, 1e-9)
        stats["data_wait"] = waited / max(seconds, 1e-9)
        if self.writer is not None:
            self.writer.add_scalar("train/clips_per_s", stats["clips_per_s"], epoch + 1)
            self.writer.add_scalar("train/epoch_data_wait_share", stats["data_wait"], epoch + 1)
        return stats

    def _batches(self):
        """The training loader's batches. A rank that cannot load its batch (too many broken inputs,
        a crashed worker) stops every rank at that step with its message (``du.run_together``)."""
        batches = iter(self.task.train_loader)
        while (batch := du.run_together(next, batches, None)) is not None:
            yield batch

    def _finish_on_main(self) -> None:
        if du.is_main() and hasattr(self.task, "finish"):
            self.task.finish()                    # e.g. the summary of skipped broken videos

    def evaluate(self) -> dict:
        """On every rank (each extracts its shard; the results are gathered); rank 0's buffers first."""
        model = unwrap(self.model)
        du.broadcast_buffers(model)
        return self.task.evaluate(model, self.device, self.amp_dtype)

    def fit(self, stop_after: int | None = None) -> dict:
        """Train to SOLVER.MAX_EPOCHS (or only until epoch ``stop_after``, for time-sliced runs that
        continue later with ``--resume``) and return the last evaluation's metrics."""
        cfg = self.cfg
        metrics = {}
        end = cfg.SOLVER.MAX_EPOCHS if stop_after is None else min(stop_after, cfg.SOLVER.MAX_EPOCHS)
        if self.pending_eval:                 # the resumed checkpoint was saved before its evaluation
            metrics = self._evaluate_and_save(self.start_epoch)
        for epoch in range(self.start_epoch, end):
            stats = self.train_epoch(epoch)
            if du.is_main():
                log.info(f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCHS}  " +
                         "  ".join(f"{k} {v:.4g}" for k, v in stats.items()))
            last = epoch + 1 == cfg.SOLVER.MAX_EPOCHS
            do_eval = last or (cfg.SOLVER.EVAL_PERIOD > 0 and (epoch + 1) % cfg.SOLVER.EVAL_PERIOD == 0)
            if du.is_main() and (last or (epoch + 1) % cfg.SOLVER.CHECKPOINT_PERIOD == 0 or do_eval):
                self.pending_eval = do_eval   # last.pth first: the epoch survives a crash in the evaluation
                self._save(("last.pth",), epoch + 1)
            if do_eval:
                metrics = self._evaluate_and_save(epoch + 1)
            du.barrier()
        du.run_together(self._finish_on_main)
        if du.is_main() and metrics:
            write_metrics(cfg.OUTPUT_DIR, metrics)
        if self.writer is not None:
            self.writer.close()
        return metrics

    def _evaluate_and_save(self, epoch: int) -> dict:
        """Evaluate after ``epoch`` epochs (every rank its shard, all get the metrics; should it stop
        on any rank, e.g. too many broken test inputs, all stop with it), then save last.pth (and
        best.pth when the key metric improved) on the main process; all processes wait for it."""
        metrics = self.evaluate()
        return du.run_together(self._save_evaluated, epoch, metrics)

    def _save_evaluated(self, epoch: int, metrics: dict) -> dict:
        improved = metrics.get(self.task.key_metric, -1) > self.best
        if improved:
            self.best = metrics[self.task.key_metric]
        self.metrics, self.pending_eval = metrics, False
        if du.is_main():
            self.log_metrics(metrics, epoch)
            self._save(("last.pth", "best.pth") if improved else ("last.pth",), epoch)
        return metrics

    def _save(self, names, epoch: int) -> None:
        extra = {"best": self.best, "metrics": self.metrics, "pending_eval": self.pending_eval,
                 "classes": getattr(self.task, "classes", None)}
        for name in names:
            save_checkpoint(os.path.join(self.ckpt_dir, name), self.model, self.optimizer, self.scheduler,
                            epoch, self.cfg, extra, criterion=self.criterion, scaler=self.scaler)

    def log_metrics(self, metrics: dict, epoch: int) -> None:
        log.info(self.task.format(metrics))
        if self.writer is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(f"eval/{k}", v, epoch)


class LossMeter:
    """Sums of the loss parts as one device vector per window of steps; ``flush`` reads it (the
    only host synchronisation) and returns the window's means, ``epoch_means`` those of the epoch."""

    def __init__(self):
        self.names, self.window, self.count = None, None, 0
        self.totals, self.counts = {}, {}

    def add(self, parts: dict) -> None:
        if tuple(parts) != self.names:
            self.flush()
            self.names = tuple(parts)
        vec = torch.stack([v.detach().float() for v in parts.values()])
        self.window = vec if self.window is None else self.window + vec
        self.count += 1

    def flush(self) -> dict:
        if self.window is None:
            return {}
        sums = self.window.tolist()
        for k, v in zip(self.names, sums):
            self.totals[k] = self.totals.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + self.count
        means = {k: v / self.count for k, v in zip(self.names, sums)}
        self.window, self.count = None, 0
        return means

    def epoch_means(self) -> dict:
        self.flush()
        return {k: v / self.counts[k] for k, v in self.totals.items()}


def write_metrics(output_dir: str, metrics: dict) -> None:
    text = json.dumps(metrics, indent=2)
    atomic_write(os.path.join(output_dir, "metrics.json"), lambda f: f.write(text.encode("utf-8")))


__all__ = ["Trainer", "write_metrics", "atomic_save", "setup_logging"]
