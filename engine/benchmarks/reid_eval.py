"""Re-ID evaluation at MARS scale (1,980 queries x 9,330 gallery tracklets, 2048-d features).

Side by side, medians of repeats: the distance matrix; our vectorised ``evaluate_reid`` against
the bare argsort / value sort of the same matrix (the floor for any sort-based evaluator) and
against the per-query loop of the popular re-ID libraries; k-reciprocal re-ranking against the
widely copied loop implementation; peak memory of each in a fresh process.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from .common import format_table, median_time, peak_memory_mb

NQ, NG, DIM, IDS, CAMS = 1980, 9330, 2048, 625, 6
_CACHE = os.path.join(tempfile.gettempdir(), "vidattn_bench_reid.npz")


def make_case(seed: int = 0):
    """Features with identity structure (so mAP is neither 0 nor 1), labels and cameras."""
    import torch
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(IDS, DIM)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, IDS, NQ), rng.integers(0, IDS, NG)
    qf = centres[q_pids] + 1.5 * rng.normal(size=(NQ, DIM)).astype(np.float32)
    gf = centres[g_pids] + 1.5 * rng.normal(size=(NG, DIM)).astype(np.float32)
    return (torch.from_numpy(qf), torch.from_numpy(gf), q_pids, g_pids,
            rng.integers(0, CAMS, NQ), rng.integers(0, CAMS, NG))


def loop_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The per-query evaluation loop as the popular re-ID libraries write it (for timing only)."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap = [], []
    for i in range(distmat.shape[0]):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        raw = matches[i][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        n = raw.sum()
        tmp = raw.cumsum() / (np.arange(len(raw)) + 1.0) * raw
        all_ap.append(tmp.sum() / n)
    return np.mean(all_ap), np.mean(all_cmc, 0)


def _write_cache():
    from engine.reid_evaluator import distance_matrix
    qf, gf, qp, gp, qc, gc = make_case()
    np.savez(_CACHE, qg=distance_matrix(qf, gf, "euclidean"), qq=distance_matrix(qf, qf, "euclidean"),
             gg=distance_matrix(gf, gf, "euclidean"), qp=qp, gp=gp, qc=qc, gc=gc)


def _load_eval():
    z = np.load(_CACHE)
    return z["qg"], z["qp"], z["gp"], z["qc"], z["gc"]


def _load_rerank():
    z = np.load(_CACHE)
    return z["qg"], z["qq"], z["gg"]


def _run_eval(d, qp, gp, qc, gc):
    from engine.metrics import evaluate_reid
    evaluate_reid(d, qp, gp, qc, gc)


def _run_argsort(d, *_):
    np.argsort(d, axis=1)


def _run_rerank(qg, qq, gg):
    from engine.rerank import re_ranking
    re_ranking(qg, qq, gg)


def reference_re_ranking(q_g, q_q, g_g, k1=20, k2=6, lam=0.3):
    """The widely copied implementation's structure: full argsort, dense V, per-sample loops."""
    original = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)], 0)
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(original / np.max(original, axis=0))
    V = np.zeros_like(original)
    rank = np.argsort(original).astype(np.int32)
    nq, n = q_g.shape[0], original.shape[0]
    half = int(np.around(k1 / 2))
    for i in range(n):
        fwd = rank[i, :k1 + 1]
        recip = fwd[np.where(rank[fwd, :k1 + 1] == i)[0]]
        expansion = recip
        for c in recip:
            cf = rank[c, :half + 1]
            crecip = cf[np.where(rank[cf, :half + 1] == c)[0]]
            if len(np.intersect1d(crecip, recip)) > 2 / 3 * len(crecip):
                expansion = np.append(expansion, crecip)
        expansion = np.unique(expansion)
        w = np.exp(-original[i, expansion])
        V[i, expansion] = w / w.sum()
    original = original[:nq]
    V_qe = np.zeros_like(V)
    for i in range(n):
        V_qe[i] = V[rank[i, :k2]].mean(0)
    V = V_qe
    del V_qe, rank
    inv = [np.where(V[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros_like(original)
    for i in range(nq):
        tmin = np.zeros(n, dtype=np.float32)
        nz = np.where(V[i] != 0)[0]
        for j in nz:
            tmin[inv[j]] += np.minimum(V[i, j], V[inv[j], j])
        jaccard[i] = 1 - tmin / (2 - tmin)
    return (jaccard * (1 - lam) + original * lam)[:, nq:]


def _run_rerank_ref(qg, qq, gg):
    reference_re_ranking(qg, qq, gg)


def add_arguments(p) -> None:
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-loops", action="store_true", help="skip the slow per-query / reference loops")


def run(args) -> str:
    import torch
    from engine.metrics import evaluate_reid
    from engine.reid_evaluator import distance_matrix
    qf, gf, qp, gp, qc, gc = make_case()
    rows = []
    t_dist = median_time(lambda: distance_matrix(qf, gf, "euclidean"), args.repeats)
    rows.append(["distance matrix (torch, euclidean)", f"{t_dist:.3f}", "", ""])
    d = distance_matrix(qf, gf, "euclidean")
    t_argsort = median_time(lambda: np.argsort(d, axis=1), args.repeats)
    t_sort = median_time(lambda: np.sort(d, axis=1), args.repeats)
    t_ours = median_time(lambda: evaluate_reid(d, qp, gp, qc, gc), args.repeats)
    ours = evaluate_reid(d, qp, gp, qc, gc)
    rows.append(["bare np.argsort(distmat, axis=1)", f"{t_argsort:.3f}", "1.00x", ""])
    rows.append(["bare np.sort(distmat, axis=1)", f"{t_sort:.3f}", f"{t_sort / t_argsort:.2f}x", ""])
    _write_cache()
    _, mem_ours = peak_memory_mb(_load_eval, _run_eval)
    rows.append(["evaluate_reid (ours, vectorised)", f"{t_ours:.3f}", f"{t_ours / t_argsort:.2f}x",
                 f"{mem_ours:.0f}"])
    if not args.skip_loops:
        t_loop = median_time(lambda: loop_eval(d, qp, gp, qc, gc), 1, warmup=0)
        ap_loop, cmc_loop = loop_eval(d, qp, gp, qc, gc)
        assert abs(ap_loop - ours["mAP"]) < 1e-6 and abs(cmc_loop[0] - ours["cmc"][0]) < 1e-9
        rows.append(["per-query loop (popular libraries)", f"{t_loop:.3f}", f"{t_loop / t_argsort:.2f}x",
                     f"ours {t_loop / t_ours:.0f}x faster"])
    t_rr, mem_rr = peak_memory_mb(_load_rerank, _run_rerank)
    rows.append(["k-reciprocal re-ranking (ours)", f"{t_rr:.2f}", "", f"{mem_rr:.0f}"])
    if not args.skip_loops:
        t_ref, mem_ref = peak_memory_mb(_load_rerank, _run_rerank_ref)
        rows.append(["re-ranking, reference loops", f"{t_ref:.2f}", "", f"{mem_ref:.0f}"])
    os.remove(_CACHE)
    title = (f"re-ID evaluation at MARS scale: {NQ} queries x {NG} gallery, {DIM}-d, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; mAP {100 * ours['mAP']:.1f}")
    return format_table(["step", "seconds", "vs argsort", "peak MiB / note"], rows, title)
