"""Experiment configuration: defaults as an fvcore ``CfgNode``, YAML files with ``_BASE_``
inheritance, and ``KEY VALUE`` overrides. Keys are strict: an unknown key or a value of the
wrong type is an error naming the key and the closest valid one."""
from __future__ import annotations

import difflib
import os

import yaml
from fvcore.common.config import CfgNode as _CfgNode

from .errors import ConfigError, ConfigKeyError


# keys that take True, False or "auto" (decided at run time, e.g. by the device)
AUTO_BOOL_KEYS = ("MODEL.CHANNELS_LAST",)


def _auto_bool(value, key: str):
    if value is True or value is False or value == "auto":
        return value
    raise ValueError(f"{key} expects True, False or 'auto', got {value!r}")


class CfgNode(_CfgNode):
    """fvcore CfgNode with readable errors for unknown keys and wrong types."""

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        loaded = self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)
        _check_keys(self, loaded, cfg_filename)
        auto = {}
        for key in AUTO_BOOL_KEYS:                     # merged apart: their type is bool or str
            *parents, leaf = key.split(".")
            node = loaded
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and leaf in node:
                try:
                    auto[key] = _auto_bool(node.pop(leaf), key)
                except ValueError as e:
                    raise ConfigError(f"{cfg_filename}: {e}") from None
        loaded = type(self)(loaded)
        try:
            self.merge_from_other_cfg(loaded)
        except ValueError as e:
            raise ConfigError(f"{cfg_filename}: {e}") from None
        for key, value in auto.items():
            *parents, leaf = key.split(".")
            node = self
            for part in parents:
                node = node[part]
            node[leaf] = value

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> dict:
        """fvcore's loader (``_BASE_`` files relative to the file), with a one-line error for a
        missing, unreadable, empty or non-mapping file (a ``_BASE_`` file included)."""
        if os.path.isdir(filename):
            raise ConfigError(f"config {filename!r} is a folder: pass a YAML file such as configs/mars_stgcn.yaml "
                              "or a run folder's config.yaml")
        if not os.path.isfile(filename):
            raise ConfigError(f"config file not found: {filename!r}")
        try:
            with open(filename) as f:
                raw = yaml.safe_load(f)
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            where = getattr(e, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            raise ConfigError(f"config {filename!r} is not valid YAML{line}: fix the file") from None
        if raw is None:
            raise ConfigError(f"config {filename!r} is empty: it must hold a YAML mapping of keys (e.g. "
                              "'_BASE_: _base_/mars.yaml'), or pass another config")
        if not isinstance(raw, dict):
            raise ConfigError(f"config {filename!r} holds a YAML {type(raw).__name__}, not a mapping of keys: "
                              "fix the file")
        return super().load_yaml_with_base(filename, allow_unsafe=allow_unsafe)

    def merge_from_list(self, cfg_list: list) -> None:
        if len(cfg_list) % 2:
            raise ConfigError(f"overrides must be KEY VALUE pairs, got an odd number: {cfg_list}")
        if self.is_frozen():
            raise AttributeError("config is frozen")
        for key, raw in zip(cfg_list[0::2], cfg_list[1::2]):
            _check_dotted(self, key)
            *parents, leaf = key.split(".")
            node = self
            for part in parents:
                node = node[part]
            value = self._decode_cfg_value(raw)
            if leaf in node:
                old = node[leaf]
                if isinstance(old, _CfgNode):
                    raise ConfigError(f"override {key!r} names a group; set one of its keys instead")
                try:
                    value = _coerce(value, old, key)
                except ValueError as e:
                    raise ConfigError(f"override {key} {raw!r}: {e}") from None
            node[leaf] = value


def _coerce(value, old, key):
    """The new value, converted where harmless (int -> float, tuple <-> list), else an error."""
    if key in AUTO_BOOL_KEYS:
        return _auto_bool(value, key)
    if old is None:
        return value
    if isinstance(old, bool) or isinstance(value, bool):
        if type(old) is type(value):
            return value
        raise ValueError(f"{key} expects {type(old).__name__} (default {old!r}), got {value!r}")
    if isinstance(value, type(old)):
        return value
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(old, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(old)(value)
    raise ValueError(f"{key} expects {type(old).__name__} (default {old!r}), got {value!r}")


def _valid_keys(node: _CfgNode, prefix: str = "") -> list[str]:
    out = []
    for k, v in node.items():
        out.append(prefix + k)
        if isinstance(v, _CfgNode):
            out += _valid_keys(v, prefix + k + ".")
    return out


def _unknown(full: str, root: _CfgNode) -> ConfigKeyError:
    close = difflib.get_close_matches(full, _valid_keys(root), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigKeyError(f"unknown config key {full!r}{hint}")


def _check_dotted(root: _CfgNode, dotted: str) -> None:
    node = root
    for part in dotted.split("."):
        if isinstance(node, _CfgNode) and node.is_new_allowed():
            return
        if not isinstance(node, _CfgNode) or part not in node:
            raise _unknown(dotted, root)
        node = node[part]


def _check_keys(root: _CfgNode, loaded: dict, source: str, node: _CfgNode | None = None, prefix: str = "") -> None:
    node = root if node is None else node
    if node.is_new_allowed():
        return
    for k, v in loaded.items():
        full = prefix + k
        if k not in node:
            err = _unknown(full, root)
            raise ConfigKeyError(f"{source}: {err.args[0]}")
        if isinstance(v, dict) and isinstance(node[k], _CfgNode):
            _check_keys(root, v, source, node[k], full + ".")


def _open_node() -> CfgNode:
    """A node that accepts any keys (a module's own keyword arguments)."""
    return CfgNode(new_allowed=True)


_C = CfgNode()
_C.TASK = "reid"                     # "reid" (MARS) or "action" (UCF101 / HMDB51 / video folders)
_C.OUTPUT_DIR = "outputs/default"
_C.SEED = 0

_C.MODEL = CfgNode()
_C.MODEL.DEVICE = "auto"             # cpu, cuda, auto
_C.MODEL.PRETRAINED = ""             # local backbone weights (torchvision / pytorchvideo format)
_C.MODEL.CHANNELS_LAST = "auto"     # channels-last memory format: True, False, "auto" (= on CUDA)
_C.MODEL.TF32 = True                 # CUDA: TF32 tensor cores for float32 matmul/conv (Ampere and newer)
_C.MODEL.COMPILE = False             # torch.compile the training forward/backward (first steps compile)
_C.MODEL.DDP_FIND_UNUSED = False     # set True for models with parameters unused in some steps
_C.MODEL.BACKBONE = CfgNode()
_C.MODEL.BACKBONE.NAME = "resnet50"  # resnet18/34/50/101 (per frame) or a 3D net
_C.MODEL.BACKBONE.LAST_STRIDE = 1
_C.MODEL.BACKBONE.ATTENTION = CfgNode()
_C.MODEL.BACKBONE.ATTENTION.NAME = ""        # any registered attention block
_C.MODEL.BACKBONE.ATTENTION.STAGES = []      # 1..4 = layer1..layer4; [] = the module's paper layout
_C.MODEL.BACKBONE.ATTENTION.PLACEMENT = ""   # "" = the paper layout's placement
_C.MODEL.BACKBONE.ATTENTION.EVERY = 0        # every k-th residual unit of a stage; 0 = the paper layout's units
_C.MODEL.BACKBONE.ATTENTION.KWARGS = _open_node()
_C.MODEL.AGGREGATOR = CfgNode()
_C.MODEL.AGGREGATOR.NAME = "avg"             # avg, max, or a registered aggregator (gltr, sta, stgcn, ...)
_C.MODEL.AGGREGATOR.KWARGS = _open_node()
_C.MODEL.HEAD = CfgNode()
_C.MODEL.HEAD.NECK = True                    # BNNeck (re-ID)
_C.MODEL.HEAD.NECK_FEAT = "after"            # embedding: "after" or "before" the BNNeck
_C.MODEL.HEAD.DROPOUT = 0.5                  # action classifier dropout

_C.DATA = CfgNode()
_C.DATA.DATASET = "mars"             # mars, ucf101, hmdb51, video_folder
_C.DATA.ROOT = "data/mars"
_C.DATA.SPLIT = 1                    # UCF101 / HMDB51 split
_C.DATA.SEQ_LEN = 4                  # frames per clip
_C.DATA.TRAIN_SAMPLE = "random"      # re-ID: random / evenly / consecutive; action: tsn / dense
_C.DATA.TEST_SAMPLE = "dense"        # re-ID: evenly / dense / all; action: tsn / dense
_C.DATA.FRAME_STRIDE = 2             # action dense sampling stride
_C.DATA.HEIGHT = 256                 # re-ID frame size
_C.DATA.WIDTH = 128
_C.DATA.CROP_SIZE = 224              # action: square crop
_C.DATA.SHORT_SIDE = 256             # action: test-time short side before cropping
_C.DATA.TRAIN_CROP = "multiscale"    # action: multiscale (TSN) or random_resized
_C.DATA.DECODE_SIZE = []             # action: [H, W] resize inside the decoder ([] = native)
_C.DATA.DECODE_DEVICE = "cpu"        # re-ID frames: cpu (JPEGs decoded in the workers), cuda (workers read the
                                     # bytes, nvjpeg decodes each batch on the GPU), auto (cuda when the model
                                     # runs on CUDA and nvjpeg works there, else cpu). Default cpu: the GPU path
                                     # is tested on the CPU only so far (no GPU run yet)
_C.DATA.NUM_WORKERS = 2
_C.DATA.MAX_BROKEN_SHARE = 0.1       # stop when more than this share of the videos (or MARS frames) is unreadable
_C.DATA.NUM_IDS = 8                  # P identities per batch
_C.DATA.NUM_INSTANCES = 4            # K tracklets per identity
_C.DATA.BATCH_SIZE = 16              # action training batch
_C.DATA.FLIP_PROB = 0.5
_C.DATA.PADDING = 10
_C.DATA.ERASING_PROB = 0.5
_C.DATA.MEAN = [0.485, 0.456, 0.406]
_C.DATA.STD = [0.229, 0.224, 0.225]

_C.SOLVER = CfgNode()
_C.SOLVER.OPTIMIZER = "adam"         # adam, adamw, sgd
_C.SOLVER.BASE_LR = 3.5e-4
_C.SOLVER.WEIGHT_DECAY = 5e-4
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.MAX_EPOCHS = 120
_C.SOLVER.SCHEDULER = "step"         # step, cosine
_C.SOLVER.STEPS = [40, 70]
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.WARMUP_EPOCHS = 10
_C.SOLVER.WARMUP_FACTOR = 0.01
_C.SOLVER.AMP = False                # bf16 autocast on CPU, AMP_DTYPE on CUDA
_C.SOLVER.AMP_DTYPE = "bfloat16"     # bfloat16 or float16 (CUDA)
_C.SOLVER.GRAD_CLIP = 0.0            # max grad norm, 0 = off
_C.SOLVER.CHECKPOINT_PERIOD = 1
_C.SOLVER.EVAL_PERIOD = 10
_C.SOLVER.LOG_PERIOD = 20

_C.LOSS = CfgNode()
_C.LOSS.CE_WEIGHT = 1.0
_C.LOSS.LABEL_SMOOTH = 0.1
_C.LOSS.TRIPLET_WEIGHT = 1.0
_C.LOSS.TRIPLET_MARGIN = 0.3         # 0 = soft margin
_C.LOSS.TRIPLET_METRIC = "euclidean"
_C.LOSS.CENTER_WEIGHT = 0.0
_C.LOSS.AUX_WEIGHT = 1.0             # weight of aggregator regularisers and branch losses

_C.TEST = CfgNode()
_C.TEST.BATCH_SIZE = 32              # clips per forward pass (memory bound)
_C.TEST.DISTANCE = "euclidean"       # euclidean, cosine
_C.TEST.RERANK = False
_C.TEST.NUM_CLIPS = 1                # action multi-view: clips x crops
_C.TEST.NUM_CROPS = 1
_C.TEST.MAX_RANK = 50


def get_cfg() -> CfgNode:
    """A fresh copy of the defaults."""
    return _C.clone()


def load_config(path: str | None = None, overrides: list | None = None, freeze: bool = True) -> CfgNode:
    """Defaults <- YAML (with ``_BASE_``) <- ``KEY VALUE`` overrides."""
    cfg = get_cfg()
    if path:
        cfg.merge_from_file(path)
    if overrides:
        cfg.merge_from_list(list(overrides))
    check_values(cfg, path or "the defaults")
    if freeze:
        cfg.freeze()
    return cfg


# string keys with a fixed set of values (a typo would otherwise crash late or, for NECK_FEAT,
# silently pick the other branch)
CHOICES = {
    "MODEL.HEAD.NECK_FEAT": ("after", "before"),
    "DATA.DECODE_DEVICE": ("cpu", "cuda", "auto"),
    "DATA.TRAIN_CROP": ("multiscale", "random_resized"),
    "SOLVER.AMP_DTYPE": ("bfloat16", "float16"),
    "LOSS.TRIPLET_METRIC": ("euclidean", "cosine"),
    "TEST.DISTANCE": ("euclidean", "cosine"),
}


def _value(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_values(cfg: CfgNode, source: str = "config") -> None:
    """Values that have a type but not a meaning (a share outside [0, 1], a name that is not
    one of its key's choices) are a ``ConfigError``."""
    from datasets.clip_sampling import MODES as ACTION_SAMPLES   # the samplers' own lists
    from datasets.frame_sampling import METHODS as REID_SAMPLES
    choices = dict(CHOICES)
    samples = {"reid": REID_SAMPLES, "action": ACTION_SAMPLES}.get(cfg.TASK)
    if samples:
        choices["DATA.TRAIN_SAMPLE"] = choices["DATA.TEST_SAMPLE"] = samples
    for key, allowed in choices.items():
        value = _value(cfg, key)
        if value not in allowed:
            task = f" for TASK {cfg.TASK}" if key.endswith("_SAMPLE") else ""
            raise ConfigError(f"{source}: {key} must be one of {', '.join(allowed)}{task}, got {value!r}")
    from .files import file_in_the_way
    blocked = file_in_the_way(cfg.OUTPUT_DIR)
    if blocked:
        raise ConfigError(f"{source}: OUTPUT_DIR {cfg.OUTPUT_DIR!r} cannot be a folder: {blocked!r} is a file; "
                          "set OUTPUT_DIR to a folder")
    share = cfg.DATA.MAX_BROKEN_SHARE
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{source}: DATA.MAX_BROKEN_SHARE must lie in [0, 1] (a share of the videos or frames: "
                          f"0 stops at the first broken one, 1 never stops), got {share!r}")
