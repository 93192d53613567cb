"""pytorchvideo 3D backbones: shapes, paper settings, attention insertion, weight loading."""
import copy
import functools

import pytest
import torch
from fvcore.nn.squeeze_excitation import SqueezeExcitation
from pytorchvideo.models.slowfast import create_slowfast
from pytorchvideo.models.x3d import create_x3d
from torch import nn

from models.attention import get_attention_class, list_attention, register_attention
from models.backbones.factory import build_backbone, list_backbones
from models.backbones.resnet2d import ResNet2D
from models.backbones.slowfast import SlowFastBackbone
from models.backbones.video3d import AttentiveResBlock, Video3DBackbone

SCALE = 1.7


def _register(name, **kw):
    """Register a test-only block once per process (the registry rejects duplicates)."""
    def wrap(cls):
        return get_attention_class(name) if name in list_attention() else register_attention(name, **kw)(cls)
    return wrap


@_register("_bb3d_scale", family="channel", kind="block")
class Scale(nn.Module):
    """Per-channel learnable scale (init SCALE); remembers the shape it saw."""
    placement = "post"

    def __init__(self, channels, value=SCALE):
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), float(value)))
        self.seen = None

    def forward(self, x):
        self.seen = tuple(x.shape)
        return x * self.scale.view(1, -1, *([1] * (x.dim() - 2)))


@_register("_bb3d_temporal", family="temporal", kind="block")
class FrameWeights(nn.Module):
    """A temporal block with one weight per frame (its parameters depend on ``num_frames``, like TAM)."""
    placement = "pre_conv2"

    def __init__(self, channels, num_frames):
        super().__init__()
        self.channels, self.num_frames = channels, num_frames
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, num_frames))
        self.seen = None

    def forward(self, x):
        assert x.dim() == 5 and x.shape[2] == self.num_frames, (x.shape, self.num_frames)
        self.seen = tuple(x.shape)
        return x * self.weight.view(1, 1, -1, 1, 1)


@_register("_bb3d_conv", family="spatial", kind="block")
class Conv3x3(nn.Module):
    """A 2D 3x3 conv that can replace a bottleneck's 3x3 conv."""
    placement = "replace_conv2"

    def __init__(self, channels, stride=1, out_channels=None):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, stride, 1, bias=False)

    def forward(self, x):
        return self.conv(x)


