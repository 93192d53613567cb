"""Paper layouts: a backbone built with a module name and no stages is the paper's network.

Parameter counts are taken on the meta device (no memory, no forward pass) and held against the
ResNet-50 figures the papers report (``engine.paper_table.PAPER_FIGURES``).
"""
import pytest
import torch

from engine.paper_table import PAPER_FIGURES, paper_network_params, paper_row
from attention_checks import project_attention
from models.attention import get_attention_class
from models.backbones import ResNet2D
from tests.attention_checks import randomize

# Blocks the ResNet-50 paper layout inserts (GCT: 3 per unit + 4 shortcuts + the stem).
PAPER_BLOCKS = {
    "se": 16, "cbam": 16, "eca": 16, "fca": 16, "srm": 16, "triplet": 16, "simam": 16, "scconv": 16,
    "tam": 16, "ge": 16, "sasa": 16, "bam": 3, "gsop": 4, "gct": 53, "rga": 4,
    "residual_attention": 3, "nonlocal": 5, "nonlocal_st": 5, "dcn": 3, "dcnv2": 13, "cc": 1,
    "ema": 1, "mhsa": 1, "stn": 1,
}


def meta_resnet50(name, **kw):
    with torch.device("meta"):
        return ResNet2D("resnet50", num_frames=8, attention=name, **kw)


def count(net, name):
    cls = get_attention_class(name)
    return sum(isinstance(m, cls) for m in net.modules())


def test_every_block_declares_a_layout():
    for name in project_attention(kind="block"):
        layout = getattr(get_attention_class(name), "paper_layout", None)
        assert layout is not None and layout.source, name


@pytest.mark.parametrize("name", sorted(PAPER_FIGURES))
def test_resnet50_parameters_match_the_paper(name):
    row = paper_row(name)
    assert row.error is None, row.error
    assert abs(row.diff) <= 0.005, f"{name}: {row.params} vs {row.figure.params} ({100 * row.diff:+.2f}%)"


@pytest.mark.parametrize("name", sorted(n for n, f in PAPER_FIGURES.items() if f.official is not None))
def test_resnet50_parameters_equal_the_official_code(name):
    """Ours is the official code's network to the parameter (its count, taken from that code)."""
    row = paper_row(name)
    assert row.error is None, row.error
    assert row.params == PAPER_FIGURES[name].official, f"{name}: {row.params} vs official {PAPER_FIGURES[name].official}"


def test_plain_resnet50_is_torchvision():
    import torchvision
    assert paper_network_params(None) == (0, sum(p.numel() for p in torchvision.models.resnet50().parameters()))


@pytest.mark.parametrize("name", sorted(PAPER_BLOCKS))
def test_resnet50_block_counts(name):
    assert count(meta_resnet50(name), name) == PAPER_BLOCKS[name]


def test_gsop_last_unit_and_first_stage_stride():
    net = meta_resnet50("gsop")
    cls = get_attention_class("gsop")
    where = {n: m.reduce[0].stride[0] for n, m in net.named_modules() if isinstance(m, cls)}
    assert where == {"layer1.2.attn": 2, "layer2.3.attn": 1, "layer3.5.attn": 1, "layer4.2.attn": 1}


def test_rga_sized_for_each_stage_map():
    """Official RGA-SC at 256x128, last stride 1: 64x32, 32x16, 16x8, 16x8."""
    with torch.device("meta"):
        net = ResNet2D("resnet50", attention="rga", last_stride=1, input_size=(256, 128))
    sizes = {k: v.spatial_size for k, v in net.stage_attn.items()}
    assert sizes == {"layer1": (64, 32), "layer2": (32, 16), "layer3": (16, 8), "layer4": (16, 8)}
    # layer1: gg_spatial reads 2 x 2048 relations per node into 2048 / 8 channels (official size)
    assert tuple(net.stage_attn["layer1"].gg_s_weight.shape) == (256, 4096)
    with torch.device("meta"):
        strided = ResNet2D("resnet50", attention="rga", input_size=(224, 224))
    assert strided.stage_attn["layer4"].spatial_size == (7, 7)


