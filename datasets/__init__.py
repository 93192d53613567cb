"""Datasets: indexes of the official layouts, clip/tracklet datasets, samplers, transforms and
synthetic writers.

>>> from datasets import MARS, UCF101, HMDB51
"""
from .mars import MARS, MARSLayoutError, Tracklet

__all__ = ["MARS", "MARSLayoutError", "Tracklet"]

try:  # the action-recognition indexes
    from .hmdb51 import HMDB51  # noqa: F401
    from .ucf101 import UCF101  # noqa: F401
    __all__ += ["UCF101", "HMDB51"]
except ImportError:  # pragma: no cover - only while the action pipeline is being written
    pass
