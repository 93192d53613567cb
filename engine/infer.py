"""Inference on a user's own video files: sliding windows, read and run a batch of windows at a time.

A window is ``clip_len`` frames ``frame_stride`` apart (span ``(clip_len - 1) * frame_stride + 1``);
windows start every ``window_stride`` frames from frame 0 while they fit in the video, so a video
of ``n >= span`` frames has ``(n - span) // window_stride + 1`` windows and a shorter one a single
window padded by repeating its last frame. ``num_windows > 0`` takes that many evenly spaced
windows instead. Each batch of windows decodes exactly its frames (one decord ``get_batch``,
resized in the decoder), so a long video is never held in memory whole.

- Action checkpoint (``TASK action``): per window its frames, seconds and top-k ``[label, score]``
  (softmax); per video the top-k of the mean of the window scores.
- Re-ID checkpoint (``TASK reid``): per video a ``(num_windows, D)`` float32 ``.npy`` of clip
  embeddings beside ``out`` (``<out stem>_<video stem>.npy``), and the window index in ``out``.

``out`` ending in ``.json`` or ``.csv`` picks the format; files are written atomically. A video
that cannot be read is kept in the results as ``{"path", "error"}`` (the reason) and skipped.
"""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import torch
from tqdm import tqdm

from .errors import InputError
from .evaluate import load_trained
from .files import atomic_write, file_in_the_way
from .trainer import amp_dtype

__all__ = ["infer_videos", "sliding_windows", "format_result", "write_results"]


def sliding_windows(num_frames: int, clip_len: int, frame_stride: int, window_stride: int):
    """``ClipWindows`` starting at 0, ``window_stride``, ... while ``start + span <= num_frames``
    (at least one window; indices past the end repeat the last frame)."""
    from datasets.clip_sampling import ClipWindows
    if min(num_frames, clip_len, frame_stride, window_stride) < 1:
        raise ValueError(f"frames, clip length and strides must be >= 1, got "
                         f"{(num_frames, clip_len, frame_stride, window_stride)}")
    span = (clip_len - 1) * frame_stride + 1
    starts = np.arange(0, max(num_frames - span, 0) + 1, window_stride, dtype=np.int64)
    indices = np.minimum(starts[:, None] + np.arange(clip_len)[None, :] * frame_stride, num_frames - 1)
    return ClipWindows(indices, starts, indices[:, -1].copy())


def _class_names(checkpoint: str, num_classes: int) -> list[str]:
    from .checkpoint import checkpoint_classes, read_checkpoint
    return checkpoint_classes(read_checkpoint(checkpoint)) or [str(i) for i in range(num_classes)]


