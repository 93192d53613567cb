"""Per-class report of an action test: CSV values by hand, confusion picture, TensorBoard image."""
import csv
import glob

import numpy as np
from PIL import Image

from engine.action_report import format_per_class, write_action_report
from engine.visualize import draw_confusion_matrix

# 5 videos, 3 classes, 2 views each; fused (mean) predictions: 0, 1, 1, 2, 0
VIEWS = np.array([[[.9, .1, 0], [.7, .3, 0]],
                  [[.2, .8, 0], [.4, .6, 0]],
                  [[.1, .9, 0], [.6, .2, .2]],      # views disagree: mean (.35, .55, .1) -> 1
                  [[0, .1, .9], [0, .3, .7]],
                  [[.5, 0, .5], [.6, 0, .4]]])
LABELS = np.array([0, 1, 0, 2, 2])


def test_report_files(tmp_path, capsys):
    out = write_action_report(VIEWS, LABELS, ["walk", "run", "jump"], str(tmp_path))
    rows = list(csv.DictReader(open(out["per_class_csv"])))
    assert [(r["class"], r["videos"], r["correct"], r["top1"]) for r in rows] == [
        ("walk", "2", "1", "0.5000"), ("run", "1", "1", "1.0000"), ("jump", "2", "1", "0.5000")]
    img = Image.open(out["confusion_png"])
    assert img.mode == "RGB" and img.width > 3 * 40 and img.height > 3 * 40
    assert glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
    printed = capsys.readouterr().out.splitlines()
    assert printed[-3].startswith("walk") and printed[-1].startswith("run")   # worst first, stable ties


def test_confusion_picture_cells_follow_rates():
    cm = np.array([[4, 0], [1, 3]])
    img = np.asarray(draw_confusion_matrix(cm, ["a", "b"], cell=40))
    left, top = 1 * 6 + 30, 28                                  # heat map sits right of the one-letter labels
    dark = img[top + 5, left + 5].sum()                         # (0, 0): rate 1.0
    empty = img[top + 5, left + 45].sum()                       # (0, 1): rate 0.0 -> white
    quarter = img[top + 45, left + 5].sum()                     # (1, 0): rate 0.25
    assert empty == 3 * 255 - (255 - 247) - (255 - 251) and dark < quarter < empty


def test_format_marks_absent_classes():
    table = format_per_class(["a", "b", "c"], np.array([1.0, np.nan, 0.0]), np.array([2, 0, 1]))
    assert [line.split()[0] for line in table.splitlines()[2:]] == ["c", "a", "b"]
    assert table.splitlines()[-1].split() == ["b", "0", "no", "test", "videos"]
