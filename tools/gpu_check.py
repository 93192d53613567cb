"""One-shot GPU check (``make bench-gpu``): within about 8 minutes on one GPU, run

1. the CUDA tests (``pytest -m cuda``: every test that is skipped without a GPU),
2. the attention benchmark of the long-range modules (and of the aggregators whose references
   once built tensors on the CPU) at 56x56, 256 channels, batch 8, in float32 and bf16 autocast,
   and of the non-local blocks without sub-sampling (``--kwargs sub_sample=False``, both forms),
3. the training-step benchmark (ours vs a bare loop; channels-last rows),
4. a short ``mars_stgcn`` run (ResNet-50, P16 x K4 x 8 frames at 256x128, bf16, 8 workers) on a
   synthetic MARS written first with ``datasets.synthetic``,
5. the loader benchmark,

and print one summary table. Every output goes to ``--out`` (or ``$GPU_CHECK_OUT``): at most
8 files (summary.txt and one log per step). Each step has its own time limit and the whole run a
budget (``--budget`` seconds); a step that fails or runs out of time is reported and the next
one runs. Without CUDA the script runs as a dry run: the CUDA-only parts are skipped with a line
that says so and the rest runs at toy sizes, which checks the script itself.

    python3 tools/gpu_check.py --out OUT                 # make bench-gpu PYTHON=python3 OUT=OUT
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONAL = ("fvcore", "yacs", "iopath", "portalocker", "yaml", "scipy", "tqdm", "decord", "av", "pytorchvideo",
            "torch_geometric", "sklearn", "tensorboard", "skvideo")
LONG_RANGE = "nonlocal,nonlocal_st,cc,ema,mhsa,detr,rstan,sta,stgcn"
NO_SUB_SAMPLING = "nonlocal,nonlocal_st"     # again with every position as a key (--kwargs sub_sample=False)


def parse_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """The ``| a | b |`` tables of a benchmark's output: [(headers, rows)]."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                current = (cells, [])
                tables.append(current)
            else:
                current[1].append(cells)
        elif not line.startswith("|-"):
            current = None
    return tables


def column(headers: list[str], row: list[str], name: str) -> str:
    return row[headers.index(name)] if name in headers and headers.index(name) < len(row) else "?"


class Check:
    def __init__(self, out: str, budget: float):
        self.out, self.deadline = out, time.monotonic() + budget
        self.rows: list[list[str]] = []

    def add(self, check: str, result: str, figures: str = "", seconds: float | None = None) -> None:
        self.rows.append([check, result, figures, "" if seconds is None else f"{seconds:.0f}"])
        print(f"[gpu-check] {check}: {result} {figures}", flush=True)

    def run(self, name: str, cmd: list[str], log: str, limit: float, append: bool = False):
        """Run ``cmd`` (output to ``log`` in the output folder) within ``limit`` seconds and the
        budget; returns (exit status or None when it ran out of time, seconds, output text)."""
        limit = min(limit, self.deadline - time.monotonic())
        if limit < 10:
            self.add(name, "SKIPPED", "the time budget is spent")
            return None, 0.0, ""
        path = os.path.join(self.out, log)
        t = time.monotonic()
        with open(path, "a" if append else "w") as f:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            try:
                rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=limit).returncode
            except subprocess.TimeoutExpired:
                rc = None
        seconds = time.monotonic() - t
        with open(path, errors="replace") as f:
            text = f.read()
        return rc, seconds, text


def status(rc, seconds) -> str:
    return "ok" if rc == 0 else ("TIMEOUT" if rc is None else f"FAILED (exit {rc})")


def environment(check: Check, cuda: bool) -> None:
    import torch
    missing = [m for m in OPTIONAL if importlib.util.find_spec(m) is None]
    gpu = (f"{torch.cuda.get_device_name(0)} (sm {'.'.join(map(str, torch.cuda.get_device_capability(0)))}, "
           f"{torch.cuda.get_device_properties(0).total_memory / 2 ** 30:.0f} GiB)" if cuda else "no CUDA: DRY RUN")
    check.add("environment", "ok", f"torch {torch.__version__}, {gpu}, {os.cpu_count()} CPUs; "
              f"missing: {', '.join(missing) or 'none'}")
    sys.path.insert(0, ROOT)
    for module in ("engine.config", "engine.trainer"):            # what every training step needs
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - reported, the steps then fail visibly
            check.add(f"import {module}", "FAILED", f"{type(err).__name__}: {err}")


def cuda_tests(check: Check, py: str, cuda: bool) -> None:
    rc, seconds, text = check.run("CUDA tests", [py, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                                                 "--no-header", "-rfE", "--continue-on-collection-errors", "tests"], "pytest_cuda.log", 200)
    if not text:
        return
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|deselected)", text)}
    failed = [line.split(" ")[1] for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    result = status(0 if rc in (0, 5) else rc, seconds)       # 5: nothing collected
    if not cuda:
        result = "SKIPPED (no CUDA)" if rc in (0, 5) else result
    figures = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "deselected")
    check.add("CUDA tests (pytest -m cuda)", result, figures + (f"; failed: {', '.join(failed[:6])}" if failed else ""),
              seconds)


