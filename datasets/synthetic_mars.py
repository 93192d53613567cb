"""A small MARS look-alike written in the official layout (real JPEGs, real .mat files).

Each identity has a body build, clothing colours, a shirt pattern and a gait (stride period and
swing); each camera has a background, a colour cast and a brightness. Tracklets add walking
phase, translation jitter, sensor noise and, sometimes, an occluder. Training and test identities
are disjoint, as in MARS; the test split also holds distractors (pid 0, folder ``0000``) and junk
tracklets (pid -1, folder ``00-1``) so that the official-layout parser is exercised in full.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.io import savemat


@dataclass
class Identity:
    torso: np.ndarray
    legs: np.ndarray
    head: np.ndarray
    stripes: float      # shirt stripe frequency (0 = plain)
    width: float        # body width factor
    height: float       # body height factor
    period: float       # gait period in frames
    swing: float        # leg swing amplitude


def _random_identity(rng: np.random.Generator) -> Identity:
    return Identity(torso=rng.uniform(0.05, 0.95, 3), legs=rng.uniform(0.05, 0.95, 3),
                    head=rng.uniform(0.1, 0.6, 3), stripes=float(rng.choice([0, 0, 3, 5, 8])),
                    width=rng.uniform(0.8, 1.2), height=rng.uniform(0.85, 1.1),
                    period=rng.uniform(6, 14), swing=rng.uniform(0.1, 0.35))


def _camera(rng: np.random.Generator) -> dict:
    return {"bg": rng.uniform(0.2, 0.8, 3), "bg_freq": rng.uniform(0.05, 0.3),
            "cast": rng.uniform(0.75, 1.25, 3), "gain": rng.uniform(0.8, 1.2)}


def render_frame(p: Identity, cam: dict, t: int, phase: float, rng: np.random.Generator,
                 size=(128, 64), occlude: bool = False) -> np.ndarray:
    """One ``size`` frame (uint8, H x W x 3) of identity ``p`` at time ``t`` seen by ``cam``."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    dx = rng.normal(0, 0.03)
    cx = 0.5 + dx
    img = cam["bg"] * (0.85 + 0.15 * np.sin(2 * np.pi * cam["bg_freq"] * (xx * w + yy * h)))[..., None]
    bw, bh = 0.18 * p.width, p.height
    top = 0.5 - 0.45 * bh
    head_r = 0.07
    head = ((xx - cx) * w / h) ** 2 + (yy - (top + head_r)) ** 2 < head_r ** 2
    torso_top, torso_bot = top + 2 * head_r, top + 2 * head_r + 0.38 * bh
    torso = (np.abs(xx - cx) < bw) & (yy > torso_top) & (yy < torso_bot)
    ang = p.swing * np.sin(2 * np.pi * t / p.period + phase)
    legs = np.zeros_like(torso)
    for side, sign in ((-1, 1), (1, -1)):  # two legs swinging in anti-phase
        hip_x = cx + side * bw * 0.5
        off = (yy - torso_bot) * np.tan(sign * ang)
        legs |= (np.abs(xx - hip_x - off) < bw * 0.4) & (yy > torso_bot) & (yy < min(0.98, torso_bot + 0.42 * bh))
    shirt = p.torso * (1.0 if p.stripes == 0 else (0.7 + 0.3 * np.sign(np.sin(2 * np.pi * p.stripes * yy)))[..., None])
    img = np.where(legs[..., None], p.legs, img)
    img = np.where(torso[..., None], shirt if np.ndim(shirt) == 3 else p.torso, img)
    img = np.where(head[..., None], p.head, img)
    img = img * cam["cast"] * cam["gain"]
    if occlude:
        y0 = rng.uniform(0.3, 0.7)
        img = np.where(((yy > y0) & (yy < y0 + 0.3))[..., None], rng.uniform(0.2, 0.8, 3), img)
    img = img + rng.normal(0, 0.04, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _write_tracklet(folder, pid_str, cam, tracklet_no, frames, names):
    os.makedirs(folder, exist_ok=True)
    for f, arr in enumerate(frames, start=1):
        name = f"{pid_str}C{cam}T{tracklet_no:04d}F{f:03d}.jpg"
        Image.fromarray(arr).save(os.path.join(folder, name), quality=90)
        names.append(name)


def write_synthetic_mars(root: str, num_train_ids: int = 40, num_test_ids: int = 40, num_cameras: int = 4,
                         tracklets_per_cam: tuple = (1, 2), frames: tuple = (8, 24), num_distractors: int = 10,
                         num_junk: int = 6, size=(128, 64), occlusion_prob: float = 0.25, seed: int = 0) -> dict:
    """Write the dataset under ``root`` and return counts. Deterministic given ``seed``."""
    rng = np.random.default_rng(seed)
    cams = [_camera(rng) for _ in range(num_cameras)]
    ids = [_random_identity(rng) for _ in range(num_train_ids + num_test_ids + num_distractors)]

    def tracklets_of(person, pid_str, split_dir, names, rows, pid, cam_ids, counter):
        for cam in cam_ids:
            for _ in range(rng.integers(tracklets_per_cam[0], tracklets_per_cam[1] + 1)):
                counter[0] += 1
                n = int(rng.integers(frames[0], frames[1] + 1))
                phase, occ = rng.uniform(0, 2 * np.pi), rng.random() < occlusion_prob
                imgs = [render_frame(person, cams[cam - 1], t, phase, rng, size, occ) for t in range(n)]
                start = len(names) + 1
                _write_tracklet(os.path.join(root, split_dir, pid_str), pid_str, cam, counter[0], imgs, names)
                rows.append([start, len(names), pid, cam])

    def cams_for():
        k = int(rng.integers(2, num_cameras + 1))
        return sorted(rng.choice(np.arange(1, num_cameras + 1), size=k, replace=False).tolist())

    train_names, train_rows = [], []
    for i in range(num_train_ids):
        pid = i + 1
        tracklets_of(ids[i], f"{pid:04d}", "bbox_train", train_names, train_rows, pid, cams_for(), [0])
    test_names, test_rows, query_idx = [], [], []
    for j in range(num_test_ids):
        pid = num_train_ids + j + 1
        first = len(test_rows)
        tracklets_of(ids[num_train_ids + j], f"{pid:04d}", "bbox_test", test_names, test_rows, pid, cams_for(), [0])
        mine = test_rows[first:]
        cams_here = sorted({r[3] for r in mine})
        for cam in cams_here[: max(1, len(cams_here) - 1)]:  # one query per camera, a match elsewhere
            query_idx.append(first + next(k for k, r in enumerate(mine) if r[3] == cam) + 1)
    for d in range(num_distractors):
        tracklets_of(ids[num_train_ids + num_test_ids + d], "0000", "bbox_test", test_names, test_rows,
                     0, [int(rng.integers(1, num_cameras + 1))], [d * 10])
    for k in range(num_junk):  # junk: background-only crops
        cam = int(rng.integers(1, num_cameras + 1))
        ghost = _random_identity(rng)
        ghost.width, ghost.height = 0.01, 0.01
        n = int(rng.integers(frames[0], frames[1] + 1))
        imgs = [render_frame(ghost, cams[cam - 1], t, 0.0, rng, size) for t in range(n)]
        start = len(test_names) + 1
        _write_tracklet(os.path.join(root, "bbox_test", "00-1"), "00-1", cam, k + 1, imgs, test_names)
        test_rows.append([start, len(test_names), -1, cam])
    info = os.path.join(root, "info")
    os.makedirs(info, exist_ok=True)
    for fname, names in (("train_name.txt", train_names), ("test_name.txt", test_names)):
        with open(os.path.join(info, fname), "w") as f:
            f.write("\n".join(names) + "\n")
    savemat(os.path.join(info, "tracks_train_info.mat"), {"track_train_info": np.array(train_rows, dtype=np.float64)})
    savemat(os.path.join(info, "tracks_test_info.mat"), {"track_test_info": np.array(test_rows, dtype=np.float64)})
    savemat(os.path.join(info, "query_IDX.mat"), {"query_IDX": np.array(query_idx, dtype=np.float64)[None, :]})
    return {"train_tracklets": len(train_rows), "test_tracklets": len(test_rows), "queries": len(query_idx),
            "train_frames": len(train_names), "test_frames": len(test_names)}
