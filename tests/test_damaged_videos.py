"""The damaged set (tools/make_synthetic.py damaged): training, testing and inference never crash,
each broken file is reported once with its reason, readable short files are padded, too many
broken files stop the run with a clear message."""
import collections
import logging
import os
import stat

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.action_dataset import ActionClipDataset, BrokenVideoLog, TooManyBrokenVideos
from datasets.clip_sampling import ClipSampler
from datasets.damaged_videos import KINDS, read_manifest, write_damaged_videos
from datasets.video_folder import VideoFolder
from datasets.video_reader import read_clip, video_info
from engine.action_task import ActionTask
from engine.config import load_config
from engine.errors import one_line
from engine.evaluate import run_test
from engine.infer import infer_videos
from engine.trainer import Trainer

CFG = os.path.join(os.path.dirname(__file__), "..", "configs", "demo_ucf101_tsn_r18.yaml")
AS_ROOT = os.geteuid() == 0   # root reads a chmod 000 file: the no-permission file is then readable


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("damaged"))
    return root, write_damaged_videos(root), read_manifest(root)


def overrides(root, out, share="0.9", workers="0"):
    return ["DATA.DATASET", "video_folder", "DATA.ROOT", root, "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCHS", "1",
            "DATA.SEQ_LEN", "4", "DATA.CROP_SIZE", "32", "DATA.SHORT_SIDE", "32", "DATA.BATCH_SIZE", "4",
            "DATA.NUM_WORKERS", workers, "DATA.MAX_BROKEN_SHARE", share, "TEST.NUM_CLIPS", "1"]


def test_every_kind_is_written(damaged):
    root, counts, manifest = damaged
    per_folder = {"good": 4, **{kind: len(exts) for kind, exts in KINDS.items()}}   # 2 classes x train/val
    assert counts["per_kind"] == {kind: 4 * n for kind, n in per_folder.items()}
    assert counts["damaged"] == 88 >= 50 and counts["files"] == len(manifest) == 104
    assert (counts["broken"], counts["either"]) == (40 + 4 * (not AS_ROOT), 36)
    for text in (open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read(),
                 open(os.path.join(os.path.dirname(__file__), "..", "tools", "make_synthetic.py")).read()):
        said = " ".join(text.split())                                  # what the README and --help claim
        assert f"{counts['files']} files" in said and f"{counts['good']} good clips" in said
        assert f"{counts['damaged']} files of {len(KINDS)} " in said
    assert sorted({os.path.splitext(r["path"])[1] for r in manifest if r["kind"] == "random_bytes"}) == \
        [".avi", ".mkv", ".mp4"]
    by = {(r["split"], os.path.basename(os.path.dirname(r["path"])), os.path.basename(r["path"])): r["path"]
          for r in manifest}
    folder = ("train", "FlashGreenRed")
    size = {name: os.path.getsize(by[(*folder, name)]) for name in
            ("zero_bytes.mkv", "truncated_10.mkv", "truncated_50.mkv", "truncated_90.mkv")}
    assert size["zero_bytes.mkv"] == 0 < size["truncated_10.mkv"] < size["truncated_50.mkv"] < size["truncated_90.mkv"]
    assert open(by[(*folder, "text_file.mp4")], "rb").read(12) == b"This is not "
    no_perm = by[(*folder, "no_permission.avi")]
    assert stat.S_IMODE(os.stat(no_perm).st_mode) == 0
    expect = {r["path"]: r["expect"] for r in manifest}
    assert expect[no_perm] == ("readable" if AS_ROOT else "broken")   # root ignores permissions: said, not failed
    assert video_info(by[(*folder, "one_frame.avi")])[0] == 1 and video_info(by[(*folder, "short.mp4")])[0] == 3
    assert VideoFolder(os.path.join(root, "train")).classes == ["FlashGreenRed", "FlashRedGreen"]


def test_short_videos_are_padded_not_skipped(damaged):
    root, _, manifest = damaged
    short = [(r["path"], 0) for r in manifest if r["kind"] in ("one_frame", "short") and r["split"] == "train"]
    data = ActionClipDataset(short, ClipSampler("dense", 4, 2, train=False))
    for i, (path, _) in enumerate(short):
        clip, _, index = data[i]
        n = video_info(path)[0]
        want = read_clip(path, [min(k, n - 1) for k in (0, 2, 4, 6)])              # last frame repeated
        assert index == i and clip.shape[1] == 4 and torch.equal(clip, want.transpose(0, 1))
    assert data.unreadable == set()


