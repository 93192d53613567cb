"""Robustness matrix over EVERY registered attention module (modules added later are covered).

Per module: eval fp32 forward on every re-ID and odd map size; train forward + backward;
batch 1 in eval and train; all-zero and per-channel-constant inputs (finite outputs and
gradients, train and eval, default and random parameters); bf16 autocast on CPU; torch.jit.trace or torch.export (skipped with
the module's ``export_note``); the registry contract. Channels 64; temporal blocks see 3 frames,
aggregators 4. The expensive cases run at one small size only.
"""
import inspect
import warnings

import pytest
import torch

from attention_checks import project_attention, randomize
from engine.zoo_table import build_example, constructor_extras, example_input, first_tensor, is_temporal_block
from models.attention import FAMILIES, KINDS, build_attention, get_attention_class, list_attention
from models.backbones.insertion import PLACEMENTS

CHANNELS = 64
NUM_CLASSES = 5
REID_SIZES = [(64, 32), (32, 16), (16, 8), (8, 4)]
ODD_SIZES = [(7, 7), (14, 14), (15, 9)]
NAMES = project_attention()

DESIGN_NAMES = {
    "channel": "se gsop fca eca srm gct",
    "spatial": "ram draw stn dcn dcnv2 ge nonlocal cc ema sasa san_pairwise san_patchwise mhsa detr",
    "temporal": "tam gltr",
    "hybrid": "cbam bam scse cse sse triplet rga residual_attention csra simam scconv",
    "spatiotemporal": "rstan sta stgcn nonlocal_st",
}
BN_NEEDS_BATCH = "Expected more than 1 value per channel when training"


def make(name, size=(16, 8), batch=2):
    cls = get_attention_class(name)
    frames = 3 if is_temporal_block(cls) else 4
    module, x = build_example(name, CHANNELS, size, batch, frames, NUM_CLASSES)
    return cls, module, x


def check_output(cls, module, x, y):
    if cls.kind == "block":
        assert y.shape == x.shape
    elif cls.kind == "aggregator":
        assert y.shape == (x.shape[0], module.out_channels)
    elif cls.kind == "head":
        assert y.shape == (x.shape[0], NUM_CLASSES)
    else:  # glimpse
        assert y.dim() == 4 and y.shape[:2] == x.shape[:2]
    assert torch.isfinite(y).all(), "non-finite output"


@pytest.mark.parametrize("size", REID_SIZES + ODD_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", NAMES)
def test_eval_forward_every_size(name, size):
    cls, module, x = make(name, size)
    module.eval()
    with torch.no_grad():
        check_output(cls, module, x, first_tensor(module(x)))


@pytest.mark.parametrize("name", NAMES)
def test_train_forward_backward(name):
    cls, module, x = make(name, (15, 9))
    module.train()
    x.requires_grad_(True)
    y = first_tensor(module(x))
    check_output(cls, module, x, y)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in module.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), pname


def flat_input(x, kind):
    """All zeros, or one random constant per (sample, channel): black frames and padding."""
    if kind == "zero":
        return torch.zeros_like(x)
    level = torch.randn(x.shape[:2]).view(*x.shape[:2], *[1] * (x.dim() - 2))
    return level.expand_as(x).contiguous()


