"""Channel attention blocks (se, gsop, fca, eca, srm, gct) and Gather-Excite (ge)."""
import math

import pytest
import torch

from attention_checks import check_gradients, check_shape_dtype_determinism, num_params, randomize
from models.attention import build_attention, get_attention_class
from models.attention._reference_channel import REFERENCES
from models.attention.channel import eca_kernel_size
from models.attention.fca import TOP_FREQ_COLS, TOP_FREQ_ROWS

C = 32
NAMES = ["se", "gsop", "fca", "eca", "srm", "gct", "ge"]
# Parameters whose gradient the paper's init makes exactly zero at the start of training.
ZERO_GRAD_AT_INIT = {
    "gct": ("alpha",),       # gamma = 0 multiplies the whole alpha path
    "srm": ("bn.weight",),   # cfc = 0 makes z constant over the batch, so BN's xhat = 0
}
GE_VARIANTS = [dict(), dict(extent=2), dict(extent=4), dict(variant="theta", extent=2),
               dict(variant="theta_plus", extent=8), dict(variant="theta_plus", spatial_size=(15, 9))]


def small(name, **kwargs):
    if name == "gsop":
        kwargs.setdefault("reduced_channels", 16)
    return build_attention(name, channels=C, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_determinism(name):
    check_shape_dtype_determinism(small(name), torch.randn(2, C, 15, 9))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_input_and_every_parameter(name):
    kwargs = dict(variant="theta_plus", extent=4) if name == "ge" else {}
    check_gradients(small(name, **kwargs), torch.randn(3, C, 9, 7), ZERO_GRAD_AT_INIT.get(name, ()))


@pytest.mark.parametrize("name", ["gct", "srm"])
def test_zero_grad_params_move_once_init_is_perturbed(name):
    module = randomize(small(name))
    check_gradients(module, torch.randn(3, C, 9, 7))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name,kwargs", [(n, {}) for n in NAMES if n != "ge"]
                         + [("ge", kw) for kw in GE_VARIANTS]
                         + [("gsop", dict(reduce_stride=2)), ("gct", dict(mode="l1")),
                            ("fca", dict(dct_size=14)), ("fca", dict(dct_size="input")),
                            ("eca", dict(kernel_size=7))])
def test_matches_reference_formulation(name, kwargs, training):
    module = randomize(small(name, **kwargs)).train(training)
    x = torch.randn(3, C, 15, 9)
    with torch.no_grad():
        torch.testing.assert_close(module(x), REFERENCES[name](module, x), rtol=1e-4, atol=1e-5)


# ---- paper facts -------------------------------------------------------------------------

def test_placements():
    assert {n: get_attention_class(n).placement for n in NAMES} == {
        "se": "post", "gsop": "post", "fca": "post", "eca": "post", "srm": "post", "gct": "pre_convs",
        "ge": "post"}


def test_se_is_the_pooled_mlp():
    se = randomize(build_attention("se", channels=64))
    assert se.fc1.out_features == 4  # reduction 16
    assert num_params(se) == 64 * 4 + 4 + 4 * 64 + 64
    x = torch.randn(2, 64, 5, 3)
    pooled = torch.stack([torch.stack([x[b, c].sum() / 15 for c in range(64)]) for b in range(2)])
    hidden = torch.relu(pooled @ se.fc1.weight.T + se.fc1.bias)
    gate = torch.sigmoid(hidden @ se.fc2.weight.T + se.fc2.bias)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


@pytest.mark.parametrize("channels,k", [(64, 3), (256, 5), (512, 5), (2048, 7)])
def test_eca_adaptive_kernel(channels, k):
    assert eca_kernel_size(channels) == k
    eca = build_attention("eca", channels=channels)
    assert num_params(eca) == k and eca.conv.bias is None
    assert eca.conv.padding == ((k - 1) // 2,)


def test_eca_rejects_even_kernel():
    with pytest.raises(ValueError):
        build_attention("eca", channels=64, kernel_size=4)


def test_eca_by_hand():
    eca = build_attention("eca", channels=4, kernel_size=3)
    with torch.no_grad():
        eca.conv.weight.copy_(torch.tensor([[[1.0, 2.0, 3.0]]]))
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2)  # pooled = [0, 1, 2, 3]
    expected = torch.tensor([0 * 2 + 1 * 3, 0 + 1 * 2 + 2 * 3, 1 + 2 * 2 + 3 * 3, 2 + 3 * 2.0])
    torch.testing.assert_close(eca(x)[0, :, 0, 0], torch.arange(4.0) * torch.sigmoid(expected))


