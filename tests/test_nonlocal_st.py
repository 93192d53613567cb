"""Space-time non-local block: identity at init, attention over all T x H x W positions of a clip
(against an explicit softmax), the paper's 5-block layout, per-frame and 3D backbones."""
import pytest
import torch
import torch.nn.functional as F

from models.attention import build_attention, get_attention_class
from models.attention._reference_spacetime import ref_nonlocal_st
from models.backbones import ResNet2D
from tests.attention_checks import check_gradients, randomize


def clip(n=2, c=16, t=3, h=6, w=5, seed=0):
    return torch.randn(n, c, t, h, w, generator=torch.Generator().manual_seed(seed))


def trained_like(block):
    """Random weights and a non-zero BN scale, as after some training."""
    randomize(block, 0.3)
    return block.eval()


def test_registered_as_spatiotemporal_block():
    cls = get_attention_class("nonlocal_st")
    assert (cls.family, cls.kind, cls.placement) == ("spatiotemporal", "block", "after_block")
    assert get_attention_class("nonlocal").family == "spatial"     # the 2-D block stays


@pytest.mark.parametrize("training", [True, False])
def test_identity_at_init(training):
    block = build_attention("nonlocal_st", channels=16).train(training)
    x = clip()
    assert torch.equal(block(x), x)
    assert block.inner_channels == 8 and torch.count_nonzero(block.bn.weight) == 0


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("sub_sample", [True, False])
@pytest.mark.parametrize("scale", [False, True])
def test_equals_explicit_softmax(sub_sample, scale, training):
    """Eq. 1 and 6 by hand: an explicit THW x T'h'w' softmax (no 1/sqrt(d) unless scale)."""
    block = trained_like(build_attention("nonlocal_st", channels=16, sub_sample=sub_sample, scale=scale))
    block.train(training)
    x = clip(h=7, w=5)   # odd sizes: ceil-mode pooling keeps every position
    with torch.no_grad():
        expected = ref_nonlocal_st(block, x)
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_paper_has_no_scaling_by_default():
    """scale=False must differ from the scaled softmax (a missing 1/sqrt(d) is caught)."""
    block = trained_like(build_attention("nonlocal_st", channels=16))
    x = clip()
    with torch.no_grad():
        plain = block(x)
        block.scale = True
        scaled = block(x)
    assert not torch.allclose(plain, scaled, atol=1e-4)


def test_subsampling_pools_space_not_time():
    block = build_attention("nonlocal_st", channels=16)
    _, k, v = block.embed(clip(t=3, h=6, w=5))
    assert k.shape == v.shape == (2, 3 * 3 * 3, 8)


def test_attends_across_frames():
    """Changing frame 0 changes the output at frame 2; a per-frame 2-D block cannot do this."""
    block = trained_like(build_attention("nonlocal_st", channels=16))
    x = clip()
    x2 = x.clone()
    x2[:, :, 0] += torch.randn_like(x2[:, :, 0])
    with torch.no_grad():
        y, y2 = block(x), block(x2)
    assert (y2[:, :, 2] - y[:, :, 2]).abs().max() > 1e-3
    frames_2d = trained_like(build_attention("nonlocal", channels=16))
    fold = lambda t: t.transpose(1, 2).reshape(-1, 16, 6, 5)  # noqa: E731
    with torch.no_grad():
        assert torch.equal(frames_2d(fold(x)).view(2, 3, 16, 6, 5)[:, 2],
                           frames_2d(fold(x2)).view(2, 3, 16, 6, 5)[:, 2])


def test_gradients_after_training_like_start():
    block = randomize(build_attention("nonlocal_st", channels=16), 0.3)
    check_gradients(block, clip())


def test_gradients_at_init_reach_only_the_bn():
    block = build_attention("nonlocal_st", channels=16)
    check_gradients(block, clip(), zero_at_init=("theta.weight", "theta.bias", "phi.weight", "phi.bias",
                                                 "g.weight", "g.bias", "out.weight"))


def test_frame_count_is_checked():
    block = build_attention("nonlocal_st", channels=16, num_frames=4)
    with pytest.raises(ValueError, match="built for 4 frames, got 3"):
        block(clip(t=3))
    with pytest.raises(ValueError, match=r"\(N,C,T,H,W\)"):
        block(torch.randn(2, 16, 6, 5))


def test_five_blocks_in_resnet50_paper_layout():
    with torch.device("meta"):
        net = ResNet2D("resnet50", num_frames=8, attention="nonlocal_st")
    cls = get_attention_class("nonlocal_st")
    where = [n for n, m in net.named_modules() if isinstance(m, cls)]
    assert where == ["layer2.1.attn", "layer2.3.attn", "layer3.1.attn", "layer3.3.attn", "layer3.5.attn"]
    with torch.device("meta"):
        ten = ResNet2D("resnet50", num_frames=8, attention="nonlocal_st", every=1)
    assert sum(isinstance(m, cls) for m in ten.modules()) == 10


def test_per_frame_resnet_attends_across_the_clip():
    """In a per-frame ResNet the block sees (N,C,T,H,W): frame 0 reaches frame 2's features."""
    torch.manual_seed(0)
    net = ResNet2D("resnet18", num_frames=3, attention="nonlocal_st", stages=[3], every=1).eval()
    for m in net.modules():
        if isinstance(m, get_attention_class("nonlocal_st")):
            torch.nn.init.ones_(m.bn.weight)
    x = torch.randn(1, 3, 3, 64, 32)
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    with torch.no_grad():
        y, y2 = net(x), net(x2)
    assert (y2[:, :, 2] - y[:, :, 2]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="clip has 2 frames"):
        net(torch.randn(1, 3, 2, 64, 32))


def test_slow_r50_paper_layout():
    from models.backbones import Video3DBackbone
    net = Video3DBackbone("slow_r50", attention="nonlocal_st")
    cls = get_attention_class("nonlocal_st")
    blocks = [m for m in net.modules() if isinstance(m, cls)]
    assert len(blocks) == 5 and {b.num_frames for b in blocks} == {8}
    net.eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        plain = Video3DBackbone("slow_r50")
        plain.load_state_dict(net.state_dict(), strict=False)
        torch.testing.assert_close(net(x), plain.eval()(x))   # identity at init in 3D too


def test_sdpa_gets_contiguous_inputs():
    block = build_attention("nonlocal_st", channels=16)
    q, k, v = block.embed(clip())
    assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous()
    F.scaled_dot_product_attention(q, k, v, scale=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_runs_under_bf16(no_tf32):
    block = trained_like(build_attention("nonlocal_st", channels=64))
    x = clip(c=64, t=4, h=14, w=14)
    with torch.no_grad():
        expected = block(x)
        got = block.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    block.train()
    xc = x.cuda().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = block(xc)
    y.float().square().mean().backward()
    assert torch.isfinite(y.float()).all() and torch.isfinite(xc.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_resnet50_paper_network_trains_a_step():
    """ResNet-50 + 5 nonlocal_st at 8 x 224 x 224 (the paper's network size) on the GPU."""
    net = ResNet2D("resnet50", num_frames=8, attention="nonlocal_st").cuda().train()
    x = torch.randn(2, 3, 8, 224, 224, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = net(x)
    y.float().mean().backward()
    assert y.shape == (2, 2048, 8, 7, 7) and torch.isfinite(y.float()).all()
