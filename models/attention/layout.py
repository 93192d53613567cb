"""Paper layouts: where a block's paper puts it in a ResNet.

Every ``block`` class carries ``paper_layout = Layout(...)``; a backbone built with the block's
name and no ``stages`` builds exactly that layout (``models.backbones.plan``). Stages are 1..4
(torchvision ``layer1..layer4``, the papers' res2..res5).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

UNITS = ("all", "every_other", "last")


@dataclass(frozen=True)
class StageInfo:
    """What a per-stage argument may depend on: the stage and its output map ``(H, W)``."""
    stage: int
    size: tuple[int, int]


@dataclass(frozen=True)
class Layout:
    """Where a paper puts its block in a ResNet.

    Args:
        stages: stages 1..4 that get the block.
        units: residual units of a stage that get it: ``all``, ``every_other`` (the 2nd, 4th, ...
            unit, as the non-local paper's "every other residual block") or ``last``. Ignored by
            ``stage_end`` placements (one block per stage).
        placement: where in the unit (``models.backbones.insertion``); ``None``: the class's
            ``placement``.
        per_stage: ``StageInfo -> dict`` of constructor arguments that depend on the stage.
        stem, shortcut: ``pre_convs`` only: also one block before the stem conv / before each
            projection-shortcut conv (GCT's official ResNet puts one before every conv).
        source: where the layout comes from (paper section, official code, or "ours").
    """
    stages: tuple[int, ...] = (1, 2, 3, 4)
    units: str = "all"
    placement: str | None = None
    per_stage: Callable[[StageInfo], dict] | None = None
    stem: bool = False
    shortcut: bool = False
    source: str = ""

    def __post_init__(self):
        if self.units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, got {self.units!r}")
        if not self.stages or any(s not in (1, 2, 3, 4) for s in self.stages):
            raise ValueError(f"stages are 1..4, got {self.stages}")

    def stage_kwargs(self, stage: int, size) -> dict:
        return dict(self.per_stage(StageInfo(stage, tuple(size)))) if self.per_stage else {}


def spatial_size_of_stage(info: StageInfo) -> dict:
    """Per-stage arguments of blocks built for their map: ``spatial_size = (H, W)`` of the stage."""
    return {"spatial_size": info.size}


def unit_indices(units: str | int, num_units: int) -> list[int]:
    """0-based indices of the units that get a block; ``units`` may be an ``every`` step ``k``
    (the ``k``-th, ``2k``-th, ... unit; ``1`` = all)."""
    if units == "all" or units == 1:
        return list(range(num_units))
    if units == "last":
        return [num_units - 1]
    step = 2 if units == "every_other" else int(units)
    if step < 1:
        raise ValueError(f"every must be >= 1, got {units}")
    return [i for i in range(num_units) if (i + 1) % step == 0]

