"""Every shipped config loads strictly and builds its model; the paper re-ID configs train end to end."""
import glob
import json
import os

import pytest
import torch

from engine.build import build_model
from engine.config import load_config
from engine.trainer import Trainer
from tests.test_training import TINY

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.yaml")))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_builds_its_model(path):
    cfg = load_config(path, [])
    model = build_model(cfg, num_classes=5).eval()
    attention = cfg.MODEL.BACKBONE.ATTENTION.NAME
    if attention:      # the named module really sits in the network
        from models.attention import get_attention_class
        cls = get_attention_class(attention)
        assert any(isinstance(m, cls) for m in model.modules()), attention
    if cfg.MODEL.AGGREGATOR.NAME not in ("", "avg", "max"):
        from models.attention import get_attention_class
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
    from models.attention import get_attention_class
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
