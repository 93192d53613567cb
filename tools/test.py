"""Evaluate a checkpoint: re-ID mAP/CMC/mINP or action top-1/top-5/mean class accuracy.

    python tools/test.py CFG --checkpoint OUTPUT_DIR/checkpoints/best.pth [KEY VALUE ...]
Writes OUTPUT_DIR/metrics.json.
"""
import os

import _bootstrap

from engine.evaluate import run_test


def main(argv=None):
    p = _bootstrap.parser(__doc__)
    p.add_argument("config")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--ranks-png", default=None, help="also draw the ranked gallery of the first queries (re-ID)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args(argv)
    metrics = run_test(args.config, args.checkpoint, args.overrides, ranks_png=args.ranks_png)
    print(f"metrics written to {os.path.join(metrics['output_dir'], 'metrics.json')}")


if __name__ == "__main__":
    _bootstrap.run(main)
