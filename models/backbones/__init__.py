"""Clip backbones: per-frame 2D ResNets and 3D video networks, each able to host attention."""
from .insertion import PLACEMENTS, ResidualUnit, apply_block
from .resnet2d import ResNet2D
from .weights import LoadReport, load_local_weights

__all__ = ["PLACEMENTS", "ResidualUnit", "apply_block", "ResNet2D", "LoadReport", "load_local_weights"]
