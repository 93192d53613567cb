"""The paper table: every module's ResNet-50 network, as its paper lays it out, beside the
parameter count its paper reports.

A row builds ``ResNet2D("resnet50", attention=name)`` with no stages (the module's paper layout,
224x224 input, last stride 2) and adds the classifier the ImageNet tables count (2048 -> 1000,
with bias; TANet's Kinetics table: 400 classes). Parameters are counted on the ``meta`` device
(no memory, no forward pass). GFLOPs (optional, slow) are fvcore's count of one 224x224 frame
(clip blocks: one ``frames``-frame clip) with one fused multiply-add = one flop, the convention of
the papers' "GFLOPs" (torchvision ResNet-50: 4.1). ``diff`` is ours against the paper; a paper
whose own plain ResNet-50 is not torchvision's 25.56M (ECA: 24.37M) is compared on the same
baseline: ``ours - 25.56M + its baseline``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from models.attention import get_attention_class, list_attention, takes_clips

FEATURES = 2048


@dataclass(frozen=True)
class PaperFigure:
    """A ResNet-50 parameter count as a paper (or its official code) reports it."""
    params: float
    source: str
    baseline: float | None = None   # the paper's own plain ResNet-50, when not torchvision's
    num_classes: int = 1000
    frames: int = 1
    checked: str = ""               # how the figure was confirmed when this table was made
    official: int | None = None     # the official code's network, counted here (torch / prototxt)
    official_from: str = ""         # which official file ``official`` was counted from


# The papers' ResNet-50 figures. ``checked`` says how a figure was confirmed (a table read in a
# full-text copy, the official README, the paper's abstract); an empty ``checked`` marks a figure
# whose paper table could not be read here (a figure to check). ``official`` is the parameter
# count of the network the official code builds (1000 classes unless the figure says otherwise),
# counted here from that code; tests/test_paper_layouts.py holds ours equal to it, exactly. The
# layouts follow the papers / official code cited in each class.
_BAM = dict(params=25.92e6, source="BAM paper, ImageNet table",
            checked="PytorchInsight's re-implementation table: 25.92M")
PAPER_FIGURES: dict[str, PaperFigure] = {
    "se": PaperFigure(28.09e6, "CBAM paper, ImageNet table (ResNet50 + SE)",
                      checked="PytorchInsight's re-implementation table: 28.09M",
                      official=28_088_024, official_from="hujie-frank/SENet models/SE-ResNet-50.prototxt"),
    "cbam": PaperFigure(28.09e6, "CBAM paper, ImageNet table",
                        checked="PytorchInsight's re-implementation table: 28.09M", official=28_089_624,
                        official_from="Jongchan/attention-module MODELS/model_resnet.py, att_type CBAM"),
    # the paper's formulation (our default) is not in the official code; it also rounds to 25.92M
    "bam": PaperFigure(**_BAM),
    "bam[variant=official]": PaperFigure(**_BAM, official=25_915_099, official_from=(
        "Jongchan/attention-module MODELS/model_resnet.py, att_type BAM")),
    "gsop": PaperFigure(28.29e6, "GSoP paper, ImageNet table (GSoP-Net1; the ECA paper's Table 3 "
                                 "lists GSoP-Net1 at 28.05M)", official=28_285_224, official_from=(
                            "ZilinGao/Global-Second-order-Pooling-Convolutional-Networks "
                            "torchvision/models/resnet.py, GSoP_mode 1, channel attention")),
    "fca": PaperFigure(28.07e6, "FcaNet paper, ImageNet table (FcaNet-50)", official=28_071_976,
                       official_from="cfzd/FcaNet model/fcanet.py fcanet50"),
    "srm": PaperFigure(25.62e6, "SRM paper, ImageNet table", official=25_617_448,
                       official_from="hyunjaelee410/style-based-recalibration-module models/resnet.py, srm"),
    "gct": PaperFigure(25.68e6, "GCT paper, ImageNet table", official=25_624_625,
                       official_from="z-x-yang/GCT PyTorch/resnet.py, 53 GCTs"),
    "eca": PaperFigure(24.37e6, "ECA paper Table 3 and abstract: ResNet-50 and ECA-Net50 both 24.37M "
                                "(units of 2^20, ECANet issue #35)", baseline=24.37e6,
                       checked="Table 3 read in a full-text copy; official README table: ECA-Net50 24.37M"),
    "triplet": PaperFigure(25.56e6, "Triplet Attention paper, ImageNet table",
                           checked="official README table: 25.56M", official=25_561_832,
                           official_from="LandskapeAI/triplet-attention MODELS/resnet.py, TripletAttention"),
    "simam": PaperFigure(25.56e6, "SimAM paper, ImageNet table (no parameters)",
                         checked="official README table: 25.56M", official=25_557_032,
                         official_from="ZjjConan/SimAM networks/imagenet/resnet.py resnet50, simam"),
    "scconv": PaperFigure(25.56e6, "SCNet paper, ImageNet table (SCNet-50)",
                          checked="official README table: 25.56M", official=25_564_584,
                          official_from="MCG-NKU/SCNet scnet.py scnet50"),
    "ge": PaperFigure(25.6e6, "GE paper, ImageNet table (GE-theta-minus)",
                      checked="abstract: the parameter-free GE adds no learnable parameters to ResNet-50",
                      official=25_557_032, official_from="hujie-frank/GENet models/RN50-GEPF.prototxt"),
    "ge[variant=theta]": PaperFigure(31.11e6, "released RN50-GEP.prototxt (GE-theta)",
                                     checked="counted here; the GE paper's table not re-read",
                                     official=31_106_600, official_from="hujie-frank/GENet models/RN50-GEP.prototxt"),
    "ge[variant=theta_plus]": PaperFigure(33.64e6, "released RN50-GEPP.prototxt (GE-theta-plus)",
                                          checked="counted here; the GE paper's table not re-read",
                                          official=33_637_592,
                                          official_from="hujie-frank/GENet models/RN50-GEPP.prototxt"),
    "tam": PaperFigure(25.6e6, "TANet paper, Kinetics-400 table (TANet-50, 8 frames)",
                       num_classes=400, frames=8, official=25_590_320, official_from=(
                           "liu-zhy/temporal-adaptive-module ops/temporal_module.py on torchvision "
                           "ResNet-50, 8 segments, 400 classes")),
    "sasa": PaperFigure(18.0e6, "SASA paper Table 1 (ResNet-50)",
                        checked="abstract: 29% fewer parameters than ResNet-50 (ours: 29.4%); a "
                                "re-implementation's README (leaderj1001) quotes Table 1: 18.0M; the "
                                "official repository holds no code"),
}
CLIP_FRAMES = 8  # clip blocks without a paper figure: an 8-frame clip
# Rows for named variants beside each module's default: label -> (module, constructor kwargs).
VARIANT_ROWS = {"bam[variant=official]": ("bam", {"variant": "official"}),
                "ge[variant=theta]": ("ge", {"variant": "theta"}),
                "ge[variant=theta_plus]": ("ge", {"variant": "theta_plus"})}


@dataclass
class PaperRow:
    name: str
    kind: str
    blocks: int | None = None
    params: int | None = None
    gflops: float | None = None
    frames: int = 1
    figure: PaperFigure | None = None
    layout: str = ""
    error: str | None = None

    @property
    def diff(self) -> float | None:
        """Relative difference to the paper's figure (on the paper's own baseline)."""
        if self.figure is None or self.params is None:
            return None
        ours = self.params - torchvision_resnet50_params() + (self.figure.baseline or torchvision_resnet50_params())
        return ours / self.figure.params - 1.0


def classifier_params(num_classes: int) -> int:
    return FEATURES * num_classes + num_classes


@functools.lru_cache(maxsize=1)
def torchvision_resnet50_params() -> int:
    return paper_network_params(None)[1]


def build_paper_network(name: str | None, frames: int = 1, device: str = "meta", **kwargs):
    from models.backbones import ResNet2D
    with torch.device(device):
        return ResNet2D("resnet50", num_frames=frames, attention=name, attention_kwargs=kwargs or None)


def paper_network_params(name: str | None, num_classes: int = 1000, frames: int = 1,
                         **kwargs) -> tuple[int, int]:
    """``(inserted blocks, parameters with the classifier)`` of ``name``'s paper network."""
    net = build_paper_network(name, frames, **kwargs)
    cls = get_attention_class(name) if name else None
    blocks = sum(isinstance(m, cls) for m in net.modules()) if cls else 0
    return blocks, sum(p.numel() for p in net.parameters()) + classifier_params(num_classes)


