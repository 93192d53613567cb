"""GPU speed options from the config: MODEL.CHANNELS_LAST (True/False/auto), MODEL.TF32, MODEL.COMPILE."""
import pytest
import torch

from engine.config import load_config
from engine.speed_options import set_tf32, use_channels_last

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize("raw,value", [("auto", "auto"), ("True", True), ("False", False)])
def test_channels_last_takes_true_false_or_auto(raw, value, tmp_path):
    assert load_config(None, ["MODEL.CHANNELS_LAST", raw]).MODEL.CHANNELS_LAST == value
    path = tmp_path / "c.yaml"
    path.write_text(f"MODEL:\n  CHANNELS_LAST: {raw}\n  DEVICE: cpu\n")
    cfg = load_config(str(path))
    assert cfg.MODEL.CHANNELS_LAST == value and cfg.MODEL.DEVICE == "cpu"
    again = tmp_path / "dumped.yaml"                 # checkpoints keep the config as YAML text
    again.write_text(cfg.dump())
    assert load_config(str(again)).MODEL.CHANNELS_LAST == value


def test_channels_last_rejects_other_values(tmp_path):
    with pytest.raises(ValueError, match="MODEL.CHANNELS_LAST expects True, False or 'auto'"):
        load_config(None, ["MODEL.CHANNELS_LAST", "sometimes"])
    path = tmp_path / "c.yaml"
    path.write_text("MODEL:\n  CHANNELS_LAST: 1\n")
    with pytest.raises(ValueError, match=r"c.yaml: MODEL.CHANNELS_LAST expects"):
        load_config(str(path))


def test_defaults_auto_channels_last_tf32_on_no_compile():
    m = load_config(None).MODEL
    assert (m.CHANNELS_LAST, m.TF32, m.COMPILE) == ("auto", True, False)
    assert use_channels_last("auto", CUDA) and not use_channels_last("auto", CPU)
    assert use_channels_last(True, CPU) and not use_channels_last(False, CUDA)


@pytest.fixture
def tf32_flags():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_tf32_switches_matmul_and_cudnn_on_cuda_only(tf32_flags):
    set_tf32(True, CUDA)                             # only flips switches: no device needed
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    set_tf32(False, CPU)                             # a CPU run leaves them alone
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    set_tf32(False, CUDA)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


@pytest.mark.slow
def test_compile_wraps_the_training_forward_only(tiny_mars, tmp_path, monkeypatch):
    """MODEL.COMPILE: the training step calls torch.compile's module; checkpoints and evaluation
    use the plain one (compiling a model on this CPU takes about a minute, so the compiler is
    replaced by a recorder here; `make bench-gpu` compiles for real)."""
    from engine.trainer import Trainer
    from tests.test_training import tiny_cfg
    calls = []

    class Recorder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            calls.append(x.shape[0])
            return self.model(x)

    monkeypatch.setattr(torch, "compile", Recorder)
    torch.set_num_threads(1)
    trainer = Trainer(tiny_cfg(tiny_mars[0], tmp_path / "run", "SOLVER.MAX_EPOCHS", "1", "MODEL.COMPILE", "True",
                               "MODEL.CHANNELS_LAST", "auto"))
    assert isinstance(trainer.forward_model, Recorder) and trainer.forward_model.model is trainer.model
    trainer.fit()
    assert len(calls) == trainer.iters_per_epoch            # evaluation did not go through it
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pth", weights_only=True)["model"]
    assert state.keys() == trainer.model.state_dict().keys()
    assert trainer.model.backbone.channels_last is False    # auto on CPU
