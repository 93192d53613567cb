"""Video reading: decord vs PyAV agree, PyAV fallback, seeking, clamping, VideoReadError."""
import fractions
import os

import av
import numpy as np
import pytest
import torch

from sample_videos import sample_video
from datasets import video_reader
from datasets.video_reader import DecordVideo, PyAVVideo, VideoReadError, open_video, read_clip, video_info


def _decode_all(path, size=None):
    """Independent reference: every frame, in decoding order, straight from PyAV."""
    with av.open(path) as container:
        kw = {} if size is None else dict(width=size[1], height=size[0], interpolation="BILINEAR")
        return np.stack([f.to_ndarray(format="rgb24", **kw) for f in container.decode(video=0)])


def _write_gray_video(path, codec, values, size=32, pix_fmt="yuv420p"):
    """A video whose frame i is uniformly grey ``values[i]``."""
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = pix_fmt
        for v in values:
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), v, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


VFR_MS = [0, 40, 80, 1000, 1040, 3000, 3040, 6000, 6640]     # frame i shown from VFR_MS[i] ms, 40 ms long


def write_vfr_video(path, codec="mpeg4", pts_ms=VFR_MS, size=32):
    """A variable-frame-rate video: frame i is grey 10 i + 5 (it encodes its own index) and starts
    at ``pts_ms[i]`` milliseconds (the stream's nominal rate, 25 fps, says nothing about that)."""
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, ms in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 10 * i + 5, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, fractions.Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def grey_index(clip):
    """The frame index each frame of a grey-level clip encodes."""
    return ((clip.float().mean(dim=(1, 2, 3)) - 5) / 10).round().long().tolist()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_variable_frame_rate_frames_and_timestamps(tmp_path, backend):
    path = write_vfr_video(str(tmp_path / "vfr.mkv"))
    with open_video(path, backend=backend) as video:
        assert video.backend == backend and video.num_frames == 9
        assert grey_index(video.read(range(9))) == list(range(9))
        assert grey_index(video.read([8, 3, 4, 5, 0])) == [8, 3, 4, 5, 0]
        times = video.timestamps()
    np.testing.assert_allclose(times[:, 0], np.array(VFR_MS) / 1000, atol=1e-5)
    np.testing.assert_allclose(times[:, 1], np.array(VFR_MS) / 1000 + 0.04, atol=1e-5)


def test_pyav_fallback_on_av1_indexes_variable_frame_rate_frames(tmp_path):
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("no AV1 encoder in this PyAV build")
    path = write_vfr_video(str(tmp_path / "vfr_av1.mkv"), "libsvtav1", size=64)
    with open_video(path) as video:                               # decord cannot open AV1: PyAV takes over
        assert video.backend == "pyav" and video.num_frames == 9
        window = video.read([3, 4, 5])
        assert grey_index(window) == [3, 4, 5]                     # three distinct frames, not one three times
        assert grey_index(video.read([0, 2, 4, 6, 8])) == [0, 2, 4, 6, 8]
        np.testing.assert_allclose(video.timestamps()[:, 0], np.array(VFR_MS) / 1000, atol=1e-5)


def test_damaged_data_is_not_reported_as_a_permission_problem():
    reason = video_reader._short_reason(av.error.PermissionError(1, "Operation not permitted"))
    assert "Permission" not in reason and "not permitted" not in reason and "damaged" in reason
    assert video_reader._short_reason(ValueError("bad\nmore")) == "ValueError: bad"


def test_video_info_matches_metadata():
    assert video_info(sample_video("carphone_pristine.mp4")) == (120, pytest.approx(30000 / 1001), (144, 176))
    assert video_info(sample_video("bikes.mp4")) == (250, 25.0, (272, 640))
    for name in ("carphone_pristine.mp4", "bikes.mp4"):
        path = sample_video(name)
        assert video_info(path, backend="pyav") == video_info(path, backend="decord")
    assert len(_decode_all(sample_video("carphone_pristine.mp4"))) == 120


def test_decord_and_pyav_give_the_same_frames_native():
    path = sample_video("carphone_pristine.mp4")
    reference = _decode_all(path)
    indices = [100, 5, 5, 60, 119, 0, 33]                      # unsorted, repeated, far apart (PyAV seeks)
    want = torch.from_numpy(reference[indices]).permute(0, 3, 1, 2)
    for backend in ("decord", "pyav"):
        with open_video(path, backend=backend) as video:
            assert video.backend == backend
            clip = video.read(indices)
        assert clip.dtype == torch.uint8 and clip.shape == (7, 3, 144, 176)
        assert clip.is_contiguous(memory_format=torch.channels_last)           # the decoder's order, no copy
        diff = (clip.int() - want.int()).abs().float()
        assert diff.mean() < 0.5 and diff.max() <= 8, backend


@pytest.mark.parametrize("name,size,indices", [("bikes.mp4", (48, 64), [0, 10, 200, 249]),
                                               ("bigbuckbunny.mp4", (36, 64), [0, 2, 4])])
