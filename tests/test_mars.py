import os

import numpy as np
import pytest
from scipy.io import loadmat

from datasets import MARS, MARSLayoutError
from datasets.tracklet_dataset import TrackletDataset, collate_clips
from datasets.transforms import build_reid_transform


def test_parse_counts_and_protocol(tiny_mars):
    root, counts = tiny_mars
    m = MARS(root)
    test_info = loadmat(os.path.join(root, "info", "tracks_test_info.mat"))["track_test_info"]
    query_idx = loadmat(os.path.join(root, "info", "query_IDX.mat"))["query_IDX"].reshape(-1) - 1
    junk = (test_info[:, 2] == -1).sum()
    assert junk > 0
    assert len(m.train) == counts["train_tracklets"]
    assert len(m.query) == len(query_idx) == counts["queries"]
    assert len(m.gallery) == len(test_info) - len(query_idx) - junk   # queries out, junk dropped
    assert all(t.pid != -1 for t in m.query + m.gallery)
    assert any(t.pid == 0 for t in m.gallery)                            # distractors kept
    assert not {t.frames for t in m.query} & {t.frames for t in m.gallery}
    assert sorted({t.pid for t in m.train}) == list(range(m.num_train_pids)) == list(range(8))
    assert {t.camid for t in m.train} <= {0, 1, 2}
    for t in m.train + m.query:  # frames exist and are named <pid>C<cam>T<tracklet>F<frame>.jpg
        name = os.path.basename(t.frames[0])
        assert os.path.isfile(t.frames[0]) and name[4] == "C" and int(name[5]) == t.camid + 1
    assert "gallery" in m.summary()


def test_missing_info_file_prints_layout(tiny_mars, tmp_path):
    root, _ = tiny_mars
    broken = tmp_path / "mars"
    (broken).mkdir()
    for d in ("bbox_train", "bbox_test"):
        os.symlink(os.path.join(root, d), broken / d)
    (broken / "info").mkdir()
    with pytest.raises(MARSLayoutError) as e:
        MARS(str(broken))
    msg = str(e.value)
    assert "train_name.txt" in msg and "expected MARS layout" in msg and "query_IDX.mat" in msg


def test_dataset_items_and_dense_collate(tiny_mars):
    root, _ = tiny_mars
    m = MARS(root)
    train = TrackletDataset(m.train, 4, "random", build_reid_transform(32, 16, True, padding=2))
    clip, pid, camid, idx = train[3]
    assert clip.shape == (3, 4, 32, 16) and str(clip.dtype) == "torch.uint8"
    assert pid == m.train[3].pid and idx == 3
    dense = TrackletDataset(m.query, 4, "dense", build_reid_transform(32, 16, False))
    items = [dense[0], dense[1]]
    clips, owner, pids, camids, index = collate_clips(items)
    n0 = -(-len(m.query[0].frames) // 4)
    assert items[0][0].shape[0] == n0 and clips.shape[1:] == (3, 4, 32, 16)
    assert owner.tolist() == [0] * n0 + [1] * items[1][0].shape[0]


def test_transform_is_consistent_across_frames():
    import torch
    frame = torch.randint(0, 255, (1, 3, 40, 20), dtype=torch.uint8)
    clip = frame.expand(6, -1, -1, -1).clone()
    t = build_reid_transform(32, 16, True, flip_prob=0.5, padding=4, erasing_prob=1.0)
    for seed in range(5):
        torch.manual_seed(seed)
        out = t(clip)  # (C,T,H,W): every frame identical after the same random flip/crop/erase
        assert out.shape == (3, 6, 32, 16)
        assert torch.equal(out, out[:, :1].expand_as(out))
