"""Temporal and spatio-temporal modules: tam (block), gltr, sta, stgcn, rstan (aggregators)."""
import inspect
import math

import pytest
import torch

from attention_checks import num_params, randomize
from models.attention import build_attention, get_attention_class
from models.attention._reference_temporal import REFERENCES
from models.heads.aggregators import TemporalPool, build_aggregator, call_aggregator

C, T = 16, 4
# tiny configurations; every other argument keeps the paper's default
CONFIGS = {
    "tam": dict(num_frames=T),
    "gltr": dict(embed_dim=8),
    "sta": dict(embed_dim=12),
    "stgcn": dict(),
    "rstan": dict(hidden_size=12, attention_dim=6),
}
AGGREGATORS = ["gltr", "sta", "stgcn", "rstan"]
SIZES = [(7, 7), (15, 9), (8, 4), (16, 8)]


def build(name, **kwargs):
    return build_attention(name, channels=C, **{**CONFIGS[name], **kwargs})


def with_aux(module, x):
    """``(feat, aux)`` for modules that take ``return_aux``, ``(y, empty aux)`` for the others."""
    if "return_aux" in inspect.signature(module.forward).parameters:
        return module(x, return_aux=True)
    return module(x), {"losses": {}, "features": {}}


def expected_shape(name, module, x):
    return x.shape if name == "tam" else (x.shape[0], module.out_channels)


# ---- contract: shapes, dtypes, determinism, gradients, references -------------------------

def test_registry_families_kinds_and_placement():
    assert {n: (get_attention_class(n).family, get_attention_class(n).kind) for n in CONFIGS} == {
        "tam": ("temporal", "block"), "gltr": ("temporal", "aggregator"),
        "sta": ("spatiotemporal", "aggregator"), "stgcn": ("spatiotemporal", "aggregator"),
        "rstan": ("spatiotemporal", "aggregator")}
    assert get_attention_class("tam").placement == "pre_conv2"
    for name in CONFIGS:  # every module takes num_frames (TAM needs it, the aggregators ignore it)
        assert "num_frames" in inspect.signature(get_attention_class(name).__init__).parameters


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_shape_dtype_eval_determinism(name, size):
    module = build(name).eval()
    for x in (torch.randn(2, C, T, *size), torch.randn(1, C, T, *size)):
        with torch.no_grad():
            y1, y2 = module(x), module(x)
        assert y1.shape == expected_shape(name, module, x) and y1.dtype == x.dtype
        assert torch.isfinite(y1).all() and torch.equal(y1, y2)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_train_mode_and_bf16_autocast(name):
    module = build(name)
    x = torch.randn(2, C, T, 7, 5)
    module.train()
    feat, aux = with_aux(module, x)
    assert feat.shape == expected_shape(name, module, x)
    module.eval()
    with torch.no_grad():
        ref = module(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = module(x)
    assert low.shape == ref.shape and torch.isfinite(low.float()).all()
    torch.testing.assert_close(low.float(), ref, rtol=0.1, atol=0.1 * ref.abs().max().item())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gradients_reach_input_and_every_parameter(name):
    # random parameters: GLTR's zero-initialised BN scale would hide the TSA branch (see below)
    module = randomize(build(name), scale=0.3).train()
    x = torch.randn(2, C, T, 8, 4, requires_grad=True)
    feat, aux = with_aux(module, x)
    loss = (feat * torch.randn_like(feat)).sum() + sum(aux["losses"].values())
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name,kwargs", [(n, {}) for n in CONFIGS]
                         + [("gltr", dict(embed_dim=None, keep_input=True, dilations=(1, 2, 3))),
                            ("sta", dict(embed_dim=None, num_parts=3)), ("stgcn", dict(num_parts=2)),
                            ("rstan", dict(frame_input=True)), ("tam", dict(kernel_size=5))])