def randomize_bn(model, seed=0):
    """pytorchvideo zero-inits every norm_c; give all BNs random affine params and statistics."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) + 0.5
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = torch.rand(c, generator=g) + 0.5
    return model


def with_weights_of(model, bare):
    """Copy ``bare``'s weights into ``model`` (which has attention); check only attention keys are new."""
    missing, unexpected = model.load_state_dict(bare.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(".attn." in k or k.startswith("stage_attn.") for k in missing)
    return model.eval()


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


@functools.lru_cache(maxsize=None)
def bare(arch):
    """One plain model per arch for the whole file (random BN); tests that modify one deep-copy it."""
    return randomize_bn(build_backbone(arch)).eval()


@pytest.fixture(scope="module")
def x3d_bare():
    return bare("x3d_xs")


X3D_CLIP = (1, 3, 4, 64, 48)  # res5 map 2x2 (48 -> 24 -> 12 -> 6 -> 3 -> 2: odd sizes on the way)


# ---------------------------------------------------------------- shapes and paper settings

@pytest.mark.parametrize("arch,clip,out", [
    ("slow_r50", (2, 3, 4, 32, 32), (2048, 4, 1, 1)),
    ("x3d_xs", (1, 3, 4, 64, 48), (432, 4, 2, 2)),
    ("x3d_s", (1, 3, 3, 32, 32), (432, 3, 1, 1)),
    ("x3d_m", (1, 3, 2, 32, 32), (432, 2, 1, 1)),
    ("r2plus1d_r50", (1, 3, 4, 32, 32), (2048, 1, 1, 1)),   # temporal stride 2 in res4, res5
    ("csn_r101", (1, 3, 4, 32, 32), (2048, 1, 1, 1)),       # temporal stride 2 in res3..res5
    ("slowfast_r50", (1, 3, 8, 32, 32), (2304, 2, 1, 1)),   # slow: 8 / alpha frames
])
def test_forward_shape_and_out_channels(arch, clip, out):
    m = bare(arch)
    with torch.no_grad():
        y = m(torch.randn(*clip))
    assert y.shape == (clip[0], *out) and y.dtype == torch.float32
    assert m.out_channels == out[0]
    assert not any(k.startswith("blocks.5") or "proj" in k for k in m.state_dict())  # no head


def test_x3d_paper_settings():
    specs = {a: (Video3DBackbone.ARCHS[a].num_frames, Video3DBackbone.ARCHS[a].crop_size,
                 Video3DBackbone.ARCHS[a].sampling_rate) for a in ("x3d_xs", "x3d_s", "x3d_m")}
    assert specs == {"x3d_xs": (4, 160, 12), "x3d_s": (13, 160, 6), "x3d_m": (16, 224, 5)}
    m = bare("x3d_xs")
    stages = [m.blocks[s].res_blocks for s in range(1, 5)]
    assert [len(s) for s in stages] == [3, 5, 11, 7]                       # depth factor 2.2
    assert [s[0].branch2.conv_c.out_channels for s in stages] == [24, 48, 96, 192]  # width 2.0
    for s in stages:
        for i, blk in enumerate(s):
            conv_b = blk.branch2.conv_b
            assert conv_b.kernel_size == (3, 3, 3) and conv_b.groups == conv_b.in_channels
            assert conv_b.in_channels == int(2.25 * blk.branch2.conv_c.out_channels)
            assert isinstance(blk.branch2.norm_b[1], SqueezeExcitation) == (i % 2 == 0)
    assert m.conv5[0].out_channels == 432
    stem = m.blocks[0].conv   # conv1: 1x3x3 then depthwise 5x1x1 (pytorchvideo's names are swapped)
    assert stem.conv_t.kernel_size == (1, 3, 3)
    assert stem.conv_xy.kernel_size == (5, 1, 1) and stem.conv_xy.groups == 24


def test_resnet_family_paper_settings():
    slow = bare("slow_r50")
    assert slow.blocks[0].conv.kernel_size == (1, 7, 7)
    assert [len(slow.blocks[s].res_blocks) for s in range(1, 5)] == [3, 4, 6, 3]
    assert [slow.blocks[s].res_blocks[0].branch2.conv_a.kernel_size[0] for s in range(1, 5)] == [1, 1, 3, 3]
    csn = bare("csn_r101")
    assert [len(csn.blocks[s].res_blocks) for s in range(1, 5)] == [3, 4, 23, 3]
    conv_b = csn.blocks[3].res_blocks[1].branch2.conv_b
    assert conv_b.kernel_size == (3, 3, 3) and conv_b.groups == conv_b.in_channels   # ir-CSN: depthwise
    r21d = bare("r2plus1d_r50")
    conv_b = r21d.blocks[2].res_blocks[0].branch2.conv_b
    assert conv_b.conv_t.kernel_size == (3, 1, 1) and conv_b.conv_xy.kernel_size == (1, 3, 3)


def test_slowfast_paper_settings():
    m = bare("slowfast_r50")
    assert m.num_frames == 32 and m.alpha == 4
    slow, fast = (p for _, p in m.stage_paths(4))
    widths = [p.res_blocks[-1].branch2.conv_c.out_channels for p in (slow, fast)]
    assert widths == [2048, 256]                                              # beta = 1/8
    assert m.blocks[0].multipathway_blocks[1].conv.kernel_size == (5, 7, 7)  # Fast stem: temporal 5
    fuse = m.blocks[1].multipathway_fusion.conv_fast_to_slow                 # after res2: C_fast = 32
    assert fuse.kernel_size == (7, 1, 1) and fuse.stride == (4, 1, 1) and fuse.out_channels == 2 * 32
    assert isinstance(m.blocks[4].multipathway_fusion, nn.Identity)


def test_slowfast_matches_pytorchvideo_network():
    """Same weights in pytorchvideo's own SlowFast: run its blocks, average Fast time by groups of 4."""
    net = randomize_bn(create_slowfast(model_depth=50, model_num_class=5)).eval()
    ours = SlowFastBackbone().eval()
    head = ("blocks.5", "blocks.6")  # PoolConcatPathway and the classifier
    ours.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith(head)})
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        xs = [x[:, :, [0, 4]], x]
        for i in range(5):
            xs = net.blocks[i](xs)
        slow, fast = xs
        ref = torch.cat([slow, fast.reshape(1, 256, 2, 4, 1, 1).mean(3)], 1)
        close(ours(x), ref)
        close(ours([x[:, :, [0, 4]], x]), ref)