def test_each_broken_file_is_logged_once_across_processes(damaged, tmp_path, caplog):
    _, _, manifest = damaged
    rows = [r for r in manifest if r["split"] == "train" and "FlashGreenRed" in r["path"]]
    samples = [(r["path"], 0) for r in rows]
    skip_log = BrokenVideoLog(str(tmp_path / "broken.tsv"))
    # two copies of the dataset stand for two DataLoader workers or DDP ranks sharing the log
    copies = [ActionClipDataset(samples, ClipSampler("tsn", 2), skip_log=skip_log) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="datasets.action_dataset"):
        for data in copies:
            for epoch in range(2):
                for i in range(len(data)):
                    data[i]
    reported = collections.Counter(r.args[1].path for r in caplog.records)
    broken = {r["path"] for r in rows if r["expect"] == "broken"}
    readable = {r["path"] for r in rows if r["expect"] == "readable"}
    assert set(reported.values()) == {1} and broken <= set(reported) and not readable & set(reported)
    assert list(skip_log.entries()) == list(reported)                 # the same paths, in the same order
    assert all(reason for reason in skip_log.entries().values())
    assert copies[1].unreadable == set(reported)


def test_too_many_broken_files_stop_with_a_clear_message(damaged, tmp_path):
    root, _, _ = damaged
    message = r"of 52 test videos .* the allowed share 0\.1 \(DATA\.MAX_BROKEN_SHARE\)"
    with pytest.raises(TooManyBrokenVideos, match=message):
        Trainer(load_config(CFG, overrides(root, tmp_path / "strict", share="0.1")))
    samples = VideoFolder(os.path.join(root, "train")).samples
    data = ActionClipDataset(samples, ClipSampler("tsn", 2), skip_log=BrokenVideoLog(str(tmp_path / "b.tsv")),
                             max_broken_share=0.1)
    with pytest.raises(TooManyBrokenVideos, match=r"of 52 videos .*more than the allowed share 0\.1") as err:
        for _ in DataLoader(data, batch_size=4, num_workers=2):      # raised in a worker, re-raised here
            pass
    line = one_line(err.value)                                         # what the tools print
    assert line.split(" of 52 videos (")[0].isdigit() and line.endswith(str(tmp_path / "b.tsv"))
    assert "\n" not in line and "worker" not in line and "Traceback" not in line


def test_train_test_infer_over_the_damaged_set(damaged, tmp_path):
    torch.set_num_threads(1)
    root, _, manifest = damaged
    out = tmp_path / "run"
    trainer = Trainer(load_config(CFG, overrides(root, out, workers="2")))   # 52 train files: 13 full batches
    metrics = trainer.fit()
    lines = open(out / "broken_videos.tsv").read().splitlines()
    paths = [line.split("\t")[0] for line in lines]
    expect = {r["path"]: r["expect"] for r in manifest}
    assert len(paths) == len(set(paths)) and all(line.split("\t")[1] for line in lines)   # once, with a reason
    assert {p for p, e in expect.items() if e == "broken"} <= set(paths)
    assert all(expect[p] in ("broken", "either") for p in paths)
    n_train = sum("/train/" in p for p in paths)
    assert metrics["skipped_train"] == n_train and metrics["unreadable"] == len(paths) - n_train
    assert metrics["num_videos"] == 52 - metrics["unreadable"] and 0 <= metrics["top1"] <= 1
    summary = trainer.task.finish()
    assert all(summary.count(p + "  ") == 1 for p in paths)
    assert summary.startswith(f"unreadable videos: {n_train} of 52 training videos skipped")

    # a later run in the same folder counts only what it meets itself: the earlier run's training
    # entries neither appear in its summary nor make it skip a file unopened (it may be repaired)
    again = ActionTask(load_config(CFG, overrides(root, out)))
    again.set_epoch(1)
    assert again.train_set.unreadable == set() and again.train_set.broken_paths() == set()
    n_test = len(again.unreadable)                                     # excluded up front by this run
    assert 0 < n_test <= len(paths) - n_train
    assert again.broken_summary().startswith(f"unreadable videos: 0 of 52 training videos skipped, {n_test} of 52 ")
    assert len(open(out / "broken_videos.tsv").read().splitlines()) == len(paths) + n_test   # both runs' lines

    ckpt = str(out / "checkpoints" / "last.pth")
    tested = run_test(CFG, ckpt, overrides(root, tmp_path / "test"))
    assert tested["unreadable"] == metrics["unreadable"] and tested["top1"] == pytest.approx(metrics["top1"])

    videos = sorted(expect)
    res = infer_videos(CFG, ckpt, videos, str(tmp_path / "infer.csv"), overrides(root, tmp_path / "infer"), topk=2)
    assert [r["path"] for r in res] == videos
    failed = {r["path"] for r in res if "error" in r}
    assert not [r["error"] for r in res if "error" in r and "not permitted" in r["error"]]   # damage, not permissions
    assert {p for p, e in expect.items() if e == "broken"} <= failed
    assert not failed & {p for p, e in expect.items() if e == "readable"}
    assert all(len(r["windows"]) == 1 for r in res if "error" not in r)     # 12 frames or fewer: one window
    rows = open(tmp_path / "infer.csv").read().splitlines()
    assert len(rows) == 1 + len(failed) + 2 * (len(res) - len(failed))    # header, error rows, window + video rows
    assert np.isfinite([r["video_topk"][0][1] for r in res if "error" not in r]).all()
