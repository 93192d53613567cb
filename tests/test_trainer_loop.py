"""The training loop's bookkeeping: loss parts summed on the device and read per log window, and
the share of time spent waiting for data."""
import time

import pytest
import torch

from engine.trainer import LossMeter


def test_loss_meter_window_and_epoch_means():
    meter = LossMeter()
    steps = [{"loss": torch.tensor(float(i)), "ce": torch.tensor(2.0 * i, dtype=torch.bfloat16)} for i in range(5)]
    for s in steps[:2]:
        meter.add(s)
    assert meter.flush() == {"loss": 0.5, "ce": 1.0}
    for s in steps[2:]:
        meter.add(s)
    assert meter.flush() == {"loss": 3.0, "ce": 6.0}
    assert meter.flush() == {}
    assert meter.epoch_means() == {"loss": 2.0, "ce": 4.0}     # over all five steps, not per window
    assert all(isinstance(v, float) for v in meter.epoch_means().values())


class SlowBatches:
    """Stands in for the training loader: the same batches, each after ``delay`` seconds."""

    def __init__(self, batches, delay):
        self.batches, self.delay = batches, delay
        self.sampler = self.dataset = self

    def set_epoch(self, epoch):
        pass

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            time.sleep(self.delay)
            yield b


@pytest.mark.slow
def test_epoch_reports_the_share_of_time_waiting_for_data(tiny_mars, tmp_path):
    from engine.trainer import Trainer
    from tests.test_training import tiny_cfg
    torch.set_num_threads(1)
    trainer = Trainer(tiny_cfg(tiny_mars[0], tmp_path / "run", "SOLVER.MAX_EPOCHS", "1", "SOLVER.LOG_PERIOD", "2"))
    batches = list(trainer.task.train_loader) * 2
    batches = batches[:3]
    trainer.iters_per_epoch = len(batches)
    step = time.perf_counter()
    trainer.task.train_loader = SlowBatches(batches, 0.0)
    fast = trainer.train_epoch(0)
    step = (time.perf_counter() - step) / len(batches)
    trainer.task.train_loader = SlowBatches(batches, 3 * step)    # loading takes 3x the step
    slow = trainer.train_epoch(0)
    assert 0 <= fast["data_wait"] < 0.2 and 0.6 < slow["data_wait"] <= 1, (fast, slow)
    assert {"loss", "ce", "triplet", "clips_per_s"} <= set(fast)
    trainer.writer.flush()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    shares = events.Scalars("train/data_wait_share")
    assert [s.step for s in shares] == [1, 2, 1, 2]               # log points: every 2nd step and the last
    assert len(events.Scalars("train/loss")) == 4
    assert all(s.value > 0.5 for s in shares[2:])
