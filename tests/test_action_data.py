"""Action data pipeline: UCF101/HMDB51/video-folder indexes, synthetic writers, clip samplers,
clip transforms and the clip dataset (corrupt videos skipped and reported)."""
import logging
import os
import re
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.action_dataset import ActionClipDataset, build_action_dataset, filter_readable
from datasets.action_transforms import MultiScaleCrop, build_action_transform
from datasets.clip_sampling import ClipSampler, dense_clip, tsn_segments, uniform_clips, window_seconds
from datasets.hmdb51 import HMDB51
from datasets.synthetic_action import (COLOURS, class_names, render_clip, write_synthetic_hmdb51,
                                       write_synthetic_ucf101)
from datasets.ucf101 import UCF101
from datasets.video_folder import LayoutError, VideoFolder
from datasets.video_reader import read_clip

TINY = dict(num_classes=3, videos_per_class=5, num_frames=12, size=32)


@pytest.fixture(scope="module")
def tiny_ucf(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ucf"))
    return root, write_synthetic_ucf101(root, num_groups=4, seed=3, **TINY)


@pytest.fixture(scope="module")
def tiny_hmdb(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("hmdb"))
    return root, write_synthetic_hmdb51(root, seed=4, **TINY)


# ----------------------------------------------------------------------------- UCF101 / HMDB51 indexes
def test_ucf101_parses_the_official_layout(tiny_ucf):
    root, counts = tiny_ucf
    lines = open(os.path.join(root, "ucfTrainTestlist", "classInd.txt"), newline="").read().split("\n")
    assert lines[0].startswith("1 ") and lines[0].endswith("\r")   # 1-based, Windows line ends as released
    for split in (1, 2, 3):
        train, test = UCF101(root, split, "train"), UCF101(root, split, "test")
        # 4 groups -> round(4 * 7 / 25) = 1 held-out group per split; 5 videos per class -> g01..g04, g01 twice
        held_out = f"g{split:02d}"
        per_class_test = 2 if split == 1 else 1
        assert len(test) == 3 * per_class_test and len(train) == 15 - 3 * per_class_test
        assert (len(train), len(test)) == (counts["train"][split - 1], counts["test"][split - 1])
        assert all(f"_{held_out}_" in p for p, _ in test.samples)
        assert not any(f"_{held_out}_" in p for p, _ in train.samples)
        assert {p for p, _ in train.samples}.isdisjoint(p for p, _ in test.samples)
    ucf = UCF101(root, 1, "train")
    assert ucf.classes == class_names(3) and sorted({label for _, label in ucf.samples}) == [0, 1, 2]
    for path, label in ucf.samples:                                   # label from the class folder, 0-based
        assert os.path.isfile(path) and os.path.basename(os.path.dirname(path)) == ucf.classes[label]
    listed = [line.split() for line in open(os.path.join(root, "ucfTrainTestlist", "trainlist01.txt"))]
    assert [int(lab) - 1 for _, lab in listed] == [label for _, label in ucf.samples]


def test_ucf101_layout_errors_show_the_expected_tree(tiny_ucf, tmp_path):
    root = str(tmp_path / "ucf")
    shutil.copytree(tiny_ucf[0], root)
    victim = UCF101(root, 1, "train").samples[0][0]
    os.remove(victim)
    with pytest.raises(LayoutError, match=r"1 listed video\(s\) missing") as info:
        UCF101(root, 1, "train")
    assert "ucfTrainTestlist/" in str(info.value) and "v_ApplyEyeMakeup_g08_c01.avi" in str(info.value)
    assert len(UCF101(root, 1, "train", check_files=False)) == 9
    os.remove(os.path.join(root, "ucfTrainTestlist", "classInd.txt"))
    with pytest.raises(LayoutError, match="missing file ucfTrainTestlist/classInd.txt"):
        UCF101(root)
    with pytest.raises(LayoutError, match="missing folder UCF-101/") as info:
        UCF101(str(tmp_path / "nowhere"))
    assert "classInd.txt" in str(info.value) and "trainlist01.txt" in str(info.value)
    with pytest.raises(ValueError):
        UCF101(tiny_ucf[0], split=4)


def test_ucf101_rejects_a_label_that_contradicts_class_ind(tiny_ucf, tmp_path):
    root = str(tmp_path / "ucf")
    shutil.copytree(tiny_ucf[0], root)
    path = os.path.join(root, "ucfTrainTestlist", "trainlist02.txt")
    lines = open(path).read().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0] + " 3"                 # first video is class 1
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(LayoutError, match="has label 3 but classInd.txt gives"):
        UCF101(root, 2)


