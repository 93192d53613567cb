"""Read clips from video files: decord first, PyAV for the files decord cannot open or decode.

decord reads a whole clip with one batched ``get_batch`` call and, when a ``size`` is asked for,
resizes inside the decoder (bilinear), the fastest path to a clip. PyAV seeks to the key frame
before each run of wanted frames and decodes only up to the last one it needs; its resize is
bilinear as well, so both back-ends give the same pixels up to rounding.

>>> num_frames, fps, (height, width) = video_info("v_ApplyEyeMakeup_g08_c01.avi")
>>> clip = read_clip("v_ApplyEyeMakeup_g08_c01.avi", [0, 2, 4, 6], size=(128, 171))  # uint8 (T,C,H,W)
>>> clip.is_contiguous(memory_format=torch.channels_last)   # True: decoder order, no copy
>>> with open_video(path, size=(128, 171)) as video:     # one open for many reads (multi-view test)
...     views = video.read(indices)

>>> video.timestamps()                                  # (num_frames, 2) start/end seconds of each frame

Frames are numbered in display order by both back-ends (PyAV by a table of the packets' pts), and
``timestamps`` are the frames' own, so variable frame rates index and time correctly.
Indices past either end are clamped to the first / last frame. Every failure (missing file,
garbage bytes, a stream neither back-end can decode) raises ``VideoReadError`` naming the path.
"""
from __future__ import annotations

import errno
import logging
import os
from typing import Sequence

import av
import numpy as np
import torch

try:
    import decord
except ImportError:  # pragma: no cover - decord has no wheel on some platforms; PyAV still works
    decord = None

__all__ = ["VideoReadError", "open_video", "read_clip", "video_info", "native_size", "DecordVideo", "PyAVVideo"]

log = logging.getLogger(__name__)

SEEK_GAP = 48  # wanted frames further apart than this are reached by a new seek, not by decoding through


class VideoReadError(RuntimeError):
    """A video that cannot be opened or decoded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read video {path!r}: {reason}")
        self.path = path
        self.reason = reason


def _short_reason(err: BaseException) -> str:
    """decord errors carry a C++ backtrace: keep the first line and the type. FFmpeg's generic
    failure (-1) reaches PyAV as errno 1 and would read "PermissionError: Operation not permitted"
    on a file that is merely damaged: say what it is."""
    if isinstance(err, av.error.FFmpegError) and err.errno == errno.EPERM:
        return "FFmpeg failed on damaged data (generic error -1)"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive (height, width), got {size!r}")
    return height, width


class _Video:
    """Common part of the two back-ends: clamping, the (T,C,H,W) tensor, context management."""

    backend = ""
    path: str
    num_frames: int
    fps: float

    def _clamp(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("no frame indices given")
        return np.clip(idx, 0, self.num_frames - 1)

    @staticmethod
    def _to_tensor(frames: np.ndarray) -> torch.Tensor:
        """(T,H,W,3) uint8 -> (T,3,H,W) uint8, a view in channels-last memory order (no copy):
        torchvision's uint8 antialiased resize runs ~4x faster on it than on a contiguous
        (T,3,H,W), and the transforms make the one layout copy at their end."""
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)

    def timestamps(self) -> np.ndarray:
        """(num_frames, 2) start and end of each frame in seconds, from the average frame rate
        (NaN when unknown); the back-ends override it with the frames' own timestamps."""
        fps = self.fps if np.isfinite(self.fps) and self.fps > 0 else np.nan
        start = np.arange(self.num_frames, dtype=np.float64) / fps
        return np.stack([start, start + 1 / fps], axis=1)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, num_frames={self.num_frames}, fps={self.fps:.3f})"