def attention(check: Check, py: str, cuda: bool) -> None:
    size = ["--sizes", "56x56", "--batch", "8", "--channels", "256", "--repeats", "5"] if cuda else \
           ["--sizes", "8x8", "--batch", "4", "--channels", "16", "--repeats", "1", "--threads", "1"]
    runs = [(amp, names, kwargs) for names, kwargs in ((LONG_RANGE, []), (NO_SUB_SAMPLING, ["sub_sample=False"]))
            for amp in ("none", "bf16")]
    for i, (amp, names, kwargs) in enumerate(runs):
        label = ("fp32" if amp == "none" else "bf16") + "".join(f" {k}" for k in kwargs)
        rc, seconds, text = check.run(f"attention {label}", [
            py, "tools/benchmark.py", "attention", "--device", "cuda" if cuda else "cpu", "--names", names,
            "--amp", amp, *size, *(["--kwargs", *kwargs] if kwargs else [])], "attention.txt", 90 if i < 2 else 60,
            append=i > 0)
        if not text:
            continue
        tables = parse_tables(text)
        if rc != 0 or not tables:
            check.add(f"attention {label}", status(rc, seconds), "see attention.txt", seconds)
            continue
        headers, rows = tables[-1]
        check.add(f"attention {label}", status(rc, seconds), "ours vs explicit form, 56x56x256, batch 8" if cuda
                  else "toy size (dry run)", seconds)
        for row in rows:
            check.add(f"  {label.split()[0]} {row[0]}", column(headers, row, "targets"),
                      f"speed {column(headers, row, 'speed (ref/ours)')}, memory "
                      f"{column(headers, row, 'mem (ours/ref)')}x, ours {column(headers, row, 'ours ms')} ms "
                      f"{column(headers, row, 'ours MiB')} MiB, max abs diff {column(headers, row, 'max abs diff')}")


def train_step(check: Check, py: str, cuda: bool) -> None:
    args = ["--device", "cuda", "--repeats", "5", "--batches", "4"] if cuda else ["--device", "cpu", "--quick",
                                                                                  "--repeats", "1", "--batches", "1"]
    rc, seconds, text = check.run("train step", [py, "tools/benchmark.py", "train-step", *args], "train_step.txt", 120)
    tables = parse_tables(text)
    if rc != 0 or not tables:
        if text:
            check.add("train step", status(rc, seconds), "see train_step.txt", seconds)
        return
    headers, rows = tables[-1]
    ours = {r[0]: r for r in rows if r[1].startswith("ours")}
    check.add("train step (ours / bare loop, goal <= 1.05)", status(rc, seconds), "", seconds)
    for name, row in ours.items():
        check.add(f"  {name}", column(headers, row, "time vs bare"), f"{column(headers, row, 'ms/iter')} ms/iter, "
                  f"{column(headers, row, 'clips/s')} clips/s")
    ms = {name.split(" [")[0]: float(column(headers, row, "ms/iter")) for name, row in ours.items()}
    for plain, cl in (("fp32", "channels_last (MODEL.CHANNELS_LAST)"), ("AMP (SOLVER.AMP)", "AMP + channels_last")):
        if plain in ms and cl in ms:
            check.add(f"  channels_last vs not, {plain.split(' ')[0]}", f"{ms[cl] / ms[plain]:.3f}x time",
                      "below 1: MODEL.CHANNELS_LAST auto (on for CUDA) is the faster choice")


