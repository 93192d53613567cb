"""Re-ID retrieval metrics: CMC, mAP and mINP, vectorised over all queries.

Protocol (Market-1501 / MARS, as torchreid and fast-reid): for each query, gallery items with the
same pid AND the same camera are removed; queries without any remaining true match are skipped.

* AP is non-interpolated: the mean, over true matches, of precision at the match's rank. It equals
  scikit-learn's ``average_precision_score`` per query, ties included (a group of tied distances
  counts as one threshold: an item tied with a match is ranked no later than it).
* CMC(k) is the fraction of queries whose first true match lies within the top k.
* INP (Ye et al., TPAMI 2021) is ``#matches / rank of the hardest match``; mINP its mean.

No argsort and no per-query loop: rows are value-sorted (numpy's SIMD sort) in chunks of queries,
and the rank of every true match is one ``searchsorted`` into the flattened sorted chunk, made
globally monotone by pairing the row index with an order-preserving integer image of the float32
distance. Memory beyond the input is a few chunk-sized arrays.
"""
from __future__ import annotations

import numpy as np

_CHUNK_ELEMS = 1 << 22  # ~4M distances per chunk (16 MB of float32)


def _ordered_bits(a: np.ndarray) -> np.ndarray:
    """Map float32 values to int64 keys with the same order (an exact, tie-preserving image)."""
    bits = a.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits) + (1 << 31)


def match_ranks(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids):
    """Ranks of every true match of every query.

    Returns ``(rows, rank_le, pos_le, num_valid)``: for each true match (same pid, other camera),
    its query row, the number of valid gallery items at distance <= its distance (its 1-based rank,
    ties counted pessimistically), the number of true matches at distance <= its distance, and, per
    query, the number of valid gallery items.
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}")
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    nq, ng = distmat.shape
    if len(q_pids) != nq or len(q_camids) != nq or len(g_pids) != ng or len(g_camids) != ng:
        raise ValueError(f"distmat is {nq}x{ng} but got {len(q_pids)} query pids, {len(q_camids)} "
                         f"query camids, {len(g_pids)} gallery pids, {len(g_camids)} gallery camids")
    rows_all, rank_all, pos_all = [], [], []
    num_valid = np.empty(nq, dtype=np.int64)
    chunk = max(1, _CHUNK_ELEMS // max(ng, 1))
    for s in range(0, nq, chunk):
        e = min(nq, s + chunk)
        d = np.array(distmat[s:e], dtype=np.float32)  # own copy, float32
        if not np.isfinite(d).all():
            raise ValueError("distmat contains NaN or infinite distances")
        same_pid = q_pids[s:e, None] == g_pids[None, :]
        same_cam = q_camids[s:e, None] == g_camids[None, :]
        junk = same_pid & same_cam
        d[junk] = np.inf  # junk sorts after every valid item and never counts below a match
        num_valid[s:e] = ng - junk.sum(1)
        r, c = np.nonzero(same_pid & ~same_cam)
        if len(r) == 0:
            continue
        d_match = d[r, c]
        d.sort(axis=1)
        keys = (np.arange(e - s, dtype=np.int64)[:, None] << 33) | _ordered_bits(d)
        match_keys = (r.astype(np.int64) << 33) | _ordered_bits(d_match)
        rank_le = np.searchsorted(keys.ravel(), match_keys, side="right") - r * ng
        # among the matches of the same row: how many lie at distance <= this one
        order = np.lexsort((rank_le, r))
        r, rank_le = r[order], rank_le[order]
        k = (r.astype(np.int64) << 33) | rank_le
        row_start = np.searchsorted(k, r.astype(np.int64) << 33, side="left")
        pos_le = np.searchsorted(k, k, side="right") - row_start
        rows_all.append(r + s)
        rank_all.append(rank_le)
        pos_all.append(pos_le)
    if rows_all:
        return np.concatenate(rows_all), np.concatenate(rank_all), np.concatenate(pos_all), num_valid
    empty = np.zeros(0, dtype=np.int64)
    return empty, empty, empty, num_valid


def evaluate_reid(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50) -> dict:
    """mAP, CMC (numpy array of length ``max_rank``) and mINP over the queries with a true match.

    Also returns ``num_valid_queries`` and per-query ``ap`` (NaN for skipped queries).
    """
    nq = np.asarray(distmat).shape[0]
    rows, rank_le, pos_le, _ = match_ranks(distmat, q_pids, g_pids, q_camids, g_camids)
    if len(rows) == 0:
        raise ValueError("no query has a true match in the gallery (same pid, other camera)")
    n_match = np.bincount(rows, minlength=nq)
    valid = n_match > 0
    ap = np.bincount(rows, weights=pos_le / rank_le, minlength=nq)
    ap = np.where(valid, ap / np.maximum(n_match, 1), np.nan)
    # rows are grouped and rank-ordered within a row: first/last entries are best/hardest matches
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ends = np.r_[starts[1:], len(rows)] - 1
    first_hit = rank_le[starts]
    hardest = rank_le[ends]
    hits = np.bincount(np.minimum(first_hit, max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]
    nv = int(valid.sum())
    cmc = np.cumsum(hits) / nv
    inp = n_match[rows[starts]] / hardest
    return {"mAP": float(np.nanmean(ap)), "cmc": cmc.astype(np.float64), "mINP": float(inp.mean()),
            "num_valid_queries": nv, "ap": ap}


def summarize_reid(result: dict, ranks=(1, 5, 10, 20)) -> dict:
    """The flat dict written to metrics.json: mAP, rank1/5/10/20, mINP (fractions)."""
    out = {"mAP": float(result["mAP"])}
    cmc = result["cmc"]
    for r in ranks:
        out[f"rank{r}"] = float(cmc[min(r, len(cmc)) - 1])
    out["mINP"] = float(result["mINP"])
    return out
