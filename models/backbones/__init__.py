"""Clip backbones: per-frame 2D ResNets and 3D video networks, each able to host attention."""
from .factory import build_backbone, list_backbones
from .insertion import PLACEMENTS, ResidualUnit, apply_block
from .resnet2d import ResNet2D
from .slowfast import SlowFastBackbone
from .video3d import Video3DBackbone
from .weights import LoadReport, load_local_weights

__all__ = ["PLACEMENTS", "ResidualUnit", "apply_block", "ResNet2D", "Video3DBackbone", "SlowFastBackbone",
           "build_backbone", "list_backbones", "LoadReport", "load_local_weights"]
