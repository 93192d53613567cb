"""Sampling / geometry modules: stn, dcn, dcnv2 (blocks), ram (head), draw (glimpse)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

from attention_checks import check_shape_dtype_determinism
from models.attention import build_attention, get_attention_class
from models.attention._reference_spatial import REFERENCES
from models.attention.draw import draw_read
from models.attention.ram import gaussian_log_prob, glimpse_sensor, ram_loss
from models.backbones.insertion import ResidualUnit

C = 8
SIZES = [(7, 7), (15, 9), (8, 4), (16, 8)]
BLOCKS = {"stn": {}, "dcn": {}, "dcnv2": {}}


def perturb(module, scale=0.1):
    """Move every parameter (zero/identity inits included) so that nothing is hidden."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def assert_grads(module, x, out, zero_grad=()):
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name.startswith(zero_grad):
            assert p.grad.abs().sum() == 0, f"{name} should get no gradient at init"
        else:
            assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


# ---- contract for every module ----------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_shape_dtype_determinism(name, size):
    module = perturb(build_attention(name, channels=C))
    for batch in (1, 2):
        check_shape_dtype_determinism(module, torch.randn(batch, C, *size))


@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_train_bf16_and_trace(name):
    module = perturb(build_attention(name, channels=C))
    x = torch.randn(2, C, 15, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module.train()(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.trace(module, (x,), check_trace=False)(x), module(x))


@pytest.mark.parametrize("name,kwargs", [("stn", {}), ("dcn", {}), ("dcnv2", {}),
                                         ("dcnv2", dict(stride=2, out_channels=6)),
                                         ("dcn", dict(deformable_groups=2, dilation=2, padding=2))])
def test_matches_reference_formulation(name, kwargs):
    module = perturb(build_attention(name, channels=C, **kwargs), 0.05).eval()
    x = torch.randn(2, C, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(module(x), REFERENCES[name](module, x), rtol=1e-4, atol=1e-5)


def test_registry_metadata():
    expected = {"stn": ("spatial", "block", "stage_end"), "dcn": ("spatial", "block", "replace_conv2"),
                "dcnv2": ("spatial", "block", "replace_conv2"), "ram": ("spatial", "head", None),
                "draw": ("spatial", "glimpse", None)}
    for name, (family, kind, placement) in expected.items():
        cls = get_attention_class(name)
        assert (cls.family, cls.kind, getattr(cls, "placement", None)) == (family, kind, placement)


# ---- STN ----------------------------------------------------------------------------------

@pytest.mark.parametrize("align_corners", [False, True])
def test_stn_is_identity_at_init(align_corners):
    module = build_attention("stn", channels=C, align_corners=align_corners)
    torch.testing.assert_close(module.theta.bias, torch.tensor([1.0, 0, 0, 0, 1, 0]))
    x = torch.randn(2, C, 15, 9)
    torch.testing.assert_close(module(x), x, rtol=0, atol=1e-5)


def _set_theta(module, theta):
    with torch.no_grad():
        module.theta.weight.zero_()
        module.theta.bias.copy_(torch.tensor(theta))


def test_stn_known_warps():
    module = build_attention("stn", channels=C)           # align_corners=False
    x = torch.randn(2, C, 6, 5)
    _set_theta(module, [-1.0, 0, 0, 0, 1, 0])               # x_s = -x_t: horizontal flip
    torch.testing.assert_close(module(x), x.flip(-1), rtol=0, atol=1e-5)
    _set_theta(module, [1.0, 0, 2 / 5, 0, 1, 0])            # x_s = x_t + 1 pixel
    shifted = torch.cat((x[..., 1:], torch.zeros_like(x[..., :1])), -1)
    torch.testing.assert_close(module(x), shifted, rtol=0, atol=1e-5)


def test_stn_gradients():
    module = build_attention("stn", channels=C)
    x = torch.randn(2, C, 9, 7, requires_grad=True)
    # zero-initialised last layer: the localisation layers before it get no gradient at init
    assert_grads(module, x, module(x), zero_grad=("localization",))
    module.zero_grad()
    perturb(module)
    x = torch.randn(2, C, 9, 7, requires_grad=True)
    assert_grads(module, x, module(x))


# ---- DCN v1 / v2 --------------------------------------------------------------------------

def conv_like(module, x):
    return F.conv2d(x, module.weight, module.bias, stride=module.stride, padding=module.padding,
                    dilation=module.dilation)


@pytest.mark.parametrize("kwargs", [{}, dict(stride=2), dict(out_channels=12, dilation=2, padding=2)])
def test_dcn_at_init_is_the_plain_conv(kwargs):
    module = build_attention("dcn", channels=C, **kwargs)
    x = torch.randn(2, C, 9, 7)
    assert module.offset_conv.out_channels == 4 * 2 * 9     # official v1: 4 groups, (dy, dx) x 9
    torch.testing.assert_close(module(x), conv_like(module, x), rtol=1e-5, atol=1e-5)


def test_dcnv2_at_init_is_half_the_conv_and_mask_one_gives_the_conv():
    module = build_attention("dcnv2", channels=C, bias=True)
    with torch.no_grad():
        module.bias.normal_()
    x = torch.randn(2, C, 9, 7)
    offset, mask = module.offsets_and_mask(x)
    assert offset.abs().max() == 0 and torch.all(mask == 0.5)
    plain = F.conv2d(x, module.weight, padding=1)
    torch.testing.assert_close(module(x), 0.5 * plain + module.bias[:, None, None], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        module.offset_conv.bias[2 * 9:] = 40.0              # mask logits -> sigmoid = 1
    torch.testing.assert_close(module(x), conv_like(module, x), rtol=1e-5, atol=1e-5)


def shifted_conv(x, weight, dy, dx):
    """3x3 conv (padding 1) reading every tap ``(dy, dx)`` pixels further, zeros outside."""
    h, w = x.shape[-2:]
    m = 1 + max(abs(dy), abs(dx))
    xp = F.pad(x, (m, m, m, m))
    window = xp[..., m - 1 + dy: m - 1 + dy + h + 2, m - 1 + dx: m - 1 + dx + w + 2]
    return F.conv2d(window, weight)


@pytest.mark.parametrize("name", ["dcn", "dcnv2"])
@pytest.mark.parametrize("dy,dx", [(1, 0), (0, -2), (2, 1)])
def test_integer_offsets_equal_a_shifted_conv(name, dy, dx):
    module = build_attention(name, channels=C)
    k = 9 * module.deformable_groups
    with torch.no_grad():                                   # offsets are (dy, dx) per tap
        module.offset_conv.bias[0:2 * k:2] = dy
        module.offset_conv.bias[1:2 * k:2] = dx
        if module.modulated:
            module.offset_conv.bias[2 * k:] = 40.0
    x = torch.randn(2, C, 6, 5)
    torch.testing.assert_close(module(x), shifted_conv(x, module.weight, dy, dx), rtol=1e-5, atol=1e-5)


def test_dcn_fractional_offset_by_brute_force():
    """One output pixel of a v2 conv with explicit bilinear weights, tap by tap."""
    module = build_attention("dcnv2", channels=2, out_channels=1)
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        module.offset_conv.bias[:18] = torch.rand(18) * 2 - 1
        module.offset_conv.bias[18:] = torch.randn(9)
    y = module(x)
    offset, mask = module.offsets_and_mask(x)
    for oy, ox in [(0, 0), (2, 3), (4, 4)]:
        total = 0.0
        for k in range(9):
            py = oy - 1 + k // 3 + offset[0, 2 * k, oy, ox].item()
            px = ox - 1 + k % 3 + offset[0, 2 * k + 1, oy, ox].item()
            value = torch.zeros(2)
            for yy in (math.floor(py), math.floor(py) + 1):
                for xx in (math.floor(px), math.floor(px) + 1):
                    if 0 <= yy < 5 and 0 <= xx < 5:
                        value += (1 - abs(py - yy)) * (1 - abs(px - xx)) * x[0, :, yy, xx]
            total += mask[0, k, oy, ox] * (module.weight[0, :, k // 3, k % 3] * value).sum()
        assert abs(y[0, 0, oy, ox].item() - total.item()) < 1e-5


@pytest.mark.parametrize("name", ["dcn", "dcnv2"])
def test_dcn_gradients_reach_offsets_at_init(name):
    module = build_attention(name, channels=C)
    x = torch.randn(2, C, 7, 6, requires_grad=True)
    assert_grads(module, x, module(x))


@pytest.mark.parametrize("name", ["dcn", "dcnv2"])
def test_replaces_conv2_of_a_strided_bottleneck(name):
    downsample = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
    unit = ResidualUnit(Bottleneck(16, 8, stride=2, downsample=downsample), name, "replace_conv2",
                        num_frames=1, kwargs={})
    assert unit.attn.stride == 2 and unit.attn.offset_conv.stride == (2, 2)
    assert unit(torch.randn(2, 16, 9, 7)).shape == (2, 32, 5, 4)


# ---- DRAW ---------------------------------------------------------------------------------

def test_draw_read_centred_unit_stride_is_a_centre_crop():
    x = torch.randn(2, 3, 10, 8)
    n = 4
    ones = torch.ones(2)
    out = draw_read(x, gx=ones * (8 + 1) / 2, gy=ones * (10 + 1) / 2, sigma2=ones * 1e-3,
                    delta=ones, gamma=ones, N=n)
    torch.testing.assert_close(out, x[:, :, 3:7, 2:6])
    out = draw_read(x, ones * 5, ones * 5, ones * 1e-3, ones * 2, ones * 3, N=4)  # stride 2
    torch.testing.assert_close(out, 3 * x[:, :, 1:9:2, 1:9:2])              # centres 2, 4, 6, 8


def test_draw_read_by_brute_force_sums():
    x = torch.randn(1, 2, 5, 4)
    gx, gy, s2, d, g = (torch.tensor([v]) for v in (2.2, 3.1, 0.7, 1.3, 0.8))
    n = 3
    out = draw_read(x, gx, gy, s2, d, g, n)
    for i in range(1, n + 1):
        for j in range(1, n + 1):
            mu_x = 2.2 + (j - n / 2 - 0.5) * 1.3
            mu_y = 3.1 + (i - n / 2 - 0.5) * 1.3
            fx = [math.exp(-(a - mu_x) ** 2 / 1.4) for a in range(1, 5)]
            fy = [math.exp(-(b - mu_y) ** 2 / 1.4) for b in range(1, 6)]
            expected = sum(fy[b] * fx[a] * x[0, :, b, a] for b in range(5) for a in range(4))
            expected = 0.8 * expected / (sum(fx) * sum(fy))
            torch.testing.assert_close(out[0, :, i - 1, j - 1], expected)


def test_draw_module():
    module = build_attention("draw", channels=C)
    assert module.glimpse_size == 12
    x = torch.randn(2, C, 15, 9)
    gx, gy, sigma2, delta, gamma = module.attention_params(x)   # zero init: whole map
    torch.testing.assert_close(gx, torch.full((2,), 5.0))
    torch.testing.assert_close(gy, torch.full((2,), 8.0))
    torch.testing.assert_close(delta, torch.full((2,), 14 / 11))
    assert torch.all(sigma2 == 1) and torch.all(gamma == 1)
    constant = torch.full((1, C, 15, 9), 2.5)              # rows of F sum to 1
    torch.testing.assert_close(module(constant), torch.full((1, C, 12, 12), 2.5))
    y = module(x)
    assert y.shape == (2, C, 12, 12) and y.dtype == torch.float32
    perturb(module, 0.2).eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), REFERENCES["draw"](module, x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(module(x), module(x), rtol=0, atol=0)
        context = torch.randn(2, 6)
        with_context = build_attention("draw", channels=C, glimpse_size=5, context_channels=6)
        assert with_context(x, context).shape == (2, C, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(module(x)).all()
    torch.testing.assert_close(torch.jit.trace(module, (x,), check_trace=False)(x), module(x))
    module.train()
    x = torch.randn(1, C, 8, 4, requires_grad=True)
    assert_grads(module, x, module(x))


# ---- RAM ----------------------------------------------------------------------------------

def test_ram_paper_defaults():
    module = build_attention("ram", channels=1, num_classes=10)
    assert (module.num_glimpses, module.patch_size, module.num_scales, module.std) == (8, 12, 3, 0.11)
    assert module.glimpse_what.in_features == 3 * 12 * 12 and module.glimpse_what.out_features == 128
    assert module.glimpse_where.out_features == 128 and module.core_state.out_features == 256
    assert module.location.out_features == 2


def test_glimpse_sensor_equals_explicit_crops():
    x = torch.randn(2, 3, 16, 16)
    centre = torch.zeros(2, 2)                        # map centre = pixel 7.5 on both axes
    patches = glimpse_sensor(x, centre, patch_size=4, num_scales=3)
    assert patches.shape == (2, 3, 3, 4, 4)
    torch.testing.assert_close(patches[:, 0], x[:, :, 6:10, 6:10])
    torch.testing.assert_close(patches[:, 1], F.avg_pool2d(x[:, :, 4:12, 4:12], 2))
    torch.testing.assert_close(patches[:, 2], F.avg_pool2d(x, 4))
    corner = torch.tensor([[-1.0, -1.0], [1.0, -1.0]])   # (x, y): top-left / top-right corners
    patches = glimpse_sensor(x, corner, patch_size=4, num_scales=1)[:, 0]
    padded = F.pad(x, (2, 2, 2, 2))                      # the patch hangs 2 pixels outside
    torch.testing.assert_close(patches[0], padded[0, :, 0:4, 0:4])
    torch.testing.assert_close(patches[1], padded[1, :, 0:4, 16:20])


def _small_ram(**kwargs):
    return build_attention("ram", channels=3, num_classes=5, patch_size=4, num_glimpses=3,
                           **kwargs)


def test_ram_forward_aux_determinism_and_reference():
    module = _small_ram()
    x = torch.randn(2, 3, 16, 12)
    logits, aux = module(x, return_aux=True)
    assert logits.shape == (2, 5) and aux["log_probs"].shape == (2, 3)
    assert aux["baselines"].shape == (2, 3) and aux["locations"].shape == (2, 3, 2)
    assert aux["losses"] == {} and aux["features"] == {}
    assert not torch.equal(module(x), module(x))          # training: sampled locations
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), module(x), rtol=0, atol=0)
        torch.testing.assert_close(module(x), REFERENCES["ram"](module, x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(torch.jit.trace(module, (x,), check_trace=False)(x), module(x))
        assert module(x[:1]).shape == (1, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(module.train()(x)).all()


def test_ram_loss_gradients_reach_every_parameter_and_the_input():
    module = _small_ram()
    x = torch.randn(4, 3, 9, 8, requires_grad=True)
    logits, aux = module(x, return_aux=True)
    ram_loss(logits, aux, torch.tensor([0, 1, 2, 3])).backward()
    assert x.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the classification loss alone does not train the policy: REINFORCE does
    module.zero_grad()
    logits, aux = module(x, return_aux=True)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert module.location.weight.grad is None or module.location.weight.grad.abs().sum() == 0


def test_ram_loss_by_hand():
    mean = torch.tensor([[0.1, -0.2]], requires_grad=True)
    loc = torch.tensor([[0.3, -0.1]])
    std = 0.11
    log_prob = gaussian_log_prob(loc, mean, std)
    expected_lp = sum(-0.5 * ((l - m) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
                      for l, m in [(0.3, 0.1), (-0.1, -0.2)])
    assert abs(log_prob.item() - expected_lp) < 1e-5
    baseline = torch.tensor([[0.25]], requires_grad=True)
    logits = torch.tensor([[2.0, 0.0, -1.0]])                   # predicts class 0
    aux = {"log_probs": log_prob[:, None], "baselines": baseline}
    loss = ram_loss(logits, aux, torch.tensor([0]))              # reward 1, advantage 0.75
    nll = -torch.log_softmax(logits, 1)[0, 0]
    expected = nll - expected_lp * 0.75 + 0.75 ** 2
    assert abs(loss.item() - expected.item()) < 1e-5
    loss.backward()
    # d/dmean of -log pi * A = -(l - mean) / std^2 * A: pushes the mean toward the rewarded sample
    torch.testing.assert_close(mean.grad, -(loc - mean.detach()) / std ** 2 * 0.75)
    torch.testing.assert_close(baseline.grad, torch.tensor([[2 * (0.25 - 1.0)]]))
    loss = ram_loss(logits, aux, torch.tensor([1]))              # wrong: reward 0
    assert abs(loss.item() - (-torch.log_softmax(logits, 1)[0, 1] + expected_lp * 0.25
                              + 0.25 ** 2).item()) < 1e-5


def test_dcnv2_exports():
    """torchvision's deform_conv2d is a registered op with a meta kernel: torch.export works."""
    module = perturb(build_attention("dcnv2", channels=C, stride=2), 0.05).eval()
    x = torch.randn(1, C, 9, 7)
    exported = torch.export.export(module, (x,))
    torch.testing.assert_close(exported.module()(x), module(x))