class _ClipRunner:
    """What differs between action and re-ID models: decode size, transform, output per window."""

    def __init__(self, cfg, checkpoint: str, model, device):
        self.cfg, self.model, self.device = cfg, model, device
        self.amp = amp_dtype(cfg, device)
        d = cfg.DATA
        self.reid = cfg.TASK == "reid"
        if self.reid:
            from datasets.transforms import build_reid_transform
            self.transform = build_reid_transform(d.HEIGHT, d.WIDTH, False)
        else:
            from datasets.action_transforms import build_action_transform
            self.transform = build_action_transform(False, crop_size=d.CROP_SIZE, short_side=d.SHORT_SIDE)
            self.names = _class_names(checkpoint, model.head.fc.out_features)

    def decode_size(self, path: str):
        """Frames come out of the decoder at the size the transform wants (no full-size frames)."""
        d = self.cfg.DATA
        if self.reid:
            return int(d.HEIGHT), int(d.WIDTH)
        if d.DECODE_SIZE:
            return tuple(int(s) for s in d.DECODE_SIZE)
        from datasets.video_reader import native_size
        height, width = native_size(path)
        scale = d.SHORT_SIDE / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, C, H, W) -> (B, K) class probabilities or (B, D) embeddings, float32 on the CPU.
        The clips stay uint8 until the model, which normalises them on its device."""
        b, t = frames.shape[:2]
        if self.reid:  # the re-ID transform maps (T, C, H, W) frames to one (C, T, H, W) clip
            clips = self.transform(frames.flatten(0, 1))
            clips = clips.unflatten(1, (b, t)).transpose(0, 1)
        else:
            clips = self.transform(frames)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.model(clips.contiguous().to(self.device)).float().cpu()
        return out if self.reid else out.softmax(-1)


def _read_windows(video, indices: np.ndarray) -> torch.Tensor:
    """(B, T) frame indices -> uint8 (B, T, C, H, W); each distinct frame is decoded once."""
    unique, inverse = np.unique(indices, return_inverse=True)
    frames = video.read(unique)[torch.from_numpy(inverse.reshape(-1))]
    return frames.unflatten(0, indices.shape)


def _embedding_path(out: str, video: str, taken: set) -> str:
    stem = f"{os.path.splitext(out)[0]}_{os.path.splitext(os.path.basename(video))[0]}"
    path, k = stem + ".npy", 1
    while path in taken:
        path, k = f"{stem}_{k}.npy", k + 1
    taken.add(path)
    return path


def _infer_one(runner: _ClipRunner, path: str, clip_len: int, frame_stride: int, window_stride: int,
               num_windows: int, batch: int, topk: int) -> dict:
    from datasets.clip_sampling import uniform_clips, window_seconds
    from datasets.video_reader import open_video
    with open_video(path, size=runner.decode_size(path)) as video:
        n, fps, times = video.num_frames, video.fps, video.timestamps()   # the frames' own times (VFR)
        windows = (uniform_clips(n, clip_len, frame_stride, num_windows) if num_windows > 0
                   else sliding_windows(n, clip_len, frame_stride, window_stride))
        outputs = []
        with tqdm(total=len(windows.start), desc=os.path.basename(path), unit="window", leave=False,
                  dynamic_ncols=True) as bar:
            for s in range(0, len(windows.start), batch):
                outputs.append(runner(_read_windows(video, windows.indices[s:s + batch])))
                bar.update(len(outputs[-1]))
    outputs = torch.cat(outputs)
    rows = [{"start": round(float(a), 3), "end": round(float(b), 3), "start_frame": int(f0), "end_frame": int(f1)}
            for (a, b), f0, f1 in zip(window_seconds(windows, times), windows.start, windows.end)]
    result = {"path": path, "fps": fps, "num_frames": n, "duration": round(float(times[-1, 1]), 3),
              "clip_len": clip_len, "frame_stride": frame_stride,
              "window_stride": window_stride if num_windows <= 0 else None, "windows": rows}
    if runner.reid:
        result["embeddings"] = outputs.numpy()
        for i, row in enumerate(rows):
            row["row"] = i
        return result
    k = min(topk, outputs.shape[1])

    def top(p: torch.Tensor) -> list:
        scores, ids = p.topk(k)
        return [[runner.names[int(j)], float(v)] for v, j in zip(scores, ids)]

    for row, p in zip(rows, outputs):
        row["topk"] = top(p)
    result["video_topk"] = top(outputs.mean(0))
    return result


def infer_videos(config: str, checkpoint: str, videos, out: str | None = None, overrides=(), num_windows: int = 0,
                 topk: int = 5, batch: int = 8, clip_len: int | None = None, frame_stride: int | None = None,
                 window_stride: int | None = None, on_result=None) -> list[dict]:
    """Results per video (see the module docstring); ``clip_len`` / ``frame_stride`` default to
    ``DATA.SEQ_LEN`` / ``DATA.FRAME_STRIDE``, ``window_stride`` to the span (windows side by side).
    ``on_result(result)`` is called as each video finishes (e.g. to print it)."""
    from datasets.video_reader import VideoReadError
    videos = [os.fspath(v) for v in videos]
    if out and os.path.splitext(out)[1].lower() not in (".json", ".csv"):
        raise InputError(f"output must end in .json or .csv, got {out!r}")
    blocked = file_in_the_way(os.path.dirname(os.path.abspath(out))) if out else None
    if blocked:
        raise InputError(f"cannot write {out!r}: {blocked!r} is a file, not a folder")
    for path in videos:
        if os.path.isdir(path):
            raise InputError(f"{path!r} is a folder: pass video files (e.g. {os.path.join(path, '*.mp4')})")
    cfg, _, model, device = load_trained(config, checkpoint, overrides, task_needed=False)
    runner = _ClipRunner(cfg, checkpoint, model, device)
    if runner.reid and not out:
        raise InputError("a re-ID checkpoint gives embeddings: name an output file (out) to save them beside")
    clip_len = clip_len or cfg.DATA.SEQ_LEN
    frame_stride = frame_stride or cfg.DATA.FRAME_STRIDE
    window_stride = window_stride or (clip_len - 1) * frame_stride + 1
    if min(clip_len, frame_stride, window_stride, batch, topk) < 1:
        raise InputError("clip length, strides, batch size and top-k must be >= 1")
    results, taken = [], set()
    for path in videos:
        path = os.fspath(path)
        try:
            result = _infer_one(runner, path, clip_len, frame_stride, window_stride, num_windows, batch, topk)
        except (VideoReadError, OSError) as err:  # reported once: in the results (and by on_result)
            result = {"path": path, "error": getattr(err, "reason", None) or str(err)}
        if "embeddings" in result:
            file = _embedding_path(out, path, taken)
            array = result.pop("embeddings")
            atomic_write(file, lambda f: np.save(f, array))
            result.update(embeddings=file, dim=int(array.shape[1]))
        results.append(result)
        if on_result is not None:
            on_result(result)
    if out:
        write_results(results, out)
    return results


# ---------------------------------------------------------------------------------------- output
def _csv_rows(results: list[dict]) -> tuple[list[str], list[list]]:
    k = max((len(r["video_topk"]) for r in results if "video_topk" in r), default=0)
    reid = any("embeddings" in r for r in results)
    head = ["path", "window", "start_frame", "end_frame", "start", "end"]
    head += ["embeddings", "row"] if reid else [f"top{i + 1}_{c}" for i in range(k) for c in ("label", "score")]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["path"]] + [""] * (len(head) - 1) + [r["error"]])
            continue
        for i, w in enumerate(r["windows"]):
            tail = [r["embeddings"], w["row"]] if reid else [x for pair in w["topk"] for x in pair]
            rows.append([r["path"], i, w["start_frame"], w["end_frame"], w["start"], w["end"], *tail])
        if not reid:
            end = r["duration"] if np.isfinite(r["duration"]) else ""
            rows.append([r["path"], "video", 0, r["num_frames"] - 1, 0.0, end,
                         *[x for pair in r["video_topk"] for x in pair]])
    return head + ["error"], rows


def write_results(results: list[dict], out: str) -> None:
    """``out`` .json: the list of per-video dicts; .csv: one row per window (and per video for
    action models: ``window`` = "video"), ``topN_label``/``topN_score`` or ``embeddings``/``row``."""
    ext = os.path.splitext(out)[1].lower()
    if ext == ".json":
        text = json.dumps(results, indent=2)
    elif ext == ".csv":
        head, rows = _csv_rows(results)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(head)
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        raise InputError(f"output must end in .json or .csv, got {out!r}")
    atomic_write(out, lambda f: f.write(text.encode("utf-8")))


def format_result(r: dict, show: int = 3) -> str:
    """A readable table of one video's result (top-``show`` per window and for the video)."""
    name = os.path.basename(r["path"])
    if "error" in r:
        return f"{name}: SKIPPED ({r['error']})"
    head = (f"{name}: {r['num_frames']} frames, {r['duration']:.2f} s (average {r['fps']:.2f} fps), "
            f"{len(r['windows'])} windows of "
            f"{r['clip_len']} frames (frame stride {r['frame_stride']})")
    if "embeddings" in r:
        return f"{head}\n  clip embeddings ({len(r['windows'])}, {r['dim']}) -> {r['embeddings']}"
    lines = [head, f"  {'window':>6}  {'frames':>11}  {'seconds':>13}  top-{min(show, len(r['video_topk']))}"]

    def labels(topk):
        return "  ".join(f"{label} {score:.3f}" for label, score in topk[:show])

    for i, w in enumerate(r["windows"]):
        frames = f"{w['start_frame']}-{w['end_frame']}"
        secs = f"{w['start']:.2f}-{w['end']:.2f}"
        lines.append(f"  {i:>6}  {frames:>11}  {secs:>13}  {labels(w['topk'])}")
    lines.append(f"  {'video':>6}  {'':>11}  {'':>13}  {labels(r['video_topk'])}")
    return "\n".join(lines)