def test_hmdb51_parses_split_tags(tiny_hmdb):
    root, counts = tiny_hmdb
    split_dir = os.path.join(root, "testTrainMulti_7030_splits")
    names = sorted(_snake for _snake in os.listdir(os.path.join(root, "videos")))
    for split in (1, 2, 3):
        want = {"1": [], "2": []}
        for label, cls in enumerate(names):                        # independent parse of the tag files
            for line in open(os.path.join(split_dir, f"{cls}_test_split{split}.txt")):
                name, tag = line.split()
                if tag in want:
                    want[tag].append((os.path.join(root, "videos", cls, name), label))
        train, test = HMDB51(root, split, "train"), HMDB51(root, split, "test")
        assert train.samples == want["1"] and test.samples == want["2"]
        # 5 per class: round(0.3 * 5) = 2 test (tag 2), 5 // 10 = 0 unused, 3 train
        assert (len(train), len(test)) == (9, 6) == (counts["train"][split - 1], counts["test"][split - 1])
    assert HMDB51(root).classes == names == sorted(names)


def test_hmdb51_layout_errors(tiny_hmdb, tmp_path):
    with pytest.raises(LayoutError, match="missing folder videos/") as info:
        HMDB51(str(tmp_path))
    assert "testTrainMulti_7030_splits/" in str(info.value) and "_test_split{1,2,3}.txt" in str(info.value)
    root = str(tmp_path / "hmdb")
    shutil.copytree(tiny_hmdb[0], root)
    os.remove(HMDB51(root, 2, "test").samples[0][0])
    with pytest.raises(LayoutError, match=r"1 listed video\(s\) missing"):
        HMDB51(root, 2, "test")


def test_video_folder_tree_flat_and_paths(tiny_ucf, tmp_path):
    ucf_videos = os.path.join(tiny_ucf[0], "UCF-101")
    folder = VideoFolder(ucf_videos)
    assert folder.classes == sorted(class_names(3)) and len(folder) == 15
    assert all(os.path.basename(os.path.dirname(p)) == folder.classes[y] for p, y in folder.samples)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p, _ in folder.samples[:3]:
        shutil.copy(p, flat)
    (flat / "notes.txt").write_text("not a video")
    loose = VideoFolder(str(flat))
    assert loose.classes == [] and [y for _, y in loose.samples] == [-1] * 3
    two = [p for p, _ in folder.samples[:2]]
    assert VideoFolder.from_paths(two).samples == [(p, -1) for p in two]
    (flat / "a_class").mkdir()
    with pytest.raises(LayoutError, match="mixes class folders and loose videos"):
        VideoFolder(str(flat))
    with pytest.raises(LayoutError, match="does not exist"):
        VideoFolder(str(tmp_path / "nothing"))


