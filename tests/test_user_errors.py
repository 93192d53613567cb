"""Every tool, given a malicious checkpoint or an expected user mistake, prints one line naming the
file or key and exits with status 2: no traceback, nothing run, nothing written (``--debug``
shows the traceback)."""
import os
import pickle
import runpy
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS = os.path.join(ROOT, "tools")
REID_CFG = os.path.join(ROOT, "configs", "demo_mars_r18.yaml")
ACTION_CFG = os.path.join(ROOT, "configs", "demo_ucf101_tsn_r18.yaml")


def run_subprocess(tool: str, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.join(TOOLS, tool), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def run_tool(monkeypatch, capfd):
    """``python tools/<tool> ARGS`` in this process (a subprocess costs seconds of imports):
    returns (exit status, stderr)."""
    monkeypatch.syspath_prepend(TOOLS)

    def run(tool: str, *args):
        path = os.path.join(TOOLS, tool)
        monkeypatch.setattr(sys, "argv", [path, *map(str, args)])
        capfd.readouterr()
        with pytest.raises(SystemExit) as info:
            runpy.run_path(path, run_name="__main__")
        return subprocess.CompletedProcess(args, info.value.code, "", capfd.readouterr().err)
    return run


def assert_one_line_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    """Exit status 2, a single line on stderr (no traceback) that names each of ``names``."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert ": error: " in lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


class Payload:
    """Unpickling this writes ``marker``: what a crafted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


@pytest.fixture
def malicious(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "shared.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": Payload(marker)}, path)
    return path, marker


