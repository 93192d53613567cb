"""The attention zoo. Every module file in this package registers its classes on import.

>>> from models.attention import build_attention, list_attention
>>> m = build_attention("cbam", channels=256)
"""
import importlib
import pkgutil

from .layout import Layout, StageInfo
from .registry import (CLIP_FAMILIES, FAMILIES, KINDS, build_attention, get_attention_class, list_aliases,
                       list_attention, register_attention, takes_clips)

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_") and _info.name not in ("registry", "layout"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["CLIP_FAMILIES", "FAMILIES", "KINDS", "Layout", "StageInfo", "build_attention",
           "get_attention_class", "list_aliases", "list_attention", "register_attention", "takes_clips"]
