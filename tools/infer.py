"""Clip-level inference on your own video files with a trained action model.

    python tools/infer.py CFG --checkpoint CKPT VIDEO [VIDEO ...] --out results.json [--windows 0] [--topk 5]
Per video: its path, the windows (start/end seconds, top-k [label, score]) and the video-level top-k.
"""
import argparse

import _bootstrap  # noqa: F401

from engine.infer import infer_videos


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("videos", nargs="+")
    p.add_argument("--out", default="results.json")
    p.add_argument("--windows", type=int, default=0, help="evenly spaced windows per video (0: every window)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY VALUE", help="config overrides")
    args = p.parse_args(argv)
    results = infer_videos(args.config, args.checkpoint, args.videos, args.out, args.set, args.windows, args.topk)
    for r in results:
        if "error" in r:
            print(f"{r['path']}: SKIPPED ({r['error']})")
        else:
            best = ", ".join(f"{name} {score:.2f}" for name, score in r["video_topk"][:3])
            print(f"{r['path']}: {len(r['windows'])} windows; {best}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
