"""The only place where config keys become plain arguments of models, datasets and optimisers."""
from __future__ import annotations

import math
import os
import time

import torch
from torch.utils.data import DataLoader

from models.heads import build_aggregator
from models.video_net import VideoClassifier, VideoReIDNet

from . import distributed as du
from .errors import ConfigError
from .loaders import ShardSampler, make_loader
from .speed_options import use_channels_last

BROKEN_LOG = "broken_videos.tsv"


def build_broken_log(cfg):
    """This run's list of unreadable inputs, ``OUTPUT_DIR/broken_videos.tsv``: one run id (rank 0's
    start time and process id) for all ranks and DataLoader workers, so its summary counts only
    what this run met (see ``datasets.broken_files``). Call it on every rank at the same point."""
    from datasets.broken_files import BrokenVideoLog
    run = du.broadcast_object(f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    return BrokenVideoLog(os.path.join(cfg.OUTPUT_DIR, BROKEN_LOG), run=run)


def _kwargs(node) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(node).items()}


def input_size(cfg) -> tuple[int, int]:
    """``(H, W)`` of the frames the model sees: the re-ID frame size or the square action crop."""
    d = cfg.DATA
    return (d.HEIGHT, d.WIDTH) if cfg.TASK == "reid" else (d.CROP_SIZE, d.CROP_SIZE)


def check_model_names(cfg) -> None:
    """The backbone, attention and aggregator names of the config exist: else a one-line
    ``ConfigError`` naming the key and the closest names (before anything is built)."""
    import difflib
    from models.attention import get_attention_class, list_attention
    from models.backbones.factory import list_backbones
    m = cfg.MODEL

    def unknown(key, name, known):
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        return ConfigError(f"{key} {name!r} is unknown{hint} Known: {', '.join(known)}")

    if m.BACKBONE.NAME.lower() not in list_backbones():
        raise unknown("MODEL.BACKBONE.NAME", m.BACKBONE.NAME, list_backbones())
    for key, name, kinds in (("MODEL.BACKBONE.ATTENTION.NAME", m.BACKBONE.ATTENTION.NAME, ("block",)),
                             ("MODEL.AGGREGATOR.NAME", m.AGGREGATOR.NAME, ("aggregator",))):
        extra = ["avg", "max"] if key == "MODEL.AGGREGATOR.NAME" else [""]
        if name in extra:
            continue
        known = extra + [n for n in list_attention() if get_attention_class(n).kind in kinds]
        try:
            cls = get_attention_class(name)
        except KeyError:
            raise unknown(key, name, [k for k in known if k]) from None
        if cls.kind not in kinds:
            raise ConfigError(f"{key} {name!r} is of kind {cls.kind!r}, not {kinds[0]!r}: choose one of "
                              f"{', '.join(k for k in known if k)}")
        group = key.rsplit(".", 1)[0]
        check_kwargs(f"{group}.KWARGS", cls, dict(m.BACKBONE.ATTENTION.KWARGS if "ATTENTION" in key
                                                  else m.AGGREGATOR.KWARGS))
    placement = m.BACKBONE.ATTENTION.PLACEMENT
    from models.backbones.insertion import PLACEMENTS
    if placement and placement not in PLACEMENTS:
        raise ConfigError(f"MODEL.BACKBONE.ATTENTION.PLACEMENT {placement!r} is unknown; choose one of "
                          f"{', '.join(PLACEMENTS)} (or leave it empty for the paper's placement)")


def check_kwargs(key: str, cls, kwargs: dict) -> None:
    """The keys of a module's KWARGS name arguments of its constructor: else a one-line error."""
    import inspect
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n in params if n not in ("self", "channels")]
    for name in kwargs:
        if name not in known:
            raise ConfigError(f"{key}.{name} is not an argument of {cls.__name__}; it takes "
                              f"{', '.join(known) or 'none'}")


