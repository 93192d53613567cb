"""Stopping on broken inputs reaches the user as one line, on every DDP rank, promptly (issue 9,
items 8 and 10): a share outside [0, 1] is a config error, the stop raised in a DataLoader worker
is one line, infer.py fails when it read no video, and a rank that stops takes the others along."""
import datetime
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from datasets.synthetic_action import render_clip, write_avi
from engine.build import build_reid_data
from engine.config import load_config
from engine.errors import ConfigError
from test_broken_frames import mars_copy, tiny_cfg  # noqa: F401 - mars_copy is a fixture
from test_infer import ACTION_CFG, ACTION_SET, CLASSES, save_untrained
from test_training import _free_port
from test_user_errors import assert_one_line_error, run_tool  # noqa: F401 - run_tool is a fixture
from seeding import seeded_indices

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("share", ["1.5", "-0.1"])
def test_broken_share_outside_0_1_is_a_config_error(share, run_tool, tmp_path):
    with pytest.raises(ConfigError, match=r"DATA.MAX_BROKEN_SHARE must lie in \[0, 1\]"):
        load_config(ACTION_CFG, ["DATA.MAX_BROKEN_SHARE", share])
    proc = run_tool("train.py", ACTION_CFG, "DATA.MAX_BROKEN_SHARE", share, "OUTPUT_DIR", tmp_path / "run")
    assert_one_line_error(proc, "DATA.MAX_BROKEN_SHARE", share)
    assert not os.path.exists(tmp_path / "run")


def test_stop_raised_in_a_dataloader_worker_is_one_line(run_tool, tmp_path):
    """Training videos 6 of 10 broken, test videos fine: the stop comes from a worker mid-epoch."""
    rng = np.random.default_rng(0)
    for split, good, broken in (("train", 2, 3), ("val", 1, 0)):
        for label, name in enumerate(["a", "b"]):
            os.makedirs(tmp_path / "data" / split / name)
            for i in range(good):
                write_avi(str(tmp_path / "data" / split / name / f"good{i}.avi"), render_clip(label, 2, rng, 6, 32))
            for i in range(broken):
                open(tmp_path / "data" / split / name / f"empty{i}.avi", "wb").close()
    proc = run_tool("train.py", ACTION_CFG, "DATA.DATASET", "video_folder", "DATA.ROOT", tmp_path / "data",
                    "OUTPUT_DIR", tmp_path / "run", "DATA.NUM_WORKERS", "2", "DATA.BATCH_SIZE", "2",
                    "DATA.MAX_BROKEN_SHARE", "0.3", *ACTION_SET, "SOLVER.MAX_EPOCHS", "1")
    # stderr also holds the progress bar (carriage returns) of the epoch that was stopped
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.replace("\r", "\n").splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].strip().startswith("train.py: error: ") and "worker" not in errors[0]
    assert "of 10 videos" in errors[0] and "DATA.MAX_BROKEN_SHARE" in errors[0] and "broken_videos.tsv" in errors[0]


def test_infer_fails_when_no_video_can_be_read(run_tool, tmp_path):
    ckpt = save_untrained(ACTION_CFG, ACTION_SET, len(CLASSES), tmp_path / "a.pth", CLASSES)
    videos = [tmp_path / "empty.mp4", tmp_path / "text.avi"]
    videos[0].write_bytes(b"")
    videos[1].write_text("not a video\n")
    proc = run_tool("infer.py", ACTION_CFG, "--checkpoint", ckpt, *videos, "--out", tmp_path / "r.json",
                    "--set", *ACTION_SET)
    # decord prints its own native log line per file it cannot open; ours is the one error line
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("infer.py: error: none of the 2 videos could be read")
    assert os.path.isfile(tmp_path / "r.json")                      # the reasons are still written


# ------------------------------------------------------------------------------------------ DDP
def _stopping_rank(rank, root, out, report, port):
    from engine.trainer import Trainer
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=20))  # default: 30 min
    try:
        Trainer(tiny_cfg(root, out, "DATA.MAX_BROKEN_SHARE", "0.0", "SOLVER.MAX_EPOCHS", "2")).fit()
        outcome = "finished"
    except Exception as err:  # noqa: BLE001 - what each rank met is the result
        outcome = f"{type(err).__name__}: {err}"
    with open(os.path.join(report, f"rank{rank}.txt"), "w") as f:
        f.write(outcome)


def test_a_rank_that_stops_stops_every_rank_with_its_message(mars_copy, tmp_path):
    """Rank 1's first batch reads a missing frame no batch of rank 0 reads: rank 1 stops at step 1
    (share 0), and rank 0, about to start its step, stops there with the same message instead of
    waiting in the gradient all-reduce until the timeout."""
    out = tmp_path / "run"
    cfg = tiny_cfg(mars_copy, out)
    batches = [build_reid_data(cfg, r, 2)[1].sampler.batches() for r in range(2)]   # epoch 0, per rank
    rank0 = {i for batch in batches[0] for i in batch}
    first = next(i for i in batches[1][0] if i not in rank0)
    data = build_reid_data(cfg, 1, 2)[1].dataset
    os.remove(data.tracklets[first].frames[int(seeded_indices(data, cfg.SEED, 0, first)[0])])
    mp.spawn(_stopping_rank, args=(mars_copy, str(out), str(tmp_path), _free_port()), nprocs=2, join=True)
    outcomes = [open(tmp_path / f"rank{r}.txt").read() for r in range(2)]
    assert outcomes[0] == outcomes[1], outcomes
    assert outcomes[0].startswith("TooManyBrokenVideos: 1 of ") and "(DATA.MAX_BROKEN_SHARE)" in outcomes[0]