def network_gflops(name: str, frames: int, num_classes: int = 1000, **kwargs) -> float | None:
    from engine.zoo_table import count_flops
    torch.manual_seed(0)
    net = build_paper_network(name, frames, device="cpu", **kwargs)
    flops = count_flops(net, torch.randn(1, 3, frames, 224, 224))
    return None if flops is None else (flops + FEATURES * num_classes) / 1e9   # one classifier per clip


def paper_row(label: str, flops: bool = False) -> PaperRow:
    """The row of a module (registry name) or of a variant (a ``VARIANT_ROWS`` label)."""
    name, kwargs = VARIANT_ROWS.get(label, (label, {}))
    cls = get_attention_class(name)
    label = label if label in VARIANT_ROWS else cls.registry_name
    row = PaperRow(label, cls.kind, figure=PAPER_FIGURES.get(label))
    if cls.kind != "block":
        row.layout = f"{cls.kind}: runs on the backbone's output, not inside it"
        return row
    layout = getattr(cls, "paper_layout", None)
    row.layout = layout.source if layout else ""
    fig = row.figure
    row.frames = fig.frames if fig else (CLIP_FRAMES if takes_clips(cls) else 1)
    classes = fig.num_classes if fig else 1000
    try:
        row.blocks, row.params = paper_network_params(name, classes, row.frames, **kwargs)
        if flops:
            row.gflops = network_gflops(name, row.frames, classes, **kwargs)
    except Exception as exc:  # one broken module must not hide the others
        row.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    return row