# ---------------------------------------------------------------- attention insertion

def test_post_equals_scaled_norm_c(x3d_bare):
    """A scale c at ``post`` in stage 2 equals scaling every stage-2 ``norm_c`` affine by c."""
    m = Video3DBackbone("x3d_xs", attention="_bb3d_scale", stages=[2], placement="post")
    m = with_weights_of(m, x3d_bare)
    ref = copy.deepcopy(x3d_bare)
    for blk in ref.blocks[2].res_blocks:
        blk.branch2.norm_c.weight.data *= SCALE
        blk.branch2.norm_c.bias.data *= SCALE
    x = torch.randn(*X3D_CLIP)
    with torch.no_grad():
        y = m(x)
        close(y, ref(x))
        assert not torch.allclose(y, x3d_bare(x), rtol=1e-2)
    attn = m.blocks[2].res_blocks[0].attn["post"]
    n, _, t, h, w = m.blocks[2].res_blocks[0](m.blocks[1](m.blocks[0](x))).shape
    assert attn.seen == (n * t, 48, h, w)                    # 2D blocks see the (N*T, C, H, W) fold
    assert all(isinstance(b, AttentiveResBlock) for b in m.blocks[2].res_blocks)
    assert not any(isinstance(b, AttentiveResBlock) for s in (1, 3, 4) for b in m.blocks[s].res_blocks)


@pytest.mark.parametrize("placement,convs", [("pre_conv2", ("conv_b",)),
                                             ("pre_convs", ("conv_a", "conv_b", "conv_c"))])
def test_pre_conv_placements_equal_scaled_conv_weights(x3d_bare, placement, convs):
    m = Video3DBackbone("x3d_xs", attention="_bb3d_scale", stages=[1, 3], placement=placement)
    m = with_weights_of(m, x3d_bare)
    ref = copy.deepcopy(x3d_bare)
    for s in (1, 3):
        for blk in ref.blocks[s].res_blocks:
            for name in convs:
                getattr(blk.branch2, name).weight.data *= SCALE   # bias-free convs: W (c x) = (c W) x
    x = torch.randn(*X3D_CLIP)
    with torch.no_grad():
        close(m(x), ref(x))
    keys = [k for k in m.state_dict() if ".attn." in k]
    assert len(keys) == len(convs) * (3 + 11)


@pytest.mark.parametrize("kwargs", [dict(placement="after_block", every=7), dict(placement="stage_end")])
def test_end_of_res5_equals_scaled_conv5(x3d_bare, kwargs):
    """after_block on the last res5 block only (every=7 of 7) and stage_end on res5 scale conv5's input."""
    m = with_weights_of(Video3DBackbone("x3d_xs", attention="_bb3d_scale", stages=[4], **kwargs), x3d_bare)
    ref = copy.deepcopy(x3d_bare)
    ref.conv5[0].weight.data *= SCALE
    x = torch.randn(*X3D_CLIP)
    with torch.no_grad():
        close(m(x), ref(x))
    new = [k for k in m.state_dict() if ".attn." in k or k.startswith("stage_attn.")]
    assert new == (["stage_attn.stage4.scale"] if kwargs["placement"] == "stage_end"
                   else ["blocks.4.res_blocks.6.attn.after_block.scale"])


