import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from engine.metrics import evaluate_reid, summarize_reid
from engine.benchmarks.reid_eval import reference_re_ranking  # the widely copied loop form
from engine.rerank import re_ranking


def brute_force(dist, qp, gp, qc, gc, max_rank=50):
    """Per-query loop: the protocol written out plainly (ties ranked pessimistically)."""
    aps, cmcs, inps = [], [], []
    for i in range(len(qp)):
        keep = ~((gp == qp[i]) & (gc == qc[i]))
        d, match = dist[i][keep], gp[keep] == qp[i]
        if not match.any():
            continue
        ranks = np.array([(d <= x).sum() for x in d[match]])
        pos_le = np.array([(d[match] <= x).sum() for x in d[match]])
        aps.append(np.mean(pos_le / ranks))
        cmc = np.zeros(max_rank)
        if ranks.min() <= max_rank:
            cmc[ranks.min() - 1:] = 1
        cmcs.append(cmc)
        inps.append(match.sum() / ranks.max())
    return np.mean(aps), np.mean(cmcs, 0), np.mean(inps)


def random_case(rng, nq=23, ng=157, ids=7, cams=3, ties=True):
    dist = (rng.integers(0, 15, (nq, ng)) if ties else rng.random((nq, ng))).astype(np.float32)
    return dist, rng.integers(0, ids, nq), rng.integers(0, ids, ng), rng.integers(0, cams, nq), rng.integers(0, cams, ng)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [True, False])
def test_against_brute_force_and_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    dist, qp, gp, qc, gc = random_case(rng, ties=ties)
    r = evaluate_reid(dist, qp, gp, qc, gc, max_rank=20)
    ap, cmc, inp = brute_force(dist, qp, gp, qc, gc, max_rank=20)
    assert r["mAP"] == pytest.approx(ap, abs=1e-12)
    np.testing.assert_allclose(r["cmc"], cmc, atol=1e-12)
    assert r["mINP"] == pytest.approx(inp, abs=1e-12)
    for i in range(len(qp)):  # per-query AP equals scikit-learn's, ties included
        keep = ~((gp == qp[i]) & (gc == qc[i]))
        match = gp[keep] == qp[i]
        if match.any():
            assert r["ap"][i] == pytest.approx(average_precision_score(match, -dist[i][keep]), abs=1e-12)
        else:
            assert np.isnan(r["ap"][i])


def test_hand_computed_case():
    # one query (pid 1, cam 0); gallery sorted by distance: [pid1 cam0 (junk), pid2, pid1 cam1, pid3, pid1 cam2]
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    g_pids, g_cams = np.array([1, 2, 1, 3, 1]), np.array([0, 1, 1, 0, 2])
    r = evaluate_reid(dist, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=4)
    # valid ranking: pid2, pid1(c1) hit at 2, pid3, pid1(c2) hit at 4 -> AP = (1/2 + 2/4) / 2
    assert r["mAP"] == pytest.approx(0.5)
    np.testing.assert_allclose(r["cmc"], [0, 1, 1, 1])
    assert r["mINP"] == pytest.approx(2 / 4)
    s = summarize_reid(r, ranks=(1, 4))
    assert s == {"mAP": 0.5, "rank1": 0.0, "rank4": 1.0, "mINP": 0.5}


def test_same_camera_matches_are_ignored_and_queries_without_match_skipped():
    dist = np.array([[0.1, 0.9], [0.5, 0.2]], dtype=np.float32)
    # query 0 only matches in its own camera -> skipped; query 1 matches at rank 1
    r = evaluate_reid(dist, np.array([0, 1]), np.array([0, 1]), np.array([0, 0]), np.array([0, 1]), max_rank=2)
    assert r["num_valid_queries"] == 1 and np.isnan(r["ap"][0])
    assert r["mAP"] == 1.0 and r["cmc"][0] == 1.0
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_reid(dist, np.array([5, 6]), np.array([0, 1]), np.array([0, 0]), np.array([0, 1]))


def test_chunking_does_not_change_results(monkeypatch):
    import engine.metrics as m
    rng = np.random.default_rng(3)
    dist, qp, gp, qc, gc = random_case(rng, nq=50, ng=80)
    full = evaluate_reid(dist, qp, gp, qc, gc)
    monkeypatch.setattr(m, "_CHUNK_ELEMS", 160)  # 2 queries per chunk
    chunked = evaluate_reid(dist, qp, gp, qc, gc)
    assert full["mAP"] == chunked["mAP"] and np.array_equal(full["cmc"], chunked["cmc"])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="distmat is 2x3"):
        evaluate_reid(np.zeros((2, 3)), [0, 1], [0, 1], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_reid(np.full((1, 2), np.nan), [0], [0, 1], [0], [1, 1])


@pytest.mark.parametrize("nq,ng,k1,k2", [(12, 50, 20, 6), (9, 40, 6, 3), (10, 30, 8, 1)])
def test_re_ranking_matches_reference(nq, ng, k1, k2):
    rng = np.random.default_rng(nq)
    f = rng.normal(size=(nq + ng, 8)).astype(np.float32)
    d = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1)).astype(np.float32)
    ours = re_ranking(d[:nq, nq:], d[:nq, :nq], d[nq:, nq:], k1, k2, query_chunk=4)
    ref = reference_re_ranking(d[:nq, nq:], d[:nq, :nq], d[nq:, nq:], k1, k2)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
