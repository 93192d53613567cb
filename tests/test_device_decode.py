"""MARS frames decoded in the main process (on the GPU when CUDA is present): encoded items,
batched decode, the vectorised re-ID augmentation against torchvision's per-clip ops, and the
CPU path's outputs. The decode and augment code runs here on the CPU; the CUDA test compares
nvjpeg with libjpeg (skipped without a GPU)."""
import math
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, SequentialSampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from datasets import MARS
from datasets.device_decode import DeviceClipDecoder, DeviceDecodeLoader, collate_encoded, gpu_jpeg_works
from datasets.device_transforms import apply_reid_augment, draw_reid_params
from datasets.tracklet_dataset import TrackletDataset, collate_clips, read_checked_bytes
from datasets.transforms import build_reid_transform
from engine.build import build_reid_data, reid_decode_device
from engine.config import load_config
from engine.loaders import make_loader

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cpu_batch(dataset, items, collate=collate_clips):
    return collate([dataset[i] for i in items])


@pytest.mark.parametrize("sample, size", [("dense", (32, 16)), ("evenly", (24, 12))])
def test_encoded_items_decode_to_the_cpu_paths_clips(tiny_mars, sample, size):
    tracklets = MARS(tiny_mars[0]).query[:3]
    cpu = TrackletDataset(tracklets, 4, sample, build_reid_transform(*size, train=False))
    encoded = TrackletDataset(tracklets, 4, sample, encoded=True)
    data, lengths, frames, pid, camid, index, numbers = encoded[1]
    assert data.dtype == torch.uint8 and data.ndim == 1 and int(lengths.sum()) == len(data)
    assert numbers.tolist() == sorted(set(encoded.indices(1).reshape(-1).tolist()))
    assert len(numbers) == len(lengths)
    assert (pid, camid, index) == (tracklets[1].pid, tracklets[1].camid, 1)
    assert frames.shape == ((-(-len(tracklets[1].frames) // 4), 4) if sample == "dense" else (4,))
    batch = collate_encoded([encoded[i] for i in range(3)])
    clips = DeviceClipDecoder(*size, device="cpu")(*batch[:3])
    want, owner, pids, camids, idx = cpu_batch(cpu, range(3))
    assert clips.dtype == torch.uint8 and torch.equal(clips, want)                 # libjpeg both ways: exact
    for got, expected in zip(batch[3:7], (owner, pids, camids, idx)):
        assert torch.equal(got, expected)
    ids = batch[7]                                                  # (item, tracklet frame) per decoded frame
    assert ids.shape == (len(batch[1]), 2) and ids[:, 0].tolist() == sorted(ids[:, 0].tolist())
    with pytest.raises(ValueError, match="transform runs after decoding"):
        TrackletDataset(tracklets, 4, sample, build_reid_transform(*size, train=False), encoded=True)


def test_cpu_decoding_equals_the_previous_per_file_decode_image(tiny_mars, tmp_path):
    from torchvision.io import ImageReadMode, decode_image, encode_png, read_file
    from datasets.tracklet_dataset import read_frames
    paths = MARS(tiny_mars[0]).train[0].frames[:4]
    before = torch.stack([decode_image(read_file(p), mode=ImageReadMode.RGB) for p in paths])
    assert torch.equal(read_frames(paths), before)                              # batched decode_jpeg, same pixels
    png = str(tmp_path / "frame.png")
    open(png, "wb").write(encode_png(before[0]).numpy().tobytes())
    assert torch.equal(read_frames([png, paths[1]]), before[:2])                # PNG frames: decode_image


def test_encoded_items_replace_a_truncated_frame(tiny_mars, tmp_path):
    t = MARS(tiny_mars[0]).train[0]
    frames = [str(tmp_path / f"f{k}.jpg") for k in range(len(t.frames))]
    for src, dst in zip(t.frames, frames):
        open(dst, "wb").write(open(src, "rb").read())
    open(frames[1], "wb").write(open(t.frames[1], "rb").read()[:-20])            # no EOI marker
    with pytest.raises(ValueError, match="not a complete JPEG"):
        read_checked_bytes([frames[1]])
    t = type(t)(frames, t.pid, t.camid)
    data, lengths, idx, *_ = TrackletDataset([t], len(frames), "all", encoded=True)[0]
    blobs = torch.split(data, lengths.tolist())
    assert torch.equal(blobs[int(idx[0, 1])], blobs[int(idx[0, 2])])            # frame 1 <- frame 2


def reference_augment(clip, p, padding, fill):
    """torchvision's functional ops, one clip at a time: (T, C, H, W) -> (C, T, H, W)."""
    height, width = clip.shape[-2:]
    if p["flip"]:
        clip = F.horizontal_flip(clip)
    clip = F.crop(F.pad(clip, [padding]), int(p["top"]), int(p["left"]), height, width)
    if p["erase"]:
        colour = torch.tensor(fill, dtype=torch.float32)[:, None, None]
        clip = F.erase(clip, int(p["i"]), int(p["j"]), int(p["h"]), int(p["w"]), colour)
    return clip.transpose(0, 1)


def test_batched_augment_equals_per_clip_torchvision_ops():
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (12, 3, 3, 20, 10), dtype=torch.uint8, generator=g)
    params = draw_reid_params(12, 20, 10, g, flip_prob=0.5, padding=3, erasing_prob=0.7)
    assert {int(params["flip"].min()), int(params["flip"].max())} == {0, 1}
    assert params["erase"].any() and not params["erase"].all()
    fill = [124.0, 116.0, 104.0]
    got = apply_reid_augment(clips, params, 3, fill)
    assert got.shape == (12, 3, 3, 20, 10) and got.dtype == torch.uint8 and got.is_contiguous()
    for n in range(12):
        want = reference_augment(clips[n], {k: v[n] for k, v in params.items()}, 3, fill)
        assert torch.equal(got[n], want), n


def test_augment_parameters_follow_torchvision_distributions():
    n, height, width = 4000, 64, 32
    params = draw_reid_params(n, height, width, torch.Generator().manual_seed(1), 0.5, 10, 0.5)
    erasing = v2.RandomErasing(1.0)
    torch.manual_seed(1)
    image = torch.zeros(3, height, width)
    boxes = [erasing.make_params([image]) for _ in range(n // 2)]
    theirs = np.array([b["h"] * b["w"] for b in boxes if b["v"] is not None]) / (height * width)
    on = params["erase"].bool()
    ours = (params["h"] * params["w"])[on].double().numpy() / (height * width)
    assert abs(on.double().mean() - 0.5) < 0.03 and abs(params["flip"].double().mean() - 0.5) < 0.03
    assert abs(ours.mean() - theirs.mean()) < 0.01 and abs(np.median(ours) - np.median(theirs)) < 0.015
    assert set(params["top"].tolist()) == set(range(21)) and set(params["left"].tolist()) == set(range(21))
    i, j, h, w = (params[k][on] for k in "ijhw")
    assert (i >= 0).all() and (i + h <= height).all() and (j >= 0).all() and (j + w <= width).all()
    ratios = (h.double() / w.double()).log()
    assert ratios.min() > math.log(0.3) - 0.35 and ratios.max() < math.log(3.3) + 0.35


def test_device_loader_yields_the_cpu_loaders_structure_and_seeded_draws(tiny_mars):
    tracklets = MARS(tiny_mars[0]).train
    data = TrackletDataset(tracklets, 4, "random", encoded=True)
    wrapped = make_loader(data, batch_size=6, num_workers=0, pin_memory=False, sampler=SequentialSampler(data),
                          train=True, seed=3, collate_fn=collate_encoded)       # the training loader's seeding
    loader = DeviceDecodeLoader(wrapped, DeviceClipDecoder(32, 16, "cpu", train=True, padding=2, erasing_prob=0.5),
                                seed=3)
    assert len(loader) == len(DataLoader(data, batch_size=6)) and loader.dataset is wrapped.dataset
    clips, pids, camids, index = next(iter(loader))
    assert clips.shape == (6, 3, 4, 32, 16) and clips.dtype == torch.uint8
    assert pids.tolist() == [t.pid for t in tracklets[:6]] and index.tolist() == list(range(6))
    again = next(iter(loader))[0]
    wrapped.sampler.set_epoch(1)
    wrapped.dataset.set_epoch(1)
    other = next(iter(loader))[0]
    assert torch.equal(clips, again) and not torch.equal(clips, other)      # seeded by (seed, epoch)
    with pytest.raises(ValueError, match="seeded generator"):
        loader.decoder(*collate_encoded([data[0]])[:3])


def test_decode_device_config(tiny_mars, tmp_path):
    base = os.path.join(os.path.dirname(__file__), "..", "configs", "_base_", "mars.yaml")

    def cfg(*extra):
        return load_config(base, ["DATA.ROOT", tiny_mars[0], "OUTPUT_DIR", str(tmp_path), "DATA.HEIGHT", "32",
                                  "DATA.WIDTH", "16", "DATA.NUM_WORKERS", "0", *extra])
    assert load_config(base).DATA.DECODE_DEVICE == "cpu"                   # until a GPU run has checked cuda
    assert reid_decode_device(cfg("MODEL.DEVICE", "cpu")) is None
    assert reid_decode_device(cfg("MODEL.DEVICE", "cpu", "DATA.DECODE_DEVICE", "auto")) is None  # auto off CUDA
    with pytest.raises(ValueError, match="DECODE_DEVICE must be"):
        reid_decode_device(cfg("DATA.DECODE_DEVICE", "gpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a model on CUDA"):
            reid_decode_device(cfg("MODEL.DEVICE", "cpu", "DATA.DECODE_DEVICE", "cuda"))
        assert not gpu_jpeg_works("cuda")
    _, train, query, _ = build_reid_data(cfg("MODEL.DEVICE", "cpu"))
    assert isinstance(train, DataLoader) and isinstance(query, DataLoader)


@CUDA
def test_gpu_decode_matches_cpu_decode(tiny_mars):
    assert gpu_jpeg_works("cuda")
    tracklets = MARS(tiny_mars[0]).query[:4]
    batch = collate_encoded([TrackletDataset(tracklets, 4, "dense", encoded=True)[i] for i in range(4)])
    on_cpu = DeviceClipDecoder(32, 16, "cpu")(*batch[:3])
    on_gpu = DeviceClipDecoder(32, 16, "cuda")(*batch[:3])
    assert on_gpu.device.type == "cuda" and on_gpu.shape == on_cpu.shape and on_gpu.dtype == torch.uint8
    diff = (on_gpu.cpu().float() - on_cpu.float()).abs()
    assert diff.mean() < 3.0                                                # nvjpeg vs libjpeg: IDCT, chroma upsampling
    resized = DeviceClipDecoder(48, 24, "cuda")(*batch[:3]).cpu().float()  # resize on the GPU (float, rounded)
    assert (resized - DeviceClipDecoder(48, 24, "cpu")(*batch[:3]).float()).abs().mean() < 3.5
    g = torch.Generator().manual_seed(0)
    params = draw_reid_params(on_cpu.shape[0], 32, 16, g, 0.5, 4, 0.5)
    frames = on_cpu.transpose(1, 2)
    assert torch.equal(apply_reid_augment(frames.cuda(), params, 4, [1, 2, 3]).cpu(),
                       apply_reid_augment(frames, params, 4, [1, 2, 3]))


@CUDA
def test_gpu_decoded_loaders_from_the_config(tiny_mars, tmp_path):
    base = os.path.join(os.path.dirname(__file__), "..", "configs", "_base_", "mars.yaml")
    cfg = load_config(base, ["DATA.ROOT", tiny_mars[0], "OUTPUT_DIR", str(tmp_path), "DATA.HEIGHT", "32",
                             "DATA.WIDTH", "16", "DATA.NUM_WORKERS", "2", "MODEL.DEVICE", "cuda",
                             "DATA.NUM_IDS", "4", "DATA.NUM_INSTANCES", "2"])
    assert reid_decode_device(cfg).type == "cuda"
    _, train, query, _ = build_reid_data(cfg)
    train.sampler.set_epoch(0)
    train.dataset.set_epoch(0)
    clips, pids, camids, index = next(iter(train))
    assert clips.is_cuda and clips.shape == (8, 3, cfg.DATA.SEQ_LEN, 32, 16) and clips.dtype == torch.uint8
    clips, owner, pids, camids, index = next(iter(query))
    assert clips.is_cuda and clips.shape[1:] == (3, cfg.DATA.SEQ_LEN, 32, 16) and len(owner) == len(clips)


def test_training_and_evaluation_run_through_the_decoding_loader(tiny_mars, tmp_path, monkeypatch):
    """The GPU path's plumbing (encoded items, collate, decode in the main process, batched augment,
    evaluator) under the real trainer, with the decoding device forced to the CPU."""
    import engine.build
    from engine.trainer import Trainer
    monkeypatch.setattr(engine.build, "reid_decode_device", lambda cfg: torch.device("cpu"))
    torch.set_num_threads(1)
    base = os.path.join(os.path.dirname(__file__), "..", "configs", "_base_", "mars.yaml")
    cfg = load_config(base, ["DATA.ROOT", tiny_mars[0], "OUTPUT_DIR", str(tmp_path / "run"), "MODEL.DEVICE", "cpu",
                             "MODEL.BACKBONE.NAME", "resnet18", "DATA.HEIGHT", "32", "DATA.WIDTH", "16",
                             "DATA.PADDING", "2", "DATA.NUM_IDS", "4", "DATA.NUM_INSTANCES", "2",
                             "DATA.NUM_WORKERS", "0", "SOLVER.WARMUP_EPOCHS", "1", "SOLVER.EVAL_PERIOD", "0",
                             "TEST.BATCH_SIZE", "16", "SOLVER.MAX_EPOCHS", "1"])
    trainer = Trainer(cfg)
    assert isinstance(trainer.task.train_loader, DeviceDecodeLoader)
    metrics = trainer.fit()
    assert 0 <= metrics["mAP"] <= 1 and metrics["num_query"] == len(MARS(tiny_mars[0]).query)
    from engine.reid_evaluator import extract_features
    model = trainer.model.eval()
    on_main = extract_features(model, trainer.task.query_loader, torch.device("cpu"))
    monkeypatch.undo()
    _, _, in_workers, _ = build_reid_data(cfg, train=False)
    assert isinstance(in_workers, DataLoader)
    torch.testing.assert_close(on_main[0], extract_features(model, in_workers, torch.device("cpu"))[0])
