"""End-to-end training: exact resume, atomic checkpoints and DDP (2-process gloo) semantics."""
import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from engine.build import build_reid_data, build_scheduler
from engine.checkpoint import atomic_save
from engine.config import load_config
from engine.errors import RunFolderError
from engine.trainer import Trainer

pytestmark = pytest.mark.slow

TINY = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME", "resnet18", "DATA.HEIGHT", "32", "DATA.WIDTH", "16",
        "DATA.PADDING", "2", "DATA.NUM_IDS", "4", "DATA.NUM_INSTANCES", "2", "DATA.NUM_WORKERS", "0",
        "SOLVER.WARMUP_EPOCHS", "1", "SOLVER.SCHEDULER", "cosine", "SOLVER.EVAL_PERIOD", "0",
        "TEST.BATCH_SIZE", "16"]


def tiny_cfg(root, out, *extra):
    return load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "_base_", "mars.yaml"),
                       TINY + ["DATA.ROOT", root, "OUTPUT_DIR", str(out), *extra])


def _assert_same_tensors(a, b, where=""):
    """Nested dicts/lists of tensors and plain values: bit-identical."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("extra", [[], ["LOSS.CENTER_WEIGHT", "0.0005"]], ids=["plain", "center-loss"])
def test_resume_is_exact(tiny_mars, tmp_path, extra):
    root, _ = tiny_mars
    torch.set_num_threads(1)
    straight = Trainer(tiny_cfg(root, tmp_path / "a", "SOLVER.MAX_EPOCHS", "2", *extra))
    metrics = straight.fit()
    assert set(metrics) >= {"mAP", "rank1", "rank5", "rank10", "rank20", "mINP"}
    assert os.path.isfile(tmp_path / "a" / "metrics.json") and os.path.isfile(tmp_path / "a" / "config.yaml")
    first = Trainer(tiny_cfg(root, tmp_path / "b", "SOLVER.MAX_EPOCHS", "2", *extra))
    first.fit(stop_after=1)
    ckpt = str(tmp_path / "b" / "checkpoints" / "last.pth")
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    resumed = Trainer(tiny_cfg(root, tmp_path / "b", "SOLVER.MAX_EPOCHS", "2", *extra), resume=ckpt)
    assert resumed.start_epoch == 1
    resumed.fit()
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for key in ("criterion", "optimizer", "scheduler", "scaler"):
        _assert_same_tensors(a[key], b[key], key)
    same = [k for k in metrics if "seconds" not in k]
    assert [a["metrics"][k] for k in same] == [b["metrics"][k] for k in same]
    if extra:
        assert a["criterion"]["center.centers"].shape == (8, 512)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 AMP (a live GradScaler) needs CUDA")
def test_resume_keeps_the_float16_grad_scaler_state(tiny_mars, tmp_path):
    root, _ = tiny_mars
    amp = ["MODEL.DEVICE", "cuda", "SOLVER.AMP", "True", "SOLVER.AMP_DTYPE", "float16", "SOLVER.MAX_EPOCHS", "2"]
    Trainer(tiny_cfg(root, tmp_path / "a", *amp)).fit()
    Trainer(tiny_cfg(root, tmp_path / "b", *amp)).fit(stop_after=1)
    ckpt = str(tmp_path / "b" / "checkpoints" / "last.pth")
    assert torch.load(ckpt, weights_only=True)["scaler"]["_growth_tracker"] > 0
    Trainer(tiny_cfg(root, tmp_path / "b", *amp), resume=ckpt).fit()
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pth", weights_only=True)
    assert a["scaler"] == b["scaler"] and a["scaler"]["scale"] > 0
    for k in a["model"]:   # cuDNN kernels need not be deterministic: close, not bit-equal
        assert torch.allclose(a["model"][k].float(), b["model"][k].float(), rtol=1e-3, atol=1e-4), k


def test_last_epoch_survives_an_evaluation_crash(tiny_mars, tmp_path, monkeypatch):
    """last.pth is written before the evaluation; resuming it runs the evaluation that crashed."""
    root, _ = tiny_mars
    torch.set_num_threads(1)
    trainer = Trainer(tiny_cfg(root, tmp_path, "SOLVER.MAX_EPOCHS", "1"))

    def crash():
        raise RuntimeError("evaluation crashed")

    monkeypatch.setattr(trainer, "evaluate", crash)
    with pytest.raises(RuntimeError, match="evaluation crashed"):
        trainer.fit()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["pending_eval"] and not os.path.exists(tmp_path / "metrics.json")
    resumed = Trainer(tiny_cfg(root, tmp_path, "SOLVER.MAX_EPOCHS", "1"), resume=str(tmp_path / "checkpoints" / "last.pth"))
    metrics = resumed.fit()
    assert "mAP" in metrics and os.path.isfile(tmp_path / "metrics.json")
    after = torch.load(tmp_path / "checkpoints" / "last.pth", weights_only=True)
    assert not after["pending_eval"] and after["metrics"] == metrics
    for k in ckpt["model"]:
        assert torch.equal(ckpt["model"][k], after["model"][k]), k   # evaluated, not trained again
    assert os.path.isfile(tmp_path / "checkpoints" / "best.pth")


def _fake_run(folder):
    """An earlier run's files, with contents to compare byte for byte."""
    (folder / "checkpoints").mkdir(parents=True)
    files = {"checkpoints/last.pth": b"last", "checkpoints/best.pth": b"best", "metrics.json": b'{"mAP": 0.384}',
             "config.yaml": b"OUTPUT_DIR: x\n", "log.txt": b"epoch 4\n"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _contents(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerunning_a_config_keeps_the_first_run(tiny_mars, tmp_path):
    root, _ = tiny_mars
    files = _fake_run(tmp_path / "run")
    before = _contents(tmp_path / "run")
    assert before == files
    cfg = tiny_cfg(root, tmp_path / "run", "SOLVER.MAX_EPOCHS", "1")
    with pytest.raises(RunFolderError, match=r"already holds a run .*--resume .*last.pth.*--overwrite"):
        Trainer(cfg)
    other = tmp_path / "elsewhere.pth"          # another run's checkpoint does not continue this one
    torch.save({"model": {}, "epoch": 1}, other)
    with pytest.raises(RunFolderError):
        Trainer(cfg, resume=str(other))
    assert _contents(tmp_path / "run") == before
    Trainer(cfg, overwrite=True)                # explicit: the earlier run's checkpoints and metrics go
    left = _contents(tmp_path / "run")
    assert not any(name.startswith("checkpoints/") for name in left) and "metrics.json" not in left
    assert left["config.yaml"] != files["config.yaml"]


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = str(tmp_path / "last.pth")
    atomic_save({"v": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"v": Boom()}, path)
    assert torch.load(path, weights_only=True)["v"] == 1
    assert [f for f in os.listdir(tmp_path)] == ["last.pth"]  # no temporary file left behind


DDP_EXTRA = ["SOLVER.MAX_EPOCHS", "2", "DATA.TRAIN_SAMPLE", "evenly", "DATA.FLIP_PROB", "0.0",
             "DATA.PADDING", "0", "DATA.ERASING_PROB", "0.0", "SOLVER.SCHEDULER", "step",
             "SOLVER.OPTIMIZER", "sgd", "SOLVER.BASE_LR", "0.01"]  # SGD: linear in the gradient, so
# summation-order noise stays at float precision (Adam amplifies it on near-zero gradients)


def _ddp_worker(rank, root, out, port):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    Trainer(tiny_cfg(root, out, *DDP_EXTRA)).fit()
    torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_process_gloo_matches_single_process_emulation(tiny_mars, tmp_path):
    root, _ = tiny_mars
    mp.spawn(_ddp_worker, args=(root, str(tmp_path / "ddp"), _free_port()), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pth", weights_only=True)["model"]

    # The same two rank-local batches per step in one process: gradients averaged (all-reduce),
    # BN buffers taken from rank 0 (DDP broadcasts them at every forward).
    torch.set_num_threads(1)
    cfg = tiny_cfg(root, tmp_path / "emu", *DDP_EXTRA)
    t = Trainer(cfg)
    model_a = t.model
    model_b = copy.deepcopy(model_a)
    loaders = [build_reid_data(cfg, r, 2)[1] for r in range(2)]
    scheduler = build_scheduler(cfg, t.optimizer, len(loaders[0]))  # iterations per rank, as under DDP
    model_a.train()
    model_b.train()
    steps = 0
    for epoch in range(2):
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        for b0, b1 in zip(*loaders):
            model_b.load_state_dict(model_a.state_dict())
            grads = []
            for model, batch in ((model_a, b0), (model_b, b1)):
                model.zero_grad(set_to_none=True)
                loss, _ = t.criterion(model(batch[0]), batch[1])
                loss.backward()
                grads.append([p.grad for p in model.parameters()])
            for p, g0, g1 in zip(model_a.parameters(), *grads):
                if g0 is not None:
                    p.grad = (g0 + g1) / 2
            t.optimizer.step()
            scheduler.step()
            steps += 1
    assert steps >= 2
    for k, v in model_a.state_dict().items():
        assert torch.allclose(ddp[k].float(), v.float(), atol=1e-4, rtol=1e-3), k


def _ddp_center_worker(rank, root, out, port):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    trainer = Trainer(tiny_cfg(root, out, *DDP_EXTRA, "SOLVER.MAX_EPOCHS", "3", "LOSS.CENTER_WEIGHT", "1.0",
                               "SOLVER.BASE_LR", "0.1", "SOLVER.EVAL_PERIOD", "0"))
    for epoch in range(3):
        trainer.train_epoch(epoch)
    torch.save(trainer.criterion.state_dict(), os.path.join(out, f"criterion{rank}.pth"))
    torch.distributed.destroy_process_group()


def test_ddp_center_loss_centres_stay_equal_on_every_rank(tiny_mars, tmp_path):
    """The centres live in the criterion, outside the DDP model: their gradients are averaged
    over the ranks too, so every rank optimises the same centres (they drifted apart before)."""
    root, _ = tiny_mars
    mp.spawn(_ddp_center_worker, args=(root, str(tmp_path), _free_port()), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"criterion{r}.pth", weights_only=True) for r in range(2))
    assert a.keys() == b.keys() and any("center" in k for k in a)
    init = Trainer(tiny_cfg(root, tmp_path / "init", "LOSS.CENTER_WEIGHT", "1.0")).criterion.state_dict()
    for k in a:
        assert not torch.equal(a[k], init[k]), k          # the centres did train
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_evaluation_needs_no_training_loader(tiny_mars, tmp_path):
    """tools/test.py builds only the query/gallery data: a P larger than the training identities
    (8 here) and a checkpoint trained on another number of identities (5) do not matter."""
    from engine.build import build_model
    from engine.checkpoint import save_checkpoint
    from engine.evaluate import run_test
    root, _ = tiny_mars
    cfg = tiny_cfg(root, tmp_path / "run")
    model = build_model(cfg, 5)
    save_checkpoint(str(tmp_path / "c.pth"), model, torch.optim.SGD(model.parameters(), lr=0.1), None, 1, cfg)
    config = os.path.join(os.path.dirname(__file__), "..", "configs", "_base_", "mars.yaml")
    metrics = run_test(config, str(tmp_path / "c.pth"), TINY + ["DATA.ROOT", root, "OUTPUT_DIR", str(tmp_path / "run"),
                                                                 "DATA.NUM_IDS", "16"])
    assert 0 <= metrics["mAP"] <= 1 and os.path.isfile(tmp_path / "run" / "metrics.json")
