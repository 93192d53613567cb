"""The attention benchmark's code path: references and modules keep to the input's device (checked
on the shape-only ``meta`` device, where a tensor made on the CPU fails exactly as it would on
CUDA), and a tiny run prints a row per module in float32 and under bf16 autocast."""
import argparse
import types

import pytest
import torch

from engine.benchmarks.attention import add_arguments, build, collect_references, make_input, run

# torchvision's deform_conv2d has no meta kernel behind its autocast wrapper (the module, not the reference)
NO_META_MODULE = {"dcn", "dcnv2"}


@pytest.mark.parametrize("name", sorted(collect_references()))
def test_reference_and_module_stay_on_the_input_device(name):
    args = types.SimpleNamespace(frames=4, num_classes=10, channels=16, batch=8)
    module = build(name, args).to("meta")
    x = make_input(module, args, 8, 8, "meta")
    with torch.no_grad():
        out = collect_references()[name](module, x)
        if name not in NO_META_MODULE:
            assert module(x).shape == out.shape
    assert out.device.type == "meta"


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_tiny_run_prints_every_module(amp):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    names = ["nonlocal", "detr", "sta", "stgcn", "rstan"]
    args = parser.parse_args(["--names", ",".join(names), "--sizes", "4x4", "--batch", "4", "--channels", "12",
                              "--frames", "2", "--repeats", "1", "--threads", "1", "--amp", amp])
    table = run(args)
    assert "error" not in table, table
    assert ("bf16 autocast" if amp == "bf16" else "float32") in table
    assert [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:] == names
