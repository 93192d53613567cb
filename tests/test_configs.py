"""Every shipped config loads strictly and builds the network its header claims; the paper re-ID
configs train end to end."""
import glob
import json
import os
import re

import pytest
import torch

from engine.build import build_backbone_from_cfg, build_model, input_size
from engine.config import load_config
from engine.trainer import Trainer
from models.attention import get_attention_class
from tests.test_training import TINY

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.yaml")))
NETWORK_LINE = re.compile(r"^# network: blocks=(\d+) frames=(\d+) input=(\d+)x(\d+)$", re.M)


def claimed_network(path) -> tuple[int, int, tuple[int, int]]:
    """The ``# network: blocks=N frames=T input=HxW`` line every shipped config carries."""
    found = NETWORK_LINE.findall(open(path).read())
    assert len(found) == 1, f"{os.path.basename(path)}: needs one '# network: blocks=N frames=T input=HxW' line"
    blocks, frames, h, w = map(int, found[0])
    return blocks, frames, (h, w)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_builds_the_network_its_header_claims(path):
    """The header states blocks, frames and input size; the built model has exactly those."""
    blocks, frames, size = claimed_network(path)
    cfg = load_config(path, [])
    assert cfg.DATA.SEQ_LEN == frames and input_size(cfg) == size
    with torch.device("meta"):   # no memory, no init cost: only the structure is checked
        backbone = build_backbone_from_cfg(cfg)
    attention = cfg.MODEL.BACKBONE.ATTENTION.NAME
    inserted = 0
    if attention:      # the named module really sits in the network, as many times as claimed
        cls = get_attention_class(attention)
        inserted = sum(isinstance(m, cls) for m in backbone.modules())
    assert inserted == blocks, f"{os.path.basename(path)} claims {blocks} blocks, builds {inserted}"


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_builds_its_model(path):
    cfg = load_config(path, [])
    model = build_model(cfg, num_classes=5).eval()
    if cfg.MODEL.AGGREGATOR.NAME not in ("", "avg", "max"):
        assert isinstance(model.aggregator, get_attention_class(cfg.MODEL.AGGREGATOR.NAME))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mars_stgcn", "mars_gltr", "mars_sta"])
def test_paper_reid_config_trains_and_evaluates(name, tiny_mars, tmp_path):
    root, _ = tiny_mars
    torch.set_num_threads(1)
    path = os.path.join(os.path.dirname(__file__), "..", "configs", f"{name}.yaml")
    cfg = load_config(path, TINY + ["DATA.ROOT", root, "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_EPOCHS", "1",
                                    "DATA.SEQ_LEN", "4", "MODEL.BACKBONE.LAST_STRIDE", "1"])
    assert cfg.MODEL.AGGREGATOR.NAME == name.split("_")[1]
    metrics = Trainer(cfg).fit()
    assert set(metrics) >= {"mAP", "rank1", "mINP"} and 0 < metrics["mAP"] <= 1
    assert json.load(open(tmp_path / "metrics.json"))["mAP"] == metrics["mAP"]
    assert os.path.isfile(tmp_path / "checkpoints" / "last.pth")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mars_r50_se", "mars_r50_cbam", "mars_r50_nonlocal", "mars_r50_gct"])
def test_attention_config_trains_on_synthetic_mars(name, tiny_mars, tmp_path):
    """Insertion from a config, end to end: the named block sits in the trained checkpoint."""
    root, _ = tiny_mars
    torch.set_num_threads(1)
    path = os.path.join(os.path.dirname(__file__), "..", "configs", f"{name}.yaml")
    cfg = load_config(path, TINY + ["DATA.ROOT", root, "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_EPOCHS", "1"])
    trainer = Trainer(cfg)
    cls = get_attention_class(cfg.MODEL.BACKBONE.ATTENTION.NAME)
    inserted = [n for n, m in trainer.model.named_modules() if isinstance(m, cls)]
    assert inserted
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    metrics = trainer.fit()
    assert 0 < metrics["mAP"] <= 1
    state = torch.load(tmp_path / "checkpoints" / "last.pth", weights_only=True)["model"]
    attn_keys = [k for k in state if k.startswith(tuple(n + "." for n in inserted))]
    assert attn_keys and any(not torch.equal(state[k], before[k]) for k in attn_keys)   # the block trained
