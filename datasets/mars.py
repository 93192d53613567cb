"""MARS (Zheng et al., "MARS: A Video Benchmark for Large-Scale Person Re-Identification",
ECCV 2016) index over the official layout.

Conventions as torchreid: junk tracklets (pid -1) are dropped, query tracklets are removed from
the gallery (full MARS: 1,980 queries, 9,330 gallery tracklets), distractors (pid 0) stay in the
gallery, camera ids are 0-based and training pids are relabelled 0..N-1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.io import loadmat

from engine.errors import DatasetLayoutError

LAYOUT = """\
expected MARS layout under {root}:
  bbox_train/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg   e.g. bbox_train/0001/0001C1T0001F001.jpg
  bbox_test/<pid>/...                                    (0000 = distractors, 00-1 = junk)
  info/train_name.txt          one frame file name per line
  info/test_name.txt
  info/tracks_train_info.mat   'track_train_info': rows (start, end, pid, camid), 1-based
  info/tracks_test_info.mat    'track_test_info'
  info/query_IDX.mat           'query_IDX': 1-based rows of track_test_info used as queries"""


@dataclass(frozen=True)
class Tracklet:
    frames: tuple[str, ...]
    pid: int
    camid: int


class MARSLayoutError(DatasetLayoutError):
    pass


class MARS:
    """Index of a MARS root: ``.train``, ``.query``, ``.gallery`` lists of :class:`Tracklet`."""

    def __init__(self, root: str, min_seq_len: int = 0, relabel_train: bool = True):
        self.root = root
        info = os.path.join(root, "info")
        files = {k: os.path.join(info, k) for k in ("train_name.txt", "test_name.txt", "tracks_train_info.mat",
                                                    "tracks_test_info.mat", "query_IDX.mat")}
        missing = [p for p in [os.path.join(root, "bbox_train"), os.path.join(root, "bbox_test"), *files.values()]
                   if not os.path.exists(p)]
        if missing:
            raise MARSLayoutError(f"MARS files missing: {', '.join(missing)}\n" + LAYOUT.format(root=root))
        train_names = _read_names(files["train_name.txt"])
        test_names = _read_names(files["test_name.txt"])
        track_train = _load_mat(files["tracks_train_info.mat"], "track_train_info", root)
        track_test = _load_mat(files["tracks_test_info.mat"], "track_test_info", root)
        query_idx = _load_mat(files["query_IDX.mat"], "query_IDX", root).reshape(-1).astype(np.int64) - 1
        if query_idx.min(initial=0) < 0 or query_idx.max(initial=-1) >= len(track_test):
            raise MARSLayoutError(f"query_IDX.mat indexes outside tracks_test_info.mat\n" + LAYOUT.format(root=root))
        is_query = np.zeros(len(track_test), dtype=bool)
        is_query[query_idx] = True
        self.train = self._tracklets(train_names, track_train, "bbox_train", min_seq_len, relabel_train)
        self.query = self._tracklets(test_names, track_test[query_idx], "bbox_test", min_seq_len, False)
        self.gallery = self._tracklets(test_names, track_test[~is_query], "bbox_test", min_seq_len, False)
        self.num_train_pids = len({t.pid for t in self.train})
        self.num_train_cams = len({t.camid for t in self.train})

    def _tracklets(self, names, rows, split_dir, min_seq_len, relabel):
        out = []
        for start, end, pid, camid in rows.astype(np.int64):
            if pid == -1:
                continue
            if not 1 <= start <= end <= len(names):
                raise MARSLayoutError(f"tracklet rows ({start}, {end}) outside the {len(names)} names of "
                                      f"{split_dir}\n" + LAYOUT.format(root=self.root))
            chunk = names[start - 1:end]
            if any(n[:4] != chunk[0][:4] or n[5] != chunk[0][5] for n in chunk):
                raise MARSLayoutError(f"tracklet rows ({start}, {end}) of {split_dir} mix identities or cameras")
            if len(chunk) < min_seq_len:
                continue
            frames = tuple(os.path.join(self.root, split_dir, n[:4], n) for n in chunk)
            out.append(Tracklet(frames, int(pid), int(camid) - 1))
        if relabel:
            mapping = {pid: i for i, pid in enumerate(sorted({t.pid for t in out}))}
            out = [Tracklet(t.frames, mapping[t.pid], t.camid) for t in out]
        return out

    def summary(self) -> str:
        lines = ["  subset   | # ids | # tracklets | # frames"]
        for name, ts in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            lines.append(f"  {name:<8} | {len({t.pid for t in ts}):5d} | {len(ts):11d} | "
                         f"{sum(len(t.frames) for t in ts):8d}")
        return "\n".join(lines)


def _read_names(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _load_mat(path, key, root):
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several types for broken files
        raise MARSLayoutError(f"cannot read {path}: {e}\n" + LAYOUT.format(root=root)) from e
    if key not in mat:
        raise MARSLayoutError(f"{path} has no variable {key!r}\n" + LAYOUT.format(root=root))
    return np.asarray(mat[key])
