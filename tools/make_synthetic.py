"""Write a synthetic dataset in an official layout.

    python tools/make_synthetic.py mars OUT [--train-ids 40 --test-ids 40 --seed 0]
    python tools/make_synthetic.py ucf101 OUT
    python tools/make_synthetic.py hmdb51 OUT
    python tools/make_synthetic.py damaged OUT

``damaged`` writes a video folder (OUT/train/<class>/, OUT/val/<class>/) with 88 damaged files beside
good ones and OUT/manifest.csv naming each file's kind. Over half of them are broken, so train on it
with ``DATA.DATASET video_folder DATA.ROOT OUT DATA.MAX_BROKEN_SHARE 0.9`` (the default 0.1 stops
the run, as it should).
"""
import argparse
import time

import _bootstrap  # noqa: F401

from datasets import synthetic
from datasets.damaged_videos import write_damaged_videos


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=["mars", "ucf101", "hmdb51", "damaged"])
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-ids", type=int, default=40, help="MARS: training identities")
    p.add_argument("--test-ids", type=int, default=40, help="MARS: test identities")
    p.add_argument("--cameras", type=int, default=4, help="MARS: cameras")
    args = p.parse_args(argv)
    t = time.perf_counter()
    if args.dataset == "mars":
        counts = synthetic.write_synthetic_mars(args.out, num_train_ids=args.train_ids, num_test_ids=args.test_ids,
                                                num_cameras=args.cameras, seed=args.seed)
    elif args.dataset == "damaged":
        counts = write_damaged_videos(args.out, seed=args.seed)
    else:
        writer = getattr(synthetic, f"write_synthetic_{args.dataset}")
        counts = writer(args.out, seed=args.seed)
    print(f"wrote synthetic {args.dataset} to {args.out} in {time.perf_counter() - t:.1f}s: {counts}")


if __name__ == "__main__":
    main()
