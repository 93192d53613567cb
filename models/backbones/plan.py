"""Which stages, units and placement a backbone gives an attention block.

With no ``stages`` a backbone builds the block's paper layout (its class attribute
``paper_layout``, :class:`models.attention.layout.Layout`); explicit ``stages``, ``placement``
and ``every`` override the layout's stages, placement and units one by one. Per-stage
constructor arguments of the layout (RGA's grid, residual attention's ``stage``, GSoP's
reduction stride) are always computed, and the user's keyword arguments win over them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.attention import Layout, get_attention_class

_NO_LAYOUT = Layout(source="none declared: every residual unit of all four stages")


@dataclass(frozen=True)
class InsertionPlan:
    name: str
    stages: tuple[int, ...]
    placement: str
    units: str | int
    layout: Layout
    kwargs: dict = field(default_factory=dict)
    stem: bool = False
    shortcut: bool = False

    def stage_kwargs(self, stage: int, size=None) -> dict:
        """The block's constructor arguments in ``stage`` whose output map is ``size``."""
        extra = self.layout.stage_kwargs(stage, size) if size is not None else {}
        return {**extra, **self.kwargs}


def plan_insertion(name: str, stages: Sequence[int] = (), placement: str | None = None,
                   every: int | None = None, kwargs: dict | None = None) -> InsertionPlan:
    cls = get_attention_class(name)
    if cls.kind != "block":
        raise ValueError(f"attention {name!r} is a {cls.kind}, only blocks go into backbone stages")
    layout = getattr(cls, "paper_layout", None) or _NO_LAYOUT
    stages = tuple(stages) or layout.stages
    for s in stages:
        if s not in (1, 2, 3, 4):
            raise ValueError(f"stages are 1..4 (torchvision layer1..layer4), got {s}")
    paper_placement = layout.placement or getattr(cls, "placement", "post")
    placement = placement or paper_placement
    extras = placement == paper_placement == "pre_convs"
    return InsertionPlan(cls.registry_name, stages, placement, every or layout.units, layout,
                         dict(kwargs or {}), stem=extras and layout.stem and 1 in stages,
                         shortcut=extras and layout.shortcut)


def map_size(input_size: Sequence[int], stride: int) -> tuple[int, int]:
    """Side lengths after ``stride``-fold downsampling by 'same'-padded convs and pools
    (each halving rounds up, and ``ceil(ceil(h / a) / b) = ceil(h / (a b))``)."""
    return tuple(math.ceil(s / stride) for s in input_size)
