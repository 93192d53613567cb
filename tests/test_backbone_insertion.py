"""Attention insertion into the per-frame ResNet: placements, weight-load report, identity starts."""
import pytest
import torch
import torchvision

from engine.errors import CheckpointError

from models.attention import get_attention_class, list_attention
from models.backbones import ResidualUnit, ResNet2D
from models.backbones.insertion import PLACEMENTS

CLIP = (2, 3, 4, 64, 32)


def blocks_present():
    return [n for n in list_attention(kind="block") if get_attention_class(n).family != "temporal"]


@pytest.mark.parametrize("placement", [p for p in PLACEMENTS if p != "replace_conv2"])
@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_every_generic_placement_runs(arch, placement):
    if "se" not in list_attention():
        pytest.skip("se not registered")
    m = ResNet2D(arch, num_frames=4, last_stride=1, attention="se", stages=[1, 2, 3, 4], placement=placement)
    y = m(torch.randn(*CLIP))
    assert y.shape == (2, m.out_channels, 4, 4, 2)
    n_attn = sum(1 for name, _ in m.named_modules() if name.endswith(".attn") or name.startswith("stage_attn."))
    assert n_attn > 0


def test_post_placement_is_before_the_addition():
    """A block that zeroes its input turns each wrapped unit into relu(identity)."""
    from models.attention import register_attention

    if "_test_zero" not in list_attention():
        @register_attention("_test_zero", family="channel", kind="block")
        class Zero(torch.nn.Module):
            def __init__(self, channels):
                super().__init__()

            def forward(self, x):
                return x * 0

    m = ResNet2D("resnet18", num_frames=1, attention="_test_zero", stages=[1]).eval()
    x = torch.randn(2, 64, 16, 16)
    unit = m.layer1[0]
    assert isinstance(unit, ResidualUnit)
    assert torch.equal(unit(x), torch.relu(x))


@pytest.mark.parametrize("name", ["gct", "nonlocal", "cc"])
def test_identity_at_init_keeps_a_pretrained_backbone_intact(name, tmp_path):
    if name not in list_attention():
        pytest.skip(f"{name} not registered")
    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    plain = ResNet2D("resnet18", num_frames=2, pretrained=str(tmp_path / "r18.pth")).eval()
    with_attn = ResNet2D("resnet18", num_frames=2, attention=name, stages=[2, 3],
                         pretrained=str(tmp_path / "r18.pth")).eval()
    report = with_attn.load_report
    assert not report.unexpected[2:] and all(k.startswith("fc.") for k in report.unexpected)
    assert report.new and all(".attn" in k or k.startswith("stage_attn") for k in report.new)
    x = torch.randn(1, 3, 2, 64, 32)
    assert torch.allclose(plain(x), with_attn(x), atol=1e-5)


def test_load_report_and_missing_file(tmp_path, capsys):
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pth")
    m = ResNet2D("resnet50", attention="se" if "se" in list_attention() else None, stages=[4],
                 pretrained=str(tmp_path / "r50.pth"))
    out = capsys.readouterr().out
    assert "loaded" in out and "unexpected (ignored): fc.weight, fc.bias" in out
    assert len(m.load_report.loaded) == len(torchvision.models.resnet50().state_dict()) - 2
    with pytest.raises(CheckpointError, match="never downloaded"):
        ResNet2D("resnet18", pretrained=str(tmp_path / "nope.pth"))


def test_unusable_pretrained_files_are_one_line_errors(tmp_path):
    """MODEL.PRETRAINED goes through the same safe reader as checkpoints: a pickle that would run
    code is refused (and nothing runs), a truncated or foreign file is named in one line."""
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').write('pwned')",)

    torch.save({"conv1.weight": torch.zeros(1), "extra": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused"):
        ResNet2D("resnet18", pretrained=str(tmp_path / "evil.pth"))
    assert not marker.exists()
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "r18.pth").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated") as err:
        ResNet2D("resnet18", pretrained=str(tmp_path / "cut.pth"))
    assert "\n" not in str(err.value) and "cut.pth" in str(err.value)
    torch.save({"head.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="right architecture"):
        ResNet2D("resnet18", pretrained=str(tmp_path / "other.pth"))


@pytest.mark.parametrize("name", blocks_present())
def test_any_block_in_default_placement_trains(name):
    """Every registered 2D block, at its paper placement, in stage 3 of resnet18: forward + backward."""
    m = ResNet2D("resnet18", num_frames=2, last_stride=1, attention=name, stages=[3])
    y = m(torch.randn(2, 3, 2, 64, 32))
    y.mean().backward()
    assert y.shape[:3] == (2, 512, 2)
    assert any(p.grad is not None for n, p in m.named_parameters() if "attn" in n) or \
        not any("attn" in n for n, _ in m.named_parameters())


def test_bad_stage_and_non_block():
    with pytest.raises(ValueError, match="stages are 1..4"):
        ResNet2D("resnet18", attention="se", stages=[5])
    if "csra" in list_attention():
        with pytest.raises(ValueError, match="only blocks go into backbone stages"):
            ResNet2D("resnet18", attention="csra", stages=[2])
