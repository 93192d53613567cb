"""A video-folder dataset full of damaged files, to check that nothing crashes on them.

>>> counts = write_damaged_videos("data/damaged")     # then DATA.DATASET video_folder, DATA.ROOT data/damaged
>>> manifest = read_manifest("data/damaged")          # [{"path", "split", "kind", "expect"}]

Layout ``root/train/<class>/`` and ``root/val/<class>/`` (``VideoFolder``), each class folder
holding good synthetic clips (``render_clip``: .avi, .mp4 and .mkv) beside damaged files of
every kind in ``KINDS``, and ``root/manifest.csv`` saying what each file is. ``expect``:

- ``broken``: no reader can open it (zero bytes, random bytes with a video extension, a text file
  named .mp4, an mp4 cut before its index, a file without read permission — unless the reader
  runs as root, where permissions do not block reads: ``expect`` is then ``readable``);
- ``readable``: must be read, never skipped: a one-frame video and a video shorter than a clip
  (the samplers pad both by repeating frames), and the good clips;
- ``either``: the outcome depends on the demuxer (AVI/MKV cut at 10/50/90 % of their bytes keep
  their leading frames; a valid header with corrupted middle bytes may still decode).
"""
from __future__ import annotations

import csv
import os

import numpy as np

from .synthetic_action import write_avi, class_names, render_clip

__all__ = ["write_damaged_videos", "read_manifest", "KINDS"]

CONTAINERS = (".avi", ".mp4", ".mkv")
TRUNCATE_AT = (0.1, 0.5, 0.9)
SHORT_FRAMES = 3

# kind -> extensions written per class folder
KINDS = {
    "zero_bytes": CONTAINERS,
    "random_bytes": CONTAINERS,
    "text_file": (".mp4",),
    **{f"truncated_{round(100 * share)}": CONTAINERS for share in TRUNCATE_AT},
    "corrupt_middle": CONTAINERS,
    "no_permission": (".avi",),
    "one_frame": (".avi",),
    "short": (".mp4",),
}


def _expect(kind: str, ext: str) -> str:
    if kind in ("zero_bytes", "random_bytes", "text_file"):
        return "broken"
    if kind == "no_permission":
        return "readable" if os.geteuid() == 0 else "broken"
    if kind.startswith("truncated") and ext == ".mp4":  # PyAV writes the moov index at the end
        return "broken"
    if kind in ("one_frame", "short"):
        return "readable"
    return "either"


def _damage(path: str, kind: str, ext: str, clip: np.ndarray, rng: np.random.Generator) -> None:
    """Write the damaged file ``path`` of ``kind`` (a good encoding of ``clip`` is its raw material)."""
    if kind == "zero_bytes":
        open(path, "wb").close()
    elif kind == "random_bytes":
        with open(path, "wb") as f:
            f.write(rng.integers(0, 256, int(rng.integers(2000, 20000)), dtype=np.uint8).tobytes())
    elif kind == "text_file":
        with open(path, "w") as f:
            f.write("This is not a video. It is a text file with a video extension.\n" * 20)
    elif kind == "one_frame":
        write_avi(path, clip[:1])
    elif kind == "short":
        write_avi(path, clip[:SHORT_FRAMES])
    else:
        write_avi(path, clip)
        data = bytearray(open(path, "rb").read())
        if kind.startswith("truncated"):
            data = data[:int(len(data) * int(kind.split("_")[1]) / 100)]
        elif kind == "corrupt_middle":
            lo, hi = int(0.4 * len(data)), int(0.6 * len(data))
            data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
        with open(path, "wb") as f:
            f.write(data)
        if kind == "no_permission":
            os.chmod(path, 0)


def write_damaged_videos(root: str, num_classes: int = 2, good_per_class: int = 4, num_frames: int = 12,
                         size=32, seed: int = 0) -> dict:
    """Write the damaged set (train and val alike). Returns counts: ``files``, ``broken``,
    ``readable``, ``either``, ``good`` and ``per_kind`` (files of each kind)."""
    rng = np.random.default_rng(seed)
    names = class_names(num_classes)
    rows = []
    for split in ("train", "val"):
        for label, name in enumerate(names):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(good_per_class):
                ext = CONTAINERS[i % len(CONTAINERS)]
                path = os.path.join(folder, f"good_{i:02d}{ext}")
                write_avi(path, render_clip(label, num_classes, rng, num_frames, size))
                rows.append((path, split, "good", "readable"))
            clip = render_clip(label, num_classes, rng, num_frames, size)
            for kind, extensions in KINDS.items():
                for ext in extensions:
                    path = os.path.join(folder, f"{kind}{ext}")
                    if os.path.exists(path):  # written before (chmod 000 blocks rewriting)
                        os.chmod(path, 0o644)
                    _damage(path, kind, ext, clip, rng)
                    rows.append((path, split, kind, _expect(kind, ext)))
    with open(os.path.join(root, "manifest.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "split", "kind", "expect"])
        writer.writerows((os.path.relpath(p, root), *rest) for p, *rest in rows)
    expect = [r[3] for r in rows]
    kinds = [r[2] for r in rows]
    return {"files": len(rows), **{e: expect.count(e) for e in ("broken", "readable", "either")},
            "good": kinds.count("good"), "damaged": len(rows) - kinds.count("good"),
            "per_kind": {k: kinds.count(k) for k in ["good", *KINDS]}}


def read_manifest(root: str) -> list[dict]:
    """The rows of ``root/manifest.csv`` with absolute ``path``s."""
    with open(os.path.join(root, "manifest.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["path"] = os.path.join(root, row["path"])
    return rows