def test_the_payload_is_live(tmp_path):
    """Unpickling the payload really runs code (so the tests below can fail)."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("command", [
    ["test.py", REID_CFG, "--checkpoint", "{ckpt}"],
    ["infer.py", ACTION_CFG, "--checkpoint", "{ckpt}", "{video}", "--out", "{tmp}/r.json"],
    ["visualize.py", "ranks", REID_CFG, "--checkpoint", "{ckpt}", "--out", "{tmp}/ranks.png"],
    ["visualize.py", "attention", ACTION_CFG, "--checkpoint", "{ckpt}", "{video}", "--out", "{tmp}/a.png"],
    ["train.py", REID_CFG, "--resume", "{ckpt}", "OUTPUT_DIR", "{tmp}/run"],
], ids=["test", "infer", "visualize-ranks", "visualize-attention", "train-resume"])
def test_malicious_checkpoint_is_refused_by_every_tool(command, malicious, tmp_path, run_tool):
    path, marker = malicious
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0" * 16)
    args = [a.format(ckpt=path, video=video, tmp=tmp_path) for a in command]
    line = assert_one_line_error(run_tool(*args), str(path), "refused")
    assert "could run code" in line
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def _reid_checkpoint(path):
    torch.save({"model": {"w": torch.zeros(1)}, "config": "TASK: reid\nOUTPUT_DIR: x\n", "epoch": 1}, path)
    return path


def _truncated(path):
    _reid_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _earlier_run(folder):
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "best.pth").write_bytes(b"epoch 4, 38.4 mAP")
    return folder


CASES = {  # name: (build(tmp_path) -> command, words the line must hold)
    "empty-checkpoint": (lambda t: ["test.py", REID_CFG, "--checkpoint", (t / "e.pth").touch() or t / "e.pth"],
                         ["e.pth", "empty"]),
    "truncated-checkpoint": (lambda t: ["test.py", REID_CFG, "--checkpoint", _truncated(t / "cut.pth")],
                             ["cut.pth", "truncated"]),
    "checkpoint-of-other-task": (lambda t: ["test.py", ACTION_CFG, "--checkpoint", _reid_checkpoint(t / "r.pth")],
                                 ["r.pth", "TASK reid", "TASK action", "config.yaml"]),
    "empty-yaml": (lambda t: ["train.py", (t / "empty.yaml").touch() or t / "empty.yaml"], ["empty.yaml", "empty"]),
    "unknown-key": (lambda t: ["train.py", REID_CFG, "SOLVER.BASE_LRR", "0.1"], ["SOLVER.BASE_LRR", "SOLVER.BASE_LR"]),
    "ranks-with-action-config": (lambda t: ["visualize.py", "ranks", ACTION_CFG, "--checkpoint",
                                            _reid_checkpoint(t / "r.pth")], ["ranks", "TASK action", "re-ID config"]),
    "synthetic-size": (lambda t: ["make_synthetic.py", "ucf101", t / "out", "--size", "32"], ["--size", "'32'"]),
    "rerun-into-a-run-folder": (lambda t: ["train.py", REID_CFG, "OUTPUT_DIR", _earlier_run(t / "run")],
                                ["already holds a run", "--resume", "--overwrite"]),
    "infer-output-type": (lambda t: ["infer.py", ACTION_CFG, "--checkpoint", _reid_checkpoint(t / "r.pth"), t / "v.mp4",
                                     "--out", t / "r.txt"], ["r.txt", ".json or .csv"]),
    "unknown-attention-kwarg": (lambda t: ["train.py", REID_CFG, "MODEL.BACKBONE.ATTENTION.NAME", "se",
                                           "MODEL.BACKBONE.ATTENTION.KWARGS.reductoin", "8"],
                                ["ATTENTION.KWARGS.reductoin", "reduction"]),
    "unknown-aggregator-kwarg": (lambda t: ["train.py", REID_CFG, "MODEL.AGGREGATOR.NAME", "gltr",
                                            "MODEL.AGGREGATOR.KWARGS.dilation", "2"],
                                 ["AGGREGATOR.KWARGS.dilation", "dilations"]),
    "unknown-placement": (lambda t: ["train.py", REID_CFG, "MODEL.BACKBONE.ATTENTION.NAME", "se",
                                     "MODEL.BACKBONE.ATTENTION.PLACEMENT", "pots"], ["PLACEMENT", "'pots'", "post"]),
    "unknown-device": (lambda t: ["train.py", REID_CFG, "MODEL.DEVICE", "gpu"], ["MODEL.DEVICE", "'gpu'"]),
    "folder-to-infer": (lambda t: ["infer.py", ACTION_CFG, "--checkpoint", _reid_checkpoint(t / "r.pth"), t],
                        ["is a folder", "*.mp4"]),
    "cuda-device-without-gpu": (lambda t: _without_cuda(["train.py", REID_CFG, "MODEL.DEVICE", "cuda",
                                                         "OUTPUT_DIR", t / "out"]),
                                ["MODEL.DEVICE", "no CUDA device", "cpu or auto"]),
    "unknown-backbone": (lambda t: ["train.py", REID_CFG, "MODEL.BACKBONE.NAME", "resnet19", "OUTPUT_DIR", t / "out"],
                         ["MODEL.BACKBONE.NAME", "'resnet19'", "'resnet18'"]),
    "unknown-attention": (lambda t: ["train.py", REID_CFG, "MODEL.BACKBONE.ATTENTION.NAME", "cbamm",
                                     "OUTPUT_DIR", t / "out"], ["MODEL.BACKBONE.ATTENTION.NAME", "'cbam'"]),
    "block-as-aggregator": (lambda t: ["train.py", REID_CFG, "MODEL.AGGREGATOR.NAME", "se", "OUTPUT_DIR", t / "out"],
                            ["MODEL.AGGREGATOR.NAME", "'block'", "stgcn"]),
    "misspelt-choice": (lambda t: ["train.py", REID_CFG, "MODEL.HEAD.NECK_FEAT", "afterr", "OUTPUT_DIR", t / "out"],
                        ["MODEL.HEAD.NECK_FEAT", "after, before", "'afterr'"]),
    "sampler-of-the-other-task": (lambda t: ["train.py", REID_CFG, "DATA.TRAIN_SAMPLE", "tsn", "OUTPUT_DIR", t / "out"],
                                  ["DATA.TRAIN_SAMPLE", "TASK reid", "'tsn'"]),
    "unknown-decode-device": (lambda t: ["train.py", REID_CFG, "DATA.DECODE_DEVICE", "gpu", "OUTPUT_DIR", t / "out"],
                              ["DATA.DECODE_DEVICE", "cpu, cuda, auto"]),
    "test-with-unknown-attention": (lambda t: ["test.py", REID_CFG, "--checkpoint", _reid_checkpoint(t / "r.pth"),
                                               "MODEL.BACKBONE.ATTENTION.NAME", "cbamm"],
                                    ["MODEL.BACKBONE.ATTENTION.NAME", "'cbam'"]),
    "synthetic-into-a-file": (lambda t: ["make_synthetic.py", "mars", _file(t / "out")], ["out", "is a file"]),
    "synthetic-one-camera": (lambda t: ["make_synthetic.py", "mars", t / "out", "--cameras", "1"],
                             ["--cameras", "at least 2"]),
    "zoo-unknown-name": (lambda t: ["zoo.py", "--paper", "--names", "se", "nosuch"], ["--names", "'nosuch'"]),
    "ranks-png-with-an-action-config": (lambda t: ["test.py", ACTION_CFG, "--checkpoint", _reid_checkpoint(t / "r.pth"),
                                                   "--ranks-png", t / "out" / "r.png"],
                                        ["--ranks-png", "TASK reid", "demo_ucf101_tsn_r18.yaml"]),
    "output-dir-is-a-file": (lambda t: ["train.py", REID_CFG, "OUTPUT_DIR", _file(t / "out") / "run"],
                             ["OUTPUT_DIR", "out' is a file"]),
    "test-output-dir-is-a-file": (lambda t: ["test.py", REID_CFG, "--checkpoint", _reid_checkpoint(t / "r.pth"),
                                             "OUTPUT_DIR", _file(t / "out")], ["OUTPUT_DIR", "is a file"]),
    "infer-output-under-a-file": (lambda t: ["infer.py", ACTION_CFG, "--checkpoint", _reid_checkpoint(t / "r.pth"),
                                             t / "v.mp4", "--out", _file(t / "out") / "r.json"],
                                  ["r.json", "out' is a file"]),
}


def _without_cuda(command):
    if torch.cuda.is_available():
        pytest.skip("MODEL.DEVICE cuda is valid where CUDA is present")
    return command


def _file(path):
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_expected_user_error_is_one_line(name, tmp_path, run_tool):
    build, words = CASES[name]
    assert_one_line_error(run_tool(*build(tmp_path)), *words)
    assert not (tmp_path / "out").exists() or (tmp_path / "out").read_text() == "not a folder"


def test_as_a_real_process_refused_in_one_line_and_debug_shows_the_traceback(malicious, tmp_path):
    path, marker = malicious
    proc = run_subprocess("train.py", REID_CFG, "--resume", path, "OUTPUT_DIR", tmp_path / "run")
    assert_one_line_error(proc, str(path), "refused")
    assert not marker.exists() and not (tmp_path / "run").exists()
    (tmp_path / "empty.yaml").touch()
    proc = run_subprocess("train.py", tmp_path / "empty.yaml", "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


class _BrokenFrames(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        from engine.errors import InputError
        raise InputError(f"frame 'f{i}.jpg' cannot be read: replace it")


def test_a_user_error_raised_in_a_dataloader_worker_is_one_line(monkeypatch, capfd):
    """The worker's traceback that DataLoader puts into the message is not shown, its line is."""
    monkeypatch.syspath_prepend(TOOLS)
    import _bootstrap

    def main(argv):
        list(torch.utils.data.DataLoader(_BrokenFrames(), num_workers=1))

    monkeypatch.setattr(sys, "argv", ["tool.py"])
    with pytest.raises(SystemExit) as info:
        _bootstrap.run(main, [])
    err = capfd.readouterr().err
    assert info.value.code == 2 and err == "tool.py: error: frame 'f0.jpg' cannot be read: replace it\n"