def test_residual_attention_pools_per_stage():
    net = meta_resnet50("residual_attention")
    assert {k: v.num_pools for k, v in net.stage_attn.items()} == {"layer1": 3, "layer2": 2, "layer3": 1}


def test_bam_three_between_stages():
    assert sorted(meta_resnet50("bam").stage_attn) == ["layer1", "layer2", "layer3"]


def test_gct_before_every_conv_stem_and_shortcuts_included():
    torch.manual_seed(0)
    net = ResNet2D("resnet18", num_frames=1, attention="gct").eval()
    plain = ResNet2D("resnet18", num_frames=1).eval()
    plain.load_state_dict(net.state_dict(), strict=False)
    x = torch.randn(2, 3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain(x))          # identity at init
        assert net.stem_attn is not None and "downsample" in net.layer2[0].attn
        for gct in (net.stem_attn, net.layer2[0].attn["downsample"]):
            before = net(x)
            randomize(gct)
            assert not torch.allclose(net(x), before)          # the extra GCTs are applied


def test_explicit_settings_override_the_layout():
    assert count(meta_resnet50("nonlocal_st", stages=[3]), "nonlocal_st") == 3    # units kept
    assert count(meta_resnet50("nonlocal_st", every=1), "nonlocal_st") == 10      # 10-block model
    assert count(meta_resnet50("gsop", every=1), "gsop") == 16
    assert count(meta_resnet50("bam", stages=[1, 2, 3, 4]), "bam") == 4
    net = meta_resnet50("se", placement="after_block", stages=[4])
    assert count(net, "se") == 3 and net.layer4[0].placement == "after_block"
    gct = meta_resnet50("gct", stages=[2])                                          # no stem GCT
    assert gct.stem_attn is None and count(gct, "gct") == 4 * 3 + 1
    with torch.device("meta"):
        rga = ResNet2D("resnet50", attention="rga", attention_kwargs={"spatial_size": (8, 4)})
    assert {v.spatial_size for v in rga.stage_attn.values()} == {(8, 4)}             # user kwargs win


def test_config_default_is_the_paper_layout():
    from engine.build import build_backbone_from_cfg
    from engine.config import load_config
    import os
    root = os.path.join(os.path.dirname(__file__), "..", "configs")
    for path, task_size in ((os.path.join(root, "ucf101_tsn_r50.yaml"), (224, 224)),
                            (os.path.join(root, "mars_baseline_r50.yaml"), (256, 128))):
        cfg = load_config(path, ["MODEL.BACKBONE.ATTENTION.NAME", "rga"])
        assert list(cfg.MODEL.BACKBONE.ATTENTION.STAGES) == []
        with torch.device("meta"):
            net = build_backbone_from_cfg(cfg)
        assert len(net.stage_attn) == 4
        h, w = task_size
        assert net.stage_attn["layer1"].spatial_size == (h // 4, w // 4)
        cfg = load_config(path, ["MODEL.BACKBONE.ATTENTION.NAME", "bam"])
        with torch.device("meta"):
            assert sorted(build_backbone_from_cfg(cfg).stage_attn) == ["layer1", "layer2", "layer3"]


def test_3d_backbone_sizes_per_stage():
    from models.backbones import Video3DBackbone
    net = Video3DBackbone("slow_r50", attention="rga", input_size=(64, 32))
    assert {k: v.spatial_size for k, v in net.stage_attn.items()} == {
        "stage1": (16, 8), "stage2": (8, 4), "stage3": (4, 2), "stage4": (2, 1)}
    y = net.eval()(torch.randn(1, 3, 8, 64, 32))
    assert y.shape == (1, 2048, 8, 2, 1)


@pytest.mark.parametrize("name", [n for n in project_attention(kind="block")
                                  if getattr(get_attention_class(n), "paper_layout").per_stage])
def test_networks_with_per_stage_arguments_pickle(name):
    """The plan kept on the backbone holds only importable functions (whole-model saves work)."""
    import pickle
    net = ResNet2D("resnet18", num_frames=2, attention=name, input_size=(64, 32))
    clone = pickle.loads(pickle.dumps(net))
    assert clone.attention_plan.stage_kwargs(1, (16, 8)) == net.attention_plan.stage_kwargs(1, (16, 8))