def paper_rows(names=None, flops: bool = False, progress=None) -> list[PaperRow]:
    """Rows of ``names`` (default: every registered module, each followed by its variants)."""
    if names is None:
        names = [label for n in list_attention()
                 for label in [n] + [v for v, (m, _) in VARIANT_ROWS.items() if m == n]]
    rows = []
    for name in names:
        if progress:
            progress(name)
        rows.append(paper_row(name, flops))
    return rows


HEADER = ("module", "blocks", "params (ours)", "GFLOPs", "frames", "paper", "diff", "paper figure from",
          "layout from")


def row_cells(row: PaperRow) -> tuple[str, ...]:
    if row.error:
        return (row.name, "error", row.error, "", "", "", "", "", "")
    if row.params is None:
        return (row.name, "-", "-", "-", "-", "-", "-", "-", row.layout)
    fig = row.figure
    paper = "-" if fig is None else f"{fig.params / 1e6:.2f}M"
    if fig is not None and fig.baseline:
        paper += f" (on {fig.baseline / 1e6:.2f}M)"
    diff = "-" if row.diff is None else f"{100 * row.diff:+.2f}%"
    gflops = "-" if row.gflops is None else f"{row.gflops:.2f}"
    source = "-" if fig is None else figure_source(fig)
    return (row.name, str(row.blocks), f"{row.params / 1e6:.2f}M", gflops, str(row.frames), paper,
            diff, source, row.layout)


def figure_source(fig: PaperFigure) -> str:
    """Where a figure is from, how it was confirmed, and the official code's own count."""
    text = fig.source + (f"; {fig.checked}" if fig.checked else " (not re-read)")
    if fig.official is not None:
        text += f"; official code: {fig.official:,} ({fig.official_from})"
    return text


def format_paper_table(rows: list[PaperRow], markdown: bool = False) -> str:
    from engine.zoo_table import format_cells
    return format_cells(HEADER, [row_cells(r) for r in rows], markdown, numeric=(1, 2, 3, 4, 5, 6))
