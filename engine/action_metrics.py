"""Action-recognition metrics: top-k accuracy, mean class accuracy, confusion matrix, multi-view fusion.

All take numpy arrays or torch tensors: ``scores`` (N, K) class scores (logits or probabilities),
``labels`` (N,) int class ids. Results are fractions in [0, 1].

- top-k: a video counts as a hit when fewer than k classes score STRICTLY higher than its true class
  (ties resolved in the video's favour, so the result never depends on sort order; a NaN true-class
  score is a miss).
- mean class accuracy: the mean over the classes present in ``labels`` of their recall (top-1),
  as in mmaction2; equal to scikit-learn's ``balanced_accuracy_score``.
- multi-view (clips x crops) test: ``aggregate_views`` averages (or max-pools) the (N, V, K) view
  scores, optionally after a softmax, before the metrics.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix

__all__ = ["topk_accuracy", "per_class_accuracy", "mean_class_accuracy", "confusion_matrix", "aggregate_views", "evaluate_action"]


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x
        return x.numpy()
    return np.asarray(x)


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = _numpy(scores).astype(np.float64, copy=False), _numpy(labels).astype(np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"expected scores (N, K) and labels (N,), got {scores.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), got [{labels.min()}, {labels.max()}]")
    return scores, labels


def _true_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0-based rank of the true class: the number of classes scoring strictly higher (NaN: last)."""
    true_score = scores[np.arange(len(labels)), labels]
    rank = (scores > true_score[:, None]).sum(axis=1)
    return np.where(np.isnan(true_score), scores.shape[1], rank)


def topk_accuracy(scores, labels, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """{k: fraction of videos whose true class is among the top k}; k above K counts every video."""
    scores, labels = _check(scores, labels)
    if labels.size == 0:
        raise ValueError("no videos to evaluate")
    rank = _true_rank(scores, labels)
    return {int(k): float((rank < k).mean()) for k in ks}


def per_class_accuracy(scores, labels) -> np.ndarray:
    """(K,) top-1 accuracy (recall) of each class; NaN for a class with no video in ``labels``."""
    scores, labels = _check(scores, labels)
    hit = (_true_rank(scores, labels) == 0).astype(np.float64)
    hits = np.bincount(labels, weights=hit, minlength=scores.shape[1])
    count = np.bincount(labels, minlength=scores.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, hits / np.maximum(count, 1), np.nan)


def mean_class_accuracy(scores, labels) -> float:
    """Mean over the classes present in ``labels`` of the per-class top-1 accuracy (recall)."""
    if _numpy(labels).size == 0:
        raise ValueError("no videos to evaluate")
    return float(np.nanmean(per_class_accuracy(scores, labels)))


def confusion_matrix(scores, labels, num_classes: int | None = None, normalize: str | None = None) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted (arg-max) class (scikit-learn).

    ``scores`` may be (N, K) scores or (N,) predicted ids; ``normalize`` as in scikit-learn
    (None, "true", "pred", "all").
    """
    scores, labels = _numpy(scores), _numpy(labels).astype(np.int64).reshape(-1)
    preds = scores.argmax(axis=1) if scores.ndim == 2 else scores.astype(np.int64).reshape(-1)
    if num_classes is None:
        num_classes = scores.shape[1] if scores.ndim == 2 else int(max(preds.max(), labels.max())) + 1
    return _sk_confusion_matrix(labels, preds, labels=np.arange(num_classes), normalize=normalize)


def aggregate_views(scores, mode: str = "mean", softmax: bool = False):
    """(N, V, K) view scores -> (N, K): mean or max over the V views, after a softmax if asked.

    Returns the same kind (torch tensor or numpy array) it was given.
    """
    if mode not in ("mean", "max"):
        raise ValueError(f"mode must be 'mean' or 'max', got {mode!r}")
    is_tensor = isinstance(scores, torch.Tensor)
    x = scores.float() if is_tensor else torch.as_tensor(np.asarray(scores, dtype=np.float64))
    if x.ndim != 3:
        raise ValueError(f"expected view scores (N, V, K), got shape {tuple(x.shape)}")
    if softmax:
        x = x.softmax(dim=-1)
    out = x.mean(dim=1) if mode == "mean" else x.amax(dim=1)
    return out if is_tensor else out.numpy()


def evaluate_action(scores, labels, view_mode: str = "mean") -> dict[str, float]:
    """{"top1", "top5", "mean_class_acc"} as fractions; (N, V, K) scores are fused over views first."""
    if _numpy(scores).ndim == 3:
        scores = aggregate_views(scores, view_mode)
    top = topk_accuracy(scores, labels, ks=(1, 5))
    return {"top1": top[1], "top5": top[5], "mean_class_acc": mean_class_accuracy(scores, labels)}
