"""Heavier hybrid modules: rga, residual_attention, scconv (blocks) and csra (head)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

import attention_checks as checks
from attention_checks import num_params
from models.attention import build_attention, get_attention_class
from models.attention._reference_spatial import REFERENCES
from models.backbones.insertion import ResidualUnit

C = 8
SIZES = [(7, 7), (15, 9), (8, 4), (16, 8)]
BLOCKS = {"rga": {}, "residual_attention": {}, "scconv": {}}
LIGHT = {"residual_attention": dict(stage=3, t=1)}  # tracing is slow: trace a small instance


def randomize(module, scale=0.3):
    return checks.randomize(module, scale)


# ---- contract for every module ----------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_shape_dtype_determinism(name, size):
    module = randomize(build_attention(name, channels=C))
    for batch in (1, 2):
        checks.check_shape_dtype_determinism(module, torch.randn(batch, C, *size))


@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_gradients_bf16_trace(name):
    module = build_attention(name, channels=C).train()
    x = torch.randn(2, C, 15, 9, requires_grad=True)
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad.abs().sum() > 0
    for pname, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    module = build_attention(name, channels=C, **LIGHT.get(name, {})).eval()
    x = torch.randn(2, C, 15, 9)
    with torch.no_grad():
        traced = torch.jit.trace(module, (x,), check_trace=False)
        torch.testing.assert_close(traced(x), module(x))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name,kwargs,size", [
    ("rga", {}, (16, 8)), ("rga", {}, (15, 9)), ("rga", {}, (32, 16)), ("rga", {}, (4, 3)),
    ("rga", dict(mode="s"), (7, 7)), ("rga", dict(mode="c"), (9, 5)),
    ("residual_attention", {}, (15, 9)), ("residual_attention", dict(stage=2), (8, 4)),
    ("residual_attention", dict(stage=3, p=2, t=1, r=2), (7, 7)),
    ("scconv", {}, (15, 9)), ("scconv", dict(stride=2, out_channels=2 * C), (9, 7)),
    ("scconv", dict(pooling_r=2, dilation=2), (3, 5))])
def test_matches_reference_formulation(name, kwargs, size, training):
    module = randomize(build_attention(name, channels=C, **kwargs)).train(training)
    x = torch.randn(3, C, *size)
    with torch.no_grad():
        y = module(x)
        if training:  # BN used batch statistics: compare with the same statistics, frozen
            module.eval()
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.track_running_stats = False
                    m.running_mean = m.running_var = None
        torch.testing.assert_close(y, REFERENCES[name](module, x), rtol=1e-4, atol=1e-4)


def test_registry_metadata():
    expected = {"rga": ("hybrid", "block", "stage_end"),
                "residual_attention": ("hybrid", "block", "stage_end"),
                "scconv": ("hybrid", "block", "replace_conv2"), "csra": ("hybrid", "head", None)}
    for name, (family, kind, placement) in expected.items():
        cls = get_attention_class(name)
        assert (cls.family, cls.kind, getattr(cls, "placement", None)) == (family, kind, placement)


# ---- RGA ----------------------------------------------------------------------------------

def official_rga_param_count(c, n, ratio=8):
    """Parameters of the official RGA_Module(c, n) (both branches), layer by layer."""
    ic, isp = c // ratio, n // ratio
    conv_bn = lambda i, o: i * o + 2 * o                          # noqa: E731  1x1 conv + BN
    spatial = 3 * conv_bn(c, ic) + conv_bn(2 * n, isp)            # theta, phi, gx; gg_spatial
    spatial += conv_bn(1 + isp, (1 + isp) // ratio) + conv_bn((1 + isp) // ratio, 1)
    channel = 3 * conv_bn(n, isp) + conv_bn(2 * c, ic)
    channel += conv_bn(1 + ic, (1 + ic) // ratio) + conv_bn((1 + ic) // ratio, 1)
    return spatial + channel


def test_rga_defaults_and_official_parameter_count():
    module = build_attention("rga", channels=256, spatial_size=(64, 32))
    assert module.mode == "sc"
    assert num_params(module) == official_rga_param_count(256, 64 * 32)
    assert module.theta_s[0].out_channels == 256 // 8 and module.gg_s_weight.shape == (256, 4096)
    assert build_attention("rga", channels=C).spatial_size == (16, 8)
    with pytest.raises(ValueError):
        build_attention("rga", channels=C, mode="cs")


def test_rga_relation_features_by_explicit_loops():
    """RGA-S on a 3x2 map: each node's [r_i,:, r_:,i] built entry by entry, then the attention."""
    module = randomize(build_attention("rga", channels=8, mode="s", spatial_size=(3, 2))).eval()
    x = torch.randn(1, 8, 3, 2)
    with torch.no_grad():
        theta = module.theta_s(x)[0].flatten(1)                   # (ic, 6)
        phi = module.phi_s(x)[0].flatten(1)
        weight = module.gg_s_weight                               # (inter_s, 2 * 6)
        relation = torch.zeros(weight.shape[0], 6)
        for i in range(6):
            feats = [theta[:, i] @ phi[:, j] for j in range(6)] + [theta[:, j] @ phi[:, i] for j in range(6)]
            relation[:, i] = weight @ torch.stack(feats)
        relation = F.relu(module.gg_s_bn(relation[None]))[0].reshape(-1, 3, 2)
        own = module.gx_s(x)[0].mean(0, keepdim=True)
        att = torch.sigmoid(module.w_s(torch.cat((own, relation))[None]))
        torch.testing.assert_close(module(x), att * x, rtol=1e-5, atol=1e-5)


