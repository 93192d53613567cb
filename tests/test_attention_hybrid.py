"""Channel + spatial blocks: cbam, bam, scse/cse/sse, triplet, simam."""
import math

import pytest
import torch

from attention_checks import check_gradients, check_shape_dtype_determinism, num_params, randomize
from models.attention import build_attention, get_attention_class
from models.attention._reference_channel import REFERENCES

C = 32
NAMES = ["cbam", "bam", "scse", "cse", "sse", "triplet", "simam"]


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_determinism(name):
    check_shape_dtype_determinism(build_attention(name, channels=C), torch.randn(2, C, 15, 9))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_input_and_every_parameter(name):
    check_gradients(build_attention(name, channels=C), torch.randn(3, C, 9, 7))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name,kwargs", [(n, {}) for n in NAMES]
                         + [("bam", dict(variant="official")), ("scse", dict(aggregation="max")),
                            ("scse", dict(aggregation="mul")), ("triplet", dict(no_spatial=True)),
                            ("cbam", dict(kernel_size=3))])
def test_matches_reference_formulation(name, kwargs, training):
    module = randomize(build_attention(name, channels=C, **kwargs)).train(training)
    x = torch.randn(3, C, 15, 9)
    with torch.no_grad():
        torch.testing.assert_close(module(x), REFERENCES[name](module, x), rtol=1e-4, atol=1e-5)


def test_placements():
    assert {n: get_attention_class(n).placement for n in NAMES} == {
        "cbam": "post", "bam": "stage_end", "scse": "post", "cse": "post", "sse": "post",
        "triplet": "post", "simam": "post_conv2"}  # SimAM: after the 3x3 conv, before its BN (official ResNets)


# ---- CBAM -------------------------------------------------------------------------------

def test_cbam_defaults_follow_the_paper_not_the_article():
    cbam = build_attention("cbam", channels=64)
    assert cbam.spatial.conv.weight.shape == (1, 2, 7, 7)  # article snippet: 49
    assert cbam.mlp[0].out_features == 4                    # reduction 16
    assert num_params(cbam) == (64 * 4 + 4) + (4 * 64 + 64) + 2 * 49 + 2
    x = torch.randn(2, 64, 6, 6)
    cbam.eval()
    with torch.no_grad():  # no extra residual: a saturated-negative gate gives ~0, not x
        cbam.spatial.bn.bias.fill_(-1e4)
        assert cbam(x).abs().max() < 1e-6