def test_gct_identity_at_init_and_3c_params():
    gct = build_attention("gct", channels=C)
    assert num_params(gct) == 3 * C and gct.eps == 1e-5 and gct.mode == "l2"
    assert torch.equal(gct.alpha, torch.ones_like(gct.alpha))
    assert not gct.gamma.any() and not gct.beta.any()
    x = torch.randn(2, C, 7, 5)
    assert torch.equal(gct(x), x)


def test_gct_by_hand():
    gct = build_attention("gct", channels=2)
    with torch.no_grad():
        gct.gamma.fill_(1.0)
    x = torch.tensor([[[[3.0, 4.0]], [[0.0, 0.0]]]])     # l2 norms 5 and 0
    s = torch.tensor([math.sqrt(25 + 1e-5), math.sqrt(1e-5)])
    n = s / math.sqrt((s ** 2).mean() + 1e-5)
    torch.testing.assert_close(gct(x)[0, :, 0, :], x[0, :, 0, :] * (1 + torch.tanh(n))[:, None])


def test_srm_style_pooling_is_mean_and_unbiased_std_with_official_epsilon():
    srm = build_attention("srm", channels=C).eval()
    assert not srm.cfc.weight.any(), "cfc is zero-initialised (official code)"
    assert num_params(srm) == 2 * C + 2 * C
    x = torch.randn(2, C, 6, 5) * 3 + 1
    scale = 1 / math.sqrt(1 + srm.bn.eps)  # fresh BN: running mean 0, var 1
    with torch.no_grad():
        srm.cfc.weight[:, 0] = torch.tensor([0.0, 1.0])
        std = (x.var(dim=(2, 3), keepdim=True) + 1e-5).sqrt()  # official: var + 1e-5 under the root
        torch.testing.assert_close(srm(x), x * torch.sigmoid(std * scale))
        flat = torch.full((1, C, 4, 4), 2.0)
        torch.testing.assert_close(srm(flat), flat * torch.sigmoid(torch.tensor(1e-5).sqrt() * scale))
        srm.cfc.weight[:, 0] = torch.tensor([1.0, 0.0])
        torch.testing.assert_close(srm(x), x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True) * scale))


def test_srm_gate_is_one_half_at_init():
    srm = build_attention("srm", channels=C)
    x = torch.randn(4, C, 5, 5)
    torch.testing.assert_close(srm(x), x * 0.5)


def test_gsop_defaults_and_covariance():
    gsop = build_attention("gsop", channels=256)
    assert gsop.reduce[0].out_channels == 128
    d, c = 128, 256
    assert num_params(gsop) == (c * d + d) + 2 * d + 2 * d + (4 * d * d + 4 * d) + (4 * d * c + c)
    small_gsop = randomize(small("gsop")).eval()
    x = torch.randn(2, C, 6, 4)
    z = small_gsop.reduce(torch.relu(x)).flatten(2)
    cov = torch.stack([torch.cov(z[b]) * (24 - 1) / 24 for b in range(2)])  # biased covariance
    expected = x * torch.sigmoid(small_gsop.fc(small_gsop.row_conv(small_gsop.row_bn(cov[..., None]))))
    torch.testing.assert_close(small_gsop(x), expected, rtol=1e-4, atol=1e-5)


def test_fca_frequencies_follow_the_7x7_ranking():
    fca = build_attention("fca", channels=64)
    assert fca.num_freq == 16 and fca.fc1.out_features == 4 and fca.fc1.bias is None
    assert num_params(fca) == 2 * 64 * 4  # SE excitation without biases; DCT filters are fixed
    top16 = list(zip(TOP_FREQ_ROWS[:16], TOP_FREQ_COLS[:16]))
    assert fca.frequencies(7, 7) == top16
    assert fca.frequencies(14, 28) == [(2 * u, 4 * v) for u, v in top16]  # official u * (size // 7)
    assert all(u < 8 and v < 4 for u, v in fca.frequencies(8, 4))


@pytest.mark.parametrize("size", [(7, 7), (14, 14), (15, 9)])
def test_fca_dct_filters_are_orthonormal(size):
    filters = build_attention("fca", channels=32).dct_filters(*size).flatten(1).double()
    torch.testing.assert_close(filters @ filters.T, torch.eye(16, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(8, 4), (15, 9), (28, 28)])
