"""Attention heatmaps: hook extraction against hand-computed maps, and the PNG end to end."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from sample_videos import sample_video
from engine import attention_drawing as am
from engine.config import load_config
from engine.attention_drawing import attention_strip, jet
from engine.attention_maps import extract_attention_maps
from engine.attention_visualize import load_clip, visualize_attention
from models.attention import build_attention
from models.backbones import ResNet2D

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "_base_")


class Folded(nn.Module):
    """One block applied per frame, as the per-frame backbone does: ``(N,C,T,H,W) -> (N*T,C,H,W)``."""

    def __init__(self, block):
        super().__init__()
        self.attn = block

    def forward(self, x):
        n, c, t, h, w = x.shape
        return self.attn(x.transpose(1, 2).reshape(n * t, c, h, w))


def frames_of(clip):
    """``(C,T,H,W)`` -> the ``(T,C,H,W)`` the block sees."""
    return clip.transpose(0, 1)


def only(sites):
    assert len(sites) == 1
    return next(iter(sites.values()))


def run_block(block, clip):
    """The one site's maps of ``block`` run per frame on ``clip`` ``(C,T,H,W)``, and the frames it saw."""
    return only(extract_attention_maps(Folded(block).eval(), clip)), frames_of(clip)


def test_resnet_cbam_stage3_gives_one_map_per_frame_and_block():
    model = ResNet2D("resnet18", num_frames=4, attention="cbam", stages=[3]).eval()
    sites = extract_attention_maps(model, torch.randn(3, 4, 64, 32))
    assert list(sites) == ["layer3.0.attn", "layer3.1.attn"]
    for site in sites.values():
        assert site.module == "cbam" and site.maps.shape == (4, 4, 2)   # (T, h, w): 64x32 / 16
        assert 0 <= site.maps.min() and site.maps.max() <= 1
    batch = extract_attention_maps(model, torch.randn(2, 3, 4, 64, 32))
    assert batch["layer3.1.attn"].maps.shape == (2, 4, 4, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = extract_attention_maps(model, torch.randn(3, 4, 64, 32))["layer3.1.attn"].maps
    assert half.dtype == torch.float32 and 0 <= half.min() and half.max() <= 1
    assert not any(m.training for m in model.modules())
    assert all(not h for m in model.modules() for h in (m._forward_hooks, m._forward_pre_hooks))  # hooks removed


@torch.no_grad()
def test_cbam_gate_equals_recomputation_from_its_submodules():
    model = ResNet2D("resnet18", num_frames=2, attention="cbam", stages=[3])
    cbam = model.layer3[1].attn
    cbam.spatial.bn.running_mean.fill_(0.3)
    cbam.spatial.bn.running_var.fill_(2.0)
    cbam.spatial.bn.weight.fill_(1.7)
    model.eval()
    seen = []
    cbam.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]))
    maps = extract_attention_maps(model, torch.randn(3, 2, 80, 48))["layer3.1.attn"].maps
    x = seen[0]
    mlp = cbam.mlp
    channel = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    x1 = x * channel
    pooled = torch.stack([x1.amax(1), x1.mean(1)], 1)
    bn = cbam.spatial.bn
    logits = F.conv2d(pooled, cbam.spatial.conv.weight, padding=3)
    gate = torch.sigmoid((logits - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    torch.testing.assert_close(maps, gate[:, 0], atol=1e-5, rtol=1e-5)
    assert maps.std() > 0


def test_generic_map_of_an_identity_block_is_zero():
    model = ResNet2D("resnet18", num_frames=2, attention="gct", stages=[4]).eval()   # fresh GCT: identity
    sites = extract_attention_maps(model, torch.randn(3, 2, 64, 32))
    # 2 units x 2 convs, plus the GCT before layer4's projection shortcut (official GCT ResNet)
    assert len(sites) == 5 and all(s.what == "change |y - x|" for s in sites.values())
    for site in sites.values():
        assert torch.count_nonzero(site.maps) == 0 and site.high == 0


@torch.no_grad()
def test_generic_change_map_by_explicit_loops():
    block = build_attention("gct", channels=5)
    block.gamma.normal_()
    block.beta.normal_()
    site, x = run_block(block, torch.randn(5, 2, 3, 4))
    y = block(x).detach()
    expected = torch.zeros(2, 3, 4)
    for t in range(2):
        for i in range(3):
            for j in range(4):
                expected[t, i, j] = sum(abs(float(y[t, c, i, j] - x[t, c, i, j])) for c in range(5)) / 5
    assert site.high == pytest.approx(float(expected.max()), rel=1e-5)
    torch.testing.assert_close(site.maps, expected / expected.max(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name, gate_of", [
    ("triplet", lambda x, y: y / x),          # y = x * gate
    ("sse", lambda x, y: y / x),
    ("bam", lambda x, y: y / x - 1),          # y = x * (1 + M)
])
@torch.no_grad()
def test_gates_are_the_channel_mean_of_what_multiplies_the_input(name, gate_of):
    block = build_attention(name, channels=32).eval()
    site, x = run_block(block, torch.randn(32, 3, 7, 5))              # odd map
    y = block(x)
    torch.testing.assert_close(site.maps, gate_of(x, y).mean(1), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_weighted_gate_of_a_channel_gate():
    block = build_attention("se", channels=8, reduction=2)
    site, x = run_block(block, torch.randn(8, 2, 3, 3))
    g = block.gate(x).detach()                                         # (T, C) sigmoid gate
    expected = (g[:, :, None, None] * x.abs()).sum(1) / x.abs().sum(1)
    torch.testing.assert_close(site.maps, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_nonlocal_attention_received_by_brute_force():
    block = build_attention("nonlocal", channels=6)                  # sub-sampled keys, no 1/sqrt(d)
    for conv in (block.theta, block.phi):
        conv.weight.normal_()
    site, x = run_block(block, torch.randn(6, 1, 5, 3))
    x = x[0]
    theta = torch.einsum("dc,chw->dhw", block.theta.weight[:, :, 0, 0], x) + block.theta.bias[:, None, None]
    phi = torch.einsum("dc,chw->dhw", block.phi.weight[:, :, 0, 0], x) + block.phi.bias[:, None, None]
    keys = {}                                                        # 2x2 max-pool, ceil mode: 3 x 2 keys
    for a in range(3):
        for b in range(2):
            keys[a, b] = phi[:, 2 * a:2 * a + 2, 2 * b:2 * b + 2].amax((1, 2))
    received = {key: 0.0 for key in keys}
    for i in range(5):
        for j in range(3):
            energy = {key: float(theta[:, i, j] @ k) for key, k in keys.items()}
            top = max(energy.values())
            total = sum(np.exp(e - top) for e in energy.values())
            for key, e in energy.items():
                received[key] += np.exp(e - top) / total / 15
    expected = torch.tensor([[received[i // 2, j // 2] for j in range(3)] for i in range(5)],
                            dtype=torch.float32)  # the key of each position
    assert site.high == pytest.approx(float(expected.max()), rel=1e-4)
    torch.testing.assert_close(site.maps[0], expected / expected.max(), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_criss_cross_attention_received_by_brute_force():
    block = build_attention("cc", channels=16)
    block.gamma.fill_(0.5)                                       # the second pass sees a changed map
    site, x = run_block(block, torch.randn(16, 1, 3, 4))
    h, w = 3, 4
    per_pass = []
    for _ in range(block.recurrence):
        q, k = block.query(x)[0], block.key(x)[0]
        received = torch.zeros(h, w)
        for i in range(h):
            for j in range(w):
                seen = [(g, j) for g in range(h) if g != i] + [(i, u) for u in range(w)]   # H + W - 1
                a = torch.softmax(torch.stack([q[:, i, j] @ k[:, p, r] for p, r in seen]), 0)
                for weight, (p, r) in zip(a, seen):
                    received[p, r] += weight / (h * w)
        per_pass.append(received)
        x = block.attend(x)
    expected = torch.stack(per_pass).mean(0)
    torch.testing.assert_close(site.maps[0], expected / expected.max(), atol=1e-5, rtol=1e-5)
    assert float(expected.sum()) == pytest.approx(1.0, abs=1e-5)


@torch.no_grad()
def test_mhsa_attention_received_by_brute_force():
    block = build_attention("mhsa", channels=8, heads=2)
    site, x = run_block(block, torch.randn(8, 1, 2, 3))
    tokens = (x + block.position_embedding(2, 3)).flatten(2).transpose(1, 2)[0]     # (6, 8)
    qkv = block.qkv(block.norm1(tokens))
    received = torch.zeros(6)
    for head in range(2):
        q, k = qkv[:, 4 * head:4 * head + 4], qkv[:, 8 + 4 * head:8 + 4 * head + 4]
        for i in range(6):
            received += torch.softmax(torch.stack([q[i] @ k[j] / 2 for j in range(6)]), 0) / 12
    expected = received.view(2, 3)
    torch.testing.assert_close(site.maps[0], expected / expected.max(), atol=1e-5, rtol=1e-5)


def test_sta_aggregator_map_and_frame_weights():
    sta = build_attention("sta", channels=4, num_parts=4, embed_dim=None)     # 2 rows: parts 1 and 3 empty
    clip = torch.rand(4, 3, 2, 3)
    site = only(extract_attention_maps(sta, clip))
    energy = clip.pow(2).sum(0)                                        # (T, H, W), STA's Eq. 1
    g = energy / energy.sum((1, 2), keepdim=True)
    torch.testing.assert_close(site.maps, g / g.max())
    rows = g.sum(2)                                                    # (T, 2): part 0 = row 0, part 2 = row 1
    score = (rows / rows.sum(0)).sum(1)
    torch.testing.assert_close(site.frame_weights, score / score.sum())
    assert float(site.frame_weights.sum()) == pytest.approx(1.0)


def test_jet_colours():
    assert tuple(jet(np.array(0.0))) == (0, 0, 128)
    assert tuple(jet(np.array(0.5))) == (128, 255, 128)
    assert tuple(jet(np.array(1.0))) == (128, 0, 0)


def test_attention_strip_restores_training_mode():
    model = ResNet2D("resnet18", num_frames=2, attention="scse", stages=[3]).train()
    frames = torch.randint(0, 256, (2, 3, 48, 24), dtype=torch.uint8)
    image = attention_strip(model, frames, torch.randn(1, 3, 2, 48, 24))
    assert model.training and image.size == (am.LABEL_WIDTH + 2 * (48 + am.GAP), 3 * (96 + am.GAP) + am.FOOTER)


TINY = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME", "resnet18", "MODEL.BACKBONE.ATTENTION.NAME", "cbam",
        "MODEL.BACKBONE.ATTENTION.STAGES", "[3]"]


def _checkpoint(config, overrides, path, num_classes):
    from engine.build import build_model
    from engine.checkpoint import save_checkpoint
    from engine.config import load_config
    cfg = load_config(config, overrides)
    model = build_model(cfg, num_classes)
    save_checkpoint(str(path), model, torch.optim.SGD(model.parameters(), lr=0.1), None, 0, cfg)


def _tb_events(folder):
    return [f for f in os.listdir(folder) if f.startswith("events.out.tfevents")]


def test_visualize_frame_folder_reid(tmp_path):
    config = os.path.join(CONFIGS, "mars.yaml")
    overrides = TINY + ["DATA.HEIGHT", "32", "DATA.WIDTH", "16", "OUTPUT_DIR", str(tmp_path / "out")]
    _checkpoint(config, overrides, tmp_path / "ckpt.pth", num_classes=5)
    folder = tmp_path / "0001"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for tracklet, count in ((1, 6), (2, 3)):                           # two MARS tracklets: the first is shown
        for f in range(count):
            Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)).save(
                folder / f"0001C1T000{tracklet}F{f:03d}.jpg")
    out = visualize_attention(config, str(tmp_path / "ckpt.pth"), str(folder), str(tmp_path / "a.png"), overrides)
    image = Image.open(out)
    th, tw = am.tile_size(32, 16)
    assert image.size == (am.LABEL_WIDTH + 4 * (tw + am.GAP), 3 * (th + am.GAP) + am.FOOTER)   # frames + 2 cbam
    assert len(_tb_events(tmp_path / "out" / "tb")) == 1
    shown, _, idx = load_clip(load_config(config, overrides), str(folder))
    assert list(idx) == [0, 2, 3, 5] and shown.shape == (4, 3, 32, 16)


def test_visualize_video_action(tmp_path):
    video = sample_video("bikes.mp4")
    config = os.path.join(CONFIGS, "ucf101.yaml")
    overrides = TINY + ["DATA.SEQ_LEN", "3", "DATA.CROP_SIZE", "32", "DATA.SHORT_SIDE", "36",
                        "DATA.DECODE_SIZE", "[54, 128]", "OUTPUT_DIR", str(tmp_path / "out")]
    _checkpoint(config, overrides, tmp_path / "ckpt.pth", num_classes=7)
    out = visualize_attention(config, str(tmp_path / "ckpt.pth"), video, str(tmp_path / "v.png"), overrides)
    th, tw = am.tile_size(32, 32)
    assert Image.open(out).size == (am.LABEL_WIDTH + 3 * (tw + am.GAP), 3 * (th + am.GAP) + am.FOOTER)
    assert len(_tb_events(tmp_path / "out" / "tb")) == 1