# ---- Residual Attention -------------------------------------------------------------------

def test_residual_attention_is_one_plus_mask_times_trunk():
    module = randomize(build_attention("residual_attention", channels=C, stage=2)).eval()
    x = torch.randn(2, C, 15, 9)

    def up(t, like):
        return F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=True)

    with torch.no_grad():
        pre = module.pre(x)
        trunk = module.trunk(pre)
        level1 = module.down[0](F.max_pool2d(pre, 3, 2, 1))       # 8x5
        level2 = module.down[1](F.max_pool2d(level1, 3, 2, 1))    # 4x3, 2r units
        level1 = module.up[0](up(level2, level1) + module.skips[0](level1))
        mask = module.mask_head(up(level1, pre))
        assert level2.shape[-2:] == (4, 3) and 0 < mask.min() and mask.max() < 1
        torch.testing.assert_close(module(x), module.post((1 + mask) * trunk))
        module.mask_head[-2].weight.zero_()                       # M = sigmoid(0) = 1/2
        torch.testing.assert_close(module(x), module.post(1.5 * trunk))


def test_residual_attention_paper_structure():
    """Attention-56 stage 1 at 256 channels: 12 bottleneck units (p=1, t=2, r=1: 1 + 2 trunk,
    1 + 1 + 2 down, 2 skips, 2 up, 1 after) and the 2 mask 1x1 convs, as in the released
    prototxt: 12 * (256*64 + 64*64*9 + 64*256) + 2 * 256*256 conv weights."""
    module = build_attention("residual_attention", channels=256)
    convs = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))
    assert convs == 12 * (256 * 64 + 64 * 64 * 9 + 64 * 256) + 2 * 256 * 256 == 966656
    assert all(m.bias is None for m in module.modules() if isinstance(m, nn.Conv2d))
    assert [module.num_pools for module in (build_attention("residual_attention", channels=8, stage=s)
                                            for s in (1, 2, 3))] == [3, 2, 1]
    stage3 = build_attention("residual_attention", channels=8, stage=3)
    assert len(stage3.down[0]) == 2 and len(stage3.skips) == 0
    with pytest.raises(ValueError):
        build_attention("residual_attention", channels=8, stage=4)


# ---- SCConv -------------------------------------------------------------------------------

def test_scconv_official_equations_by_hand():
    module = randomize(build_attention("scconv", channels=4)).eval()
    x = torch.randn(1, 4, 8, 8)
    x1, x2 = x[:, :2], x[:, 2:]
    with torch.no_grad():
        pooled = x2.reshape(1, 2, 2, 4, 2, 4).mean((3, 5))      # AvgPool r = 4: 8x8 -> 2x2
        k2 = module.k2[1](F.conv2d(pooled, module.k2[0].weight, padding=1))
        up = k2.repeat_interleave(4, 2).repeat_interleave(4, 3)   # nearest x4
        y2 = module.k3[1](F.conv2d(x2, module.k3[0].weight, padding=1)) * torch.sigmoid(x2 + up)
        y = torch.cat((F.conv2d(x1, module.k1.weight, padding=1),
                       F.conv2d(y2, module.k4.weight, padding=1)), 1)
        torch.testing.assert_close(module(x), y)


def test_scconv_defaults_and_parameter_count():
    module = build_attention("scconv", channels=64)
    assert module.pooling_r == 4
    # four 3x3 convs on the 32-channel half + BN of K2 and K3 (K1/K4's BN is the host's bn2)
    assert num_params(module) == 4 * 32 * 32 * 9 + 2 * 2 * 32
    with pytest.raises(ValueError):
        build_attention("scconv", channels=7)