def test_replace_conv2_with_copied_weights_is_the_plain_network():
    plain_net = bare("slow_r50")
    m = Video3DBackbone("slow_r50", attention="_bb3d_conv", stages=[1, 2]).eval()
    missing, unexpected = m.load_state_dict(plain_net.state_dict(), strict=False)
    assert sorted(unexpected) == sorted(k for k in plain_net.state_dict()
                                        if k.startswith(("blocks.1.", "blocks.2.")) and ".conv_b." in k)
    for s in (1, 2):
        for blk, plain in zip(m.blocks[s].res_blocks, plain_net.blocks[s].res_blocks):
            assert "conv_b" not in dict(blk.branch2.named_children())
            conv = blk.attn["replace_conv_b"].conv
            assert conv.stride == plain.branch2.conv_b.stride[1:]          # stride=2 in res3's first block
            conv.weight.data = plain.branch2.conv_b.weight.data[:, :, 0].clone()
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        close(m(x), plain_net(x))
    with pytest.raises(ValueError, match="replace_conv2 needs conv_b"):
        Video3DBackbone("x3d_xs", attention="_bb3d_conv", stages=[1])       # depthwise 3x3x3 conv_b


@pytest.mark.parametrize("placement,expected", [
    # R(2+1)D res4: temporal stride 2 in the first conv_b; 4 input frames -> 4 before it, 2 after.
    ("pre_conv2", [4, 2, 2, 2, 2, 2]),
    ("post", [2, 2, 2, 2, 2, 2]),
])
def test_temporal_block_gets_5d_map_with_its_frames(placement, expected):
    m = Video3DBackbone("r2plus1d_r50", num_frames=4, attention="_bb3d_temporal", stages=[3],
                        placement=placement)
    point = "conv_b" if placement == "pre_conv2" else "post"
    blocks = [b.attn[point] for b in m.blocks[3].res_blocks]
    assert [b.num_frames for b in blocks] == expected
    with torch.no_grad():
        m.eval()(torch.randn(2, 3, 4, 32, 32))
    assert all(b.seen[0] == 2 and b.seen[2] == t for b, t in zip(blocks, expected))
    with pytest.raises(ValueError, match="temporal blocks were built for 4"):
        m(torch.randn(1, 3, 8, 32, 32))


def test_slowfast_hosts_attention_in_both_pathways():
    m = SlowFastBackbone(num_frames=8, attention="_bb3d_temporal", stages=[1, 4], placement="stage_end")
    found = {k: (a.channels, a.num_frames) for k, a in m.stage_attn.items()}
    assert found == {"stage1_slow": (256, 2), "stage1_fast": (32, 8),       # (channels, frames)
                     "stage4_slow": (2048, 2), "stage4_fast": (256, 8)}
    with torch.no_grad():
        m.eval()
        assert m(torch.randn(1, 3, 8, 32, 32)).shape == (1, 2304, 2, 1, 1)
    assert m.stage_attn["stage1_fast"].seen == (1, 32, 8, 8, 8)          # before the fusion: Fast's own map


def test_gradients_reach_input_and_attention_and_bf16(x3d_bare):
    m = with_weights_of(Video3DBackbone("x3d_xs", attention="_bb3d_scale", stages=[2, 4]), x3d_bare).train()
    x = torch.randn(2, 3, 2, 32, 32, requires_grad=True)
    m(x).square().mean().backward()
    assert x.grad.abs().sum() > 0
    attn = [p for n, p in m.named_parameters() if ".attn." in n]
    assert len(attn) == 5 + 7 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in attn)
    m.eval()
    with torch.no_grad():
        a, b = m(x), m(x)
        assert torch.equal(a, b)                                            # eval is deterministic
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()


@pytest.mark.parametrize("arch,name", [("x3d_xs", "se"), ("x3d_xs", "gct"), ("x3d_xs", "nonlocal"),
                                       ("x3d_xs", "bam"), ("x3d_xs", "tam"), ("slow_r50", "dcn")])