# ----------------------------------------------------------------------------- synthetic content
def test_synthetic_writer_is_deterministic(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    small = dict(num_classes=2, videos_per_class=4, num_frames=8, size=32, num_groups=4)
    write_synthetic_ucf101(a, seed=7, **small)
    write_synthetic_ucf101(b, seed=7, **small)
    write_synthetic_ucf101(c, seed=8, **small)
    rel = UCF101(a).samples[0][0][len(a):]
    assert open(a + rel, "rb").read() == open(b + rel, "rb").read() != open(c + rel, "rb").read()


def _dominant_colour(frames):
    """Per frame: which event colour covers the most pixels (independent of the renderer's code)."""
    palette = np.array(list(COLOURS.values()), dtype=np.float64)
    pixels = frames.astype(np.float64)
    # a stripe pixel is the colour at 100 % or 60 %: test both against the palette
    dist = np.stack([np.minimum(np.abs(pixels - p).sum(-1), np.abs(pixels - 0.6 * p).sum(-1)) for p in palette], -1)
    hits = (dist < 40).reshape(len(frames), -1, len(palette)).sum(1)
    return hits.argmax(1)


def test_order_classes_differ_only_in_time():
    num_classes, num_frames = 6, 12
    seen = []
    for label in range(num_classes):
        clip = render_clip(label, num_classes, np.random.default_rng(label), num_frames, 48, "order")
        assert clip.shape == (num_frames, 48, 48, 3) and clip.dtype == np.uint8
        colours = _dominant_colour(clip)
        assert np.array_equal(np.bincount(colours, minlength=3)[:3], [4, 4, 4])  # same frames in any order
        seen.append(tuple(colours[::4]))
    assert sorted(seen) == sorted({tuple(p) for p in seen}) and len(set(seen)) == num_classes
    assert class_names(6)[0] == "FlashRedGreenBlue" and seen[0] == (0, 1, 2)


def test_motion_classes_move_in_their_direction():
    size = 48
    for label, (dy, dx) in enumerate([(0, 1), (1, 0), (0, -1), (-1, 0)]):          # right, down, left, up
        clip = render_clip(label, 4, np.random.default_rng(label), 6, size, "motion",
                           background=np.zeros((size, size, 3)))
        mask = clip.max(-1) > 25
        angles = 2 * np.pi * np.arange(size) / size                                   # circular centroid
        ys = np.angle((mask.sum(2) * np.exp(1j * angles)).sum(1)) * size / (2 * np.pi)
        xs = np.angle((mask.sum(1) * np.exp(1j * angles)).sum(1)) * size / (2 * np.pi)
        step_y = (np.diff(ys) + size / 2) % size - size / 2
        step_x = (np.diff(xs) + size / 2) % size - size / 2
        assert np.all(step_y * dy + step_x * dx > 1.0) and np.all(np.abs(step_y * dx - step_x * dy) < 0.6)
    assert class_names(4, "motion") == ["MoveRight", "MoveDown", "MoveLeft", "MoveUp"]


def test_ucf101_frame_size_and_rectangular_motion(tmp_path):
    from datasets.video_reader import video_info
    clip = render_clip(1, 6, np.random.default_rng(0), 6, (24, 40), "order")
    assert clip.shape == (6, 24, 40, 3)
    h, w = 24, 40                                  # motion wraps around a rectangular torus
    clip = render_clip(0, 4, np.random.default_rng(0), 8, (h, w), "motion", background=np.zeros((h, w, 3)))
    cols = (clip.max(-1) > 25).any(1)              # (T, W): which columns the disk covers
    assert cols.any(1).all() and clip.shape == (8, h, w, 3)
    write_synthetic_ucf101(str(tmp_path), num_classes=2, videos_per_class=4, num_groups=4, num_frames=5,
                           size=(240, 320))
    video = next((tmp_path / "UCF-101").rglob("*.avi"))
    frames, fps, (height, width) = video_info(str(video))
    assert (frames, fps, height, width) == (5, 25, 240, 320)
    with pytest.raises(ValueError, match="at least 16x16"):
        render_clip(0, 2, np.random.default_rng(0), 4, (8, 32))


# ----------------------------------------------------------------------------- samplers
def _tsn_reference(n, k, x=0.5):
    """The official TSN test formula, one segment at a time: int(tick / 2 + tick * i), tick = n / K."""
    tick = n / k
    return [min(int(tick * x + tick * i), n - 1) for i in range(k)]


def test_tsn_segments_by_hand():
    assert tsn_segments(10, 3, train=False).tolist() == [1, 5, 8]
    assert tsn_segments(2, 4, train=False).tolist() == [0, 0, 1, 1]
    assert tsn_segments(12, 3, train=False, num_clips=2).tolist() == [[1, 5, 9], [3, 7, 11]]
    for n in range(1, 40):
        for k in (1, 3, 8):
            assert tsn_segments(n, k, train=False).tolist() == _tsn_reference(n, k)
    rng = np.random.default_rng(0)
    draws = np.stack([tsn_segments(10, 3, True, rng) for _ in range(400)])
    assert [sorted(set(draws[:, i])) for i in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert np.array_equal(tsn_segments(10, 3, True, np.random.default_rng(5)),
                          tsn_segments(10, 3, True, np.random.default_rng(5)))
    assert tsn_segments(2, 4, True, rng).tolist() == [0, 0, 1, 1]


def test_dense_and_uniform_clips_by_hand():
    assert dense_clip(20, 4, 2, train=False).tolist() == [6, 8, 10, 12]          # span 7, starts 0..13
    assert dense_clip(5, 4, 2, train=False).tolist() == [0, 2, 4, 4]            # short video: last frame repeats
    starts = {int(dense_clip(20, 4, 2, True, np.random.default_rng(s))[0]) for s in range(300)}
    assert starts == set(range(14))
    windows = uniform_clips(20, 4, 2, 3)                                         # 14 starts -> centres 2.33, 7, 11.67
    assert windows.start.tolist() == [2, 7, 11] and windows.end.tolist() == [8, 13, 17]
    assert windows.indices.tolist() == [[2, 4, 6, 8], [7, 9, 11, 13], [11, 13, 15, 17]]
    at_10_fps = np.stack([np.arange(20) / 10, np.arange(1, 21) / 10], axis=1)
    np.testing.assert_allclose(window_seconds(windows, at_10_fps), [[0.2, 0.9], [0.7, 1.4], [1.1, 1.8]])
    assert uniform_clips(3, 4, 1, 2).indices.tolist() == [[0, 1, 2, 2]] * 2
    assert ClipSampler("dense", 4, 2, train=False, num_clips=3)(20).tolist() == windows.indices.tolist()
    assert ClipSampler("tsn", 3, train=True)(10, np.random.default_rng(0)).shape == (1, 3)
    with pytest.raises(ValueError):
        ClipSampler("random")


# ----------------------------------------------------------------------------- transforms
def _random_frames(t=6, h=40, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 200, (1, 3, h, w), generator=g, dtype=torch.uint8).expand(t, -1, -1, -1)


@pytest.mark.parametrize("mode", ["multiscale", "random_resized"])
def test_train_transform_uses_one_draw_per_clip(mode):
    transform = build_action_transform(True, crop_size=24, short_side=32, mode=mode)
    base = _random_frames()
    ramp = base + torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1) * 8           # frame t = base + 8 t
    for seed in range(8):
        torch.manual_seed(seed)
        out = transform(base)
        assert out.shape == (3, 6, 24, 24) and out.dtype == torch.uint8
        assert torch.equal(out, out[:, :1].expand_as(out))                        # identical frames stay identical
        torch.manual_seed(seed)
        out = transform(ramp).float()
        step = out[:, 1:] - out[:, :-1]                                            # linear ops: +8 per frame
        assert torch.allclose(step, torch.full_like(step, 8.0), atol=1.0)


def test_test_transforms_match_hand_crops():
    frames = torch.randint(0, 256, (4, 3, 24, 40), dtype=torch.uint8)

    def layout(x):  # (T, C, H, W) -> (C, T, H, W), uint8 as the models take it
        return x.permute(1, 0, 2, 3)

    centre = build_action_transform(False, crop_size=16, short_side=24)(frames)      # resize is a no-op here
    assert centre.dtype == torch.uint8 and torch.equal(centre, layout(frames[..., 4:20, 12:28]))
    three = build_action_transform(False, crop_size=24, num_crops=3)(frames)
    assert three.shape == (3, 3, 4, 24, 24)
    for crop, left in zip(three, (0, 8, 16)):
        assert torch.equal(crop, layout(frames[..., left:left + 24]))
    portrait = frames.transpose(-1, -2)
    for crop, top in zip(build_action_transform(False, crop_size=24, num_crops=3)(portrait), (0, 8, 16)):
        assert torch.equal(crop, layout(portrait[..., top:top + 24, :]))
    views = build_action_transform(False, crop_size=24, num_crops=3)(torch.stack([frames, frames.flip(0)]))
    assert views.shape == (2, 3, 3, 4, 24, 24) and torch.equal(views[1], views[0].flip(2))


def test_multiscale_crop_positions_and_scales():
    assert MultiScaleCrop._positions(100, 140, 60, 60)[:5] == [(0, 0), (0, 80), (40, 0), (40, 80), (20, 40)]
    assert MultiScaleCrop(8, scales=(1.0, 0.75, 0.5)).pairs == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
    crop = MultiScaleCrop(16, scales=(1.0, 0.5))                # short side 32: crops of 32 or 16 pixels
    ids = torch.arange(32 * 48, dtype=torch.float32).view(1, 1, 32, 48)            # pixel value = its position
    allowed = {(t, l) for t, l in MultiScaleCrop._positions(32, 48, 16, 16)}
    exact = 0
    for seed in range(80):
        torch.manual_seed(seed)
        out = crop(ids)
        assert out.shape == (1, 1, 16, 16)
        top, left = divmod(int(out[0, 0, 0, 0]), 48)
        if torch.equal(out, ids[..., top:top + 16, left:left + 16]):            # a 16 x 16 crop, not resized
            assert (top, left) in allowed
            exact += 1
    assert 5 < exact < 80                                        # the 16x16 pair is one of 4 allowed pairs


# ----------------------------------------------------------------------------- dataset
def test_dataset_items_train_and_multiview(tiny_ucf):
    samples = UCF101(tiny_ucf[0]).samples
    train = build_action_dataset(samples, True, mode="tsn", clip_len=4, crop_size=24, short_side=32)
    clip, label, index = train[3]
    assert clip.shape == (3, 4, 24, 24) and clip.dtype == torch.uint8 and (label, index) == (samples[3][1], 3)
    test = build_action_dataset(samples, False, mode="dense", clip_len=4, stride=2, num_clips=2, num_crops=3,
                                crop_size=24)
    views, label, index = test[5]
    assert views.shape == (6, 3, 4, 24, 24) and index == 5
    batch = next(iter(DataLoader(train, batch_size=4)))
    assert batch[0].shape == (4, 3, 4, 24, 24) and batch[2].tolist() == [0, 1, 2, 3]


def test_dataset_reads_the_sampled_frames_clip_major(tiny_ucf):
    path, label = UCF101(tiny_ucf[0]).samples[0]
    sampler = ClipSampler("dense", 3, 2, train=False, num_clips=2)      # 12 frames, span 5: 8 starts -> 2, 6
    raw, got_label, _ = ActionClipDataset([(path, label)], sampler)[0]
    want = read_clip(path, [2, 4, 6, 6, 8, 10]).view(2, 3, 3, 32, 32).transpose(1, 2)
    assert raw.dtype == torch.uint8 and torch.equal(raw, want) and got_label == label


def test_corrupt_video_is_skipped_and_reported_once(tiny_ucf, tmp_path, caplog):
    samples = list(UCF101(tiny_ucf[0]).samples[:6])
    bad = str(tmp_path / "v_Broken_g01_c01.avi")
    open(bad, "wb").write(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    samples[2] = (bad, 1)
    data = build_action_dataset(samples, True, mode="tsn", clip_len=4, crop_size=24, short_side=32)
    with caplog.at_level(logging.WARNING, logger="datasets.action_dataset"):
        clip, label, index = data[2]
        assert (index, label) == (3, samples[3][1]) and clip.shape == (3, 4, 24, 24)  # replaced by the next one
        assert data[2][2] == 3
        batches = list(DataLoader(data, batch_size=3))
    reports = [r for r in caplog.records if bad in r.getMessage()]
    assert len(reports) == 1 and re.search("unreadable", reports[0].getMessage())
    assert data.unreadable == {bad}
    assert [b[0].shape[0] for b in batches] == [3, 3] and batches[0][2].tolist() == [0, 1, 3]
    good, broken = filter_readable(samples)
    assert broken == [(bad, 1)] and len(good) == 5
    all_bad = ActionClipDataset([(bad, 0)] * 3, ClipSampler("tsn", 2))
    with pytest.raises(RuntimeError, match="unreadable"):
        all_bad[0]