def build_backbone_from_cfg(cfg):
    from models.backbones import ResNet2D
    check_model_names(cfg)
    b = cfg.MODEL.BACKBONE
    att = b.ATTENTION
    common = dict(num_frames=cfg.DATA.SEQ_LEN, attention=att.NAME or None, stages=list(att.STAGES),
                  placement=att.PLACEMENT or None, every=att.EVERY or None, attention_kwargs=_kwargs(att.KWARGS),
                  input_size=input_size(cfg), pretrained=cfg.MODEL.PRETRAINED or None)
    if b.NAME.startswith("resnet"):
        channels_last = use_channels_last(cfg.MODEL.CHANNELS_LAST, torch.device("cuda" if on_cuda(cfg) else "cpu"))
        return ResNet2D(b.NAME, last_stride=b.LAST_STRIDE, channels_last=channels_last, **common)
    from models.backbones.factory import build_backbone
    return build_backbone(b.NAME, **common)


def build_model(cfg, num_classes: int) -> torch.nn.Module:
    backbone = build_backbone_from_cfg(cfg)
    agg = build_aggregator(cfg.MODEL.AGGREGATOR.NAME, backbone.out_channels, cfg.DATA.SEQ_LEN,
                           _kwargs(cfg.MODEL.AGGREGATOR.KWARGS))
    if cfg.TASK == "reid":
        return VideoReIDNet(backbone, agg, num_classes, neck=cfg.MODEL.HEAD.NECK, neck_feat=cfg.MODEL.HEAD.NECK_FEAT,
                            mean=cfg.DATA.MEAN, std=cfg.DATA.STD)
    if cfg.TASK == "action":
        return VideoClassifier(backbone, agg, num_classes, dropout=cfg.MODEL.HEAD.DROPOUT, mean=cfg.DATA.MEAN,
                               std=cfg.DATA.STD)
    raise ConfigError(f"TASK must be 'reid' or 'action', got {cfg.TASK!r}")


def build_optimizer(cfg, model: torch.nn.Module, extra_params=()) -> torch.optim.Optimizer:
    """No weight decay on biases and norm parameters (the usual re-ID / TSN practice)."""
    decay, no_decay = [], []
    for p in list(model.parameters()) + list(extra_params):
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    s = cfg.SOLVER
    groups = [{"params": decay, "weight_decay": s.WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    name = s.OPTIMIZER.lower()
    if name == "adam":
        return torch.optim.Adam(groups, lr=s.BASE_LR)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=s.BASE_LR)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=True)
    raise ConfigError(f"SOLVER.OPTIMIZER must be adam, adamw or sgd, got {s.OPTIMIZER!r}")


def lr_factor(epoch: float, max_epochs: int, warmup_epochs: float, warmup_factor: float, scheduler: str,
              steps=(), gamma: float = 0.1) -> float:
    """Linear warm-up from ``warmup_factor`` to 1, then step decay or cosine annealing (per iteration)."""
    if epoch < warmup_epochs:
        alpha = epoch / warmup_epochs
        return warmup_factor * (1 - alpha) + alpha
    if scheduler == "step":
        return gamma ** sum(epoch >= s for s in steps)
    if scheduler == "cosine":
        span = max(max_epochs - warmup_epochs, 1e-8)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (epoch - warmup_epochs) / span)))
    raise ConfigError(f"SOLVER.SCHEDULER must be step or cosine, got {scheduler!r}")


def build_scheduler(cfg, optimizer, iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    s = cfg.SOLVER
    fn = lambda it: lr_factor(it / iters_per_epoch, s.MAX_EPOCHS, s.WARMUP_EPOCHS, s.WARMUP_FACTOR,  # noqa: E731
                              s.SCHEDULER, tuple(s.STEPS), s.GAMMA)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def on_cuda(cfg) -> bool:
    """Whether MODEL.DEVICE (cpu, cuda, auto) puts the run on a GPU here (no error when it cannot)."""
    return cfg.MODEL.DEVICE != "cpu" and torch.cuda.is_available()


def pin_memory(cfg) -> bool:
    """Pinned batches (non-blocking copies) when the run trains on CUDA."""
    return on_cuda(cfg)


def _loader(dataset, cfg, **kw) -> DataLoader:
    return make_loader(dataset, num_workers=cfg.DATA.NUM_WORKERS, pin_memory=pin_memory(cfg), seed=cfg.SEED, **kw)


def reid_decode_device(cfg) -> torch.device | None:
    """Where MARS frames are decoded (``DATA.DECODE_DEVICE``): None = in the DataLoader workers
    (CPU), else the CUDA device whose nvjpeg decodes each batch (``datasets.device_decode``).
    ``auto`` takes the GPU when the model runs on CUDA and nvjpeg works there."""
    choice = cfg.DATA.DECODE_DEVICE
    if choice not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"DATA.DECODE_DEVICE must be cpu, cuda or auto, got {choice!r}")
    if choice == "cpu":
        return None
    device = du.resolve_device(cfg.MODEL.DEVICE)
    from datasets.device_decode import gpu_jpeg_works
    if device.type == "cuda" and gpu_jpeg_works(device):
        return device
    if choice == "cuda":
        raise ConfigError(f"DATA.DECODE_DEVICE cuda needs a model on CUDA with nvjpeg decoding (MODEL.DEVICE "
                         f"{cfg.MODEL.DEVICE!r} resolves to {device}); use cpu or auto")
    return None


