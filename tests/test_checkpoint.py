"""Checkpoints hold only tensors and plain types (loaded with weights_only=True) and round-trip
every state they carry; unusable files are one-line CheckpointErrors."""
import random

import numpy as np
import pytest
import torch

from engine.checkpoint import read_checkpoint, rng_state, set_rng_state
from engine.errors import CheckpointError, UserError


def _draws():
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist())


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    random.gauss(0, 1), np.random.randn()        # leave a cached Gaussian in both generators
    torch.save({"rng": rng_state()}, tmp_path / "s.pth")
    expected = _draws()
    set_rng_state(torch.load(tmp_path / "s.pth", weights_only=True)["rng"])
    assert _draws() == expected


@pytest.mark.parametrize("content, words", [
    (b"", r"is empty \(0 bytes\)"),
    (b"PK\x03\x04 cut short", "truncated or not a PyTorch file"),
    (b"hello, not a checkpoint", "truncated or not a PyTorch file"),
])
def test_unusable_files_are_one_line_errors_naming_them(tmp_path, content, words):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=words) as info:
        read_checkpoint(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_folder_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="is a folder: pass a checkpoint file such as .*last.pth"):
        read_checkpoint(str(tmp_path))
    with pytest.raises(UserError, match="checkpoint not found"):
        read_checkpoint(str(tmp_path / "nope.pth"))
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a vidattn checkpoint"):
        read_checkpoint(str(tmp_path / "other.pth"))


def test_criterion_and_scaler_states_round_trip(tmp_path):
    """Center-loss centres and a gradient scaler's state come back from a checkpoint as saved."""
    from engine.checkpoint import load_checkpoint, save_checkpoint
    from engine.config import load_config
    from models.losses import CenterLoss
    cfg = load_config(None, [])
    model = torch.nn.Linear(3, 2)
    criterion, scaler = CenterLoss(5, 4), torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=7)
    optimizer = torch.optim.SGD(list(model.parameters()) + list(criterion.parameters()), lr=0.1)
    save_checkpoint(str(tmp_path / "c.pth"), model, optimizer, None, 3, cfg, criterion=criterion, scaler=scaler)
    fresh_criterion, fresh_scaler = CenterLoss(5, 4), torch.amp.GradScaler("cpu")
    assert not torch.equal(fresh_criterion.centers, criterion.centers)
    load_checkpoint(str(tmp_path / "c.pth"), torch.nn.Linear(3, 2), criterion=fresh_criterion, scaler=fresh_scaler)
    assert torch.equal(fresh_criterion.centers, criterion.centers)
    assert fresh_scaler.state_dict() == scaler.state_dict() and fresh_scaler.get_scale() == 512.0
    disabled = torch.amp.GradScaler("cpu", enabled=False)       # float16 AMP switched off on resume: ignored
    load_checkpoint(str(tmp_path / "c.pth"), torch.nn.Linear(3, 2), scaler=disabled)
    assert disabled.state_dict() == {}


def test_stale_temporaries_of_killed_saves_are_removed_live_ones_kept(tmp_path):
    """A save removes our own temporary checkpoints that no one has written to for
    STALE_AFTER_S (a killed save's leftovers), and nothing else."""
    import os
    import time

    from engine.checkpoint import atomic_save
    from engine.files import STALE_AFTER_S
    old = time.time() - STALE_AFTER_S - 60
    names = {".tmp-4242-abcdefgh.pth": old, ".tmp-k3j_x9q2.pth": old,       # killed saves (this and older naming)
             ".tmp-4243-qwertyui.pth": time.time(),                         # a live writer's, just written
             ".tmp-4244-abcdefgh.json": old, ".tmp-notes.pth": old, "last.pth.bak": old}  # not ours to remove
    for name, mtime in names.items():
        (tmp_path / name).write_bytes(b"x" * 10)
        os.utime(tmp_path / name, (mtime, mtime))
    atomic_save({"v": 1}, str(tmp_path / "last.pth"))
    assert sorted(os.listdir(tmp_path)) == sorted(["last.pth", ".tmp-4243-qwertyui.pth", ".tmp-4244-abcdefgh.json",
                                                   ".tmp-notes.pth", "last.pth.bak"])


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o007])
def test_written_files_respect_the_umask(tmp_path, umask):
    import os

    from engine.checkpoint import atomic_save
    from engine.infer import write_results
    from engine.trainer import write_metrics
    previous = os.umask(umask)
    try:
        atomic_save({"v": 1}, str(tmp_path / "last.pth"))
        write_results([{"path": "v.mp4", "error": "unreadable"}], str(tmp_path / "r.json"))
        write_metrics(str(tmp_path), {"mAP": 0.5})
    finally:
        os.umask(previous)
    for name in ("last.pth", "r.json", "metrics.json"):
        assert oct(os.stat(tmp_path / name).st_mode & 0o777) == oct(0o666 & ~umask), name


def test_memory_profiling_prints_nothing(capfd):
    """tools/zoo.py's memory column: the profiler's start/stop lines no longer reach stderr."""
    from engine.zoo_table import peak_memory_bytes
    capfd.readouterr()
    peak = peak_memory_bytes(torch.nn.Linear(64, 64), torch.randn(8, 64, requires_grad=True))
    out = capfd.readouterr()
    assert peak and peak > 0
    assert out.err == "" and out.out == ""


def test_every_torch_load_in_the_project_is_weights_only():
    """No ``torch.load`` call anywhere (code, tools, tests) can unpickle arbitrary objects."""
    import ast
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    unsafe = []
    for folder in ("engine", "tools", "models", "datasets", "tests"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                    flag = {k.arg: k.value for k in node.keywords}.get("weights_only")
                    if not (isinstance(flag, ast.Constant) and flag.value is True):
                        unsafe.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not unsafe, unsafe