def test_fca_dc_filter_is_scaled_global_average_pooling(size):
    fca = build_attention("fca", channels=32)
    h, w = size
    dc = fca.dct_filters(h, w)[0]  # first frequency of the ranking is (0, 0)
    x = torch.randn(h, w)
    torch.testing.assert_close((x * dc).sum(), x.mean() * math.sqrt(h * w))
    norms = fca.dct_filters(h, w).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(16))


def test_fca_default_grid_is_the_official_resnet50_c2wh():
    assert [build_attention("fca", channels=c).dct_size for c in (256, 512, 1024, 2048)] == [
        (56, 56), (28, 28), (14, 14), (7, 7)]
    assert build_attention("fca", channels=64).dct_size == (7, 7)
    assert build_attention("fca", channels=64, dct_size=56).dct_size == (56, 56)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_fca_backbone_grid_follows_the_stage_not_the_width(arch):
    """Official c2wh is keyed by the stage (planes 64..512): ResNet-18's 256-channel stage 3 gets
    the 14x14 grid, not ResNet-50 layer1's 56."""
    from models.backbones import ResNet2D
    from models.attention.fca import FcaNet
    net = ResNet2D(arch, num_frames=1, attention="fca", stages=[2, 3])
    grids = {name.split(".")[0]: m.dct_size for name, m in net.named_modules() if isinstance(m, FcaNet)}
    assert grids == {"layer2": (28, 28), "layer3": (14, 14)}


@pytest.mark.parametrize("size", [(16, 8), (8, 4), (14, 14), (15, 9), (28, 28), (7, 7)])
def test_fca_pools_each_map_to_its_dct_grid_as_the_official_code(size):
    """Re-ID maps (16x8 at stage 3 of a 256x128 ResNet-50) are pooled to the 14x14 grid first."""
    fca = randomize(build_attention("fca", channels=64, dct_size=14)).eval()
    x = torch.randn(2, 64, *size)
    with torch.no_grad():
        filters = fca.dct_filters(14, 14).repeat_interleave(64 // 16, dim=0)  # (C, 14, 14)
        freq = (torch.nn.functional.adaptive_avg_pool2d(x, 14) * filters).sum((2, 3))
        expected = x * torch.sigmoid(fca.fc2(torch.relu(fca.fc1(freq))))[:, :, None, None]
        torch.testing.assert_close(fca(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fca(x), REFERENCES["fca"](fca, x), rtol=1e-4, atol=1e-5)


def test_fca_rejects_indivisible_channels():
    with pytest.raises(ValueError):
        build_attention("fca", channels=24)


def test_ge_default_is_parameter_free_global():
    ge = build_attention("ge", channels=C)
    assert ge.variant == "theta_minus" and ge.extent == 0 and num_params(ge) == 0
    x = torch.randn(2, C, 7, 3)
    torch.testing.assert_close(ge(x), x * torch.sigmoid(x.mean((2, 3), keepdim=True)))


def test_ge_extent_two_by_hand():
    ge = build_attention("ge", channels=1, extent=2)  # 3x3 window, stride 2, pad 1, no pad count
    x = torch.arange(16.0).view(1, 1, 4, 4)
    gathered = ge.gathered(x)
    assert gathered.shape == (1, 1, 2, 2)
    torch.testing.assert_close(gathered[0, 0, 0, 0], x[0, 0, :2, :2].mean())
    torch.testing.assert_close(gathered[0, 0, 1, 1], x[0, 0, 1:4, 1:4].mean())
    torch.testing.assert_close(ge(x)[0, 0, 3, 2], x[0, 0, 3, 2] * torch.sigmoid(gathered[0, 0, 1, 1]))


def test_ge_parametric_variants():
    theta = build_attention("ge", channels=C, variant="theta", extent=8)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in theta.gather) == 3  # log2(8) stride-2 convs
    plus = build_attention("ge", channels=C, variant="theta_plus", spatial_size=7)
    assert plus.gather[0].kernel_size == (7, 7) and plus.excite[1].out_channels == C // 16
    with pytest.raises(ValueError):
        plus(torch.randn(1, C, 8, 8))
    with pytest.raises(ValueError):
        build_attention("ge", channels=C, variant="theta")  # global parametric gather needs a size
    with pytest.raises(ValueError):
        build_attention("ge", channels=C, extent=3)
