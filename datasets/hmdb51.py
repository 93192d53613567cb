"""HMDB51 index (Kuehne et al., "HMDB: A Large Video Database for Human Motion Recognition", ICCV 2011).

>>> hmdb = HMDB51(root, split=1, subset="train")
>>> hmdb.samples[0]       # ('<root>/videos/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi', 0)
>>> hmdb.classes          # the 51 class names, sorted; labels 0-based in that order

Split files list every video of a class once per split with a tag: 1 = train, 2 = test,
0 = unused (70 / 30 / the rest per class in the official splits).
"""
from __future__ import annotations

import os
import re

from .video_folder import LayoutError

__all__ = ["HMDB51", "HMDB51_TREE"]

HMDB51_TREE = """<root>/
  videos/                          hmdb51_org.rar holds 51 <class>.rar; extract each here
    brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi
    ...                            (one folder per class, named as in the split files)
  testTrainMulti_7030_splits/      the extracted test_train_splits.rar
    brush_hair_test_split1.txt     "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1"
    ...                            (<class>_test_split{1,2,3}.txt; 1 train, 2 test, 0 unused)"""

_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[123])\.txt$")
_TAG = {"train": "1", "test": "2"}


def _layout_error(root: str, problem: str) -> LayoutError:
    return LayoutError(f"HMDB51 at {root!r}: {problem}\nexpected layout:\n{HMDB51_TREE}")


class HMDB51:
    """``.samples``: [(video path, label 0-based)], ``.classes``: sorted class names."""

    def __init__(self, root: str, split: int = 1, subset: str = "train", check_files: bool = True):
        if split not in (1, 2, 3):
            raise ValueError(f"HMDB51 split must be 1, 2 or 3, got {split!r}")
        if subset not in _TAG:
            raise ValueError(f"HMDB51 subset must be 'train' or 'test', got {subset!r}")
        self.root, self.split, self.subset = os.fspath(root), split, subset
        video_dir = os.path.join(self.root, "videos")
        split_dir = os.path.join(self.root, "testTrainMulti_7030_splits")
        for folder in (video_dir, split_dir):
            if not os.path.isdir(folder):
                raise _layout_error(self.root, f"missing folder {os.path.basename(folder)}/")
        split_files = {}
        for name in os.listdir(split_dir):
            match = _SPLIT_FILE.match(name)
            if match and int(match["split"]) == split:
                split_files[match["cls"]] = os.path.join(split_dir, name)
        if not split_files:
            raise _layout_error(self.root, f"no <class>_test_split{split}.txt in testTrainMulti_7030_splits/")
        self.classes = sorted(split_files)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = []
        missing = []
        for label, cls in enumerate(self.classes):
            for video in self._read_split(split_files[cls], _TAG[subset]):
                path = os.path.join(video_dir, cls, video)
                if check_files and not os.path.isfile(path):
                    missing.append(path)
                self.samples.append((path, label))
        if missing:
            shown = ", ".join(os.path.relpath(p, self.root) for p in missing[:3])
            raise _layout_error(self.root, f"{len(missing)} listed video(s) missing, e.g. {shown}")
        if not self.samples:
            raise _layout_error(self.root, f"split {split} tags no video as {subset} ({_TAG[subset]})")

    def _read_split(self, path: str, tag: str) -> list[str]:
        videos = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.strip().rsplit(maxsplit=1)
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    raise _layout_error(self.root, f"bad line in {os.path.basename(path)}: {line.strip()!r}")
                if parts[1] == tag:
                    videos.append(parts[0])
        return videos

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"HMDB51({self.root!r}, split={self.split}, subset={self.subset!r}, "
                f"videos={len(self.samples)}, classes={len(self.classes)})")
