"""Benchmarks with printed tables (medians of repeats), never timed tests.

    python tools/benchmark.py reid-eval      # evaluation + re-ranking at MARS scale
    python tools/benchmark.py attention      # zoo modules vs explicit reference formulations
    python tools/benchmark.py temporal       # does time matter? order-aware vs order-blind models
    python tools/benchmark.py loader         # clips/s of our loaders vs pytorchvideo's dataset
    python tools/benchmark.py train-step     # our training step vs a bare PyTorch loop
"""
import importlib
import os

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # before torch loads: silences the memory profiler's chatter

import _bootstrap

BENCHMARKS = {"reid-eval": "reid_eval", "attention": "attention", "temporal": "temporal",
              "loader": "loader", "train-step": "train_step"}


def main(argv=None):
    p = _bootstrap.parser(__doc__)
    sub = p.add_subparsers(dest="name", required=True)
    modules = {}
    for name, module in BENCHMARKS.items():
        try:
            modules[name] = importlib.import_module(f"engine.benchmarks.{module}")
        except ImportError:
            continue
        sp = sub.add_parser(name, help=(modules[name].__doc__ or "").strip().splitlines()[0])
        modules[name].add_arguments(sp)
    args = p.parse_args(argv)
    table = modules[args.name].run(args)
    if table:
        print(table)


if __name__ == "__main__":
    _bootstrap.run(main)
