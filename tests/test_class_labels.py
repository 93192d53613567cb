"""A user's video folder: validation labels follow the TRAINING classes by name (issue 9, item 2).

train {apple, banana, cherry}, val {apple, cherry}: cherry must be label 2 in training, testing
(classes from the checkpoint) and the per-class report; banana shows "no test videos"; a val class
that training did not have is a one-line error before anything trains."""
import csv
import os
import shutil

import numpy as np
import pytest
import torch

from datasets.synthetic_action import render_clip, write_avi
from datasets.video_folder import UnknownClassError, VideoFolder, relabel
from engine.config import load_config
from engine.evaluate import run_test
from engine.trainer import Trainer

CFG = os.path.join(os.path.dirname(__file__), "..", "configs", "demo_ucf101_tsn_r18.yaml")
FRUIT = ["apple", "banana", "cherry"]


def write_folder(root, split, classes, per_class):
    rng = np.random.default_rng(len(classes))
    for name in classes:
        os.makedirs(os.path.join(root, split, name))
        for i in range(per_class):
            write_avi(os.path.join(root, split, name, f"{name}_{i}.avi"),
                      render_clip(FRUIT.index(name) % 2, 2, rng, num_frames=6, size=32))


@pytest.fixture(scope="module")
def fruit(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fruit"))
    write_folder(root, "train", FRUIT, 4)
    write_folder(root, "val", ["apple", "cherry"], 2)
    return root


def overrides(root, out):
    return ["DATA.DATASET", "video_folder", "DATA.ROOT", root, "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCHS", "1",
            "DATA.SEQ_LEN", "2", "DATA.CROP_SIZE", "32", "DATA.SHORT_SIDE", "32", "DATA.BATCH_SIZE", "4",
            "DATA.NUM_WORKERS", "0", "TEST.NUM_CLIPS", "1"]


def test_relabel_maps_by_name():
    samples = [("a.avi", 0), ("c.avi", 1)]
    assert relabel(samples, ["apple", "cherry"], FRUIT) == [("a.avi", 0), ("c.avi", 2)]
    with pytest.raises(UnknownClassError, match=r"'durian'.*training classes: apple, banana, cherry"):
        relabel([("d.avi", 0)], ["durian"], FRUIT, "val")


def test_val_labels_follow_training_classes_end_to_end(fruit, tmp_path, capsys):
    torch.set_num_threads(1)
    val = os.path.join(fruit, "val")
    cherry = sorted(p for p, _ in VideoFolder(val).samples if "/cherry/" in p)
    trainer = Trainer(load_config(CFG, overrides(fruit, tmp_path / "run")))
    assert trainer.task.classes == FRUIT
    assert {p: y for p, y in trainer.task.test_loader.dataset.samples if "/cherry/" in p} == dict.fromkeys(cherry, 2)
    trainer.fit()
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pth", weights_only=True)["classes"] == FRUIT

    # testing takes the classes from the checkpoint: it needs neither train/ nor its banana folder
    os.rename(os.path.join(fruit, "train"), os.path.join(fruit, "train.away"))
    try:
        capsys.readouterr()
        tested = run_test(CFG, str(tmp_path / "run" / "checkpoints" / "last.pth"), overrides(fruit, tmp_path / "test"))
    finally:
        os.rename(os.path.join(fruit, "train.away"), os.path.join(fruit, "train"))
    printed = capsys.readouterr().out
    assert tested["num_videos"] == 4
    rows = {r["class"]: r for r in csv.DictReader(open(tested["per_class_csv"]))}
    assert [(r["class_id"], r["videos"]) for r in rows.values()] == [("0", "2"), ("1", "0"), ("2", "2")]
    assert rows["banana"]["top1"] == ""
    assert [line.split()[:2] for line in printed.splitlines() if line.split()[:1] == ["banana"]] == [["banana", "0"]]
    assert any(line.split() == ["banana", "0", "no", "test", "videos"] for line in printed.splitlines())


def test_unknown_val_class_is_a_one_line_error_before_training(fruit, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(fruit, bad)
    os.rename(bad / "val" / "cherry", bad / "val" / "durian")
    with pytest.raises(UnknownClassError) as err:
        Trainer(load_config(CFG, overrides(str(bad), tmp_path / "run")))
    message = str(err.value)
    assert "\n" not in message and "'durian'" in message and "apple, banana, cherry" in message
    assert not os.path.exists(tmp_path / "run" / "checkpoints")
