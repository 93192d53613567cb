"""Loading local weight files (never downloaded) with a readable report."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class LoadReport:
    """What a weight load did: loaded, new (kept at init) and unexpected keys, shape mismatches."""
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"weights: {len(self.loaded)} loaded, {len(self.new)} new, "
                 f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape-mismatched"]
        for title, keys in (("new (initialised)", self.new), ("unexpected (ignored)", self.unexpected),
                            ("shape mismatch (ignored)", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... (+{len(keys) - 8})" if len(keys) > 8 else "")
                lines.append(f"  {title}: {shown}")
        return "\n".join(lines)


def load_local_weights(model: nn.Module, path: str, key_map: Callable[[str], str] | None = None,
                       verbose: bool = True) -> LoadReport:
    """Load a state dict file into ``model`` non-strictly and report what happened.

    Accepts a bare state dict or a checkpoint with a ``model``/``state_dict`` entry. Classifier
    weights of other datasets end up as "unexpected"; new attention parameters as "new".
    """
    from engine.checkpoint import load_tensor_file
    from engine.errors import CheckpointError
    if not os.path.isfile(path) and not os.path.isdir(path):
        raise CheckpointError(f"pretrained weights not found: {path!r} (weights are never "
                              "downloaded; point MODEL.PRETRAINED to a local .pth file)")
    state = load_tensor_file(path, what="pretrained weights")
    if not isinstance(state, dict):
        raise CheckpointError(f"pretrained weights {path!r} hold a {type(state).__name__}, not a state dict")
    for key in ("model", "state_dict", "model_state"):  # ours/torchvision, lightning, pytorchvideo
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if key_map is not None:
        state = {key_map(k): v for k, v in state.items()}
    own = model.state_dict()
    report = LoadReport()
    usable = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif own[k].shape != v.shape:
            report.mismatched.append(f"{k} {tuple(v.shape)}->{tuple(own[k].shape)}")
        else:
            usable[k] = v
            report.loaded.append(k)
    report.new = [k for k in own if k not in usable and not k.endswith("num_batches_tracked")]
    if not usable:
        raise CheckpointError(f"no tensor of pretrained weights {path!r} matches the model: "
                              "is it the right architecture (MODEL.BACKBONE.NAME)?")
    model.load_state_dict(usable, strict=False)
    if verbose:
        print(report)
    return report
