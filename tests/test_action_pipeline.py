"""Action recognition end to end on a tiny synthetic UCF101: train, test, infer."""
import json
import os

import pytest
import torch

from engine.config import load_config
from engine.evaluate import run_test
from engine.infer import infer_videos
from engine.trainer import Trainer

pytestmark = pytest.mark.slow
CFG = os.path.join(os.path.dirname(__file__), "..", "configs", "demo_ucf101_tsn_r18.yaml")


@pytest.fixture(scope="module")
def tiny_ucf(tmp_path_factory):
    from datasets.synthetic import write_synthetic_ucf101
    root = str(tmp_path_factory.mktemp("ucf"))
    write_synthetic_ucf101(root, num_classes=3, videos_per_class=8, num_groups=4, num_frames=12, size=32)
    return root


def overrides(root, out):
    return ["DATA.ROOT", root, "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCHS", "1", "DATA.SEQ_LEN", "4",
            "DATA.CROP_SIZE", "32", "DATA.SHORT_SIDE", "32", "DATA.BATCH_SIZE", "4", "DATA.NUM_WORKERS", "0",
            "TEST.NUM_CLIPS", "2", "TEST.NUM_CROPS", "1"]


def test_train_test_infer(tiny_ucf, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    trainer = Trainer(load_config(CFG, overrides(tiny_ucf, out)))
    assert trainer.task.num_classes == 3
    metrics = trainer.fit()
    assert set(metrics) >= {"top1", "top5", "mean_class_acc"} and 0 <= metrics["top1"] <= 1
    assert metrics["num_views"] == 2
    saved = json.load(open(out / "metrics.json"))
    assert saved["top1"] == metrics["top1"]
    ckpt = str(out / "checkpoints" / "last.pth")
    again = run_test(CFG, ckpt, overrides(tiny_ucf, tmp_path / "test"))
    assert again["top1"] == pytest.approx(metrics["top1"])  # same weights, same deterministic test views

    videos = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(tiny_ucf) for f in fs if f.endswith(".avi"))[:2]
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video at all")
    res = infer_videos(CFG, ckpt, videos + [str(broken)], str(tmp_path / "results.json"),
                       overrides(tiny_ucf, tmp_path / "infer"), num_windows=3, topk=2)
    assert json.load(open(tmp_path / "results.json")) == res
    ok = res[0]
    assert ok["path"] == videos[0] and len(ok["windows"]) == 3 and len(ok["video_topk"]) == 2
    w = ok["windows"][0]
    assert 0 <= w["start"] < w["end"] and w["topk"][0][0] in trainer.task.classes
    assert abs(sum(s for _, s in ok["video_topk"]) - 1) <= 1 and ok["video_topk"][0][1] >= ok["video_topk"][1][1]
    assert "error" in res[2] and res[2]["path"] == str(broken)