@pytest.mark.parametrize("tool", ["train.py", "test.py"])
def test_missing_dataset_prints_the_layout_without_traceback(tool, tmp_path, run_tool):
    """A missing dataset: the first line names the missing files, the lines after it show the
    expected layout (the one error that keeps its lines), exit 2, no traceback."""
    args = [tool, REID_CFG, "DATA.ROOT", tmp_path / "nowhere", "OUTPUT_DIR", tmp_path / "run"]
    if tool == "test.py":
        args[2:2] = ["--checkpoint", _reid_checkpoint(tmp_path / "r.pth")]
    proc = run_tool(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    first, *layout = proc.stderr.strip().splitlines()
    assert ": error: MARS files missing: " in first and str(tmp_path / "nowhere") in first
    assert any("bbox_train/<pid>/" in line for line in layout)


def test_malicious_pretrained_weights_are_refused(malicious, tmp_path, run_tool, tiny_mars):
    """MODEL.PRETRAINED goes through the checkpoint's safe reader: refused, nothing runs."""
    path, marker = malicious
    line = assert_one_line_error(run_tool("train.py", REID_CFG, "DATA.ROOT", tiny_mars[0], "MODEL.PRETRAINED", path,
                                          "OUTPUT_DIR", tmp_path / "run"), str(path), "refused")
    assert "pretrained weights" in line and not marker.exists()


def test_an_unreadable_video_for_attention_maps_is_an_input_error(tmp_path):
    """``visualize.py attention`` with a missing or damaged video or frame folder: a one-line
    ``InputError`` naming it (it was a ``VideoReadError`` / ``ValueError`` traceback)."""
    from engine.attention_visualize import load_clip
    from engine.config import load_config
    from engine.errors import InputError
    cfg = load_config(ACTION_CFG, [])
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(b"not a video" * 10)
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0001.jpg").write_bytes(b"")
    (frames / "0002.jpg").write_bytes(b"not a jpeg")
    for path, reason in ((tmp_path / "missing.mp4", "no such file"), (damaged, "damaged.mp4"), (frames, "frames")):
        with pytest.raises(InputError, match=reason) as info:
            load_clip(cfg, str(path))
        assert "readable" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("args, words", [
    (["attention", "--sizes", "14", "--names", "se"], ["--sizes", "'14'"]),
    (["attention", "--device", "gpu", "--names", "se"], ["--device", "'gpu'"]),
    (["train-step", "--device", "gpu"], ["--device", "'gpu'"]),
], ids=["sizes", "attention-device", "train-step-device"])
def test_benchmark_arguments_are_checked_by_the_parser(args, words, run_tool):
    """A bad benchmark size or device is argparse's usage error (exit 2), not a traceback."""
    proc = run_tool("benchmark.py", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "error:" in last and all(w in last for w in words), last
