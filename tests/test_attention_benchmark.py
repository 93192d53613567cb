"""The attention benchmark's code path: references and modules keep to the input's device (checked
on the shape-only ``meta`` device, where a tensor made on the CPU fails exactly as it would on
CUDA), and a tiny run prints a row per module in float32 and under bf16 autocast."""
import argparse
import types

import pytest
import torch

from engine.benchmarks import attention
from engine.benchmarks.attention import (add_arguments, build, collect_references, make_input, max_difference,
                                         parse_kwargs, run, unzero)
from engine.errors import InputError

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


def parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


# 64 channels: with the paper's N(0, 0.01) conv init, narrower blocks barely depend on where they attend
TINY = ["--sizes", "8x8", "--batch", "4", "--channels", "64", "--frames", "2", "--repeats", "1", "--threads", "1"]


def test_kwargs_are_literals_or_strings():
    assert parse_kwargs(["sub_sample=False", "mode=dot", "reduction=4", "scale=True"]) == dict(
        sub_sample=False, mode="dot", reduction=4, scale=True)
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_kwargs(["sub_sample"])


@pytest.mark.parametrize("name", ["nonlocal", "nonlocal_st"])
def test_kwargs_reach_the_module_and_its_reference(name):
    """Without sub-sampling both forms attend to every position, and compute the same function."""
    args = parse(["--kwargs", "sub_sample=False", *TINY])
    torch.manual_seed(0)
    module = build(name, args)
    unzero(module)
    assert isinstance(module.pool, torch.nn.Identity)
    x = make_input(module, args, 8, 8, "cpu")
    diff, scale = max_difference(module, collect_references()[name], x)
    assert diff < 1e-5 and scale > 1
    torch.manual_seed(0)
    pooled = build(name, parse(TINY))
    unzero(pooled)
    with torch.no_grad():               # same parameters, another function: the difference is visible
        assert (pooled.eval()(x) - module.eval()(x)).abs().max() > 1e-3


def test_a_reference_that_ignores_the_kwargs_is_flagged(monkeypatch):
    refs = collect_references()

    def always_pooled(m, x):              # a reference that would ignore sub_sample=False
        kept, m.pool = m.pool, torch.nn.MaxPool2d(2, ceil_mode=True)
        try:
            return refs["nonlocal"](m, x)
        finally:
            m.pool = kept
    monkeypatch.setattr(attention, "collect_references", lambda: {**refs, "nonlocal": always_pooled})
    table = run(parse(["--names", "nonlocal", "--kwargs", "sub_sample=False", *TINY]))
    row = [line for line in table.splitlines() if line.startswith("| nonlocal")][0]
    assert "nonlocal sub_sample=False" in row and "DIFFERS" in row
    monkeypatch.undo()
    table = run(parse(["--names", "nonlocal,nonlocal_st", "--kwargs", "sub_sample=False", *TINY]))
    labels = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:]
    assert labels == ["nonlocal sub_sample=False", "nonlocal_st sub_sample=False"]
    assert "DIFFERS" not in table and "error" not in table, table


def test_kwargs_a_module_does_not_take_are_refused():
    with pytest.raises(InputError, match="mhsa takes no argument sub_sample"):
        run(parse(["--names", "nonlocal,mhsa", "--kwargs", "sub_sample=False", *TINY]))
