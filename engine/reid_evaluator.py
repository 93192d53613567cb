"""Re-ID evaluation: features in bounded chunks, distances, mAP/CMC/mINP, optional re-ranking.

Under DDP every rank extracts the features of its share of the query and gallery tracklets
(``ShardSampler`` in the loaders); the shares are gathered in dataset order on every rank, rank 0
computes the metrics and hands them to the others."""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from models.losses import pairwise_distance

from . import distributed as du
from .metrics import evaluate_reid, summarize_reid
from .rerank import re_ranking


@torch.no_grad()
def extract_features(model, loader, device, clips_per_forward: int = 32, amp_dtype=None, desc: str = "features"):
    """Tracklet embeddings (mean over each tracklet's clips), pids and camids as numpy arrays, in
    dataset order; under DDP each rank reads its shard of the loader and all get every shard.

    A loader batch holds several tracklets' clips (``collate_clips``); they are forwarded at most
    ``clips_per_forward`` at a time, so memory stays bounded however long the tracklets are.
    """
    model.eval()

    def local():
        feats, pids, camids, indices = [], [], [], []
        for clips, owner, pid, camid, index in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                                                    disable=not du.is_main()):
            out = []
            for s in range(0, clips.shape[0], clips_per_forward):
                x = clips[s:s + clips_per_forward].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    out.append(model(x).float().cpu())
            out = torch.cat(out)
            summed = torch.zeros(len(pid), out.shape[1]).index_add_(0, owner, out)
            feats.append(summed / torch.bincount(owner, minlength=len(pid)).clamp_min(1)[:, None])
            pids.append(pid)
            camids.append(camid)
            indices.append(index)
        return tuple(torch.cat(t) for t in (feats, pids, camids, indices)) if feats else None  # a shard may be empty

    feats, pids, camids, indices = (torch.cat(parts) for parts in zip(*du.gather_shards(local)))
    order = indices.argsort()
    return feats[order], pids[order].numpy(), camids[order].numpy()


def distance_matrix(a: torch.Tensor, b: torch.Tensor, metric: str, chunk: int = 4096) -> np.ndarray:
    """(len(a) x len(b)) float32 distances, computed in row chunks."""
    return torch.cat([pairwise_distance(a[s:s + chunk], b, metric) for s in range(0, len(a), chunk)]).numpy()


def evaluate_reid_model(model, query_loader, gallery_loader, device, metric: str = "euclidean",
                        rerank: bool = False, clips_per_forward: int = 32, max_rank: int = 50, amp_dtype=None):
    """Returns ``(metrics, details)``: the metrics.json dict and arrays for tables and pictures
    (under DDP: the metrics on every rank, computed on rank 0; the details on rank 0, None elsewhere)."""
    t0 = time.perf_counter()
    qf, q_pids, q_cams = extract_features(model, query_loader, device, clips_per_forward, amp_dtype, "query")
    gf, g_pids, g_cams = extract_features(model, gallery_loader, device, clips_per_forward, amp_dtype, "gallery")
    t1 = time.perf_counter()
    details = {}

    def compute():
        distmat = distance_matrix(qf, gf, metric)
        if rerank:
            distmat = re_ranking(distmat, distance_matrix(qf, qf, metric), distance_matrix(gf, gf, metric))
        result = evaluate_reid(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
        metrics = summarize_reid(result)
        metrics.update(num_query=len(q_pids), num_gallery=len(g_pids), extract_seconds=round(t1 - t0, 2),
                       eval_seconds=round(time.perf_counter() - t1, 3))
        details.update(distmat=distmat, q_pids=q_pids, g_pids=g_pids, q_camids=q_cams, g_camids=g_cams,
                       cmc=result["cmc"])
        return metrics

    metrics = du.main_result(compute)
    return metrics, (details or None)


def format_reid_table(rows: dict[str, dict]) -> str:
    """Aligned table: one line per named result (e.g. 'untrained', 'trained')."""
    head = f"{'model':<14} {'mAP':>6} {'R1':>6} {'R5':>6} {'R10':>6} {'R20':>6} {'mINP':>6}"
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        lines.append(f"{name:<14} " + " ".join(f"{100 * m[k]:6.1f}" for k in
                                               ("mAP", "rank1", "rank5", "rank10", "rank20", "mINP")))
    return "\n".join(lines)
