"""Sharded evaluation under DDP (2-process gloo): every rank extracts its share of the query /
gallery tracklets (re-ID) or test videos (action), the shares are gathered, and the metrics equal
those of one process evaluating everything."""
import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.build import build_model
from engine.config import load_config
from engine.tasks import build_task
from tests.test_training import _free_port

pytestmark = pytest.mark.slow
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
REID = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME", "resnet18", "DATA.HEIGHT", "32", "DATA.WIDTH", "16",
        "DATA.NUM_IDS", "4", "DATA.NUM_INSTANCES", "2", "DATA.NUM_WORKERS", "0", "TEST.BATCH_SIZE", "8"]
ACTION = ["MODEL.DEVICE", "cpu", "DATA.SEQ_LEN", "4", "DATA.CROP_SIZE", "32", "DATA.SHORT_SIDE", "32",
          "DATA.BATCH_SIZE", "3", "DATA.NUM_WORKERS", "0", "TEST.NUM_CLIPS", "2"]


def config(task, root, out):
    if task == "reid":
        return load_config(os.path.join(CONFIGS, "_base_", "mars.yaml"), REID + ["DATA.ROOT", root, "OUTPUT_DIR", out])
    return load_config(os.path.join(CONFIGS, "demo_ucf101_tsn_r18.yaml"), ACTION + ["DATA.ROOT", root, "OUTPUT_DIR", out])


def evaluate(task_name, root, out, rank=0, world=1):
    """(metrics, number of test items this rank read, details) of a fixed random model."""
    cfg = config(task_name, root, out)
    task = build_task(cfg, rank, world)
    torch.manual_seed(0)
    model = build_model(cfg, task.num_classes)
    metrics = task.evaluate(model, torch.device("cpu"))
    loaders = [task.query_loader, task.gallery_loader] if task_name == "reid" else [task.test_loader]
    return metrics, sum(len(loader.sampler) for loader in loaders), task.last_details


def _worker(rank, task_name, root, out, port):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    metrics, items, details = evaluate(task_name, root, out, rank, 2)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"metrics": metrics, "items": items, "details": details is not None}, f)
    if details is not None:
        np.savez(os.path.join(out, "details.npz"), **{k: v for k, v in details.items() if isinstance(v, np.ndarray)})
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def tiny_ucf(tmp_path_factory):
    from datasets.synthetic import write_synthetic_ucf101
    root = str(tmp_path_factory.mktemp("ucf"))
    write_synthetic_ucf101(root, num_classes=3, videos_per_class=5, num_groups=5, num_frames=12, size=32)
    return root


@pytest.mark.parametrize("task_name", ["reid", "action"])
def test_two_ranks_give_the_single_process_metrics(task_name, tiny_mars, tiny_ucf, tmp_path):
    root = tiny_mars[0] if task_name == "reid" else tiny_ucf
    torch.set_num_threads(1)
    single, total, details = evaluate(task_name, root, str(tmp_path / "single"))
    out = str(tmp_path / "ddp")
    os.makedirs(out)
    mp.spawn(_worker, args=(task_name, root, out, _free_port()), nprocs=2, join=True)
    ranks = [json.load(open(os.path.join(out, f"rank{r}.json"))) for r in range(2)]
    # each rank read a proper share, together everything once
    assert all(0 < r["items"] < total for r in ranks) and sum(r["items"] for r in ranks) == total
    assert [r["details"] for r in ranks] == [True, False]
    for r in ranks:                                            # every rank returns rank 0's metrics
        assert r["metrics"].keys() == single.keys()
        for k, v in single.items():
            if not k.endswith("seconds"):
                assert r["metrics"][k] == pytest.approx(v, abs=1e-6), k
    gathered = np.load(os.path.join(out, "details.npz"))
    key = "distmat" if task_name == "reid" else "scores"
    assert np.allclose(gathered[key], details[key], atol=1e-5)      # same items in the same order
    for k in ("q_pids", "g_pids", "labels"):
        if k in details:
            assert np.array_equal(gathered[k], details[k]), k
