"""Unreadable MARS frames (issue 9, item 5): replaced by a neighbouring frame of the same tracklet,
listed once in OUTPUT_DIR/broken_videos.tsv, summarised at the end; too many stop the run."""
import logging
import os
import shutil

import numpy as np
import pytest
import torch

from datasets import MARS
from datasets.broken_files import BrokenVideoLog, TooManyBrokenVideos
from datasets.tracklet_dataset import TrackletDataset, read_frames
from engine.build import build_reid_data
from engine.config import load_config
from engine.evaluate import run_test
from engine.trainer import Trainer
from seeding import seeded_indices

TINY = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME", "resnet18", "DATA.HEIGHT", "32", "DATA.WIDTH", "16",
        "DATA.PADDING", "2", "DATA.NUM_IDS", "4", "DATA.NUM_INSTANCES", "2", "DATA.NUM_WORKERS", "0",
        "SOLVER.WARMUP_EPOCHS", "1", "SOLVER.EVAL_PERIOD", "0", "TEST.BATCH_SIZE", "16", "SOLVER.MAX_EPOCHS", "1"]


def tiny_cfg(root, out, *extra):
    return load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "_base_", "mars.yaml"),
                       TINY + ["DATA.ROOT", root, "OUTPUT_DIR", str(out), *extra])


@pytest.fixture
def mars_copy(tiny_mars, tmp_path):
    root = str(tmp_path / "mars")
    shutil.copytree(tiny_mars[0], root)
    return root


def first_trained_frame(cfg):
    """The first frame the first training batch reads (sampler and frame draws are seeded)."""
    _, loader, _, _ = build_reid_data(cfg)
    loader.sampler.set_epoch(0)
    loader.dataset.set_epoch(0)
    i = loader.sampler.batches()[0][0]
    return loader.dataset.tracklets[i].frames[int(seeded_indices(loader.dataset, cfg.SEED, 0, i)[0])]


def test_missing_train_frame_and_empty_test_frame(mars_copy, tmp_path, caplog):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    missing = first_trained_frame(tiny_cfg(mars_copy, out))
    empty = MARS(mars_copy).gallery[0].frames[1]
    os.remove(missing)
    open(empty, "wb").close()
    trainer = Trainer(tiny_cfg(mars_copy, out))
    with caplog.at_level(logging.WARNING):
        metrics = trainer.fit()
    assert 0 <= metrics["mAP"] <= 1
    listed = BrokenVideoLog(str(out / "broken_videos.tsv")).entries()
    assert listed == {missing: "no such file", empty: "empty file"}
    summary = trainer.task.broken_summary()
    assert summary.startswith("unreadable frames: 1 of ") and " training frames replaced, 1 of " in summary
    assert summary in caplog.text                                       # logged at the end of training
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unreadable frame ")]
    assert len(warned) == 2                                             # each frame reported once

    tested = run_test(os.path.join(os.path.dirname(__file__), "..", "configs", "_base_", "mars.yaml"),
                      str(out / "checkpoints" / "last.pth"), TINY + ["DATA.ROOT", mars_copy,
                                                                     "OUTPUT_DIR", str(tmp_path / "test")])
    assert tested["mAP"] == pytest.approx(metrics["mAP"])
    assert list(BrokenVideoLog(str(tmp_path / "test" / "broken_videos.tsv")).entries()) == [empty]


def test_frame_is_replaced_by_its_nearest_readable_neighbour(mars_copy, tmp_path):
    t = max(MARS(mars_copy).train, key=lambda t: len(t.frames))
    assert len(t.frames) >= 5
    os.remove(t.frames[2])
    open(t.frames[3], "wb").close()
    data = TrackletDataset([t], seq_len=len(t.frames), sample="all",
                           skip_log=BrokenVideoLog(str(tmp_path / "b.tsv"), run="r"))
    clip = data[0][0][0].transpose(0, 1)                                  # (T, C, H, W)
    good = read_frames([t.frames[k] for k in (0, 1, 4)])
    assert torch.equal(clip[:2], good[:2])
    assert torch.equal(clip[2], good[1]) and torch.equal(clip[3], good[2])   # 2 <- 1 (3 fails too), 3 <- 4
    assert set(data.skip_log.entries()) == {t.frames[2], t.frames[3]}


def test_too_many_unreadable_frames_stop_with_a_clear_message(mars_copy, tmp_path):
    t = MARS(mars_copy).train[0]
    os.remove(t.frames[0])
    data = TrackletDataset([t], seq_len=4, sample="evenly", max_broken_share=0.0)
    with pytest.raises(TooManyBrokenVideos, match=r"1 of \d+ frames .* allowed share 0 \(DATA.MAX_BROKEN_SHARE\)"):
        data[0]
    for path in t.frames[1:]:
        os.remove(path)
    with pytest.raises(TooManyBrokenVideos, match=r"none of the \d+ frames of a tracklet"):
        TrackletDataset([t], seq_len=4, sample="evenly")[0]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_frame_that_only_fails_to_decode_on_the_decoding_device_path(mars_copy, tmp_path, device):
    """Workers of DATA.DECODE_DEVICE cuda only check the bytes (SOI/EOI): a JPEG whose middle is
    garbage passes them and fails in the batched decode; it is replaced and listed all the same,
    with the CPU path's result (the same code runs on the CPU here; nvjpeg differs by rounding)."""
    from datasets.device_decode import DeviceClipDecoder, DeviceDecodeLoader, collate_encoded
    from datasets.tracklet_dataset import collate_clips
    from datasets.transforms import build_reid_transform
    from torch.utils.data import DataLoader
    tracklets = MARS(mars_copy).query[:3]
    bad = tracklets[1].frames[1]
    data = bytearray(open(bad, "rb").read())
    data[len(data) // 3:-2] = np.random.default_rng(0).integers(0, 256, len(data) - 2 - len(data) // 3,
                                                                 dtype=np.uint8).tobytes()
    open(bad, "wb").write(bytes(data))
    logs = [BrokenVideoLog(str(tmp_path / f"{name}.tsv"), run="r") for name in ("cpu", "device")]
    cpu = TrackletDataset(tracklets, 4, "dense", build_reid_transform(32, 16, False), skip_log=logs[0])
    want = collate_clips([cpu[i] for i in range(3)])[0]
    encoded = TrackletDataset(tracklets, 4, "dense", encoded=True, skip_log=logs[1])
    loader = DeviceDecodeLoader(DataLoader(encoded, batch_size=3, collate_fn=collate_encoded),
                                DeviceClipDecoder(32, 16, device), multi_clip=True)
    clips = next(iter(loader))[0]
    assert clips.device.type == device and clips.shape == want.shape
    assert (clips.cpu().float() - want.float()).abs().mean() < (3.0 if device == "cuda" else 1e-9)
    assert logs[1].entries() == logs[0].entries() and list(logs[0].entries()) == [bad]
    reason = logs[0].entries()[bad]
    assert reason.startswith("cannot decode (RuntimeError: ") and ".cpp" not in reason   # no source location