def test_decoder_resize_agrees_across_backends(name, size, indices):
    path = sample_video(name)
    a = read_clip(path, indices, size=size, backend="decord")
    b = read_clip(path, indices, size=size, backend="pyav")
    assert a.shape == b.shape == (len(indices), 3, *size)
    diff = (a.int() - b.int()).abs().float()
    assert diff.mean() < 1.0 and diff.max() <= 16             # both bilinear: rounding-level differences


def test_indices_are_clamped():
    path = sample_video("carphone_pristine.mp4")
    for backend in ("decord", "pyav"):
        got = read_clip(path, [-3, 0, 119, 500], size=(24, 32), backend=backend)
        want = read_clip(path, [0, 0, 119, 119], size=(24, 32), backend=backend)
        assert torch.equal(got, want)


def test_pyav_seeking_equals_sequential_decoding(tmp_path, monkeypatch):
    """mpeg4 with a key frame every 8 frames: seeking runs vs. decoding the whole file."""
    path = str(tmp_path / "ramp.avi")
    values = np.arange(40) * 6
    _write_gray_video(path, "mpeg4", values)
    reference = _decode_all(path)
    monkeypatch.setattr(video_reader, "SEEK_GAP", 4)           # force a seek for each run
    indices = [33, 2, 17, 18, 39, 9]
    with PyAVVideo(path) as video:
        clip = video.read(indices)
    assert torch.equal(clip, torch.from_numpy(reference[indices]).permute(0, 3, 1, 2))
    np.testing.assert_allclose(clip.float().mean(dim=(1, 2, 3)).numpy(), values[indices], atol=3)


def test_fallback_to_pyav_on_a_codec_decord_lacks(tmp_path):
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("no AV1 encoder in this PyAV build")
    path = str(tmp_path / "av1.avi")
    values = np.arange(8) * 20
    _write_gray_video(path, "libsvtav1", values, size=64)
    with pytest.raises(Exception):                              # decord's bundled FFmpeg has no AV1 decoder
        DecordVideo(path)
    with open_video(path) as video:
        assert video.backend == "pyav" and video.num_frames == 8
        clip = video.read([7, 0, 3])
    np.testing.assert_allclose(clip.float().mean(dim=(1, 2, 3)).numpy(), values[[7, 0, 3]], atol=3)
    assert video_info(path) == (8, 25.0, (64, 64))


def test_fallback_when_decord_raises(tmp_path, monkeypatch):
    path = sample_video("carphone_pristine.mp4")
    want = read_clip(path, [3, 50], backend="pyav")

    def refuse(self, *args, **kwargs):
        raise RuntimeError("decord refuses this file")

    monkeypatch.setattr(DecordVideo, "__init__", refuse)
    with open_video(path) as video:
        assert video.backend == "pyav"
        assert torch.equal(video.read([3, 50]), want)


def test_fallback_when_decord_fails_mid_file(monkeypatch):
    path = sample_video("carphone_pristine.mp4")
    want = read_clip(path, [3, 50], backend="pyav")
    with open_video(path) as video:
        assert video.backend == "decord"

        class Broken:
            def get_batch(self, idx):
                raise RuntimeError("corrupt packet")

        video._reader = Broken()
        assert torch.equal(video.read([3, 50]), want)


def test_corrupt_missing_and_empty_files_raise_video_read_error(tmp_path):
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError) as info:
        read_clip(str(garbage), [0])
    assert info.value.path == str(garbage) and str(garbage) in str(info.value)
    assert "decord" in info.value.reason and "PyAV" in info.value.reason
    with pytest.raises(VideoReadError, match="no such file"):
        video_info(str(tmp_path / "missing.avi"))
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty"):
        read_clip(str(tmp_path / "empty.avi"), [0])


def test_truncated_video_reads_what_is_there_or_raises(tmp_path):
    path = str(tmp_path / "full.avi")
    _write_gray_video(path, "mpeg4", np.arange(24) * 10)
    data = open(path, "rb").read()
    for fraction in (0.05, 0.5):
        cut = tmp_path / f"cut{fraction}.avi"
        cut.write_bytes(data[:int(len(data) * fraction)])
        for backend in ("auto", "pyav"):
            try:
                clip = read_clip(str(cut), list(range(24)), backend=backend)
            except VideoReadError:
                continue
            assert clip.shape == (24, 3, 32, 32)


def test_decord_torch_bridge_does_not_force_the_pyav_fallback(tmp_path, monkeypatch):
    """pytorchvideo sets decord's global bridge to torch; reads must still go through decord."""
    import decord
    from datasets.synthetic_action import render_clip, write_avi
    path = str(tmp_path / "v.avi")
    write_avi(path, render_clip(0, 2, np.random.default_rng(0), 8, 32))
    with DecordVideo(path) as video:
        want = video.read([0, 3, 5])

    def no_fallback(*args, **kwargs):
        raise AssertionError("fell back to PyAV")

    monkeypatch.setattr(PyAVVideo, "read", no_fallback)
    decord.bridge.set_bridge("torch")
    try:
        with DecordVideo(path) as video:
            got = video.read([0, 3, 5])
    finally:
        decord.bridge.set_bridge("native")
    assert torch.equal(got, want)
