import itertools

import pytest
import torch
import torch.nn.functional as F

from models.losses import CrossEntropyLabelSmooth, TripletLoss, pairwise_distance


def brute_triplet(feats, labels, margin):
    losses = []
    for a in range(len(labels)):
        pos = [torch.dist(feats[a], feats[p]) for p in range(len(labels)) if labels[p] == labels[a]]
        neg = [torch.dist(feats[a], feats[n]) for n in range(len(labels)) if labels[n] != labels[a]]
        gap = max(pos) - min(neg)
        losses.append(F.relu(gap + margin) if margin > 0 else F.softplus(gap))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("margin", [0.3, 0.0])
def test_batch_hard_triplet(margin):
    feats = torch.randn(12, 5, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    ours = TripletLoss(margin)(feats, labels)
    ref = brute_triplet(feats, labels, margin)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    ours.backward()
    assert feats.grad.abs().sum() > 0


def test_label_smoothing_ce():
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    eps = 0.1
    target = torch.full((6, 4), eps / 4)
    target[range(6), y] += 1 - eps
    ref = -(target * logits.log_softmax(1)).sum(1).mean()
    assert CrossEntropyLabelSmooth(eps)(logits, y).item() == pytest.approx(ref.item(), rel=1e-6)


def test_pairwise_distance():
    x, y = torch.randn(4, 3), torch.randn(5, 3)
    assert torch.allclose(pairwise_distance(x, y), torch.cdist(x, y), atol=1e-5)
    cos = 1 - F.cosine_similarity(x[:, None], y[None], dim=2)
    assert torch.allclose(pairwise_distance(x, y, "cosine"), cos, atol=1e-6)
    for i, j in itertools.product(range(2), range(2)):
        assert pairwise_distance(x[i:i + 1], x[i:i + 1]).item() < 1e-5


@pytest.mark.parametrize("margin", [0.3, 0.0])
def test_triplet_mixed_and_missing_negatives(margin):
    """Anchors without a negative are left out of the mean (by masking, not indexing); a batch of
    one identity gives 0 with a zero gradient."""
    feats = torch.randn(6, 5, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    ours = TripletLoss(margin)(feats, labels)
    assert ours.item() == pytest.approx(brute_triplet(feats, labels, margin).item(), rel=1e-5)
    same = torch.zeros(4, dtype=torch.long)
    one_id = torch.randn(4, 5, requires_grad=True)
    loss = TripletLoss(margin)(one_id, same)
    loss.backward()
    assert loss.item() == 0 and torch.equal(one_id.grad, torch.zeros_like(one_id))
