"""Synthetic UCF101 / HMDB51 datasets: real .avi files and split files in the official layouts.

The classes differ ONLY in time, so a model must use temporal order to beat chance:

- ``content="order"`` (default): the clip has E phases; in each, a textured blob flashes at a
  random place in one of E colours. The class is the ORDER of the colours (a permutation; E is the
  smallest number with E! >= num_classes). Every class shows every colour for the same time, so a
  single frame, or the same frames shuffled, could belong to any class.
- ``content="motion"``: a textured disk crosses the frame (wrapping around the border) in the
  class's direction (angles 360 / num_classes apart, measured clockwise from +x in image
  coordinates) from a random start: a single frame is uninformative; opposite directions share
  the same frames in reverse order.

Every video adds a random background texture, a static grey distractor patch and per-frame noise.
As in UCF101, clips of one group (gXX) share their background; test splits hold whole groups out.
Deterministic given ``seed``.

>>> write_synthetic_ucf101("data/ucf101_synth")       # then UCF101("data/ucf101_synth", split=1)
>>> write_synthetic_hmdb51("data/hmdb51_synth")       # then HMDB51("data/hmdb51_synth", split=1)
"""
from __future__ import annotations

import itertools
import math
import os

import av
import numpy as np

__all__ = ["write_synthetic_ucf101", "write_synthetic_hmdb51", "render_clip", "class_names", "write_avi"]

COLOURS = {"Red": (230, 40, 40), "Green": (40, 210, 60), "Blue": (50, 80, 235), "Yellow": (235, 220, 40),
           "Magenta": (220, 50, 220)}
COMPASS = {0: "Right", 45: "DownRight", 90: "Down", 135: "DownLeft", 180: "Left", 225: "UpLeft", 270: "Up",
           315: "UpRight"}


def _num_events(num_classes: int) -> int:
    events = 2
    while math.factorial(events) < num_classes:
        events += 1
    if events > len(COLOURS):
        raise ValueError(f"content='order' supports at most {math.factorial(len(COLOURS))} classes")
    return events


def _orders(num_classes: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(_num_events(num_classes))))[:num_classes]


def _angles(num_classes: int) -> np.ndarray:
    return np.arange(num_classes) * 360.0 / num_classes


def class_names(num_classes: int, content: str = "order") -> list[str]:
    """CamelCase names (UCF101 style), e.g. ``FlashRedGreenBlue`` or ``MoveLeft``."""
    if content == "order":
        colours = list(COLOURS)
        return ["Flash" + "".join(colours[e] for e in order) for order in _orders(num_classes)]
    if content == "motion":
        names = ["Move" + COMPASS.get(a, f"{round(a):03d}Deg") for a in _angles(num_classes).tolist()]
        if len(set(names)) < num_classes:
            raise ValueError("content='motion' supports at most 360 classes")
        return names
    raise ValueError(f"content must be 'order' or 'motion', got {content!r}")


def _snake(name: str) -> str:
    """``FlashRedGreen`` -> ``flash_red_green`` (HMDB51 style)."""
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