def test_scconv_in_a_bottleneck_is_the_official_scbottleneck():
    """Host conv1 split in halves = official conv1_a / conv1_b; host bn2 + ReLU = BN + ReLU of
    k1 and k4; the unit then equals SCBottleneck's forward written out."""
    downsample = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
    unit = randomize(ResidualUnit(Bottleneck(16, 8, stride=2, downsample=downsample), "scconv",
                                  "replace_conv2", num_frames=1, kwargs={})).eval()
    sc = unit.attn
    assert sc.k1.stride == (2, 2) and sc.k4.stride == (2, 2)
    x = torch.randn(2, 16, 9, 7)

    def bn(t, layer, lo, hi):
        return F.batch_norm(t, layer.running_mean[lo:hi], layer.running_var[lo:hi],
                            layer.weight[lo:hi], layer.bias[lo:hi], False, 0.0, layer.eps)

    with torch.no_grad():
        a = F.relu(bn(F.conv2d(x, unit.conv1.weight[:4]), unit.bn1, 0, 4))    # conv1_a, bn1_a
        b = F.relu(bn(F.conv2d(x, unit.conv1.weight[4:]), unit.bn1, 4, 8))    # conv1_b, bn1_b
        out_a = F.relu(bn(sc.k1(a), unit.bn2, 0, 4))
        out_b = F.relu(bn(sc.k4(sc.calibrate(b)), unit.bn2, 4, 8))
        out = unit.bn3(unit.conv3(torch.cat((out_a, out_b), 1)))
        torch.testing.assert_close(unit(x), F.relu(out + downsample(x)))


# ---- CSRA ---------------------------------------------------------------------------------

@pytest.mark.parametrize("num_heads", [1, 2, 4, 6, 8])
def test_csra_matches_per_class_loops(num_heads):
    module = randomize(build_attention("csra", channels=C, num_classes=5, num_heads=num_heads))
    x = torch.randn(2, C, 7, 5)
    y = module(x)
    assert y.shape == (2, 5) and y.dtype == torch.float32
    torch.testing.assert_close(y, REFERENCES["csra"](module, x), rtol=1e-5, atol=1e-5)


def test_csra_temperatures_and_defaults():
    module = build_attention("csra", channels=C, num_classes=3)
    assert module.lam == 0.1 and module.num_heads == 1 and module.soft_temperatures == (1.0,)
    assert module.classifier.bias is None
    four = build_attention("csra", channels=C, num_classes=3, num_heads=4)
    assert four.soft_temperatures == (1.0, 2.0, 4.0) and four.num_max_heads == 1
    assert build_attention("csra", channels=C, num_classes=3, num_heads=8).soft_temperatures == tuple(
        float(t) for t in range(1, 8))
    with pytest.raises(ValueError):
        build_attention("csra", channels=C, num_classes=3, num_heads=3)


def test_csra_t99_is_max_pooling_and_the_article_snippet():
    """temperatures=(99,), lam=0.2, no normalisation: the seed article's mean + 0.2 * max."""
    module = randomize(build_attention("csra", channels=C, num_classes=4, temperatures=(99,),
                                       lam=0.2, normalize=False))
    x = torch.randn(2, C, 6, 5)
    raw = torch.einsum("kc,bchw->bkhw", module.classifier.weight[:, :, 0, 0], x).flatten(2)
    torch.testing.assert_close(module(x), raw.mean(2) + 0.2 * raw.max(2).values)
    # a very large finite temperature tends to the max-pooling branch
    hot = build_attention("csra", channels=C, num_classes=4, temperatures=(1e4,), lam=0.2,
                          normalize=False)
    hot.load_state_dict(module.state_dict())
    torch.testing.assert_close(hot(x), module(x), rtol=1e-3, atol=1e-3)


def test_csra_per_class_weight_normalisation_by_hand():
    module = build_attention("csra", channels=2, num_classes=1, lam=0.5)      # T = 1
    with torch.no_grad():
        module.classifier.weight.copy_(torch.tensor([3.0, 4.0]).reshape(1, 2, 1, 1))  # norm 5
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)        # positions (1,0), (0,1)
    s = torch.tensor([3.0, 4.0]) / 5
    expected = s.mean() + 0.5 * (torch.softmax(s, 0) * s).sum()
    torch.testing.assert_close(module(x), expected.reshape(1, 1))


def test_csra_contract():
    module = randomize(build_attention("csra", channels=C, num_classes=5, num_heads=2))
    x = torch.randn(1, C, 8, 4, requires_grad=True)
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad.abs().sum() > 0 and module.classifier.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(module.eval()(x), module(x))
        torch.testing.assert_close(torch.jit.trace(module, (x,), check_trace=False)(x), module(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.isfinite(module(x)).all()
