"""Evaluate a checkpoint: re-ID mAP/CMC/mINP or action top-1/top-5/mean class accuracy.

    python tools/test.py CFG --checkpoint OUTPUT_DIR/checkpoints/best.pth [KEY VALUE ...]
Writes OUTPUT_DIR/metrics.json.
"""
import argparse
import os

import _bootstrap  # noqa: F401

from engine.evaluate import run_test


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--ranks-png", default=None, help="also draw the ranked gallery of the first queries (re-ID)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args(argv)
    metrics = run_test(args.config, args.checkpoint, args.overrides, ranks_png=args.ranks_png)
    print(f"metrics written to {os.path.join(metrics['output_dir'], 'metrics.json')}")


if __name__ == "__main__":
    main()