def mars_stgcn(check: Check, py: str, cuda: bool) -> None:
    work = tempfile.mkdtemp(prefix="vidattn_gpu_check_")
    root, run_dir = os.path.join(work, "mars"), os.path.join(work, "run")
    sizes = dict(num_train_ids=64, num_test_ids=16, num_distractors=4, num_junk=2, frames=(8, 16), size=(256, 128)) \
        if cuda else dict(num_train_ids=8, num_test_ids=4, num_distractors=1, num_junk=1, frames=(4, 8), size=(64, 32))
    write = (f"import sys; sys.path.insert(0, {ROOT!r}); from datasets.synthetic import write_synthetic_mars; "
             f"print(write_synthetic_mars({root!r}, **{sizes!r}))")
    rc, seconds, _ = check.run("synthetic MARS", [py, "-c", write], "mars_stgcn.log", 90)
    if rc != 0:
        check.add("mars_stgcn", status(rc, seconds), "writing the synthetic MARS failed: see mars_stgcn.log", seconds)
        return
    common = ["DATA.ROOT", root, "OUTPUT_DIR", run_dir, "SOLVER.WARMUP_EPOCHS", "1", "SOLVER.EVAL_PERIOD", "0",
              "SOLVER.LOG_PERIOD", "2"]
    size = (["MODEL.DEVICE", "cuda", "SOLVER.MAX_EPOCHS", "3", "SOLVER.AMP", "True", "DATA.NUM_WORKERS", "8"] if cuda
            else ["MODEL.DEVICE", "cpu", "SOLVER.MAX_EPOCHS", "1", "DATA.NUM_WORKERS", "2", "MODEL.BACKBONE.NAME",
                  "resnet18", "DATA.HEIGHT", "64", "DATA.WIDTH", "32", "DATA.NUM_IDS", "4", "DATA.NUM_INSTANCES", "2",
                  "DATA.SEQ_LEN", "4", "TEST.BATCH_SIZE", "16"])
    rc, train_seconds, text = check.run("mars_stgcn", [py, "tools/train.py", "configs/mars_stgcn.yaml", *common, *size],
                                        "mars_stgcn.log", 150, append=True)
    epochs = re.findall(r"epoch (\d+)/(\d+)\s+(loss .*)", text)
    figures = []
    if epochs:
        values = dict(re.findall(r"(\S+) ([-\d.e+]+)", epochs[-1][2]))
        figures.append(f"epoch {epochs[-1][0]}: {float(values.get('clips_per_s', 'nan')):.0f} clips/s, "
                       f"data wait {100 * float(values.get('data_wait', 'nan')):.0f}% of step time, "
                       f"loss {float(values.get('loss', 'nan')):.3f}")
    metrics = os.path.join(run_dir, "metrics.json")
    if os.path.isfile(metrics):
        with open(metrics) as f:
            m = json.load(f)
        figures.append(f"mAP {100 * m['mAP']:.1f}, R1 {100 * m['rank1']:.1f} (synthetic, {len(epochs)} epochs)")
    check.add("mars_stgcn (R50 P16xK4x8 256x128 bf16)" if cuda else "mars_stgcn (toy, CPU)", status(rc, train_seconds),
              "; ".join(figures) or "see mars_stgcn.log", seconds + train_seconds)
    shutil.rmtree(work, ignore_errors=True)


def loader(check: Check, py: str, cuda: bool) -> None:
    args = ["--workers", "2", "8", "--repeats", "2"] if cuda else ["--quick", "--repeats", "1"]
    rc, seconds, text = check.run("loader", [py, "tools/benchmark.py", "loader", *args], "loader.txt", 120)
    if not text:
        return
    check.add("loader benchmark", status(rc, seconds), "tables in loader.txt", seconds)
    for headers, rows in parse_tables(text):
        if "ours / bare" in headers:
            for row in rows:
                check.add(f"  action {column(headers, row, 'files')[:24]} {column(headers, row, 'spec')} "
                          f"{column(headers, row, 'workers')} workers",
                          column(headers, row, ">= 0.9"), f"ours / bare decord {column(headers, row, 'ours / bare')}")
        elif "vs PIL" in headers:
            for row in rows:
                check.add(f"  MARS {row[0]} ({column(headers, row, 'workers')} workers)",
                          column(headers, row, "vs PIL"), f"{column(headers, row, 'clips/s')} clips/s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("GPU_CHECK_OUT"), help="output folder (default $GPU_CHECK_OUT)")
    p.add_argument("--budget", type=float, default=450, help="seconds for the whole check (default 450)")
    p.add_argument("--skip", nargs="*", default=[], choices=["tests", "attention", "train-step", "mars", "loader"])
    args = p.parse_args(argv)
    if not args.out:
        p.error("give the output folder: --out DIR or GPU_CHECK_OUT=DIR")
    os.makedirs(args.out, exist_ok=True)
    import torch
    cuda = torch.cuda.is_available()
    check, py, t0 = Check(args.out, args.budget), sys.executable, time.monotonic()
    environment(check, cuda)
    if not cuda:
        check.add("dry run", "no CUDA device", "CUDA tests skip themselves; benchmarks and training run at toy "
                  "sizes on the CPU to check this script")
    steps = {"tests": cuda_tests, "attention": attention, "train-step": train_step, "mars": mars_stgcn,
             "loader": loader}
    for name, step in steps.items():
        if name in args.skip:
            check.add(name, "SKIPPED", "--skip")
            continue
        try:
            step(check, py, cuda)
        except Exception as err:  # noqa: BLE001 - one broken step must not hide the others
            check.add(name, "ERROR in gpu_check", f"{type(err).__name__}: {err}")
    widths = [max(len(r[i]) for r in check.rows + [["check", "result", "figures", "s"]]) for i in range(4)]
    lines = [f"vidattn GPU check, {time.strftime('%Y-%m-%d %H:%M:%S')}, {time.monotonic() - t0:.0f} s"]
    for row in [["check", "result", "figures", "s"]] + check.rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    summary = "\n".join(lines)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(summary + "\n")
    print("\n" + summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
