"""Train (and evaluate) from a YAML config.

    python tools/train.py configs/mars_baseline_r50.yaml [KEY VALUE ...] [--resume CKPT] [--overwrite]
    torchrun --nproc_per_node 2 tools/train.py CFG ...      # DDP (gloo on CPU, nccl on CUDA)

One run per OUTPUT_DIR: a folder that already holds checkpoints or metrics.json is refused unless
--resume continues that run from one of its checkpoints or --overwrite replaces it.
"""

import _bootstrap

from engine.config import load_config
from engine.trainer import Trainer


def main(argv=None):
    p = _bootstrap.parser(__doc__)
    p.add_argument("config")
    p.add_argument("--resume", default=None, help="checkpoint to continue from (e.g. OUTPUT_DIR/checkpoints/last.pth)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in OUTPUT_DIR (its checkpoints, metrics, TensorBoard events, log)")
    p.add_argument("overrides", nargs="*", help="KEY VALUE pairs, e.g. SOLVER.MAX_EPOCHS 5")
    args = p.parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    Trainer(cfg, resume=args.resume, overwrite=args.overwrite).fit()


if __name__ == "__main__":
    _bootstrap.run(main)
