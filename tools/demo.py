"""make demo: write the synthetic MARS set (if absent), measure the untrained model, train a
ResNet-18 per-frame baseline for a few minutes on the CPU and print both mAP/CMC tables.
A rerun replaces the previous demo's run in --out."""
import json
import os
import time

import _bootstrap

from datasets.synthetic import write_synthetic_mars
from engine.config import load_config
from engine.reid_evaluator import format_reid_table
from engine.trainer import Trainer


def main(argv=None):
    p = _bootstrap.parser(__doc__)
    p.add_argument("--data", default="data/synthetic_mars")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "configs", "demo_mars_r18.yaml"))
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args(argv)
    if not os.path.isdir(os.path.join(args.data, "info")):
        t = time.perf_counter()
        counts = write_synthetic_mars(args.data)
        print(f"wrote synthetic MARS to {args.data} in {time.perf_counter() - t:.1f}s: {counts}")
    cfg = load_config(args.config, ["DATA.ROOT", args.data, "OUTPUT_DIR", args.out, *args.overrides])
    trainer = Trainer(cfg, overwrite=True)  # the demo's own folder: a rerun replaces it
    print(trainer.task.dataset.summary())
    t = time.perf_counter()
    before = trainer.evaluate()
    print(f"untrained model evaluated in {time.perf_counter() - t:.1f}s; training {cfg.SOLVER.MAX_EPOCHS} epochs ...")
    t = time.perf_counter()
    after = trainer.fit()
    minutes = (time.perf_counter() - t) / 60
    print(f"\ntrained {cfg.SOLVER.MAX_EPOCHS} epochs in {minutes:.1f} min "
          f"({cfg.MODEL.BACKBONE.NAME} per frame, {cfg.DATA.HEIGHT}x{cfg.DATA.WIDTH}, synthetic MARS)\n")
    print(format_reid_table({"untrained": before, "trained": after}))
    with open(os.path.join(args.out, "demo.json"), "w") as f:
        json.dump({"untrained": before, "trained": after, "train_minutes": minutes}, f, indent=2)
    print(f"\nmetrics: {os.path.join(args.out, 'metrics.json')}   checkpoints: {os.path.join(args.out, 'checkpoints')}"
          f"   TensorBoard: tensorboard --logdir {os.path.join(args.out, 'tb')}")


if __name__ == "__main__":
    _bootstrap.run(main)