def test_zoo_blocks_at_their_paper_placement(arch, name):
    """Registered zoo blocks (one per placement) in res4: forward, backward, only new attention keys."""
    if name not in list_attention():
        pytest.skip(f"{name} not registered")
    m = Video3DBackbone(arch, num_frames=2, attention=name, stages=[3])
    missing, unexpected = m.load_state_dict(bare(arch).state_dict(), strict=False)
    assert missing and all(".attn." in k or k.startswith("stage_attn.") for k in missing)
    assert all(".conv_b." in k for k in unexpected)                     # replace_conv2 drops conv_b
    attn = [p for n, p in m.named_parameters() if ".attn." in n or n.startswith("stage_attn.")]
    for p in m.parameters():                                             # backward through res4, res5 only
        p.requires_grad_(any(p is q for q in attn))
    y = m.train()(torch.randn(2, 3, 2, 32, 32))
    assert y.shape == (2, m.out_channels, 2, 1, 1)
    y.square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in attn)


def test_trace_with_attention(x3d_bare):
    m = with_weights_of(Video3DBackbone("x3d_xs", attention="_bb3d_scale", stages=[3]), x3d_bare)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        traced = torch.jit.trace(m, x, check_trace=False)
        close(traced(x), m(x))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="supported: post, pre_conv2"):
        Video3DBackbone("x3d_xs", attention="_bb3d_scale", stages=[1], placement="inside")
    with pytest.raises(ValueError, match="stages are 1..4"):
        Video3DBackbone("x3d_xs", attention="_bb3d_scale", stages=[5])
    with pytest.raises(ValueError, match="SlowFastBackbone"):
        Video3DBackbone("slowfast_r50")


# ---------------------------------------------------------------- weights and the factory

def test_weights_round_trip_reports_attention_keys_as_new(tmp_path, capsys):
    plain = bare("slow_r50")
    path = tmp_path / "slow.pth"
    torch.save(plain.state_dict(), path)
    m = Video3DBackbone("slow_r50", attention="_bb3d_scale", stages=[2, 4], pretrained=str(path)).eval()
    report = m.load_report
    attn_keys = [k for k in m.state_dict() if ".attn." in k]
    assert len(attn_keys) == 4 + 3
    assert sorted(report.new) == sorted(attn_keys)
    assert sorted(report.loaded) == sorted(plain.state_dict())
    assert not report.unexpected and not report.mismatched
    assert "7 new" in capsys.readouterr().out
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(m(x), plain(x), rtol=1e-2)
        for k in attn_keys:
            m.get_parameter(k).fill_(1.0)                                  # identity attention
        close(m(x), plain(x))


def test_pytorchvideo_x3d_checkpoint_loads_with_conv5(tmp_path):
    """A full pytorchvideo X3D state dict: backbone and conv5 load, the head is reported unexpected;
    the output equals pytorchvideo's own modules run up to conv5."""
    net = randomize_bn(create_x3d(input_clip_length=4, input_crop_size=160, model_num_class=7)).eval()
    torch.save({"model": net.state_dict()}, tmp_path / "x3d.pth")
    m = Video3DBackbone("x3d_xs", pretrained=str(tmp_path / "x3d.pth")).eval()
    assert {"conv5.0.weight", "conv5.1.weight", "conv5.1.running_var"} <= set(m.load_report.loaded)
    assert m.load_report.unexpected and all(k.startswith("blocks.5.") for k in m.load_report.unexpected)
    assert not m.load_report.new
    x = torch.randn(1, 3, 4, 64, 48)
    with torch.no_grad():
        ref = x
        for i in range(5):
            ref = net.blocks[i](ref)
        pool = net.blocks[5].pool
        ref = pool.pre_act(pool.pre_norm(pool.pre_conv(ref)))
        close(m(x), ref)


def test_factory_names_and_errors():
    names = list_backbones()
    for n in ("resnet18", "resnet34", "resnet50", "resnet101", "slow_r50", "x3d_xs", "x3d_s", "x3d_m",
              "r2plus1d_r50", "csn_r101", "slowfast_r50"):
        assert n in names
    assert isinstance(build_backbone("resnet18", num_frames=2), ResNet2D)
    m = build_backbone("x3d_s")
    assert isinstance(m, Video3DBackbone) and m.num_frames == 13
    assert isinstance(build_backbone("slowfast_r50", num_frames=8), SlowFastBackbone)
    with pytest.raises(KeyError, match="x3d_s"):
        build_backbone("x3d_ss")