class DecordVideo(_Video):
    """A video opened with ``decord.VideoReader`` (resize done by the decoder when ``size`` is set)."""

    backend = "decord"

    def __init__(self, path: str, size=None, num_threads: int = 1):
        if decord is None:
            raise ImportError("decord is not installed")
        self.path, self.size, self.num_threads = path, _check_size(size), num_threads
        height, width = self.size or (-1, -1)
        self._reader = decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height,
                                          num_threads=num_threads)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())
        if self.num_frames <= 0:
            raise ValueError("no video frames")
        self._frame_size = self.size

    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the frames ``read`` returns (the native size decodes frame 0 once)."""
        if self._frame_size is None:
            try:
                self._frame_size = tuple(self._reader[0].shape[:2])
            except Exception as err:  # a damaged first frame: decord's own error type
                raise VideoReadError(self.path, f"decord: {_short_reason(err)}") from err
        return self._frame_size

    def timestamps(self) -> np.ndarray:
        """(num_frames, 2) start and end of each frame in seconds from the stream start (decord's
        ``get_frame_timestamp``: the frames' own pts, so variable frame rates are exact)."""
        try:
            return np.asarray(self._reader.get_frame_timestamp(np.arange(self.num_frames)), dtype=np.float64)
        except Exception as err:  # noqa: BLE001 - decord's own error type
            log.info("decord has no timestamps for %s (%s); assuming %.3f fps", self.path, _short_reason(err), self.fps)
            return _Video.timestamps(self)

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        idx = self._clamp(indices)
        try:
            batch = self._reader.get_batch(idx)
        except Exception as err:  # decord opens some files it cannot decode to the end
            log.info("decord failed on %s (%s); decoding with PyAV", self.path, _short_reason(err))
            with PyAVVideo(self.path, self.size, self.num_threads) as fallback:
                return fallback.read(idx)
        # decord's bridge is process-global: another library (pytorchvideo's decord decoder) may
        # have switched it to torch, and then get_batch returns a tensor instead of an NDArray
        frames = batch.numpy() if isinstance(batch, torch.Tensor) else batch.asnumpy()
        return self._to_tensor(frames)

    def close(self) -> None:
        self._reader = None


class PyAVVideo(_Video):
    """A video opened with PyAV; reads seek near the first wanted frame of each run of frames.

    Frames are numbered by their presentation timestamps: opening demuxes the stream once (packets
    only, nothing decoded) into a sorted table of pts, so frame ``i`` is the ``i``-th in display
    order whatever the frame rate (constant or variable), as decord numbers them. A stream without
    usable pts (missing or repeated) is numbered in decoding order instead.
    """

    backend = "pyav"

    def __init__(self, path: str, size=None, num_threads: int = 1):
        self.path, self.size, self.num_threads = path, _check_size(size), num_threads
        try:
            self._open()
            rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
            self.fps = float(rate) if rate else float("nan")
            self._index()
        except VideoReadError:
            raise
        except Exception as err:
            raise VideoReadError(path, f"PyAV: {_short_reason(err)}") from err
        if self.num_frames <= 0:
            raise VideoReadError(path, "PyAV: no video frames")

    def _open(self) -> None:
        self.close()
        self._container = av.open(self.path)
        if not self._container.streams.video:
            raise ValueError("no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_count = max(1, self.num_threads)

    def _index(self) -> None:
        """``_pts`` (sorted int64, None when unusable), ``_durations`` and ``num_frames`` from the packets."""
        stream, pts, durations = self._stream, [], []
        try:
            for packet in self._container.demux(stream):
                if packet.size > 0:
                    pts.append(packet.pts)
                    durations.append(packet.duration or 0)
        except av.error.FFmpegError as err:  # a truncated or damaged file: keep the packets before the damage
            if not pts:
                raise
            log.info("PyAV: %s is damaged after %d packets (%s)", self.path, len(pts), _short_reason(err))
        self.num_frames = len(pts)
        self._pts = self._durations = None
        if pts and None not in pts and len(set(pts)) == len(pts):
            order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
            self._pts = np.asarray(pts, dtype=np.int64)[order]
            self._durations = np.asarray(durations, dtype=np.int64)[order]
        self._open()   # rewind by reopening: seeking a damaged file may fail

    def timestamps(self) -> np.ndarray:
        """(num_frames, 2) start and end of each frame in seconds from the stream start (decord's
        convention: end = start + the packet's duration, else the next frame's start, else 1/fps)."""
        if self._pts is None:
            return _Video.timestamps(self)
        base = float(self._stream.time_base)
        first = self._stream.start_time if self._stream.start_time is not None else int(self._pts[0])
        start = (self._pts - first) * base
        end = np.append(start[1:], start[-1] + (1 / self.fps if np.isfinite(self.fps) and self.fps > 0 else np.nan))
        return np.stack([start, np.where(self._durations > 0, start + self._durations * base, end)], axis=1)

    def frame_size(self) -> tuple[int, int]:
        if self.size:
            return self.size
        context = self._stream.codec_context
        if context is None:  # PyAV gives some broken streams no codec context
            raise VideoReadError(self.path, "PyAV: the video stream has no codec context")
        return context.height, context.width

    def _to_array(self, frame) -> np.ndarray:
        if self.size is None:
            return frame.to_ndarray(format="rgb24")
        height, width = self.size
        return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")

    def _decode_run(self, run: np.ndarray, frames: dict) -> bool:
        """Seek to the key frame before ``run[0]``, decode up to ``run[-1]``; False when the seek
        fails (a damaged index) or a decoded frame's pts is not in the table."""
        try:
            self._container.seek(int(self._pts[run[0]]), stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            return False
        wanted = set(run.tolist())
        for frame in self._container.decode(self._stream):
            index = -1 if frame.pts is None else int(np.searchsorted(self._pts, frame.pts))
            if index < 0 or index >= self.num_frames or self._pts[index] != frame.pts:
                return False
            if index in wanted:
                frames[index] = self._to_array(frame)
            if index >= run[-1]:
                break
        return True

    def _decode_sequential(self, last: int, wanted: set, frames: dict) -> None:
        """Decode from the start, numbering frames in decoding order (files without usable pts)."""
        self._open()
        for index, frame in enumerate(self._container.decode(self._stream)):
            if index in wanted:
                frames[index] = self._to_array(frame)
            if index >= last:
                break

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        idx = self._clamp(indices)
        wanted = np.unique(idx)
        frames: dict[int, np.ndarray] = {}
        try:
            ok = self._pts is not None
            if ok:
                runs = np.split(wanted, np.flatnonzero(np.diff(wanted) > SEEK_GAP) + 1)
                ok = all(self._decode_run(run, frames) for run in runs)
            missing = [int(i) for i in wanted if int(i) not in frames]
            if not ok or (missing and (not frames or missing[0] < max(frames))):  # seeking went wrong
                frames.clear()
                self._decode_sequential(int(wanted[-1]), set(wanted.tolist()), frames)
        except Exception as err:
            raise VideoReadError(self.path, f"PyAV: {_short_reason(err)}") from err
        if not frames:
            raise VideoReadError(self.path, "PyAV: no frame could be decoded")
        # The data may end before the last packet (a truncated file): use the last frame decoded.
        decoded = np.array(sorted(frames))
        nearest = decoded[np.clip(np.searchsorted(decoded, idx, side="right") - 1, 0, None)]
        return self._to_tensor(np.stack([frames[int(i)] for i in nearest]))

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
            self._container = None


def open_video(path: str, size=None, num_threads: int = 1, backend: str = "auto") -> _Video:
    """Open ``path`` with decord (``backend="auto"`` or ``"decord"``), else with PyAV.

    ``size`` = (height, width) of the returned frames (resized by the decoder), None for native.
    ``num_threads`` decoding threads per video (1 suits DataLoader workers).
    """
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoReadError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "empty file")
    decord_reason = "not tried"
    if backend in ("auto", "decord"):
        try:
            return DecordVideo(path, size, num_threads)
        except Exception as err:  # decord raises RuntimeError / DECORDError with a C++ backtrace
            decord_reason = _short_reason(err)
            if backend == "decord":
                raise VideoReadError(path, f"decord: {decord_reason}") from err
            log.debug("decord cannot open %s (%s); trying PyAV", path, decord_reason)
    try:
        return PyAVVideo(path, size, num_threads)
    except VideoReadError as err:
        raise VideoReadError(path, f"decord: {decord_reason}; {err.reason}") from err


def native_size(path: str) -> tuple[int, int]:
    """(H, W) of a video's frames from the stream header (PyAV; nothing decoded, no index built),
    else from its first decoded frame (``VideoReadError`` when that fails too)."""
    try:
        with av.open(os.fspath(path)) as container:
            context = container.streams.video[0].codec_context
            if context is not None and min(context.height, context.width) > 0:
                return context.height, context.width
    except Exception:  # noqa: BLE001 - a damaged header (or no codec context): decode instead
        pass
    with open_video(path) as video:
        return tuple(int(s) for s in video.read([0]).shape[-2:])


def read_clip(path: str, indices: Sequence[int], size=None, backend: str = "auto") -> torch.Tensor:
    """Frames ``indices`` (clamped to the video) as a uint8 tensor (T, C, H, W); ``size`` = (H, W)."""
    with open_video(path, size=size, backend=backend) as video:
        return video.read(indices)


def video_info(path: str, backend: str = "auto") -> tuple[int, float, tuple[int, int]]:
    """(num_frames, fps, (height, width)) of a video."""
    with open_video(path, backend=backend) as video:
        return video.num_frames, video.fps, tuple(int(s) for s in video.frame_size())
