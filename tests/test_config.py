import pytest

from engine.config import load_config


def write(path, text):
    path.write_text(text)
    return str(path)


def test_base_merge_and_overrides(tmp_path):
    (tmp_path / "_base_").mkdir()
    write(tmp_path / "_base_" / "solver.yaml", "SOLVER:\n  MAX_EPOCHS: 5\n  BASE_LR: 0.1\n")
    child = write(tmp_path / "exp.yaml", "_BASE_: _base_/solver.yaml\nSOLVER:\n  BASE_LR: 0.2\n"
                  "MODEL:\n  BACKBONE:\n    ATTENTION:\n      NAME: cbam\n      KWARGS: {reduction: 8}\n")
    cfg = load_config(child, ["SOLVER.MAX_EPOCHS", "7", "DATA.ROOT", "/data/mars",
                              "MODEL.BACKBONE.ATTENTION.KWARGS.kernel_size", "5", "SOLVER.BASE_LR", "1"])
    assert cfg.SOLVER.MAX_EPOCHS == 7 and cfg.SOLVER.BASE_LR == 1.0 and cfg.DATA.ROOT == "/data/mars"
    assert dict(cfg.MODEL.BACKBONE.ATTENTION.KWARGS) == {"reduction": 8, "kernel_size": 5}
    assert cfg.MODEL.BACKBONE.ATTENTION.NAME == "cbam"
    assert cfg.SOLVER.STEPS == [40, 70]  # untouched default


def test_unknown_key_names_the_closest(tmp_path):
    bad = write(tmp_path / "bad.yaml", "SOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(KeyError, match=r"unknown config key 'SOLVER.BASE_LRR'; did you mean 'SOLVER.BASE_LR'"):
        load_config(bad)
    with pytest.raises(KeyError, match=r"'DATA.SEQLEN'; did you mean 'DATA.SEQ_LEN'"):
        load_config(None, ["DATA.SEQLEN", "8"])


def test_wrong_type_names_the_key():
    with pytest.raises(ValueError, match=r"SOLVER.MAX_EPOCHS expects int"):
        load_config(None, ["SOLVER.MAX_EPOCHS", "abc"])
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        load_config(None, ["SOLVER.MAX_EPOCHS"])


def test_every_shipped_config_loads():
    import glob
    import os
    root = os.path.join(os.path.dirname(__file__), "..", "configs")
    files = [f for f in glob.glob(os.path.join(root, "*.yaml"))]
    assert files
    for f in files:
        cfg = load_config(f)
        assert cfg.OUTPUT_DIR and cfg.DATA.ROOT and cfg.SOLVER.MAX_EPOCHS > 0
