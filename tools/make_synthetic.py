"""Write a synthetic dataset in an official layout.

    python tools/make_synthetic.py mars OUT [--train-ids 40 --test-ids 40 --seed 0]
    python tools/make_synthetic.py ucf101 OUT [--size 240x320 --classes 6 --videos-per-class 10 --frames 24]
    python tools/make_synthetic.py hmdb51 OUT [--content motion]
    python tools/make_synthetic.py damaged OUT

``damaged`` writes a video folder (OUT/train/<class>/, OUT/val/<class>/) of 104 files: 16 good clips
and 88 files of 10 damaged or edge-case kinds, with OUT/manifest.csv naming each file's kind and
what a reader must do with it (40 no reader can open, 44 when not run as root; 36 that depend on
the demuxer). Far more than 10 % are broken, so train on it with ``DATA.DATASET video_folder
DATA.ROOT OUT DATA.MAX_BROKEN_SHARE 0.9`` (the default 0.1 stops the run, as it should).
"""
import os
import time

import _bootstrap

from datasets import synthetic
from datasets.damaged_videos import write_damaged_videos
from engine.errors import UserError


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"--size must be HxW such as 240x320 or 32x32, got {text!r}")
    return int(parts[0]), int(parts[1])


def main(argv=None):
    p = _bootstrap.parser(__doc__)
    p.add_argument("dataset", choices=["mars", "ucf101", "hmdb51", "damaged"])
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-ids", type=int, default=40, help="MARS: training identities")
    p.add_argument("--test-ids", type=int, default=40, help="MARS: test identities")
    p.add_argument("--cameras", type=int, default=4, help="MARS: cameras")
    p.add_argument("--size", default="240x320", help="UCF101/HMDB51: frame HxW (the official 320x240 by default; "
                   "make demo-action writes 32x32 for speed)")
    p.add_argument("--classes", type=int, default=6, help="UCF101/HMDB51: classes")
    p.add_argument("--videos-per-class", type=int, default=10, help="UCF101/HMDB51: videos per class")
    p.add_argument("--frames", type=int, default=24, help="UCF101/HMDB51: frames per video (25 fps)")
    p.add_argument("--content", choices=["order", "motion"], default="order",
                   help="UCF101/HMDB51: classes differ in the order of coloured flashes or in motion direction")
    args = p.parse_args(argv)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"{args.out!r} is a file, not a folder: pass a folder to write the dataset into")
    for flag in ("--train-ids", "--test-ids", "--classes", "--videos-per-class", "--frames"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if args.cameras < 2:
        raise UserError(f"--cameras must be at least 2 (a query is matched on the other cameras), got {args.cameras}")
    t = time.perf_counter()
    if args.dataset == "mars":
        counts = synthetic.write_synthetic_mars(args.out, num_train_ids=args.train_ids, num_test_ids=args.test_ids,
                                                num_cameras=args.cameras, seed=args.seed)
    elif args.dataset == "damaged":
        counts = write_damaged_videos(args.out, seed=args.seed)
    else:
        writer = getattr(synthetic, f"write_synthetic_{args.dataset}")
        size = _size(args.size)
        counts = writer(args.out, num_classes=args.classes, videos_per_class=args.videos_per_class,
                        num_frames=args.frames, size=size, content=args.content, seed=args.seed)
    print(f"wrote synthetic {args.dataset} to {args.out} in {time.perf_counter() - t:.1f}s: {counts}")


if __name__ == "__main__":
    _bootstrap.run(main)