def test_cbam_by_recomputation_from_its_weights():
    cbam = randomize(build_attention("cbam", channels=C)).eval()
    x = torch.randn(2, C, 5, 4)
    fc1, fc2 = cbam.mlp[0], cbam.mlp[2]
    mc = torch.zeros(2, C)
    for pooled in (x.amax((2, 3)), x.mean((2, 3))):
        mc += torch.relu(pooled @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias
    y = x * torch.sigmoid(mc)[:, :, None, None]
    bn = cbam.spatial.bn
    conv = torch.nn.functional.conv2d(torch.cat([y.amax(1, True), y.mean(1, True)], 1),
                                      cbam.spatial.conv.weight, padding=3)
    ms = torch.sigmoid((conv - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    torch.testing.assert_close(cbam(x), y * ms)


# ---- BAM --------------------------------------------------------------------------------

def test_bam_defaults():
    bam = build_attention("bam", channels=64)
    dilated = [m for m in bam.spatial if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(dilated) == 2 and all(m.dilation == (4, 4) and m.padding == (4, 4) for m in dilated)
    assert bam.spatial[0].out_channels == 4 and bam.channel_mlp[0].out_features == 4
    assert bam.variant == "paper"


def bam_params(c, official, r=16):
    """Counted by hand from the paper's Eq. 2-3 / the official file (hidden width h = C / r)."""
    h = c // r
    mlp = (c * h + h) + (h * c + c)
    spatial = (c * h + h) + 2 * h + 2 * (9 * h * h + h + 2 * h) + (h + 1)
    return mlp + spatial + (2 * h if official else 2 * c + 2)


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_bam_parameter_counts_in_resnet50(variant):
    """Three BAMs (256, 512, 1024 channels) on ResNet-50's 25,557,032: the paper's table says
    25.92M; the official variant lands at 25.915M (both round to 25.92M)."""
    counts = [num_params(build_attention("bam", channels=c, variant=variant)) for c in (256, 512, 1024)]
    assert counts == [bam_params(c, variant == "official") for c in (256, 512, 1024)]
    total = 25_557_032 + sum(counts)
    assert total == {"paper": 25_918_465, "official": 25_915_099}[variant]
    assert round(total / 1e6, 2) == 25.92


def test_bam_official_layout_and_init():
    bam = build_attention("bam", channels=64, variant="official")
    assert isinstance(bam.channel_mlp[1], torch.nn.BatchNorm1d) and bam.channel_mlp[1].num_features == 4
    assert isinstance(bam.channel_bn, torch.nn.Identity)
    assert isinstance(bam.spatial[-1], torch.nn.Conv2d) and bam.spatial[-1].out_channels == 1
    biases = [m.bias for m in bam.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(biases) == 6 and not any(b.any() for b in biases)
    with pytest.raises(ValueError, match="variant"):
        build_attention("bam", channels=64, variant="sum")


@pytest.mark.parametrize("variant", ["paper", "official"])
@pytest.mark.parametrize("size", [(15, 9), (7, 7), (8, 4), (3, 2), (1, 1)])
def test_bam_odd_and_tiny_maps(size, variant):
    bam = randomize(build_attention("bam", channels=C, variant=variant)).eval()
    x = torch.randn(2, C, *size)
    y = bam(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, REFERENCES["bam"](bam, x), rtol=1e-4, atol=1e-5)


def test_bam_paper_by_hand():
    """``F + F * sigmoid(BN(MLP(gap)) + BN(spatial))`` with fresh eval BNs (x / sqrt(1 + eps))."""
    bam = build_attention("bam", channels=C, num_dilated_convs=0).eval()
    x = torch.randn(2, C, 5, 3)
    s = 1 / math.sqrt(1 + 1e-5)
    fc0, fc1 = bam.channel_mlp[0], bam.channel_mlp[2]
    conv0, conv1 = bam.spatial[0], bam.spatial[3]
    with torch.no_grad():
        mc = fc1(torch.relu(fc0(x.mean((2, 3))))) * s
        ms = torch.einsum("oc,bchw->bohw", conv1.weight[:, :, 0, 0], torch.relu(
            (torch.einsum("oc,bchw->bohw", conv0.weight[:, :, 0, 0], x) + conv0.bias[:, None, None]) * s))
        ms = (ms + conv1.bias[:, None, None]) * s
        torch.testing.assert_close(bam(x), x + x * torch.sigmoid(mc[:, :, None, None] + ms))


def test_bam_official_by_hand():
    """``F * (1 + sigmoid((fc1 relu(BN(fc0 gap))) * conv(...)))``, no BN after either branch."""
    bam = randomize(build_attention("bam", channels=C, num_dilated_convs=0, variant="official")).eval()
    x = torch.randn(2, C, 5, 3)
    fc0, bn, fc1 = bam.channel_mlp[0], bam.channel_mlp[1], bam.channel_mlp[3]
    conv0, bn0, conv1 = bam.spatial[0], bam.spatial[1], bam.spatial[3]

    def norm(bn_layer, v, shape):
        return ((v - bn_layer.running_mean.view(shape)) / (bn_layer.running_var.view(shape) + 1e-5).sqrt()
                * bn_layer.weight.view(shape) + bn_layer.bias.view(shape))

    with torch.no_grad():
        mc = fc1(torch.relu(norm(bn, fc0(x.mean((2, 3))), (1, -1))))
        hid = torch.einsum("oc,bchw->bohw", conv0.weight[:, :, 0, 0], x) + conv0.bias[:, None, None]
        ms = torch.einsum("oc,bchw->bohw", conv1.weight[:, :, 0, 0], torch.relu(norm(bn0, hid, (1, -1, 1, 1))))
        ms = ms + conv1.bias[:, None, None]
        torch.testing.assert_close(bam(x), x * (1 + torch.sigmoid(mc[:, :, None, None] * ms)),
                                   rtol=1e-4, atol=1e-5)


# ---- scSE -------------------------------------------------------------------------------

def test_scse_defaults():
    scse = build_attention("scse", channels=C)
    assert scse.aggregation == "add" and scse.cse.fc1.out_features == C // 2
    assert num_params(build_attention("sse", channels=C)) == C + 1


def test_scse_by_hand():
    scse = randomize(build_attention("scse", channels=4))
    x = torch.randn(1, 4, 3, 2)
    z = x.mean((2, 3))[0]
    s = torch.sigmoid(scse.cse.fc2.weight @ torch.relu(scse.cse.fc1.weight @ z + scse.cse.fc1.bias)
                      + scse.cse.fc2.bias)
    q = torch.zeros(3, 2)
    for i in range(3):
        for j in range(2):
            q[i, j] = torch.sigmoid((scse.sse.conv.weight[0, :, 0, 0] * x[0, :, i, j]).sum()
                                    + scse.sse.conv.bias[0])
    torch.testing.assert_close(scse(x)[0], x[0] * s[:, None, None] + x[0] * q)


# ---- Triplet ----------------------------------------------------------------------------

def test_triplet_defaults_and_params():
    triplet = build_attention("triplet", channels=C)
    assert num_params(triplet) == 3 * (2 * 49 + 2)
    assert triplet.cw.bn.momentum == 0.01 and triplet.cw.conv.bias is None


def test_triplet_branch_axes():
    """Each branch pools the axis it should: a map constant along an axis is unchanged by the
    max/mean pool over that axis, so its gate is independent of that axis."""
    triplet = randomize(build_attention("triplet", channels=4)).eval()
    x = torch.randn(1, 4, 5, 3)
    gate_cw = triplet.cw(torch.stack((x.amax(2), x.mean(2)), 1))   # (1, 1, C, W)
    assert gate_cw.shape == (1, 1, 4, 3)
    x_rot = x.permute(0, 3, 2, 1)                                   # official hc rotation
    pooled = torch.cat((x_rot.amax(1, True), x_rot.mean(1, True)), 1)
    gate_hc = triplet.hc(pooled)                                    # (1, 1, H, C)
    gate_hw = triplet.hw(torch.cat((x.amax(1, True), x.mean(1, True)), 1))
    expected = x * (gate_cw.transpose(1, 2) + gate_hc.permute(0, 3, 2, 1) + gate_hw) / 3
    torch.testing.assert_close(triplet(x), expected)


# ---- SimAM ------------------------------------------------------------------------------

def test_simam_closed_form_by_loops():
    simam = build_attention("simam", channels=3)
    assert num_params(simam) == 0 and simam.e_lambda == 1e-4
    x = torch.randn(2, 3, 4, 5)
    expected = torch.empty_like(x)
    n = 4 * 5 - 1
    for b in range(2):
        for c in range(3):
            values = [x[b, c, i, j].item() for i in range(4) for j in range(5)]
            mu = sum(values) / len(values)
            var = sum((v - mu) ** 2 for v in values) / n
            for i in range(4):
                for j in range(5):
                    v = x[b, c, i, j].item()
                    e_inv = (v - mu) ** 2 / (4 * (var + 1e-4)) + 0.5
                    expected[b, c, i, j] = v / (1 + math.exp(-e_inv))
    torch.testing.assert_close(simam(x), expected)


def test_simam_lambda_matters():
    x = torch.randn(1, 2, 3, 3)
    assert not torch.allclose(build_attention("simam", e_lambda=1e-4)(x),
                              build_attention("simam", e_lambda=10.0)(x))