def build_reid_data(cfg, rank: int = 0, world: int = 1, skip_log=None, train: bool = True):
    """MARS index, training loader (P x K, sharded across ranks; None unless ``train``) and
    query/gallery loaders (each rank reads its ``ShardSampler`` share; the evaluator gathers the
    features); unreadable frames are replaced and listed in ``skip_log`` (``build_broken_log``)."""
    from datasets import MARS
    from datasets.samplers import RandomIdentitySampler
    from datasets.device_decode import DeviceClipDecoder, DeviceDecodeLoader, collate_encoded
    from datasets.tracklet_dataset import TrackletDataset, collate_clips
    from datasets.transforms import build_reid_transform
    if cfg.DATA.DATASET != "mars":
        raise ConfigError(f"re-ID data must be DATA.DATASET 'mars', got {cfg.DATA.DATASET!r}")
    d = cfg.DATA
    mars = MARS(d.ROOT)
    decode = reid_decode_device(cfg)            # None: the workers decode; else batches decode on the GPU
    gpu = dict(encoded=True) if decode is not None else {}
    t_test = build_reid_transform(d.HEIGHT, d.WIDTH, False) if decode is None else None
    broken = dict(skip_log=skip_log, max_broken_share=d.MAX_BROKEN_SHARE)
    if train:
        t_train = (build_reid_transform(d.HEIGHT, d.WIDTH, True, d.FLIP_PROB, d.PADDING, d.ERASING_PROB, d.MEAN)
                   if decode is None else None)
        train_set = TrackletDataset(mars.train, d.SEQ_LEN, d.TRAIN_SAMPLE, t_train, **broken, **gpu)
        sampler = RandomIdentitySampler([t.pid for t in mars.train], d.NUM_IDS, d.NUM_INSTANCES, seed=cfg.SEED,
                                        num_replicas=world, rank=rank)
        train = _loader(train_set, cfg, batch_size=d.NUM_IDS * d.NUM_INSTANCES, sampler=sampler, drop_last=True,
                        train=True, **({"collate_fn": collate_encoded} if gpu else {}))
    else:
        train = None
    tracklets_per_batch = max(1, cfg.TEST.BATCH_SIZE // 4) if d.TEST_SAMPLE in ("dense", "all") else cfg.TEST.BATCH_SIZE

    def test_loader(tracklets):
        return _loader(TrackletDataset(tracklets, d.SEQ_LEN, d.TEST_SAMPLE, t_test, **broken, **gpu), cfg,
                       batch_size=tracklets_per_batch, sampler=ShardSampler(len(tracklets), rank, world),
                       collate_fn=collate_encoded if gpu else collate_clips)
    query, gallery = test_loader(mars.query), test_loader(mars.gallery)
    if decode is not None:
        if train is not None:
            augment = DeviceClipDecoder(d.HEIGHT, d.WIDTH, decode, True, d.FLIP_PROB, d.PADDING, d.ERASING_PROB, d.MEAN)
            train = DeviceDecodeLoader(train, augment, seed=cfg.SEED * 100003 + rank)
        query, gallery = (DeviceDecodeLoader(loader, DeviceClipDecoder(d.HEIGHT, d.WIDTH, decode), multi_clip=True)
                          for loader in (query, gallery))
    return mars, train, query, gallery
