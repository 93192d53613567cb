"""The per-class part of an action test: accuracy table, confusion matrix PNG, TensorBoard image."""
from __future__ import annotations

import csv
import io
import os

import numpy as np

from .action_metrics import aggregate_views, confusion_matrix, per_class_accuracy
from .files import atomic_write
from .visualize import draw_confusion_matrix


def format_per_class(classes, accuracy: np.ndarray, counts: np.ndarray, worst: int | None = None) -> str:
    """Classes sorted worst first (all of them, or the ``worst`` lowest), then the classes without
    a test video, each marked "no test videos"."""
    order = [i for i in np.argsort(accuracy, kind="stable") if counts[i] > 0][:worst]
    absent = [i for i in range(len(classes)) if counts[i] == 0]
    width = max([len("class"), *(len(str(classes[i])) for i in order + absent)])
    lines = [f"{'class':<{width}} {'videos':>6} {'top1':>6}", "-" * (width + 14)]
    lines += [f"{classes[i]:<{width}} {counts[i]:>6d} {100 * accuracy[i]:6.1f}" for i in order]
    lines += [f"{classes[i]:<{width}} {0:>6d}   no test videos" for i in absent]
    return "\n".join(lines)


def write_action_report(scores, labels, classes, output_dir: str, show_worst: int = 10) -> dict:
    """``scores`` (N, K) or (N, V, K) view scores, ``labels`` (N,). Writes ``per_class_accuracy.csv``
    and ``confusion_matrix.png`` into ``output_dir``, logs the picture to TensorBoard (``tb``,
    tag ``test/confusion_matrix``), prints the worst classes; returns the paths."""
    scores = np.asarray(scores)
    if scores.ndim == 3:
        scores = aggregate_views(scores)
    labels = np.asarray(labels)
    classes = list(classes) if classes else [str(i) for i in range(scores.shape[1])]
    accuracy = per_class_accuracy(scores, labels)
    counts = np.bincount(labels, minlength=scores.shape[1])
    cm = confusion_matrix(scores, labels, num_classes=scores.shape[1])
    os.makedirs(output_dir, exist_ok=True)
    csv_path = os.path.join(output_dir, "per_class_accuracy.csv")
    text = io.StringIO()
    out = csv.writer(text)
    out.writerow(["class_id", "class", "videos", "correct", "top1"])
    for i, name in enumerate(classes):
        out.writerow([i, name, int(counts[i]), int(cm[i, i]), "" if counts[i] == 0 else f"{accuracy[i]:.4f}"])
    atomic_write(csv_path, lambda f: f.write(text.getvalue().encode("utf-8")))
    png = os.path.join(output_dir, "confusion_matrix.png")
    image = draw_confusion_matrix(cm, classes, png)
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(os.path.join(output_dir, "tb")) as writer:
        writer.add_image("test/confusion_matrix", np.asarray(image), dataformats="HWC")
    shown = None if len(classes) <= 2 * show_worst else show_worst
    print(("per-class accuracy" if shown is None else f"the {shown} worst classes") + f" (all in {csv_path}):")
    print(format_per_class(classes, accuracy, counts, shown))
    return {"per_class_csv": csv_path, "confusion_png": png}
