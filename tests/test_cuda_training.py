"""The training step on CUDA never waits for the device (``torch.cuda.set_sync_debug_mode``), the
epoch reads the losses only at its log points, and MODEL.CHANNELS_LAST auto / MODEL.TF32 act on a
CUDA run. Skipped without CUDA (``make bench-gpu`` runs them)."""
import warnings

import pytest
import torch

from engine.trainer import Trainer
from tests.test_training import tiny_cfg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def _keep_tf32_switches():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    torch.cuda.set_sync_debug_mode(0)


def cuda_trainer(root, out, *extra):
    """CPU-decoded (pinned) batches, gradient clipping and the center loss: every part of a step."""
    return Trainer(tiny_cfg(root, out, "MODEL.DEVICE", "cuda", "DATA.DECODE_DEVICE", "cpu", "SOLVER.GRAD_CLIP", "5.0",
                            "LOSS.CENTER_WEIGHT", "0.0005", *extra))


@pytest.mark.parametrize("amp", ["False", "True"], ids=["fp32", "bf16"])
def test_train_step_never_waits_for_the_device(tiny_mars, tmp_path, amp):
    trainer = cuda_trainer(tiny_mars[0], tmp_path / "run", "SOLVER.AMP", amp, "SOLVER.AMP_DTYPE", "bfloat16")
    batches = [b for _, b in zip(range(3), trainer._batches())] * 2
    assert batches[0][0].is_pinned() and batches[0][1].is_pinned()
    dev = trainer.device

    def step(batch):
        return trainer.train_step(batch[0].to(dev, non_blocking=True), batch[1].to(dev, non_blocking=True))
    trainer.model.train()
    step(batches[0])                  # first step: cuDNN / cuBLAS handles, optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches[1:4]:
            parts = step(batch)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert {"loss", "ce", "triplet", "center"} <= set(parts)
    assert all(v.device.type == "cuda" and torch.isfinite(v) for v in parts.values())


def test_epoch_reads_the_losses_only_at_log_points(tiny_mars, tmp_path):
    """The number of synchronising calls in an epoch does not grow with its steps."""
    from engine.benchmarks.train_step import Preloaded
    trainer = cuda_trainer(tiny_mars[0], tmp_path / "run", "SOLVER.LOG_PERIOD", "1000")
    batches = [b for _, b in zip(range(2), trainer._batches())] * 3

    def syncs(n):
        trainer.task.train_loader, trainer.iters_per_epoch = Preloaded(batches[:n]), n
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                trainer.train_epoch(0)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(w.message) for w in caught)
    syncs(2)                          # warm-up
    few, many = syncs(2), syncs(6)
    assert few == many and few <= 4, (few, many)


def test_channels_last_and_tf32_on_a_cuda_run(tiny_mars, tmp_path):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    trainer = cuda_trainer(tiny_mars[0], tmp_path / "run")              # MODEL.CHANNELS_LAST auto, TF32 on
    assert trainer.model.backbone.channels_last
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    plain = cuda_trainer(tiny_mars[0], tmp_path / "plain", "MODEL.CHANNELS_LAST", "False", "MODEL.TF32", "False")
    assert not plain.model.backbone.channels_last
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
