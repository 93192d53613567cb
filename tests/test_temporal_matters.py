"""Does time matter? A small version of ``tools/benchmark.py temporal``: on data whose two classes
differ only in the order of two coloured flashes, TAM learns the order and TSN average pooling
cannot. Deterministic (seeded data, model and sampling)."""
import os

import pytest
import torch

from engine.benchmarks.temporal import CONFIG, MODELS, train_and_test, write_order_data
from engine.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def order_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("order_ucf"))
    # 2 classes (red then green / green then red), 12 frames: 6 per flash, one TSN segment per flash
    counts = write_order_data(root, videos_per_class=36, num_classes=2, num_frames=12, size=32, seed=0)
    assert counts["train"][0] == 2 * 26 and counts["test"][0] == 2 * 10
    return root


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads can be 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(model: str, root: str, out) -> dict:
    cfg = load_config(CONFIG, ["DATA.ROOT", root, "OUTPUT_DIR", str(out), "DATA.SEQ_LEN", "2",
                               "SOLVER.MAX_EPOCHS", "10", *MODELS[model]])
    return train_and_test(cfg)


def test_tam_learns_order_that_average_pooling_cannot(order_data, tmp_path, one_thread):
    avg = run("avg (TSN)", order_data, tmp_path / "avg")
    tam = run("tam (stages 1-4)", order_data, tmp_path / "tam")
    assert avg["num_classes"] == tam["num_classes"] == 2 and tam["params"] > avg["params"]
    # average pooling sees the same set of frames in every class: chance (50 %), and exactly the
    # same predictions when the clips are played backwards
    assert abs(avg["top1"] - 0.5) <= 0.2, avg
    assert avg["top1_reversed"] == pytest.approx(avg["top1"]), avg
    # TAM reads the order: well above chance, and backwards clips flip its answers (average
    # pooling's score on 20 test clips can drift from 50 % by chance; its reversed score cannot)
    assert tam["top1"] >= 0.8 and tam["top1"] > avg["top1"], (tam, avg)
    assert tam["top1_reversed"] <= 0.3 and tam["top1"] - tam["top1_reversed"] >= 0.5, tam
    assert os.path.isfile(tmp_path / "tam" / "config.yaml")
