"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017, https://arxiv.org/abs/1701.08398).

Same result as the widely used reference implementation (squared distances normalised by their
column maximum; k-reciprocal sets R(p, k1) expanded by the R(c, k1/2) of candidates that share
more than 2/3 of it; Gaussian-weighted encodings V; local query expansion over k2 neighbours;
Jaccard distance through an inverted index; d* = (1 - lambda) d_J + lambda d), computed without
Python loops over samples: top-k instead of a full argsort, the reciprocal tests as batched
comparisons, V and its query expansion as sparse matrices, and the Jaccard numerators as one
sparse join per chunk of queries. Defaults k1=20, k2=6, lambda=0.3 (the paper's).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def _reciprocal_mask(rank: torch.Tensor, k: int) -> torch.Tensor:
    """mask[i, a]: rank[i, a] has i among its own first k+1 neighbours."""
    fwd = rank[:, : k + 1]
    back = rank[fwd][:, :, : k + 1]  # (N, k+1, k+1)
    me = torch.arange(rank.shape[0]).view(-1, 1, 1)
    return (back == me).any(-1)


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
               query_chunk: int = 128) -> np.ndarray:
    """Re-ranked (queries x gallery) distance matrix from the three distance matrices."""
    q_g = torch.as_tensor(np.asarray(q_g_dist, dtype=np.float32))
    nq, ng = q_g.shape
    n = nq + ng
    dist = torch.cat([torch.cat([torch.as_tensor(np.asarray(q_q_dist, dtype=np.float32)), q_g], 1),
                      torch.cat([q_g.t(), torch.as_tensor(np.asarray(g_g_dist, dtype=np.float32))], 1)], 0)
    del q_g
    dist.pow_(2)
    dist /= dist.amax(0, keepdim=True)  # column max; the matrix is symmetric, so row i is scaled
    dist = dist.t()                      # as in the reference: transpose after the normalisation
    kmax = max(k1 + 1, k2)
    rank = torch.topk(dist, kmax, dim=1, largest=False, sorted=True).indices  # (N, kmax)

    # k-reciprocal neighbours R(i, k1) and, for every candidate, R(c, round(k1/2))
    recip = _reciprocal_mask(rank, k1)                      # (N, k1+1)
    half = int(np.around(k1 / 2))
    recip_h = _reciprocal_mask(rank, half)                  # (N, half+1)
    fwd = rank[:, : k1 + 1]
    fwd_h = rank[:, : half + 1]
    cand = fwd                                              # candidate c = fwd[i, a] where recip[i, a]
    cand_set = fwd_h[cand]                                  # (N, k1+1, half+1) its R(c, half) members
    cand_in = recip_h[cand]                                 # which of them are reciprocal
    # |R(c, half) ∩ R(i, k1)| > 2/3 |R(c, half)|
    member = (cand_set.unsqueeze(-1) == fwd.view(n, 1, 1, -1)) & recip.view(n, 1, 1, -1)
    inter = (member.any(-1) & cand_in).sum(-1)
    size = cand_in.sum(-1)
    accept = recip & (inter > (2.0 / 3.0) * size)           # (N, k1+1)
    rows = torch.cat([torch.arange(n).repeat_interleave(k1 + 1)[recip.flatten()],
                      torch.arange(n).view(-1, 1, 1).expand_as(cand_set)[accept.unsqueeze(-1) & cand_in]])
    cols = torch.cat([fwd[recip], cand_set[accept.unsqueeze(-1) & cand_in]])
    key = torch.unique(rows.long() * n + cols.long())
    rows, cols = (key // n).numpy(), (key % n).numpy()
    weight = torch.exp(-dist[torch.as_tensor(rows), torch.as_tensor(cols)]).numpy().astype(np.float64)
    weight /= np.bincount(rows, weights=weight, minlength=n)[rows]
    V = sp.csr_matrix((weight.astype(np.float32), (rows, cols)), shape=(n, n))
    if k2 != 1:  # local query expansion: V_i <- mean of V over the k2 nearest neighbours of i
        qe = sp.csr_matrix((np.full(n * k2, 1.0 / k2, dtype=np.float32),
                            (np.repeat(np.arange(n), k2), rank[:, :k2].reshape(-1).numpy())), shape=(n, n))
        V = (qe @ V).tocsr()
    original = dist[:nq, nq:].contiguous().numpy()
    del dist, rank
    # Jaccard numerators sum_k min(V_ik, V_jk) for queries i and gallery j, via the inverted index
    Vg = V[nq:].tocsc()
    final = np.empty((nq, ng), dtype=np.float32)
    Vq = V[:nq].tocsr()
    for s in range(0, nq, query_chunk):
        block = Vq[s:s + query_chunk].tocoo()
        qi, qk, qv = block.row, block.col, block.data
        starts, ends = Vg.indptr[qk], Vg.indptr[qk + 1]
        counts = ends - starts
        total = int(counts.sum())
        owner = np.repeat(np.arange(len(qk)), counts)
        offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        idx = starts[owner] + offset
        vmin = np.minimum(qv[owner], Vg.data[idx])
        rows_q = min(query_chunk, nq - s)
        num = np.bincount(qi[owner].astype(np.int64) * ng + Vg.indices[idx], weights=vmin,
                          minlength=rows_q * ng).reshape(rows_q, ng)
        jaccard = 1.0 - num / (2.0 - num)
        final[s:s + rows_q] = jaccard * (1 - lambda_value) + original[s:s + rows_q] * lambda_value
    return final
