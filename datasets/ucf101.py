"""UCF101 index over the official layout (Soomro, Zamir, Shah, arXiv:1212.0402, 2012).

>>> ucf = UCF101(root, split=1, subset="train")
>>> ucf.samples[0]        # ('<root>/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi', 0)
>>> ucf.classes[0]        # 'ApplyEyeMakeup' (classInd.txt order, labels 0-based)

The three official splits hold groups g01-g07, g08-g14, g15-g21 out for testing. Lists may have
Windows line ends. File names are matched case-insensitively inside their class folder when the
exact name is missing (the release spells ``HandstandPushups`` and ``HandStandPushups``).
"""
from __future__ import annotations

import os

from .video_folder import LayoutError

__all__ = ["UCF101", "UCF101_TREE"]

UCF101_TREE = """<root>/
  UCF-101/                      the extracted UCF101.rar: one folder per class
    ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi
    ...
  ucfTrainTestlist/             the extracted UCF101TrainTestSplits-RecognitionTask.zip
    classInd.txt                "1 ApplyEyeMakeup"  (1-based class ids)
    trainlist01.txt ... 03      "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    testlist01.txt  ... 03      "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"  (label = class folder)"""


def _layout_error(root: str, problem: str) -> LayoutError:
    return LayoutError(f"UCF101 at {root!r}: {problem}\nexpected layout:\n{UCF101_TREE}")


def _read_lines(path: str, root: str) -> list[str]:
    if not os.path.isfile(path):
        raise _layout_error(root, f"missing file {os.path.relpath(path, root)}")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


class UCF101:
    """``.samples``: [(video path, label 0-based)], ``.classes``: class names by label."""

    def __init__(self, root: str, split: int = 1, subset: str = "train", check_files: bool = True):
        if split not in (1, 2, 3):
            raise ValueError(f"UCF101 split must be 1, 2 or 3, got {split!r}")
        if subset not in ("train", "test"):
            raise ValueError(f"UCF101 subset must be 'train' or 'test', got {subset!r}")
        self.root, self.split, self.subset = os.fspath(root), split, subset
        video_dir = os.path.join(self.root, "UCF-101")
        list_dir = os.path.join(self.root, "ucfTrainTestlist")
        for folder in (video_dir, list_dir):
            if not os.path.isdir(folder):
                raise _layout_error(self.root, f"missing folder {os.path.basename(folder)}/")
        self.classes = self._read_class_index(os.path.join(list_dir, "classInd.txt"))
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        list_path = os.path.join(list_dir, f"{subset}list0{split}.txt")
        entries = [self._parse(line, list_path) for line in _read_lines(list_path, self.root)]
        if not entries:
            raise _layout_error(self.root, f"{os.path.basename(list_path)} lists no video")
        paths = [os.path.join(video_dir, *rel.split("/")) for rel, _ in entries]
        if check_files:
            paths = self._resolve(paths)
        self.samples = [(path, label) for path, (_, label) in zip(paths, entries)]

    def _read_class_index(self, path: str) -> list[str]:
        pairs = []
        for line in _read_lines(path, self.root):
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise _layout_error(self.root, f"bad line in classInd.txt: {line!r}")
            pairs.append((int(parts[0]), parts[1]))
        ids = sorted(i for i, _ in pairs)
        if ids != list(range(1, len(pairs) + 1)):
            raise _layout_error(self.root, "classInd.txt ids must be 1..N, each once")
        return [name for _, name in sorted(pairs)]

    def _parse(self, line: str, list_path: str) -> tuple[str, int]:
        """``Class/v_Class_gXX_cYY.avi [label]`` -> (relative path, 0-based label)."""
        parts = line.replace("\\", "/").split()
        rel = parts[0]
        folder = rel.split("/")[0]
        if "/" not in rel or folder not in self.class_to_idx:
            raise _layout_error(self.root, f"{os.path.basename(list_path)}: {line!r} is not <Class>/<video> "
                                           "with a class of classInd.txt")
        label = self.class_to_idx[folder]
        if len(parts) > 1 and (not parts[1].isdigit() or int(parts[1]) - 1 != label):
            raise _layout_error(self.root, f"{os.path.basename(list_path)}: {line!r} has label {parts[1]} but "
                                           f"classInd.txt gives {folder} the id {label + 1}")
        return rel, label

    def _resolve(self, paths: list[str]) -> list[str]:
        """Check every listed file exists (one directory listing per class folder)."""
        listings: dict[str, dict[str, str]] = {}
        resolved, missing = [], []
        for path in paths:
            folder, name = os.path.split(path)
            if folder not in listings:
                names = os.listdir(folder) if os.path.isdir(folder) else []
                listings[folder] = {n.lower(): n for n in names} | {n: n for n in names}
            actual = listings[folder].get(name) or listings[folder].get(name.lower())
            if actual is None:
                missing.append(path)
            resolved.append(os.path.join(folder, actual or name))
        if missing:
            shown = ", ".join(os.path.relpath(p, self.root) for p in missing[:3])
            raise _layout_error(self.root, f"{len(missing)} listed video(s) missing, e.g. {shown}")
        return resolved

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"UCF101({self.root!r}, split={self.split}, subset={self.subset!r}, "
                f"videos={len(self.samples)}, classes={len(self.classes)})")