def test_matches_reference_formulation(name, kwargs, training):
    if name == "gltr":
        kwargs = {**kwargs, "dropout": 0.0}  # the reference has no dropout
    module = randomize(build(name, **kwargs)).train(training)
    x = torch.randn(3, C, T, 8, 5)
    with torch.no_grad():
        torch.testing.assert_close(module(x), REFERENCES[name](module, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_trace_and_export(name):
    module = randomize(build(name)).eval()
    x = torch.randn(2, C, T, 8, 4)
    with torch.no_grad():
        expected = module(x)
        traced = torch.jit.trace(module, (x,), check_trace=False)
        torch.testing.assert_close(traced(x), expected)
        exported = torch.export.export(module, (x,))
        torch.testing.assert_close(exported.module()(x), expected)


@pytest.mark.parametrize("name", AGGREGATORS)
def test_aggregator_aux_contract(name):
    module = build(name).train()
    x = torch.randn(2, C, T, 8, 4)
    feat, aux = call_aggregator(module, x, return_aux=True)
    assert feat.shape == (2, module.out_channels)
    for value in aux.get("losses", {}).values():
        assert value.dim() == 0 and torch.isfinite(value)
    dims = getattr(module, "aux_feature_dims", {})
    assert {k: v.shape for k, v in aux.get("features", {}).items()} == {k: (2, d) for k, d in dims.items()}
    plain_feat, no_aux = call_aggregator(module.eval(), x, return_aux=False)
    assert plain_feat.shape == feat.shape and no_aux == {}
    built = build_aggregator(name, C, T, CONFIGS[name])  # the re-ID/action models' entry point
    assert built.out_channels == module.out_channels


# ---- frame order ------------------------------------------------------------------------

def frame_orders():
    return [torch.arange(T).flip(0), torch.tensor([2, 0, 3, 1])]


@pytest.mark.parametrize("name,kwargs", [("tam", {}), ("gltr", {}), ("rstan", dict(frame_input=True))])
def test_order_aware_modules_see_the_frame_order(name, kwargs):
    module = randomize(build(name, **kwargs)).eval()
    x = torch.randn(2, C, T, 6, 4)
    with torch.no_grad():
        y = module(x)
        for order in frame_orders():
            moved = module(x[:, :, order])
            same = moved[:, :, torch.argsort(order)] if name == "tam" else moved
            assert (same - y).abs().max() > 1e-3 * y.abs().max()


@pytest.mark.parametrize("module", [TemporalPool(C), build("sta"), build("stgcn"), build("rstan")],
                         ids=["avg", "sta", "stgcn", "rstan"])
def test_set_aggregators_ignore_the_frame_order(module):
    """Average pooling, STA's scores/fusions, STGCN's dense graphs and RSTAN's per-step attention
    over all frames are functions of the set of frames."""
    module = randomize(module).eval() if list(module.parameters()) else module.eval()
    x = torch.randn(2, C, T, 6, 4)
    with torch.no_grad():
        for order in frame_orders():
            torch.testing.assert_close(module(x[:, :, order]), module(x), rtol=1e-5, atol=1e-6)


# ---- TAM ----------------------------------------------------------------------------------

def test_tam_defaults_and_parameter_count():
    tam = build_attention("tam", channels=64, num_frames=8)
    sig = inspect.signature(type(tam).__init__).parameters
    assert (sig["alpha"].default, sig["beta"].default, sig["kernel_size"].default) == (2, 4, 3)
    t, k, c, hidden = 8, 3, 64, 16
    global_branch = t * 2 * t + 2 * (2 * t) + 2 * t * k          # FC, BN, FC (no biases)
    local_branch = c * hidden * 3 + 2 * hidden + hidden * c      # conv k=3, BN, conv k=1
    assert num_params(tam) == global_branch + local_branch
    assert isinstance(tam.global_branch[-1], torch.nn.Softmax)
    with pytest.raises(ValueError, match="built for 8 frames"):
        tam(torch.randn(1, 64, 4, 3, 3))


def test_tam_adaptive_kernel_by_explicit_loop():
    """Global branch as an explicit per-sample, per-channel temporal convolution loop."""
    tam = randomize(build("tam")).eval()
    x = torch.randn(2, C, T, 3, 2)
    with torch.no_grad():
        pooled = x.mean((3, 4))
        kernels = tam.global_branch(pooled.reshape(-1, T)).reshape(2, C, 3)
        assert torch.allclose(kernels.sum(-1), torch.ones(2, C))          # softmax over K
        importance = tam.local_branch(pooled)
        expected = torch.zeros_like(x)
        for n in range(2):
            for c in range(C):
                for t in range(T):
                    for j in range(3):
                        s = t + j - 1
                        if 0 <= s < T:
                            expected[n, c, t] += kernels[n, c, j] * importance[n, c, s] * x[n, c, s]
        torch.testing.assert_close(tam(x), expected, rtol=1e-4, atol=1e-5)


def test_tam_in_resnet2d_forward_backward():
    from models.backbones.resnet2d import ResNet2D
    net = ResNet2D("resnet18", num_frames=4, attention="tam", stages=[2, 3])
    tams = [m for m in net.modules() if isinstance(m, get_attention_class("tam"))]
    assert len(tams) == 4  # two BasicBlocks in each of layer2 and layer3
    assert [m.local_branch[0].in_channels for m in tams] == [128, 128, 256, 256]
    x = torch.randn(1, 3, 4, 32, 16)
    y = net(x)
    assert y.shape == (1, 512, 4, 1, 1)
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for m in tams for p in m.parameters())


# ---- GLTR ---------------------------------------------------------------------------------

def test_gltr_defaults_follow_the_paper():
    gltr = build_attention("gltr", channels=64)
    assert gltr.variant == "paper" and not gltr.keep_input and gltr.dropout.p == 0.0
    assert [conv.dilation[0] for conv in gltr.pyramid] == [1, 2, 4]
    assert [conv.padding[0] for conv in gltr.pyramid] == [1, 2, 4]
    assert all(conv.weight.shape == (128, 128, 3) and conv.bias is None for conv in gltr.pyramid)
    assert gltr.out_channels == 384 and gltr.theta.out_features == 192  # alpha = 2
    with pytest.raises(ValueError, match="variant"):
        build_attention("gltr", channels=64, variant="released")


def test_gltr_official_variant_is_the_released_network():
    """The released ``resnet.py``: 2048 -> 128 ``feat``; ``feat1-3`` = Conv2d(1, 128, (3, 128)),
    dilations (1, 2, 3) over time; ``cat(x0, x1, x2, x3)`` (512); NonLocalBlock1D(512) with
    inter 256 and W = conv + BN; ``mean`` over time. Retyped with its own ops and axes."""
    gltr = randomize(build_attention("gltr", channels=2048, variant="official"), scale=0.05).eval()
    assert gltr.out_channels == 512 and gltr.theta.out_features == 256 and gltr.dropout.p == 0.0
    assert [conv.dilation[0] for conv in gltr.pyramid] == [1, 2, 3]
    frames = 16
    x = torch.randn(2, 2048, frames, 2, 1)
    with torch.no_grad():
        feat = gltr.embed(x.mean((3, 4)).transpose(1, 2).reshape(2 * frames, 2048))  # (N*T, 128)
        seq = feat.view(2, frames, -1)
        x0 = seq.transpose(1, 2)
        img = seq.unsqueeze(1)                                                          # (N, 1, T, 128)
        outs = [torch.nn.functional.conv2d(img, conv.weight.permute(0, 2, 1).unsqueeze(1),
                                           dilation=(r, 1), padding=(r, 0)).squeeze(3)
                for conv, r in zip(gltr.pyramid, (1, 2, 3))]
        r = torch.cat([x0] + outs, dim=1)                                               # (N, 512, T)

        def conv1x1(layer, v):
            return torch.nn.functional.conv1d(v, layer.weight[:, :, None], layer.bias)

        theta, phi, g = (conv1x1(layer, r) for layer in (gltr.theta, gltr.phi, gltr.g))
        attn = torch.softmax(torch.matmul(theta.permute(0, 2, 1), phi), dim=-1)
        y = torch.matmul(attn, g.permute(0, 2, 1)).permute(0, 2, 1)
        w_y = torch.nn.functional.batch_norm(conv1x1(gltr.w, y), gltr.w_bn.running_mean, gltr.w_bn.running_var,
                                             gltr.w_bn.weight, gltr.w_bn.bias, False, 0.0, gltr.w_bn.eps)
        expected = (w_y + r).mean(dim=2)
        torch.testing.assert_close(gltr(x), expected, rtol=1e-4, atol=1e-5)


def test_gltr_temporal_self_attention_starts_as_identity():
    """The TSA's last BN scale starts at 0: the output is the time average of the pyramid
    ``R``, and only that BN gets a gradient at init (theta, phi, g and W get none)."""
    gltr = build("gltr")
    x = torch.randn(2, C, T, 5, 3)
    gltr.eval()
    with torch.no_grad():
        torch.testing.assert_close(gltr(x), gltr.pyramid_features(x).mean(1))
    gltr.train()
    gltr(x).square().sum().backward()
    zero = [n for n, p in gltr.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert sorted(zero) == ["g.bias", "g.weight", "phi.bias", "phi.weight", "theta.bias", "theta.weight",
                            "w.bias", "w.weight"]


@pytest.mark.parametrize("frames", [6, 3])
def test_gltr_dilated_pyramid_by_index_arithmetic(frames):
    """``f^(r)_t = sum_i W_i f_{t + r (i - 1)}`` with zero outside ``[0, T)``, by explicit loops."""
    gltr = randomize(build_attention("gltr", channels=C, embed_dim=3)).eval()
    x = torch.randn(2, C, frames, 4, 3)
    with torch.no_grad():
        f = gltr.embed(x.mean((3, 4)).transpose(1, 2))                        # (N, T, d)
        pyramid = gltr.pyramid_features(x)
    d = 3
    for b, (conv, r) in enumerate(zip(gltr.pyramid, (1, 2, 4))):
        expected = torch.zeros(2, frames, d)
        for n in range(2):
            for t in range(frames):
                for o in range(d):
                    for i in range(3):
                        s = t + r * (i - 1)
                        if 0 <= s < frames:
                            expected[n, t, o] += sum(conv.weight[o, ci, i] * f[n, s, ci] for ci in range(d))
        torch.testing.assert_close(pyramid[..., b * d:(b + 1) * d], expected, rtol=1e-4, atol=1e-6)


def test_gltr_dropout_only_in_training():
    gltr = randomize(build("gltr", dropout=0.5))
    x = torch.randn(2, C, T, 4, 3)
    gltr.eval()
    with torch.no_grad():
        assert torch.equal(gltr(x), gltr(x))
        gltr.train()
        assert not torch.equal(gltr(x), gltr(x))


# ---- STA ----------------------------------------------------------------------------------

def hand_clip():
    """C = 1, two frames, H = 4 rows, W = 1 (K = 2 parts of two rows each)."""
    x = torch.zeros(1, 1, 2, 4, 1)
    x[0, 0, 0, :, 0] = torch.tensor([1.0, -1.0, 2.0, 2.0])
    x[0, 0, 1, :, 0] = torch.tensor([-3.0, 1.0, 0.0, 0.0])
    return x


def test_sta_scores_fusion_and_regulariser_by_hand():
    """Eq. 1: g = channel sum of squares, l1-normalised over the positions."""
    sta = build_attention("sta", channels=1, num_parts=2, embed_dim=None).train()
    assert sta.squared_norm
    x = hand_clip()
    # maps: frame 0 x^2/10 = [1,1,4,4]/10, frame 1 [9,1,0,0]/10; part scores: frame 0 (1/5, 4/5),
    # frame 1 (1, 0); normalised over frames: part 0 (1/6, 5/6), part 1 (1, 0)
    from models.attention.sta import frame_attention_maps
    expected_scores = torch.tensor([[[1 / 6, 1.0], [5 / 6, 0.0]]])  # (N, T, K)
    torch.testing.assert_close(sta.scores(frame_attention_maps(x)), expected_scores)
    feat, aux = sta(x, return_aux=True)
    # X1: part 0 of frame 1 (sum -2), part 1 of frame 0 (sum 4) -> 2 / (H*W) = 0.5
    # X2: part 0: 1/6 * 0 + 5/6 * (-2) = -5/3, part 1: 1 * 4 = 4 -> (7/3) / 4 = 7/12
    torch.testing.assert_close(feat, torch.tensor([[0.5, 7 / 12]]))
    # ||g_0 - g_1||_F with g_0 - g_1 = [-0.8, 0, 0.4, 0.4]
    torch.testing.assert_close(aux["losses"]["sta_reg"], torch.tensor(math.sqrt(0.96)))
    sta.eval()
    assert sta(x, return_aux=True)[1]["losses"] == {}


def test_sta_l2_norm_reading_by_hand():
    sta = build_attention("sta", channels=1, num_parts=2, embed_dim=None, squared_norm=False).train()
    x = hand_clip()
    # maps: frame 0 |x|/6 = [1,1,2,2]/6, frame 1 [3,1,0,0]/4; part scores: frame 0 (1/3, 2/3),
    # frame 1 (1, 0); normalised over frames: part 0 (1/4, 3/4), part 1 (1, 0)
    from models.attention.sta import frame_attention_maps
    expected_scores = torch.tensor([[[0.25, 1.0], [0.75, 0.0]]])
    torch.testing.assert_close(sta.scores(frame_attention_maps(x, squared=False)), expected_scores)
    feat, aux = sta(x, return_aux=True)
    torch.testing.assert_close(feat, torch.tensor([[0.5, 0.625]]))
    torch.testing.assert_close(aux["losses"]["sta_reg"], torch.tensor(math.sqrt(82) / 12))


def test_sta_scores_and_fusion_by_explicit_loop():
    sta = randomize(build("sta", embed_dim=None, num_parts=3)).eval()
    x = torch.randn(2, C, 3, 7, 3)            # 7 rows into 3 parts: rows 0-2, 3-4, 5-6
    parts = [[0, 1, 2], [3, 4], [5, 6]]
    expected = torch.zeros(2, 2 * C)
    for n in range(2):
        norms = [[[float(x[n, :, t, r, c].square().sum()) for c in range(3)] for r in range(7)] for t in range(3)]
        totals = [sum(sum(row) for row in norms[t]) for t in range(3)]
        for rows in parts:
            s = [sum(norms[t][r][c] for r in rows for c in range(3)) / totals[t] for t in range(3)]
            s = [v / sum(s) for v in s]
            best = max(range(3), key=lambda t: s[t])
            for t in range(3):
                part_sum = x[n, :, t, rows].sum((1, 2))
                expected[n, C:] += s[t] * part_sum
                if t == best:
                    expected[n, :C] += part_sum
    with torch.no_grad():
        torch.testing.assert_close(sta(x), expected / 21, rtol=1e-4, atol=1e-6)


def test_sta_defaults_parameter_count_and_self_attention_option():
    sta = build_attention("sta", channels=64)
    assert sta.num_parts == 4 and sta.out_channels == 1024
    assert num_params(sta) == 128 * 1024 + 1024               # the attention has no parameters
    with_sa = build_attention("sta", channels=64, self_attention=True, ds=2).eval()
    assert with_sa.self_attention.query.out_channels == 8     # C/8 as in the article's snippet
    x = torch.randn(2, 64, 3, 7, 5)
    with torch.no_grad():
        assert with_sa(x).shape == (2, 1024)
        attn = with_sa.self_attention
        attn.value.weight.zero_()
        attn.value.bias.zero_()
        frames = x.transpose(1, 2).reshape(6, 64, 7, 5)
        torch.testing.assert_close(attn(frames), frames)   # zero values: only the residual


def test_sta_self_attention_by_explicit_softmax():
    attn = randomize(build_attention("sta", channels=C, self_attention=True).self_attention)
    x = torch.randn(2, C, 5, 3)
    with torch.no_grad():
        q, k, v = (torch.einsum("oc,nchw->nhwo", conv.weight[:, :, 0, 0], x).reshape(2, 15, -1) + conv.bias
                   for conv in (attn.query, attn.key, attn.value))
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(C // 8), -1)
        expected = x + (weights @ v).transpose(1, 2).reshape(2, C, 5, 3)
        torch.testing.assert_close(attn(x), expected, rtol=1e-4, atol=1e-5)


# ---- STGCN --------------------------------------------------------------------------------

def test_stgcn_graph_convolution_by_dense_adjacency():
    """First temporal GCN layer: ``D^-1/2 (A + I) D^-1/2 X W + b`` with ``A_ij = e_ij^2 / sum_j``,
    ``e_ij = phi(x_i) . phi(x_j)``, built entry by entry."""
    stgcn = randomize(build("stgcn")).eval()
    nodes = torch.randn(2, 6, C)
    branch = stgcn.temporal
    with torch.no_grad():
        from models.attention.stgcn import relation_adjacency
        got = branch.layers[0](nodes, relation_adjacency(nodes, branch.phi), add_loop=False)
        emb = nodes @ branch.phi.weight.T
        for b in range(2):
            e = [[float(emb[b, i] @ emb[b, j]) for j in range(6)] for i in range(6)]
            a = [[e[i][j] ** 2 / sum(v ** 2 for v in e[i]) + (i == j) for j in range(6)] for i in range(6)]
            deg = [sum(row) for row in a]
            a_hat = torch.tensor([[a[i][j] / math.sqrt(deg[i] * deg[j]) for j in range(6)] for i in range(6)])
            expected = a_hat @ (nodes[b] @ branch.layers[0].lin.weight.T) + branch.layers[0].bias
            torch.testing.assert_close(got[b], expected, rtol=1e-4, atol=1e-5)


def test_stgcn_branches_and_aux_features():
    stgcn = randomize(build("stgcn")).train()
    x = torch.randn(2, C, T, 8, 4)
    feat, aux = stgcn(x, return_aux=True)
    assert stgcn.out_channels == 3 * C and aux["losses"] == {}
    assert set(aux["features"]) == set(stgcn.aux_feature_dims) == {
        "stgcn_global", "stgcn_temporal", "stgcn_structural"}
    torch.testing.assert_close(aux["features"]["stgcn_global"], x.mean((2, 3, 4)))
    torch.testing.assert_close(feat, torch.cat([aux["features"][k] for k in
                                                ("stgcn_global", "stgcn_temporal", "stgcn_structural")], 1))
    assert len(stgcn.temporal.layers) == 2 and type(stgcn.temporal.layers[0]).__name__ == "DenseGCNConv"


def test_stgcn_paper_layers_norm_leaky_relu_and_residual():
    """``phi`` is a ``d x d`` map; layer 1: ``LeakyReLU(BN(A_hat X W + b))``; layer 2 adds its input."""
    stgcn = randomize(build("stgcn")).eval()
    branch = stgcn.temporal
    assert branch.phi.weight.shape == (C, C) and len(branch.norms) == 2 and branch.negative_slope == 0.1
    nodes = torch.randn(2, 6, C)
    with torch.no_grad():
        from models.attention.stgcn import relation_adjacency
        adj = relation_adjacency(nodes, branch.phi)
        h = nodes
        for i, (layer, bn) in enumerate(zip(branch.layers, branch.norms)):
            z = layer(h, adj, add_loop=False)
            z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
            z = torch.nn.functional.leaky_relu(z, 0.1)
            h = z if i == 0 else z + h
        torch.testing.assert_close(branch(nodes), h.max(1).values, rtol=1e-4, atol=1e-5)


# ---- RSTAN --------------------------------------------------------------------------------

def test_rstan_attention_normalised_and_aux_losses_by_formula():
    rstan = randomize(build("rstan")).train()
    x = torch.randn(2, C, T, 3, 2)
    with torch.no_grad():
        states, alphas, betas = rstan.attend(x)
        feat, aux = rstan(x, return_aux=True)
    assert alphas.shape == (T, 2, T, 6) and betas.shape == (T, 2, T)
    torch.testing.assert_close(alphas.sum(-1), torch.ones(T, 2, T))        # softmax over H*W
    torch.testing.assert_close(betas.sum(-1), torch.ones(T, 2))            # softmax over frames
    torch.testing.assert_close(feat, states.mean(0))
    spatial = temporal = 0.0
    for n in range(2):
        for tau in range(T):
            per_position = [sum(float(alphas[s, n, tau, k]) for s in range(T)) for k in range(6)]
            spatial += sum((1 - v) ** 2 for v in per_position) / T
        temporal += sum((1 - sum(float(betas[s, n, tau]) for s in range(T))) ** 2 for tau in range(T))
    torch.testing.assert_close(aux["losses"]["rstan_spatial"], torch.tensor(spatial / 2))
    torch.testing.assert_close(aux["losses"]["rstan_temporal"], torch.tensor(temporal / 2))


def test_rstan_uniform_attention_losses_by_hand():
    """Zero score vectors give uniform attention: ``sum_t alpha = T / HW`` at every position,
    so ``rstan_spatial = HW (1 - T/HW)^2``, and ``sum_t beta = 1`` so ``rstan_temporal = 0``."""
    rstan = build("rstan", spatial_reg_weight=2.0)
    with torch.no_grad():
        rstan.spatial.score.weight.zero_()
        rstan.temporal.score.weight.zero_()
    _, aux = rstan(torch.randn(2, C, T, 3, 2), return_aux=True)
    torch.testing.assert_close(aux["losses"]["rstan_spatial"], torch.tensor(2.0 * 6 * (1 - T / 6) ** 2))
    torch.testing.assert_close(aux["losses"]["rstan_temporal"], torch.tensor(0.0))


def test_rstan_defaults():
    rstan = build_attention("rstan", channels=64)
    assert rstan.out_channels == 512 and rstan.lstm.input_size == 64
    assert build_attention("rstan", channels=64, frame_input=True).lstm.input_size == 128