@pytest.mark.parametrize("init", ["default", "random"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("kind", ["zero", "constant"])
@pytest.mark.parametrize("name", NAMES)
def test_flat_input_gives_finite_outputs_and_gradients(name, kind, training, init):
    """No norm, std or softmax may turn a flat map into NaN (SRM's std once did in backward)."""
    cls, module, x = make(name)
    if init == "random":
        randomize(module)
    module.train(training)
    x = flat_input(x, kind).requires_grad_(True)
    y = first_tensor(module(x))
    check_output(cls, module, x, y)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all(), "non-finite input gradient"
    bad = [p for p, t in module.named_parameters() if t.grad is not None and not torch.isfinite(t.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"


FLAT_VARIANTS = [("bam", dict(variant="official")), ("gltr", dict(variant="official")),
                 ("sta", dict(squared_norm=False)), ("sta", dict(self_attention=True)),
                 ("gct", dict(mode="l1")), ("fca", dict(dct_size="input")), ("nonlocal", dict(scale=True))]


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("kind", ["zero", "constant"])
@pytest.mark.parametrize("name,kwargs", FLAT_VARIANTS, ids=lambda v: str(v))
def test_flat_input_non_default_variants(name, kwargs, kind, training):
    cls = get_attention_class(name)
    frames = 3 if is_temporal_block(cls) else 4
    x = example_input(cls, CHANNELS, (16, 8), 2, frames)
    module = randomize(build_attention(name, channels=CHANNELS, **kwargs,
                                       **constructor_extras(cls, frames, NUM_CLASSES))).train(training)
    x = flat_input(x, kind).requires_grad_(True)
    y = first_tensor(module(x))
    check_output(cls, module, x, y)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


AUX_NAMES = [n for n in NAMES if "return_aux" in inspect.signature(get_attention_class(n).forward).parameters]


@pytest.mark.parametrize("name", AUX_NAMES)
def test_auxiliary_outputs_contract(name):
    cls = get_attention_class(name)
    _, module, x = make(name)
    module.train()
    feat, aux = module(x, return_aux=True)
    check_output(cls, module, x, feat)
    assert {"losses", "features"} & set(aux), "aux holds 'losses' and/or 'features'"
    for key, loss in aux.get("losses", {}).items():
        assert loss.dim() == 0 and torch.isfinite(loss), key
    for key, f in aux.get("features", {}).items():
        assert f.dim() == 2 and f.shape[0] == x.shape[0], key
        # the re-ID model builds one BNNeck per branch feature from this declaration
        assert getattr(module, "aux_feature_dims", {}).get(key) == f.shape[1], key


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", NAMES)
def test_batch_of_one(name, training):
    cls, module, x = make(name, (15, 9) if not training else (8, 4), batch=1)
    module.train(training)
    try:
        with torch.set_grad_enabled(training):
            y = first_tensor(module(x))
    except ValueError as exc:
        if training and BN_NEEDS_BATCH in str(exc):
            pytest.xfail("BatchNorm over per-sample pooled statistics needs batch > 1 in training")
        raise
    check_output(cls, module, x, y)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast(name):
    cls, module, x = make(name, (15, 9))
    module.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = first_tensor(module(x))
    assert y.dtype in (torch.float32, torch.bfloat16)
    check_output(cls, module, x, y.float())


def _exported_output(module, x):
    """Output of a traced (or, failing that, exported) copy; raises when both fail."""
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return first_tensor(torch.jit.trace(module, (x,), check_trace=False)(x))
        except Exception as exc:  # fall back to torch.export
            errors.append(f"jit.trace: {type(exc).__name__}: {exc}")
        try:
            return first_tensor(torch.export.export(module, (x,)).module()(x))
        except Exception as exc:
            errors.append(f"export: {type(exc).__name__}: {exc}")
    pytest.fail("\n".join(e[:500] for e in errors))


@pytest.mark.parametrize("name", NAMES)
def test_trace_or_export(name):
    cls, module, x = make(name)
    note = getattr(cls, "export_note", None)
    if note:
        pytest.skip(f"export_note: {note}")
    module.eval()
    with torch.no_grad():
        expected = first_tensor(module(x))
        got = _exported_output(module, x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_registry_contract(name):
    cls = get_attention_class(name)
    assert cls.family in FAMILIES and cls.kind in KINDS
    params = list(inspect.signature(cls.__init__).parameters)
    assert params[1] == "channels", "channels must be the first argument"
    assert (cls.__doc__ or "").strip(), "docstring with paper, equations and defaults"
    note = getattr(cls, "export_note", None)
    assert note is None or (isinstance(note, str) and note.strip())
    if cls.kind == "block":
        assert getattr(cls, "placement", "post") in PLACEMENTS
        if getattr(cls, "placement", None) == "replace_conv2":
            assert {"stride", "out_channels"} <= set(params)
    if cls.kind == "aggregator":
        _, module, _ = make(name)
        assert isinstance(module.out_channels, int)


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if getattr(get_attention_class(n), "placement", None) == "replace_conv2"])
def test_replace_conv2_strides_and_widens(name):
    cls = get_attention_class(name)
    frames = {"num_frames": 3} if "num_frames" in inspect.signature(cls.__init__).parameters else {}
    module = cls(channels=CHANNELS, stride=2, out_channels=2 * CHANNELS, **frames).eval()
    x = torch.randn(2, CHANNELS, 3, 16, 8) if is_temporal_block(cls) else torch.randn(2, CHANNELS, 16, 8)
    with torch.no_grad():
        y = module(x)
    assert y.shape[:2] == (2, 2 * CHANNELS) and y.shape[-2:] == (8, 4)


REGISTERED = set(NAMES)


@pytest.mark.parametrize("name,family", [
    pytest.param(n, f, marks=() if n in REGISTERED else
                 pytest.mark.xfail(strict=False, reason="not yet registered"))
    for f, names in DESIGN_NAMES.items() for n in names.split()])
def test_design_names_registered(name, family):
    assert name in REGISTERED
    assert get_attention_class(name).family == family
