"""Action metrics against hand-computed cases, explicit loops and scikit-learn."""
import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

from engine.action_metrics import (aggregate_views, confusion_matrix, evaluate_action, mean_class_accuracy,
                                   per_class_accuracy, topk_accuracy)

# 4 videos, 6 classes; true-class ranks (0-based): 0, 2, 5, 1
SCORES = np.array([[0.9, 0.1, 0.0, 0.0, 0.0, 0.0],
                   [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
                   [0.1, 0.2, 0.3, 0.4, 0.5, 0.0],
                   [0.2, 0.7, 0.1, 0.0, 0.0, 0.0]])
LABELS = np.array([0, 2, 5, 0])


def test_topk_by_hand():
    assert topk_accuracy(SCORES, LABELS, ks=(1, 2, 3, 5, 6, 10)) == {1: 0.25, 2: 0.5, 3: 0.75, 5: 0.75, 6: 1.0, 10: 1.0}
    assert topk_accuracy(torch.tensor(SCORES), torch.tensor(LABELS), ks=(1,)) == {1: 0.25}


def test_ties_count_in_the_videos_favour_and_nan_is_a_miss():
    tied = np.array([[0.5, 0.5, 0.1], [0.2, 0.2, 0.2]])
    assert topk_accuracy(tied, [1, 2], ks=(1,)) == {1: 1.0}
    assert topk_accuracy(np.array([[np.nan, 0.1], [0.3, np.nan]]), [0, 0], ks=(1, 2)) == {1: 0.5, 2: 0.5}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_topk_and_mean_class_accuracy_match_sklearn():
    rng = np.random.default_rng(0)
    scores, labels = rng.random((200, 10)), rng.integers(0, 10, 200)
    labels[labels == 7] = 3                                      # a class with no video: excluded from the mean
    top = topk_accuracy(scores, labels, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert top[k] == pytest.approx(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(10)))
    assert mean_class_accuracy(scores, labels) == pytest.approx(balanced_accuracy_score(labels, scores.argmax(1)))


def test_mean_class_accuracy_by_hand():
    # class 0: 1 of 2 right (video 0 yes, video 3 no); class 2: 0 of 1; class 5: 0 of 1 -> (0.5 + 0 + 0) / 3
    assert mean_class_accuracy(SCORES, LABELS) == pytest.approx(0.5 / 3)
    per_class = per_class_accuracy(SCORES, LABELS)
    assert per_class[[0, 2, 5]] == pytest.approx([0.5, 0.0, 0.0])
    assert np.isnan(np.delete(per_class, [0, 2, 5])).all()         # classes with no video: NaN, not 0


def test_confusion_matrix_against_loops():
    rng = np.random.default_rng(1)
    scores, labels = rng.random((50, 4)), rng.integers(0, 4, 50)
    want = np.zeros((5, 5), dtype=np.int64)
    for y, s in zip(labels, scores):
        want[y, int(np.argmax(s))] += 1
    got = confusion_matrix(torch.tensor(scores), labels, num_classes=5)
    assert got.shape == (5, 5) and np.array_equal(got, want)
    assert np.array_equal(confusion_matrix(scores.argmax(1), labels, num_classes=5), want)
    rows = confusion_matrix(scores, labels, normalize="true")
    np.testing.assert_allclose(rows.sum(1), 1.0)


def test_aggregate_views_against_loops():
    rng = np.random.default_rng(2)
    views = rng.normal(size=(3, 4, 5))
    mean = np.array([[sum(views[n, v, k] for v in range(4)) / 4 for k in range(5)] for n in range(3)])
    peak = np.array([[max(views[n, v, k] for v in range(4)) for k in range(5)] for n in range(3)])
    np.testing.assert_allclose(aggregate_views(views, "mean"), mean)
    np.testing.assert_allclose(aggregate_views(views, "max"), peak)
    probs = np.exp(views) / np.exp(views).sum(-1, keepdims=True)
    np.testing.assert_allclose(aggregate_views(views, "mean", softmax=True), probs.mean(1))
    out = aggregate_views(torch.tensor(views, dtype=torch.float32), "max")
    assert isinstance(out, torch.Tensor) and torch.allclose(out, torch.tensor(peak, dtype=torch.float32))
    with pytest.raises(ValueError):
        aggregate_views(views, "median")
    with pytest.raises(ValueError):
        aggregate_views(views[0], "mean")


def test_evaluate_action_keys_and_views():
    result = evaluate_action(SCORES, LABELS)
    assert result == pytest.approx({"top1": 0.25, "top5": 0.75, "mean_class_acc": 0.5 / 3})
    # two views whose mean is SCORES: the second view alone would be all wrong
    noise = np.random.default_rng(3).normal(size=SCORES.shape)
    two_views = np.stack([SCORES + noise, SCORES - noise], axis=1)
    assert evaluate_action(two_views, LABELS) == pytest.approx(result)
    assert all(0.0 <= v <= 1.0 for v in result.values())


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="labels must lie"):
        topk_accuracy(SCORES, [0, 1, 2, 6])
    with pytest.raises(ValueError, match="expected scores"):
        topk_accuracy(SCORES, [0, 1])