def frame_shape(size) -> tuple[int, int]:
    """``size``: an int (square frames) or ``(height, width)``, e.g. ``(240, 320)`` as in UCF101."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(h, w) < 16:
        raise ValueError(f"frames must be at least 16x16, got {h}x{w}")
    return h, w


def _background(rng: np.random.Generator, size) -> np.ndarray:
    """(H, W, 3) float: blocky colour texture + fine grain + a static grey checkered distractor."""
    h, w = frame_shape(size)
    block = int(rng.integers(4, 9))
    coarse = rng.uniform(50, 190, (h // block + 1, w // block + 1, 3))
    image = np.kron(coarse, np.ones((block, block, 1)))[:h, :w] + rng.normal(0, 10, (h, w, 1))
    short = min(h, w)
    side, cell = int(rng.integers(short // 6, short // 3)), int(rng.integers(2, 5))
    top, left = rng.integers(0, np.array([h, w]) - side, 2)
    yy, xx = np.mgrid[:side, :side]
    image[top:top + side, left:left + side] = (100 + 60 * ((yy // cell + xx // cell) % 2))[..., None]
    return image


def _stripes(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """A random stripe texture in blob coordinates, values in {0.6, 1.0}."""
    phi, period = rng.uniform(0, np.pi), rng.uniform(3, 7)
    return np.where(np.sin(2 * np.pi * (dx * np.cos(phi) + dy * np.sin(phi)) / period) > 0, 1.0, 0.6)


def render_clip(label: int, num_classes: int, rng: np.random.Generator, num_frames: int = 24, size=64,
                content: str = "order", background: np.ndarray | None = None) -> np.ndarray:
    """One clip of class ``label``: uint8 (T, H, W, 3); ``size`` an int or ``(H, W)``."""
    h, w = frame_shape(size)
    hw = np.array([h, w], dtype=np.float64)
    bg = _background(rng, size) if background is None else background
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    radius = rng.uniform(0.12, 0.2) * min(h, w)
    if content == "order":
        order = np.array(_orders(num_classes)[label])
        phase = (np.arange(num_frames) * len(order)) // num_frames                       # (T,)
        centres = rng.uniform(radius, hw - radius, (len(order), 2))[phase]                # (T, 2)
        dy, dx = yy - centres[:, 0, None, None], xx - centres[:, 1, None, None]          # (T, H, W)
        colour = np.array(list(COLOURS.values()), dtype=np.float64)[order[phase]]        # (T, 3)
    elif content == "motion":
        angle = np.deg2rad(_angles(num_classes)[label] + rng.uniform(-5, 5))
        speed = rng.uniform(1.5, 2.5)
        velocity = speed * np.array([np.sin(angle), np.cos(angle)])                    # (dy, dx) per frame
        path = rng.uniform(0, hw, 2) + np.arange(num_frames)[:, None] * velocity
        dy = (yy - path[:, 0, None, None] + h / 2) % h - h / 2                          # distances on the torus
        dx = (xx - path[:, 1, None, None] + w / 2) % w - w / 2
        colour = np.tile(rng.uniform(60, 255, 3), (num_frames, 1))
    else:
        raise ValueError(f"content must be 'order' or 'motion', got {content!r}")
    inside = (dy ** 2 + dx ** 2 <= radius ** 2)[..., None]
    blob = colour[:, None, None, :] * _stripes(rng, dy, dx)[..., None]
    frames = np.where(inside, blob, bg[None]) + rng.normal(0, 6, (num_frames, h, w, 3))
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def write_avi(path: str, frames: np.ndarray, fps: int = 25, codec: str = "mpeg4") -> None:
    """Encode (T, H, W, 3) uint8 RGB frames with PyAV (mpeg4 key frame every 8 frames, or mjpeg)."""
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.bit_rate = 1_000_000
        stream.codec_context.gop_size = 8
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def _test_groups(num_groups: int, split: int) -> range:
    """UCF101 holds 7 of 25 groups out per split (g01-07, g08-14, g15-21); scaled to ``num_groups``."""
    fold = max(1, round(num_groups * 7 / 25))
    return range((split - 1) * fold + 1, split * fold + 1)


def write_synthetic_ucf101(root: str, num_classes: int = 6, videos_per_class: int = 10, num_groups: int = 5,
                           num_frames: int = 24, size=64, content: str = "order", fps: int = 25,
                           codec: str = "mpeg4", seed: int = 0) -> dict:
    """Write ``root/UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` and ``root/ucfTrainTestlist/``.

    Video i of a class goes to group ``i % num_groups + 1`` (clip ``i // num_groups + 1``); split s
    tests on the s-th fold of groups (``round(7/25 * num_groups)`` groups, at least one).
    ``size``: an int (square frames; small and fast, the default) or ``(H, W)`` such as
    ``(240, 320)``, UCF101's own frame size. Returns counts: classes, videos, and train/test sizes
    per split.
    """
    if num_groups < 4:
        raise ValueError("num_groups must be >= 4 so that each of the 3 splits keeps training groups")
    rng = np.random.default_rng(seed)
    names = class_names(num_classes, content)
    video_dir, list_dir = os.path.join(root, "UCF-101"), os.path.join(root, "ucfTrainTestlist")
    os.makedirs(list_dir, exist_ok=True)
    entries = []  # (relative path, label, group)
    for label, name in enumerate(names):
        os.makedirs(os.path.join(video_dir, name), exist_ok=True)
        backgrounds = [_background(rng, size) for _ in range(num_groups)]
        for i in range(videos_per_class):
            group, clip = i % num_groups + 1, i // num_groups + 1
            rel = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"
            frames = render_clip(label, num_classes, rng, num_frames, size, content, backgrounds[group - 1])
            write_avi(os.path.join(video_dir, rel), frames, fps, codec)
            entries.append((rel, label, group))
    with open(os.path.join(list_dir, "classInd.txt"), "w", newline="\r\n") as f:
        f.writelines(f"{label + 1} {name}\n" for label, name in enumerate(names))
    counts = {"classes": num_classes, "videos": len(entries), "train": [], "test": []}
    for split in (1, 2, 3):
        held_out = _test_groups(num_groups, split)
        train = [(rel, label) for rel, label, group in entries if group not in held_out]
        test = [rel for rel, _, group in entries if group in held_out]
        with open(os.path.join(list_dir, f"trainlist0{split}.txt"), "w", newline="\r\n") as f:
            f.writelines(f"{rel} {label + 1}\n" for rel, label in train)
        with open(os.path.join(list_dir, f"testlist0{split}.txt"), "w", newline="\r\n") as f:
            f.writelines(f"{rel}\n" for rel in test)
        counts["train"].append(len(train))
        counts["test"].append(len(test))
    return counts


def write_synthetic_hmdb51(root: str, num_classes: int = 6, videos_per_class: int = 10, num_frames: int = 24,
                           size=64, content: str = "order", fps: int = 25, codec: str = "mpeg4",
                           seed: int = 0) -> dict:
    """Write ``root/videos/<class>/<name>.avi`` and ``root/testTrainMulti_7030_splits/``.

    Per split and class, a seeded shuffle tags 30 % of the videos 2 (test, at least one), 10 % 0
    (unused) and the rest 1 (train), like the official 70/30 splits with unused leftovers.
    Returns counts: classes, videos, and train/test sizes per split.
    """
    if videos_per_class < 2:
        raise ValueError("videos_per_class must be >= 2 (one train and one test video per class)")
    rng = np.random.default_rng(seed)
    names = [_snake(n) for n in class_names(num_classes, content)]
    split_dir = os.path.join(root, "testTrainMulti_7030_splits")
    os.makedirs(split_dir, exist_ok=True)
    num_test = max(1, round(0.3 * videos_per_class))
    num_unused = videos_per_class // 10 if videos_per_class - num_test - videos_per_class // 10 > 0 else 0
    tags = np.array(["2"] * num_test + ["0"] * num_unused + ["1"] * (videos_per_class - num_test - num_unused))
    counts = {"classes": num_classes, "videos": num_classes * videos_per_class, "train": [0, 0, 0], "test": [0, 0, 0]}
    for label, name in enumerate(names):
        os.makedirs(os.path.join(root, "videos", name), exist_ok=True)
        files = [f"Synthetic_{i:03d}_{name}_u_cm_np1_fr_med_{i % 3}.avi" for i in range(videos_per_class)]
        for file in files:
            frames = render_clip(label, num_classes, rng, num_frames, size, content)
            write_avi(os.path.join(root, "videos", name, file), frames, fps, codec)
        for split in (1, 2, 3):
            split_tags = rng.permutation(tags)
            with open(os.path.join(split_dir, f"{name}_test_split{split}.txt"), "w") as f:
                f.writelines(f"{file} {tag} \n" for file, tag in zip(files, split_tags))
            counts["train"][split - 1] += int((split_tags == "1").sum())
            counts["test"][split - 1] += int((split_tags == "2").sum())
    return counts
