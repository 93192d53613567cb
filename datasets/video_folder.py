"""A user's own videos: a ``<root>/<class>/<video>`` tree, or a flat list of files for inference.

>>> train = VideoFolder("my_videos/train")   # my_videos/train/<class>/<any depth>/<video>.mp4
>>> train.samples[0], train.classes          # (path, label 0-based), sorted class names
>>> VideoFolder("unlabelled_dir").samples    # a folder of videos only: label -1 for each
>>> VideoFolder.from_paths(["a.mp4", "b.avi"])
>>> val = VideoFolder("my_videos/val")
>>> relabel(val.samples, val.classes, train.classes)        # labels of the TRAINING classes, by name

A validation folder's own sorted names are not the training labels (val {apple, cherry} under
train {apple, banana, cherry}: cherry is training label 2, val label 1): ``relabel`` maps them by
name, raises ``UnknownClassError`` for a name training did not have, and leaves a training class
without validation videos simply without samples.

Also holds what the UCF101 / HMDB51 indexes share: ``VIDEO_EXTENSIONS`` and ``LayoutError``.
"""
from __future__ import annotations

import os
from typing import Iterable

from engine.errors import DatasetLayoutError

__all__ = ["VideoFolder", "LayoutError", "UnknownClassError", "VIDEO_EXTENSIONS", "is_video_file", "relabel"]

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


class LayoutError(DatasetLayoutError):
    """A dataset folder that does not have the expected layout; the message shows the expected tree."""


class UnknownClassError(LayoutError):
    """A class name (e.g. a validation folder) that the training classes do not contain (one line)."""
    keep_lines = False


def relabel(samples, own_classes, classes, where: str = "") -> list[tuple[str, int]]:
    """``samples`` labelled by ``own_classes`` -> the same samples labelled by ``classes`` (by name).

    Raises ``UnknownClassError`` (one line) when a sample's class is not in ``classes``.
    """
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({str(own_classes[label]) for _, label in samples if own_classes[label] not in index})
    if unknown:
        shown = ", ".join(map(str, list(classes)[:20])) + (", ..." if len(classes) > 20 else "")
        raise UnknownClassError(f"{where or 'the data'} has class(es) {', '.join(map(repr, unknown))} that training "
                                f"did not have (training classes: {shown}); remove or rename them")
    return [(path, index[own_classes[label]]) for path, label in samples]


def is_video_file(name: str, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> bool:
    return name.lower().endswith(tuple(extensions)) and not os.path.basename(name).startswith(".")


def _videos_under(folder: str, extensions) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if is_video_file(f, extensions)]
    return found


class VideoFolder:
    """Videos under ``root``: one sub-folder per class (labels follow sorted folder names), or, when
    ``root`` holds video files and no class folders, an unlabelled list (label -1).
    """

    TREE = ("<root>/<class>/<video>  (e.g. my_videos/juggling/clip_001.mp4; any depth below <class>)\n"
            "or <root>/<video> ... for unlabelled inference")

    def __init__(self, root: str, extensions: Iterable[str] = VIDEO_EXTENSIONS):
        self.root, self.extensions = os.fspath(root), tuple(e.lower() for e in extensions)
        if not os.path.isdir(self.root):
            raise LayoutError(f"video folder {self.root!r} does not exist; expected:\n{self.TREE}")
        entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        class_dirs = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
        loose = [e.path for e in entries if e.is_file() and is_video_file(e.name, self.extensions)]
        if class_dirs and not loose:
            self.classes = [e.name for e in class_dirs]
            self.samples = []
            for label, entry in enumerate(class_dirs):
                videos = _videos_under(entry.path, self.extensions)
                if not videos:
                    raise LayoutError(f"class folder {entry.path!r} holds no video ({', '.join(self.extensions)}); "
                                      f"expected:\n{self.TREE}")
                self.samples += [(path, label) for path in videos]
        elif loose and not class_dirs:
            self.classes, self.samples = [], [(path, -1) for path in loose]
        elif loose:
            raise LayoutError(f"{self.root!r} mixes class folders and loose videos ({loose[0]!r}); "
                              f"expected:\n{self.TREE}")
        else:
            raise LayoutError(f"no video found in {self.root!r}; expected:\n{self.TREE}")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    @classmethod
    def from_paths(cls, paths: Iterable[str]) -> "VideoFolder":
        """An unlabelled list of video files (label -1), e.g. the arguments of ``tools/infer.py``."""
        paths = [os.fspath(p) for p in paths]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} video file(s) not found, e.g. {missing[:3]}")
        self = cls.__new__(cls)
        self.root, self.extensions = "", VIDEO_EXTENSIONS
        self.classes, self.class_to_idx = [], {}
        self.samples = [(p, -1) for p in paths]
        return self

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"VideoFolder({self.root!r}, videos={len(self.samples)}, classes={len(self.classes)})"
